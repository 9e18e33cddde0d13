"""Arrays to dsa_tensor_t views without copies, and output allocation in the inputs' library.

numpy arrays are described directly; any other object with __dlpack__ (PyTorch, CuPy, JAX, ...)
through its DLPack capsule, read with ctypes, so CUDA memory needs no array library here.
"""
import ctypes
import sys

import numpy

from ._library import MAX_DIMS, DeviceType, DsaError, DType, Status, Tensor

try:
    import ml_dtypes
except ImportError:  # FP8 codes then travel as uint8; bf16 needs ml_dtypes
    ml_dtypes = None

_NUMPY_DTYPES = {
    numpy.dtype(numpy.float32): DType.F32,
    numpy.dtype(numpy.float16): DType.F16,
    numpy.dtype(numpy.uint8): DType.U8,
    numpy.dtype(numpy.int32): DType.I32,
    numpy.dtype(numpy.int64): DType.I64,
}
if ml_dtypes is not None:
    _NUMPY_DTYPES[numpy.dtype(ml_dtypes.bfloat16)] = DType.BF16
    _NUMPY_DTYPES[numpy.dtype(ml_dtypes.float8_e4m3fn)] = DType.FP8_E4M3

# DLPack's (type code, bits) of each dtype, with lanes = 1: kDLInt 0, kDLUInt 1, kDLFloat 2,
# kDLBfloat 4, kDLFloat8_e4m3fn 10.
_DLPACK_DTYPES = {
    (2, 32): DType.F32,
    (2, 16): DType.F16,
    (4, 16): DType.BF16,
    (10, 8): DType.FP8_E4M3,
    (1, 8): DType.U8,
    (0, 32): DType.I32,
    (0, 64): DType.I64,
}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _layout(name, data, dtype, device_type, device_id, shape, strides):
    if len(shape) > MAX_DIMS:
        raise DsaError(Status.INVALID_ARGUMENT, f"{name}: rank {len(shape)} exceeds DSA_MAX_DIMS = {MAX_DIMS}")
    tensor = Tensor(data=data, ndim=len(shape), dtype=dtype, device_type=device_type, device_id=device_id)
    tensor.shape[: len(shape)] = shape
    tensor.strides[: len(strides)] = strides
    return tensor


def contiguous_strides(shape):
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return strides[::-1]


def _from_numpy(name, array, writable):
    dtype = _NUMPY_DTYPES.get(array.dtype)
    if dtype is None or not array.dtype.isnative:
        supported = ", ".join(str(d) for d in _NUMPY_DTYPES)
        raise DsaError(Status.DTYPE_MISMATCH, f"{name}: numpy dtype {array.dtype} has no libdsa equivalent ({supported})")
    if writable and not array.flags.writeable:
        raise DsaError(Status.INVALID_ARGUMENT, f"{name}: the output array is read-only")
    if any(stride % array.itemsize for stride in array.strides):
        raise DsaError(Status.LAYOUT_UNSUPPORTED, f"{name}: byte strides {array.strides} are not whole elements")
    strides = [stride // array.itemsize for stride in array.strides]
    return _layout(name, array.ctypes.data, dtype, DeviceType.CPU, 0, array.shape, strides), array


def _from_dlpack(name, array, stream):
    device_type, device_id = array.__dlpack_device__()
    if device_type not in (DeviceType.CPU, DeviceType.CUDA):
        raise DsaError(Status.DEVICE_MISMATCH, f"{name}: DLPack device type {int(device_type)} is not CPU or CUDA")
    # For CUDA the producer orders its pending work before `stream` (1: the legacy default stream).
    capsule = array.__dlpack__(stream=stream or 1) if device_type == DeviceType.CUDA else array.__dlpack__()
    managed = _DLManagedTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    tensor = managed.dl_tensor
    dtype = _DLPACK_DTYPES.get((tensor.dtype.code, tensor.dtype.bits)) if tensor.dtype.lanes == 1 else None
    if dtype is None:
        raise DsaError(
            Status.DTYPE_MISMATCH,
            f"{name}: DLPack dtype (code {tensor.dtype.code}, bits {tensor.dtype.bits}, lanes {tensor.dtype.lanes}) "
            "has no libdsa equivalent",
        )
    shape = [tensor.shape[axis] for axis in range(tensor.ndim)]
    strides = [tensor.strides[axis] for axis in range(tensor.ndim)] if tensor.strides else contiguous_strides(shape)
    data = (tensor.data or 0) + tensor.byte_offset
    # The capsule stays unconsumed: it is only borrowed for the call, and when it is collected its
    # destructor hands the tensor back to the producer.
    return _layout(name, data, dtype, device_type, device_id, shape, strides), capsule


def view(name, array, *, writable=False, stream=None):
    """(dsa_tensor_t, keep-alive object) for a numpy array or an object with __dlpack__."""
    if isinstance(array, numpy.ndarray):
        return _from_numpy(name, array, writable)
    if hasattr(array, "__dlpack__"):
        return _from_dlpack(name, array, stream)
    raise TypeError(f"{name}: expected a numpy array or an object with __dlpack__, got {type(array).__name__}")


def empty(reference, shape, dtype_name):
    """An uninitialised array of `shape` and dtype `dtype_name` ("float32", "bfloat16",
    "float8_e4m3fn", ...) from the array library and device of `reference`. FP8 falls back to
    uint8 codes where the library has no float8_e4m3fn."""
    if isinstance(reference, numpy.ndarray):
        if dtype_name not in ("bfloat16", "float8_e4m3fn"):
            return numpy.empty(shape, numpy.dtype(dtype_name))
        if ml_dtypes is not None:
            return numpy.empty(shape, getattr(ml_dtypes, dtype_name))
        if dtype_name == "float8_e4m3fn":
            return numpy.empty(shape, numpy.uint8)
        raise TypeError("out: bfloat16 numpy outputs need ml_dtypes (pip install ml_dtypes), or pass out=")
    if hasattr(reference, "__array_namespace__"):
        namespace = reference.__array_namespace__()
    else:  # e.g. PyTorch: torch.empty(shape, dtype=torch.float32, device=...)
        namespace = sys.modules.get(type(reference).__module__.partition(".")[0])
    dtype = getattr(namespace, dtype_name, None)
    if dtype is None and dtype_name == "float8_e4m3fn":
        dtype = getattr(namespace, "uint8", None)
    if dtype is None or not hasattr(namespace, "empty"):
        raise TypeError(f"out: cannot allocate a {dtype_name} array like a {type(reference).__name__}; pass out=")
    return namespace.empty(tuple(shape), dtype=dtype, device=reference.device)

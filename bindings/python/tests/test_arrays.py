"""Arrays from other libraries through DLPack, outputs allocated in the inputs' library, and CUDA
memory described from a DLPack capsule without touching it."""
import ctypes
import sys
import types

import numpy
import pytest

import dsa
from dsa import _arrays


class Wrapped:
    """A minimal array library: numpy underneath, DLPack export, no FP8 dtype."""

    device = "cpu"

    def __init__(self, array):
        self.array = array
        self.shape = array.shape

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


class Namespaced(Wrapped):
    """Found through its array-API namespace."""

    def __array_namespace__(self):
        return types.SimpleNamespace(float32=numpy.float32, uint8=numpy.uint8, empty=_empty(Namespaced))


def _empty(wrapper):
    def empty(shape, dtype, device):
        assert device == "cpu"
        return wrapper(numpy.empty(shape, dtype))

    return empty


# A library known only by its module, as PyTorch is: torchlike.empty(shape, dtype=, device=).
torchlike = types.ModuleType("torchlike")


class ModuleArray(Wrapped):
    __module__ = "torchlike"

torchlike.float32, torchlike.uint8, torchlike.empty = numpy.float32, numpy.uint8, _empty(ModuleArray)


@pytest.fixture
def context():
    with dsa.Context() as context:
        yield context


@pytest.mark.parametrize("wrapper", [Namespaced, ModuleArray])
def test_dlpack_inputs_and_outputs_in_the_same_library(context, rng, wrapper, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchlike", torchlike)
    x = rng.standard_normal((3, 256)).astype(numpy.float32)
    q, scales = context.quantize_fp8(wrapper(x))
    assert type(q) is wrapper and type(scales) is wrapper
    assert q.array.dtype == numpy.uint8, "no FP8 dtype in the library: uint8 codes"
    expected_q, expected_scales = context.quantize_fp8(x)
    numpy.testing.assert_array_equal(q.array, expected_q.view(numpy.uint8))
    numpy.testing.assert_array_equal(scales.array, expected_scales)
    y = context.dequantize_fp8(q, scales)
    assert type(y) is wrapper
    numpy.testing.assert_array_equal(y.array, context.dequantize_fp8(expected_q, expected_scales))
    # A strided DLPack input (numpy exports its strides) and a DLPack out=.
    wide = rng.standard_normal((3, 200)).astype(numpy.float32)
    rotated = wrapper(numpy.full((3, 128), numpy.nan, numpy.float32))
    assert context.hadamard(wrapper(wide[:, :128]), out=rotated) is rotated
    numpy.testing.assert_array_equal(rotated.array, context.hadamard(numpy.ascontiguousarray(wide[:, :128])))


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_DLTENSOR = ctypes.create_string_buffer(b"dltensor")  # the capsule keeps a pointer to its name


class CudaArray:
    """A producer of CUDA DLPack capsules at a made-up address (never dereferenced: libdsa
    refuses the device before touching memory)."""

    def __init__(self, shape, code=2, bits=32):
        self.shape = shape
        self.dims = (ctypes.c_int64 * len(shape))(*shape)
        self.managed = _arrays._DLManagedTensor()
        tensor = self.managed.dl_tensor
        tensor.data, tensor.byte_offset = 0x7F0000000000, 256
        tensor.device.device_type, tensor.device.device_id = 2, 0
        tensor.ndim, tensor.shape = len(shape), self.dims
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = code, bits, 1
        self.streams = []

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return _capsule_new(ctypes.addressof(self.managed), _DLTENSOR, None)


def test_cuda_capsules_are_described_without_copies():
    view, _ = _arrays.view("x", CudaArray((4, 128), code=10, bits=8), stream=7)
    assert (view.data, view.device_type, view.dtype) == (0x7F0000000000 + 256, dsa.DeviceType.CUDA, dsa.DType.FP8_E4M3)
    assert list(view.shape[:2]) == [4, 128] and list(view.strides[:2]) == [128, 1]


def test_cuda_arrays_are_refused_by_a_cpu_context(context):
    x, y = CudaArray((4, 128)), CudaArray((4, 128))
    with pytest.raises(dsa.DsaError) as failure:
        context.hadamard(x, out=y, stream=5)
    # A CPU-only build refuses CUDA tensors outright; a CUDA build sees a device mismatch.
    assert failure.value.code in (dsa.Status.UNSUPPORTED, dsa.Status.DEVICE_MISMATCH)
    assert failure.value.message.startswith("x:")
    assert x.streams == [5] and y.streams == [5], "the producer was told the consumer's stream"
    with pytest.raises(dsa.DsaError):
        context.hadamard(x, out=y)
    assert x.streams[-1] == 1, "no stream: the legacy default stream (1 in DLPack)"


def test_unknown_dlpack_dtypes_are_refused():
    with pytest.raises(dsa.DsaError) as failure:
        _arrays.view("scales", CudaArray((4,), code=2, bits=64))
    assert failure.value.code == dsa.Status.DTYPE_MISMATCH and failure.value.message.startswith("scales:")

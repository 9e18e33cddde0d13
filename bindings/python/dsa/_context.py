"""The context and one method per op.

Adding an op: a method that builds its params with _params, allocates missing outputs with
_arrays.empty (shapes from the input views), and calls _run with every tensor named as in dsa.h.
"""
import collections
import ctypes

from . import _arrays
from ._library import ContextOptions, DeviceType, DType, HadamardParams, QuantizeFp8Params, ScaleFormat, check, lib

Device = collections.namedtuple("Device", ["type", "id"])
Device.__doc__ = "Where a context runs: type 'cpu' or 'cuda', and the CUDA ordinal."


def _params(structure, init, **fields):
    """A params struct with the library's defaults, then every field that is not None."""
    params = structure()
    check(init(ctypes.byref(params)))
    for name, value in fields.items():
        if value is not None:
            setattr(params, name, value)
    return params


def _shape(tensor):
    return tuple(tensor.shape[: tensor.ndim])


class Context:
    """A libdsa context: device, CPU thread pool, cached device properties. Ops are its methods.
    Any number of threads may call ops on one context at once; close() (or leaving a `with`
    block) destroys it, and must not race with them."""

    def __init__(self, device="cpu", device_id=0, num_threads=0):
        options = ContextOptions()
        check(lib.dsa_context_options_init(ctypes.byref(options)))
        options.device_type = DeviceType[device.upper()] if isinstance(device, str) else device
        options.device_id = device_id
        options.num_threads = num_threads
        handle = ctypes.c_void_p()
        check(lib.dsa_context_create(ctypes.byref(handle), ctypes.byref(options)))
        self._handle = handle

    def close(self):
        """Destroys the context; later ops fail with INVALID_ARGUMENT. Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.dsa_context_destroy(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def __del__(self):
        self.close()

    @property
    def device(self):
        """The Device the context runs on."""
        device_type, device_id = ctypes.c_int32(), ctypes.c_int32()
        check(lib.dsa_context_device(self._handle, ctypes.byref(device_type), ctypes.byref(device_id)))
        return Device(DeviceType(device_type.value).name.lower(), device_id.value)

    @property
    def num_threads(self):
        """The number of CPU threads the context uses (>= 1)."""
        threads = ctypes.c_int32()
        check(lib.dsa_context_num_threads(self._handle, ctypes.byref(threads)))
        return threads.value

    def _run(self, function, params, tensors, stream):
        """Calls `function(context, params, *tensors, stream)`; `tensors` are (name, array,
        writable) in the C argument order."""
        views = [_arrays.view(name, array, writable=writable, stream=stream) for name, array, writable in tensors]
        check(function(self._handle, ctypes.byref(params), *(ctypes.byref(tensor) for tensor, _ in views), stream))

    def quantize_fp8(self, x, *, group_size=None, scale_format=None, amax_floor=None, out=None, stream=None):
        """FP8 block quantisation (dsa_quantize_fp8) of x [..., N] (f32, bf16 or f16).

        Returns (q, scales): e4m3 codes [..., N] (float8_e4m3fn, or uint8 where the array library
        has no FP8 dtype) and f32 scales [..., N / group_size], allocated like x unless
        out=(q, scales) is given. scale_format: ScaleFormat, or "f32" / "ue8m0".
        """
        if isinstance(scale_format, str):
            scale_format = ScaleFormat[scale_format.upper()]
        params = _params(QuantizeFp8Params, lib.dsa_quantize_fp8_params_init,
                         group_size=group_size, scale_format=scale_format, amax_floor=amax_floor)
        if out is None:
            shape = _shape(_arrays.view("x", x, stream=stream)[0])
            last = shape[-1] if shape else 0
            groups = last // params.group_size if params.group_size > 0 else 0  # else libdsa explains
            out = (_arrays.empty(x, shape, "float8_e4m3fn"), _arrays.empty(x, shape[:-1] + (groups,), "float32"))
        q, scales = out
        self._run(lib.dsa_quantize_fp8, params, [("x", x, False), ("q", q, True), ("scales", scales, True)], stream)
        return q, scales

    def dequantize_fp8(self, q, scales, *, group_size=None, dtype="float32", out=None, stream=None):
        """The inverse of quantize_fp8 (dsa_dequantize_fp8): y = f32(q) * s, y [..., N] of `dtype`
        ("float32" or "bfloat16") allocated like q unless out= is given."""
        params = _params(QuantizeFp8Params, lib.dsa_quantize_fp8_params_init, group_size=group_size)
        if out is None:
            out = _arrays.empty(q, _shape(_arrays.view("q", q, stream=stream)[0]), dtype)
        self._run(lib.dsa_dequantize_fp8, params, [("q", q, False), ("scales", scales, False), ("y", out, True)], stream)
        return out

    def hadamard(self, x, *, scale=None, out=None, stream=None):
        """y = (x . H_n) * scale along the last dimension (dsa_hadamard); scale None or 0 means
        n^-0.5. x is f32 or bf16; y is allocated like x unless out= is given (out=x: in place)."""
        params = _params(HadamardParams, lib.dsa_hadamard_params_init, scale=scale)
        if out is None:
            x_view = _arrays.view("x", x, stream=stream)[0]
            out = _arrays.empty(x, _shape(x_view), "bfloat16" if x_view.dtype == DType.BF16 else "float32")
        self._run(lib.dsa_hadamard, params, [("x", x, False), ("y", out, True)], stream)
        return out

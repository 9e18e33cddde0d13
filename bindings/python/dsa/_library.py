"""Loading libdsa, the ctypes mirror of dsa.h (structs and one prototype per function) and errors.

Adding an op: mirror its params struct below (and add it to STRUCTS), add its functions to
PROTOTYPES, then add a method to dsa.Context (_context.py).
"""
import ctypes
import enum
import os
import sys
from ctypes import POINTER, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint32, c_void_p

#: The ABI major version these bindings mirror (DSA_VERSION_MAJOR of dsa.h).
ABI_MAJOR = 0
MAX_DIMS = 8


class Status(enum.IntEnum):
    """libdsa status codes (DSA_STATUS_*)."""

    SUCCESS = 0
    INVALID_ARGUMENT = 1
    SHAPE_MISMATCH = 2
    DTYPE_MISMATCH = 3
    DEVICE_MISMATCH = 4
    LAYOUT_UNSUPPORTED = 5
    UNSUPPORTED = 6
    OUT_OF_MEMORY = 7
    CUDA_ERROR = 8
    WORKSPACE_TOO_SMALL = 9
    INTERNAL = 10


class DType(enum.IntEnum):
    """libdsa element types (DSA_DTYPE_*)."""

    F32 = 1
    F16 = 2
    BF16 = 3
    FP8_E4M3 = 4
    U8 = 5
    I32 = 6
    I64 = 7


class DeviceType(enum.IntEnum):
    """libdsa device types (DSA_DEVICE_*), equal to DLPack's."""

    CPU = 1
    CUDA = 2


class ScaleFormat(enum.IntEnum):
    """How FP8 block quantisation chooses a group's scale (DSA_SCALE_FORMAT_*)."""

    F32 = 0
    UE8M0 = 1


class TopkOrder(enum.IntEnum):
    """Output order of Context.topk (DSA_TOPK_ORDER_*); the selected set never depends on it."""

    UNSPECIFIED = 0
    SCORE = 1
    INDEX = 2


class IndexerLossMode(enum.IntEnum):
    """Which token set the distributions of Context.indexer_loss live on (DSA_INDEXER_LOSS_*)."""

    DENSE = 0
    SPARSE = 1


class SparseAttentionBackwardMode(enum.IntEnum):
    """How Context.sparse_attention_backward reduces dkv (DSA_SPARSE_ATTENTION_BACKWARD_*)."""

    DETERMINISTIC = 0
    FAST = 1


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("ndim", c_int32),
        ("dtype", c_int32),
        ("device_type", c_int32),
        ("device_id", c_int32),
        ("shape", c_int64 * MAX_DIMS),
        ("strides", c_int64 * MAX_DIMS),
    ]


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("device_type", c_int32),
        ("device_id", c_int32),
        ("num_threads", c_int32),
    ]


class QuantizeFp8Params(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("group_size", c_int32),
        ("scale_format", c_int32),
        ("amax_floor", c_float),
    ]


class HadamardParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("scale", c_float),
    ]


class TopkParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("k", c_int32),
        ("order", c_uint32),
        ("n_sink", c_int32),
        ("n_local", c_int32),
        ("page_size", c_int32),
    ]


class IndexerParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
    ]


class SparseAttentionParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("scale", c_float),
        ("d_v", c_int32),
    ]


class IndexerLossParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("mode", c_uint32),
        ("coeff", c_float),
        ("teacher_scale", c_float),
    ]


class SparseAttentionBackwardParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("scale", c_float),
        ("d_v", c_int32),
        ("mode", c_uint32),
    ]


#: Every struct of dsa.h by its C tag (the layout test compares them with the C compiler's).
STRUCTS = {
    "dsa_tensor": Tensor,
    "dsa_context_options": ContextOptions,
    "dsa_quantize_fp8_params": QuantizeFp8Params,
    "dsa_hadamard_params": HadamardParams,
    "dsa_topk_params": TopkParams,
    "dsa_indexer_params": IndexerParams,
    "dsa_sparse_attention_params": SparseAttentionParams,
    "dsa_indexer_loss_params": IndexerLossParams,
    "dsa_sparse_attention_backward_params": SparseAttentionBackwardParams,
}

_status = c_int32
_context = c_void_p
_stream = c_void_p
_tensor = POINTER(Tensor)

#: Every function of dsa.h: (restype, argtypes).
PROTOTYPES = {
    "dsa_version": (c_uint32, []),
    "dsa_version_string": (c_char_p, []),
    "dsa_build_info": (c_char_p, []),
    "dsa_status_string": (c_char_p, [_status]),
    "dsa_last_error_message": (c_char_p, []),
    "dsa_tensor_init_contiguous": (_status, [_tensor, c_void_p, c_int32, POINTER(c_int64), c_int32, c_int32, c_int32]),
    "dsa_dtype_size": (c_size_t, [c_int32]),
    "dsa_context_options_init": (_status, [POINTER(ContextOptions)]),
    "dsa_context_create": (_status, [POINTER(_context), POINTER(ContextOptions)]),
    "dsa_context_destroy": (None, [_context]),
    "dsa_context_device": (_status, [_context, POINTER(c_int32), POINTER(c_int32)]),
    "dsa_context_num_threads": (_status, [_context, POINTER(c_int32)]),
    "dsa_quantize_fp8_params_init": (_status, [POINTER(QuantizeFp8Params)]),
    "dsa_quantize_fp8": (_status, [_context, POINTER(QuantizeFp8Params), _tensor, _tensor, _tensor, _stream]),
    "dsa_dequantize_fp8": (_status, [_context, POINTER(QuantizeFp8Params), _tensor, _tensor, _tensor, _stream]),
    "dsa_hadamard_params_init": (_status, [POINTER(HadamardParams)]),
    "dsa_hadamard": (_status, [_context, POINTER(HadamardParams), _tensor, _tensor, _stream]),
    "dsa_hadamard_quantize_fp8": (_status, [_context, POINTER(HadamardParams), POINTER(QuantizeFp8Params), _tensor,
                                            _tensor, _tensor, _stream]),
    "dsa_topk_params_init": (_status, [POINTER(TopkParams)]),
    "dsa_topk": (_status, [_context, POINTER(TopkParams), _tensor, _tensor, _tensor, _tensor, _tensor, _stream]),
    "dsa_indexer_params_init": (_status, [POINTER(IndexerParams)]),
    "dsa_indexer_logits": (
        _status, [_context, POINTER(IndexerParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _stream],
    ),
    "dsa_indexer_logits_paged": (
        _status, [_context, POINTER(IndexerParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _stream],
    ),
    "dsa_indexer_cache_write": (_status, [_context, _tensor, _tensor, _tensor, _stream]),
    "dsa_sparse_attention_params_init": (_status, [POINTER(SparseAttentionParams)]),
    "dsa_sparse_attention": (
        _status,
        [_context, POINTER(SparseAttentionParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor,
         _stream],
    ),
    "dsa_sparse_attention_paged": (
        _status,
        [_context, POINTER(SparseAttentionParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _stream],
    ),
    "dsa_mla_cache_write": (_status, [_context, _tensor, _tensor, _tensor, _tensor, _stream]),
    "dsa_indexer_topk_workspace_size": (_status, [_context, c_int64, c_int64, POINTER(c_size_t)]),
    "dsa_indexer_topk": (
        _status,
        [_context, POINTER(IndexerParams), POINTER(TopkParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor,
         _tensor, c_void_p, c_size_t, _stream],
    ),
    "dsa_indexer_topk_paged": (
        _status,
        [_context, POINTER(IndexerParams), POINTER(TopkParams), _tensor, _tensor, _tensor, _tensor, _tensor, _tensor,
         _tensor, c_void_p, c_size_t, _stream],
    ),
    "dsa_attention_workspace_size": (_status, [_context, POINTER(TopkParams), c_int64, c_int64, POINTER(c_size_t)]),
    "dsa_attention": (
        _status,
        [_context, POINTER(IndexerParams), POINTER(TopkParams), POINTER(SparseAttentionParams), _tensor, _tensor,
         _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, c_void_p, c_size_t,
         _stream],
    ),
    "dsa_attention_paged": (
        _status,
        [_context, POINTER(IndexerParams), POINTER(TopkParams), POINTER(SparseAttentionParams), _tensor, _tensor,
         _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, _tensor, c_void_p, c_size_t, _stream],
    ),
    "dsa_indexer_loss_params_init": (_status, [POINTER(IndexerLossParams)]),
    "dsa_indexer_loss": (_status, [_context, POINTER(IndexerLossParams)] + [_tensor] * 14 + [_stream]),
    "dsa_sparse_attention_backward_params_init": (_status, [POINTER(SparseAttentionBackwardParams)]),
    "dsa_sparse_attention_backward_workspace_size": (
        _status, [_context, POINTER(SparseAttentionBackwardParams), c_int64, c_int64, c_int64, c_int64, POINTER(c_size_t)],
    ),
    "dsa_sparse_attention_backward": (
        _status, [_context, POINTER(SparseAttentionBackwardParams)] + [_tensor] * 11 + [c_void_p, c_size_t, _stream],
    ),
}


def _candidates():
    """Where the library is looked for, in order: DSA_LIBRARY, next to this package, the loader."""
    explicit = os.environ.get("DSA_LIBRARY")
    if explicit:
        return [explicit]
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.platform == "darwin":
        names = ["libdsa.dylib", f"libdsa.{ABI_MAJOR}.dylib"]
    elif sys.platform == "win32":
        names = ["dsa.dll"]
    else:
        names = ["libdsa.so", f"libdsa.so.{ABI_MAJOR}"]
    return [os.path.join(here, name) for name in names if os.path.exists(os.path.join(here, name))] + names


def check_version(version):
    """Raises ImportError unless `version` (major * 10000 + ...) has the major these bindings mirror."""
    if version // 10000 != ABI_MAJOR:
        raise ImportError(
            f"dsa: the loaded libdsa is version {version // 10000}.{version // 100 % 100}.{version % 100}, "
            f"these bindings need major version {ABI_MAJOR}"
        )


def _load():
    errors = []
    for candidate in _candidates():
        try:
            library = ctypes.CDLL(candidate)
            break
        except OSError as error:
            errors.append(f"{candidate}: {error}")
    else:
        raise ImportError("dsa: cannot load libdsa (set DSA_LIBRARY to its path); tried " + "; ".join(errors))
    for name, (restype, argtypes) in PROTOTYPES.items():
        function = getattr(library, name)
        function.restype = restype
        function.argtypes = argtypes
    check_version(library.dsa_version())
    return library


lib = _load()


def status_string(code):
    """libdsa's short description of a status code ("invalid argument", ...)."""
    return lib.dsa_status_string(code).decode()


class DsaError(Exception):
    """A failed libdsa call: `code` (an int, a Status when known) and `message`, which names the
    offending argument."""

    def __init__(self, code, message):
        super().__init__(f"{status_string(code)}: {message}")
        self.code = Status(code) if code in Status._value2member_map_ else code
        self.message = message


def check(status):
    """Raises DsaError for a failed call. ctypes calls run on the calling thread, so the thread's
    last-error message is the one of the call that just returned."""
    if status != Status.SUCCESS:
        raise DsaError(status, lib.dsa_last_error_message().decode(errors="replace"))

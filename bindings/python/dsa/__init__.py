"""Python bindings of libdsa (DeepSeek Sparse Attention kernels behind a C ABI), over ctypes.

    import numpy, dsa
    with dsa.Context() as context:
        q, scales = context.quantize_fp8(numpy.random.randn(4, 128).astype(numpy.float32))

Arrays: numpy arrays, or any object with __dlpack__ (PyTorch, CuPy, JAX, ...: no copies, CUDA
memory included). Outputs are allocated in the inputs' array library unless out= is given.
Failures raise DsaError with libdsa's status code and message.
"""
from ._context import Context, Device, IndexerLoss
from ._library import (
    ABI_MAJOR, DsaError, DType, DeviceType, IndexerLossMode, ScaleFormat, SparseAttentionBackwardMode, Status, TopkOrder,
    lib, status_string,
)

__all__ = [
    "ABI_MAJOR", "Context", "Device", "DeviceType", "DsaError", "DType", "IndexerLoss", "IndexerLossMode",
    "ScaleFormat", "SparseAttentionBackwardMode", "Status", "TopkOrder", "build_info", "status_string", "version", "version_string",
]


def version():
    """The loaded library's version as major * 10000 + minor * 100 + patch."""
    return lib.dsa_version()


def version_string():
    """The loaded library's version as "MAJOR.MINOR.PATCH"."""
    return lib.dsa_version_string().decode()


def build_info():
    """How the loaded library was built and which CPU and CUDA paths it uses."""
    return lib.dsa_build_info().decode()

"""What the GPU benchmark scripts share: the ctypes views of libdsa's tensors and context options,
a CUDA context, the L2 flush, and the timing rule (CUDA events, median after warm-up, L2 flushed
before each timed run)."""
import ctypes
import json
import sys

import torch

DSA_DEVICE_CUDA = 2


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ndim", ctypes.c_int32), ("dtype", ctypes.c_int32),
                ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 8), ("strides", ctypes.c_int64 * 8)]


class ContextOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("num_threads", ctypes.c_int32)]


def tensor_of(t, dtype):
    """A dsa_tensor_t view of a CUDA torch tensor (its own strides)."""
    view = Tensor(t.data_ptr(), t.dim(), dtype, DSA_DEVICE_CUDA, t.device.index or 0)
    for axis in range(t.dim()):
        view.shape[axis] = t.shape[axis]
        view.strides[axis] = t.stride(axis)
    return view


def open_library(path):
    """libdsa and a context on CUDA device 0."""
    lib = ctypes.CDLL(path)
    lib.dsa_last_error_message.restype = ctypes.c_char_p
    options = ContextOptions()
    lib.dsa_context_options_init(ctypes.byref(options))
    options.device_type = DSA_DEVICE_CUDA
    context = ctypes.c_void_p()
    assert lib.dsa_context_create(ctypes.byref(context), ctypes.byref(options)) == 0, lib.dsa_last_error_message()
    return lib, context


def l2_flusher():
    """A function that writes 256 MB, more than any L2, so each timed run starts cold."""
    flush_buffer = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    return lambda: flush_buffer.fill_(1)


def median_ms(run, flush, repeats, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def finish(lib, context, results):
    """Writes the result rows as JSON lines where --json FILE asks, closes the context, and
    returns the exit code: 0 when every row was checked against the baseline."""
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")
    lib.dsa_context_destroy(context)
    return 0 if all(row["checked"] for row in results) else 1

#!/usr/bin/env python3
"""GPU top-k: libdsa's dsa_topk beside torch.topk on the shapes of PERFORMANCE.md (k = 2048),
in one process on one card. Median of 20 timed runs (CUDA events) after warm-up, L2 flushed
(256 MB written) before each run; results checked against torch before timing.

Usage: python3 bench/topk_gpu.py path/to/libdsa.so [--json FILE]
"""
import ctypes
import json
import sys

import torch

DSA_DTYPE_F32, DSA_DTYPE_I32, DSA_DEVICE_CUDA = 1, 6, 2


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ndim", ctypes.c_int32), ("dtype", ctypes.c_int32),
                ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 8), ("strides", ctypes.c_int64 * 8)]


class ContextOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("num_threads", ctypes.c_int32)]


class TopkParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("k", ctypes.c_int32), ("order", ctypes.c_uint32),
                ("n_sink", ctypes.c_int32), ("n_local", ctypes.c_int32), ("page_size", ctypes.c_int32)]


def tensor_of(t, dtype):
    view = Tensor(t.data_ptr(), t.dim(), dtype, DSA_DEVICE_CUDA, t.device.index or 0)
    for axis in range(t.dim()):
        view.shape[axis] = t.shape[axis]
        view.strides[axis] = t.stride(axis)
    return view


def median_ms(run, flush, repeats=20):
    for _ in range(3):
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


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.dsa_last_error_message.restype = ctypes.c_char_p
    options = ContextOptions()
    lib.dsa_context_options_init(ctypes.byref(options))
    options.device_type = DSA_DEVICE_CUDA
    context = ctypes.c_void_p()
    assert lib.dsa_context_create(ctypes.byref(context), ctypes.byref(options)) == 0, lib.dsa_last_error_message()
    params = TopkParams()
    lib.dsa_topk_params_init(ctypes.byref(params))
    flush_buffer = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    flush = lambda: flush_buffer.fill_(1)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    results = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{'shape':>12} {'k':>5} {'libdsa us':>10} {'torch us':>9} {'speedup':>8} {'libdsa GB/s':>12}")
    for rows, n in [(1, 131072), (64, 131072), (128, 131072), (2048, 65536)]:
        k = 2048
        torch.manual_seed(rows)
        scores = torch.randn(rows, n, device="cuda")
        indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
        params.k = k
        scores_t, indices_t = tensor_of(scores, DSA_DTYPE_F32), tensor_of(indices, DSA_DTYPE_I32)

        def ours():
            status = lib.dsa_topk(context, ctypes.byref(params), ctypes.byref(scores_t), None, None, None,
                                  ctypes.byref(indices_t), stream)
            assert status == 0, lib.dsa_last_error_message()

        ours()
        torch.cuda.synchronize()
        expected = torch.topk(scores, k, dim=-1, sorted=False).indices.sort(dim=-1).values
        got = indices.long().sort(dim=-1).values
        checked = bool(torch.equal(expected, got))
        ours_ms = median_ms(ours, flush)
        torch_ms = median_ms(lambda: torch.topk(scores, k, dim=-1, sorted=False), flush)
        gbps = (rows * n * 4 + rows * k * 4) / (ours_ms * 1e-3) / 1e9
        print(f"{rows:>5} x {n:>6} {k:>5} {ours_ms * 1e3:>10.1f} {torch_ms * 1e3:>9.1f} {torch_ms / ours_ms:>7.2f}x"
              f" {gbps:>12.0f}{'' if checked else '  MISMATCH vs torch'}")
        results.append({"op": "topk", "shape": f"{rows}x{n}", "k": k, "device": "cuda", "ms": ours_ms,
                        "torch_ms": torch_ms, "gbps": gbps, "checked": checked})
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")
    lib.dsa_context_destroy(context)
    return 0 if all(row["checked"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())

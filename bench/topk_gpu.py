#!/usr/bin/env python3
"""GPU top-k: libdsa's dsa_topk beside torch.topk on the shapes of PERFORMANCE.md (k = 2048),
in one process on one card. Median of 20 timed runs (CUDA events) after warm-up, L2 flushed
(256 MB written) before each run; results checked against torch before timing.

Usage: python3 bench/topk_gpu.py path/to/libdsa.so [--json FILE]
"""
import ctypes
import sys

import torch

from gpu_bench import finish, l2_flusher, median_ms, open_library, tensor_of

DSA_DTYPE_F32, DSA_DTYPE_I32 = 1, 6


class TopkParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("k", ctypes.c_int32), ("order", ctypes.c_uint32),
                ("n_sink", ctypes.c_int32), ("n_local", ctypes.c_int32), ("page_size", ctypes.c_int32)]


def main():
    lib, context = open_library(sys.argv[1])
    params = TopkParams()
    lib.dsa_topk_params_init(ctypes.byref(params))
    flush = l2_flusher()
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
        ours_ms = median_ms(ours, flush, 20, 3)
        torch_ms = median_ms(lambda: torch.topk(scores, k, dim=-1, sorted=False), flush, 20, 3)
        gbps = (rows * n * 4 + rows * k * 4) / (ours_ms * 1e-3) / 1e9
        print(f"{rows:>5} x {n:>6} {k:>5} {ours_ms * 1e3:>10.1f} {torch_ms * 1e3:>9.1f} {torch_ms / ours_ms:>7.2f}x"
              f" {gbps:>12.0f}{'' if checked else '  MISMATCH vs torch'}")
        results.append({"op": "topk", "shape": f"{rows}x{n}", "k": k, "device": "cuda", "ms": ours_ms,
                        "torch_ms": torch_ms, "gbps": gbps, "checked": checked})
    return finish(lib, context, results)


if __name__ == "__main__":
    sys.exit(main())

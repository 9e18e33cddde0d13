#!/usr/bin/env python3
"""GPU sparse MLA attention: libdsa's dsa_sparse_attention(_paged) beside the plain PyTorch
gather + matmul a user writes without a kernel library, on the shapes of PERFORMANCE.md, in one
process on one card. Median of 10 timed runs (CUDA events) after warm-up, L2 flushed (256 MB
written) before each run; libdsa's output checked against the PyTorch result before timing.

FLOPs = 2 * H_q * rows * k * (d_qk + d_v) (invalid slots count); decode bytes = unique cache
entries touched * entry size + q + out.

Usage: python3 bench/sparse_attention_gpu.py path/to/libdsa.so [--json FILE] [--quick] [--sm90]
(--sm90 also times the opt-in sm_90a kernel, DSA_CUDA_SM90_ATTENTION=1, on its shapes)
"""
import ctypes
import os
import sys

import torch

import gpu_bench
from gpu_bench import finish, l2_flusher, open_library, tensor_of

torch.backends.cuda.matmul.allow_tf32 = False  # the f32 check reference must be f32

DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_U8, DSA_DTYPE_I32 = 1, 3, 5, 6
SCALE = 0.13523378  # DeepSeek-V3.2


class AttentionParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("scale", ctypes.c_float), ("d_v", ctypes.c_int32)]


def median_ms(run, flush, repeats=10):
    return gpu_bench.median_ms(run, flush, repeats, 2)


def torch_attention(q, kv, indices, d_v, chunk, dtype=torch.bfloat16):
    """Plain PyTorch: gather the selected rows, two batched matmuls (in `dtype`), a softmax in
    f32. Rows of q [R, H, D] with indices [R, k] into kv [N, D]; returns out [R, H, d_v] and lse."""
    outs, lses = [], []
    for begin in range(0, q.shape[0], chunk):
        rows = indices[begin:begin + chunk].long()
        gathered = kv[rows].to(dtype)                         # [c, k, D]
        scores = torch.bmm(q[begin:begin + chunk].to(dtype), gathered.transpose(1, 2)).float() * SCALE
        lses.append(torch.logsumexp(scores, dim=-1))
        probs = torch.softmax(scores, dim=-1).to(dtype)
        outs.append(torch.bmm(probs, gathered[..., :d_v]))
    return torch.cat(outs), torch.cat(lses)


def check(out, lse, q, kv, indices, rows):
    """Relative error of out and the worst lse error on the first `rows` rows, against an f32
    evaluation of the same selection."""
    expected_out, expected_lse = torch_attention(q[:rows], kv, indices[:rows], 512, 32, torch.float32)
    return relative_error(out[:rows], expected_out), (lse[:rows] - expected_lse).abs().max().item()


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def fp8_cache(pages, generator):
    """A random FP8 MLA cache [pages, 64, 656] (DSA_SPEC 7.2; codes never NaN, power-of-two
    scales) and its bf16 dequantisation [pages * 64, 576] for the PyTorch baseline."""
    tokens = pages * 64
    latent = torch.randn(tokens, 512, device="cuda", generator=generator) * 2
    scales = torch.exp2(torch.randint(-8, -2, (tokens, 4), device="cuda", generator=generator).float())
    codes = (latent.view(tokens, 4, 128) / scales[..., None]).clamp(-448, 448).to(torch.float8_e4m3fn).view(tokens, 512)
    rope = torch.randn(tokens, 64, device="cuda", generator=generator).to(torch.bfloat16)
    cache = torch.empty(tokens, 656, dtype=torch.uint8, device="cuda")
    cache[:, :512] = codes.view(torch.uint8)
    cache[:, 512:528] = scales.contiguous().view(torch.uint8).view(tokens, 16)
    cache[:, 528:] = rope.view(torch.uint8).view(tokens, 128)
    dequantised = torch.cat([(codes.float().view(tokens, 4, 128) * scales[..., None]).view(tokens, 512)
                             .to(torch.bfloat16), rope], dim=1)
    return cache.view(pages, 64, 656), dequantised


def main():
    lib, context = open_library(sys.argv[1])
    quick = "--quick" in sys.argv
    params = AttentionParams()
    lib.dsa_sparse_attention_params_init(ctypes.byref(params))
    params.scale = SCALE
    params.d_v = 512
    flush = l2_flusher()
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    results = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{'case':>40} {'libdsa us':>10} {'torch us':>10} {'speedup':>8} {'TFLOPS':>7} {'torch':>6}"
          f" {'TB/s':>5} {'out err':>8} {'lse err':>8}")

    def report(name, ours_ms, torch_ms, flops, unique_bytes, errors):
        tflops = flops / (ours_ms * 1e-3) / 1e12
        torch_tflops = flops / (torch_ms * 1e-3) / 1e12
        tbps = unique_bytes / (ours_ms * 1e-3) / 1e12 if unique_bytes else float("nan")
        checked = errors[0] < 1e-2 and errors[1] < 1e-3
        print(f"{name:>40} {ours_ms * 1e3:>10.1f} {torch_ms * 1e3:>10.1f} {torch_ms / ours_ms:>7.2f}x {tflops:>7.1f}"
              f" {torch_tflops:>6.1f} {tbps:>5.2f} {errors[0]:>8.1e} {errors[1]:>8.1e}{'' if checked else '  MISMATCH'}")
        results.append({"case": name, "ms": ours_ms, "torch_ms": torch_ms, "tflops": tflops, "tbps": tbps,
                        "torch_tflops": torch_tflops, "out_rel_err": errors[0], "lse_err": errors[1],
                        "checked": checked})

    # ---- Prefill: q [S_q, H, 576], kv [S_kv, 576] bf16, random selections of k tokens ----
    prefill_cases = [(4096, 128, 2048, 32768), (4096, 128, 2048, 8192), (4096, 64, 2048, 8192)]
    for s_q, heads, k, s_kv in prefill_cases[:1] if quick else prefill_cases:
        q = torch.randn(s_q, heads, 576, device="cuda", generator=generator).to(torch.bfloat16)
        kv = torch.randn(s_kv, 576, device="cuda", generator=generator).to(torch.bfloat16)
        indices = torch.randint(0, s_kv, (s_q, k), device="cuda", generator=generator, dtype=torch.int32)
        out = torch.empty(s_q, heads, 512, dtype=torch.bfloat16, device="cuda")
        lse = torch.empty(s_q, heads, dtype=torch.float32, device="cuda")
        views = [tensor_of(q, DSA_DTYPE_BF16), tensor_of(kv, DSA_DTYPE_BF16), tensor_of(indices, DSA_DTYPE_I32),
                 tensor_of(out, DSA_DTYPE_BF16), tensor_of(lse, DSA_DTYPE_F32)]

        def ours():
            status = lib.dsa_sparse_attention(context, ctypes.byref(params), ctypes.byref(views[0]),
                                              ctypes.byref(views[1]), ctypes.byref(views[2]), None, None,
                                              ctypes.byref(views[3]), ctypes.byref(views[4]), None, stream)
            assert status == 0, lib.dsa_last_error_message()

        ours()
        torch.cuda.synchronize()
        errors = check(out, lse, q, kv, indices, 128)
        ours_ms = median_ms(ours, flush)
        torch_ms = median_ms(lambda: torch_attention(q, kv, indices, 512, 256), flush, repeats=5)
        name = f"prefill S_q={s_q} H={heads} k={k} S_kv={s_kv // 1024}K"
        report(name, ours_ms, torch_ms, 2 * heads * s_q * k * (576 + 512), 0, errors)
        if "--sm90" in sys.argv:  # the opt-in sm_90a kernel, same inputs
            os.environ["DSA_CUDA_SM90_ATTENTION"] = "1"
            ours()
            torch.cuda.synchronize()
            errors = check(out, lse, q, kv, indices, 128)
            report(name + " sm90", median_ms(ours, flush), torch_ms, 2 * heads * s_q * k * (576 + 512), 0, errors)
            del os.environ["DSA_CUDA_SM90_ATTENTION"]

    # ---- Decode: q [B, s_q, H, 576] over a paged FP8 (or bf16) cache, slots in each sequence's pages ----
    decode_cases = [(128, 2, 128, 2048, True), (128, 2, 64, 2048, True), (128, 2, 16, 2048, True),
                    (128, 2, 32, 2048, True), (128, 2, 128, 2048, False), (2, 1, 128, 2048, True)]
    for batch, s_q, heads, k, fp8 in decode_cases[:3] if quick else decode_cases:
        context_tokens = 32768
        pages_per_sequence = context_tokens // 64
        pages = batch * pages_per_sequence
        cache, dequantised = fp8_cache(pages, generator)
        table = torch.randperm(pages, device="cuda", generator=generator).view(batch, pages_per_sequence)
        positions = torch.randint(0, context_tokens, (batch, s_q, k), device="cuda", generator=generator)
        slots = (table.gather(1, (positions // 64).view(batch, -1)).view(batch, s_q, k) * 64 + positions % 64)
        slots = slots.to(torch.int32)
        q = torch.randn(batch, s_q, heads, 576, device="cuda", generator=generator).to(torch.bfloat16)
        out = torch.empty(batch, s_q, heads, 512, dtype=torch.bfloat16, device="cuda")
        lse = torch.empty(batch, s_q, heads, dtype=torch.float32, device="cuda")
        kv_cache = cache if fp8 else dequantised.view(pages, 64, 576)
        views = [tensor_of(q, DSA_DTYPE_BF16), tensor_of(kv_cache, DSA_DTYPE_U8 if fp8 else DSA_DTYPE_BF16),
                 tensor_of(slots, DSA_DTYPE_I32), tensor_of(out, DSA_DTYPE_BF16), tensor_of(lse, DSA_DTYPE_F32)]

        def ours():
            status = lib.dsa_sparse_attention_paged(context, ctypes.byref(params), ctypes.byref(views[0]),
                                                    ctypes.byref(views[1]), ctypes.byref(views[2]), None, None,
                                                    ctypes.byref(views[3]), ctypes.byref(views[4]), stream)
            assert status == 0, lib.dsa_last_error_message()

        ours()
        torch.cuda.synchronize()
        rows = batch * s_q
        flat_q, flat_slots = q.view(rows, heads, 576), slots.view(rows, k)
        errors = check(out.view(rows, heads, 512), lse.view(rows, heads), flat_q, dequantised, flat_slots, 128)
        ours_ms = median_ms(ours, flush)
        torch_ms = median_ms(lambda: torch_attention(flat_q, dequantised, flat_slots, 512, 64), flush, repeats=5)
        entry = 656 if fp8 else 1152
        unique_bytes = torch.unique(flat_slots).numel() * entry + q.numel() * 2 + out.numel() * 2
        name = f"decode {'FP8' if fp8 else 'bf16'} B={batch} s_q={s_q} H={heads} k={k}"
        report(name, ours_ms, torch_ms, 2 * heads * rows * k * (576 + 512), unique_bytes, errors)
        if "--sm90" in sys.argv and heads % 64 == 0:
            os.environ["DSA_CUDA_SM90_ATTENTION"] = "1"
            ours()
            torch.cuda.synchronize()
            errors = check(out.view(rows, heads, 512), lse.view(rows, heads), flat_q, dequantised, flat_slots, 128)
            report(name + " sm90", median_ms(ours, flush), torch_ms, 2 * heads * rows * k * (576 + 512),
                   unique_bytes, errors)
            del os.environ["DSA_CUDA_SM90_ATTENTION"]

    return finish(lib, context, results)


if __name__ == "__main__":
    sys.exit(main())

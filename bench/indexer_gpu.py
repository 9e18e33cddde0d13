#!/usr/bin/env python3
"""GPU lightning indexer: libdsa's dsa_indexer_logits (causal prefill), dsa_indexer_logits_paged
(decode over the 132-byte paged cache) and the fused dsa_indexer_topk(_paged), beside what plain
PyTorch does in bf16, in one process on one card. H_I = 64, D_I = 128, k = 2048.

Counting (PERFORMANCE.md): prefill 2 * H_I * D_I FLOP per visible (query, token) pair; decode
132 bytes of cache per visible token. Median of 10+ timed runs (CUDA events) after warm-up, L2
flushed (256 MB written) before each; results checked against a float64 PyTorch computation on
sampled rows (bound: 2^-9 of sum |terms|, see tests/gpu/indexer_test.cpp) and fused selections
against the unfused ones before timing.

Usage: python3 bench/indexer_gpu.py path/to/libdsa.so [--json FILE] [--quick]
"""
import ctypes
import json
import sys

import torch

from topk_gpu import TopkParams, ContextOptions, median_ms, tensor_of

DSA_DTYPE_F32, DSA_DTYPE_U8, DSA_DTYPE_I32 = 1, 5, 6
DSA_DEVICE_CUDA = 2
HEADS, DIM, PAGE, K = 64, 128, 64, 2048
PAGE_BYTES = PAGE * (DIM + 4)
BOUND = 2.0 ** -9


def random_codes(*shape, generator):
    """e4m3 codes over the whole finite range, never NaN (0x7f / 0xff)."""
    codes = torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda", generator=generator)
    return torch.where((codes & 0x7F) == 0x7F, codes ^ 1, codes)


def decoded(codes):
    return codes.view(torch.float8_e4m3fn).to(torch.float64)


def check_rows(got, q, w, k, scale, ends, rows):
    """Max |got - exact| / M over the visible part of the sampled rows (exact in float64)."""
    worst = 0.0
    kd = decoded(k)
    for r in rows:
        end = int(ends[r])
        u = decoded(q[r]) @ kd[:end].T  # [H, end]
        m = (w[r].double().abs()[:, None] * (decoded(q[r]).abs() @ kd[:end].abs().T)).sum(0) * scale[:end].double()
        exact = (w[r].double()[:, None] * u.clamp(min=0)).sum(0) * scale[:end].double()
        worst = max(worst, float(((got[r, :end].double() - exact).abs() / m.clamp(min=1e-30)).max()))
        if end < got.shape[1] and not bool(torch.isneginf(got[r, end:]).all()):
            return float("inf")
    return worst


class Library:
    def __init__(self, path):
        self.lib = lib = ctypes.CDLL(path)
        lib.dsa_last_error_message.restype = ctypes.c_char_p
        lib.dsa_indexer_topk_workspace_size.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                                        ctypes.POINTER(ctypes.c_size_t)]
        for name in ("dsa_indexer_topk", "dsa_indexer_topk_paged"):  # 10 pointers, workspace, its size, stream
            getattr(lib, name).argtypes = [ctypes.c_void_p] * 11 + [ctypes.c_size_t, ctypes.c_void_p]
        options = ContextOptions()
        lib.dsa_context_options_init(ctypes.byref(options))
        options.device_type = DSA_DEVICE_CUDA
        self.context = ctypes.c_void_p()
        assert lib.dsa_context_create(ctypes.byref(self.context), ctypes.byref(options)) == 0, self.error()
        self.stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

    def error(self):
        return self.lib.dsa_last_error_message().decode()

    def call(self, name, *args):
        status = getattr(self.lib, name)(self.context, *args)
        assert status == 0, f"{name}: {self.error()}"

    def workspace(self, rows, tokens):
        size = ctypes.c_size_t()
        self.call("dsa_indexer_topk_workspace_size", rows, tokens, ctypes.byref(size))
        return torch.empty(max(size.value, 16), dtype=torch.uint8, device="cuda")


def ref(t):
    return ctypes.byref(t)


def prefill(lib, flush, seq, repeats, results):
    g = torch.Generator(device="cuda").manual_seed(seq)
    q = random_codes(seq, HEADS, DIM, generator=g)
    k = random_codes(seq, DIM, generator=g)
    w = torch.randn(seq, HEADS, device="cuda", generator=g) * HEADS ** -0.5
    scale = torch.rand(seq, device="cuda", generator=g) + 0.01
    ks = torch.zeros(seq, dtype=torch.int32, device="cuda")
    ke = torch.arange(1, seq + 1, dtype=torch.int32, device="cuda")
    logits = torch.empty(seq, seq, device="cuda")
    tensors = [tensor_of(q, DSA_DTYPE_U8), tensor_of(w, DSA_DTYPE_F32), tensor_of(k, DSA_DTYPE_U8),
               tensor_of(scale, DSA_DTYPE_F32), tensor_of(ks, DSA_DTYPE_I32), tensor_of(ke, DSA_DTYPE_I32)]
    out_t = tensor_of(logits, DSA_DTYPE_F32)

    def ours():
        lib.call("dsa_indexer_logits", None, *[ref(t) for t in tensors], ref(out_t), lib.stream)

    ours()
    torch.cuda.synchronize()
    sample = sorted({0, 1, seq // 3, seq // 2, seq - 2, seq - 1} | set(range(seq - 64, seq, 13)))
    worst = check_rows(logits, q, w, k, scale, ke.cpu(), sample)
    ours_ms = median_ms(ours, flush, repeats)

    # Plain PyTorch: bf16 matmul per block of query rows, ReLU, weighted head sum, scale, mask.
    qb, kb, wb = decoded(q).to(torch.bfloat16), decoded(k).to(torch.bfloat16), w.to(torch.bfloat16)
    chunk = 512
    columns = torch.arange(seq, device="cuda")
    baseline = torch.empty(seq, seq, device="cuda")

    def plain():
        for c0 in range(0, seq, chunk):
            qc = qb[c0:c0 + chunk]
            u = torch.relu(qc.reshape(-1, DIM) @ kb.T).view(qc.shape[0], HEADS, seq)
            s = torch.bmm(wb[c0:c0 + chunk].unsqueeze(1), u).squeeze(1).float() * scale
            rows = torch.arange(c0, c0 + qc.shape[0], device="cuda")
            baseline[c0:c0 + chunk] = s.masked_fill(columns[None, :] > rows[:, None], float("-inf"))

    torch_ms = median_ms(plain, flush, repeats)
    flop = 2 * HEADS * DIM * seq * (seq + 1) / 2
    fused_ms, unfused_ms, fused_ok = fused_prefill(lib, flush, tensors, logits, out_t, seq, repeats)
    row = {"op": "indexer_logits", "shape": f"causal {seq}", "ms": ours_ms, "torch_ms": torch_ms,
           "tflops": flop / ours_ms / 1e9, "torch_tflops": flop / torch_ms / 1e9, "max_error_over_m": worst,
           "checked": worst <= BOUND, "fused_topk_ms": fused_ms, "unfused_topk_ms": unfused_ms,
           "fused_checked": fused_ok}
    results.append(row)
    print(f"prefill causal {seq:>6}: libdsa {ours_ms:8.3f} ms = {row['tflops']:7.1f} TFLOPS-eq | torch bf16 "
          f"{torch_ms:8.2f} ms = {row['torch_tflops']:5.1f} | x{torch_ms / ours_ms:5.1f} | max err/M {worst:.2e}"
          f"{'' if row['checked'] else '  OUT OF BOUND'}")
    print(f"    + top-k {K}: fused {fused_ms:8.3f} ms, logits + topk {unfused_ms:8.3f} ms"
          f"{'' if fused_ok else '  FUSED != UNFUSED'}")


def selections(lib, rows):
    """Top-k params (k = K) and two int32 [rows, K] outputs, fused and unfused, with their views."""
    params = TopkParams()
    lib.lib.dsa_topk_params_init(ref(params))
    params.k = K
    fused = torch.empty(rows, K, dtype=torch.int32, device="cuda")
    unfused = torch.empty_like(fused)
    return params, fused, unfused, tensor_of(fused, DSA_DTYPE_I32), tensor_of(unfused, DSA_DTYPE_I32)


def fused_prefill(lib, flush, tensors, logits, logits_t, seq, repeats):
    params, fused, unfused, fused_t, unfused_t = selections(lib, seq)
    workspace = lib.workspace(seq, seq)
    q_t, w_t, k_t, s_t, ks_t, ke_t = tensors

    def run_fused():
        lib.call("dsa_indexer_topk", None, ref(params), ref(q_t), ref(w_t), ref(k_t), ref(s_t), ref(ks_t),
                 ref(ke_t), ref(fused_t), workspace.data_ptr(), workspace.numel(), lib.stream)

    def run_unfused():
        lib.call("dsa_indexer_logits", None, *[ref(t) for t in tensors], ref(logits_t), lib.stream)
        lib.call("dsa_topk", ref(params), ref(logits_t), ref(ks_t), ref(ke_t), None, ref(unfused_t), lib.stream)

    run_fused()
    run_unfused()
    torch.cuda.synchronize()
    ok = bool(torch.equal(fused, unfused))
    return median_ms(run_fused, flush, repeats), median_ms(run_unfused, flush, repeats), ok


def decode(lib, flush, batch, context, repeats, results):
    g = torch.Generator(device="cuda").manual_seed(batch * 7 + context)
    pages_per_sequence = context // PAGE
    num_pages = batch * pages_per_sequence
    cache = random_codes(num_pages, PAGE_BYTES, generator=g)
    scales = torch.rand(num_pages, PAGE, device="cuda", generator=g) + 0.01
    cache[:, PAGE * DIM:] = scales.view(torch.uint8).view(num_pages, PAGE * 4)
    table = torch.randperm(num_pages, device="cuda", generator=g).to(torch.int32).view(batch, pages_per_sequence)
    lengths = torch.full((batch,), context, dtype=torch.int32, device="cuda")
    q = random_codes(batch, 1, HEADS, DIM, generator=g)
    w = torch.randn(batch, HEADS, device="cuda", generator=g) * HEADS ** -0.5
    logits = torch.empty(batch, context, device="cuda")
    tensors = [tensor_of(q, DSA_DTYPE_U8), tensor_of(w, DSA_DTYPE_F32), tensor_of(cache, DSA_DTYPE_U8),
               tensor_of(table, DSA_DTYPE_I32), tensor_of(lengths, DSA_DTYPE_I32)]
    out_t = tensor_of(logits, DSA_DTYPE_F32)

    def ours():
        lib.call("dsa_indexer_logits_paged", None, *[ref(t) for t in tensors], ref(out_t), lib.stream)

    ours()
    torch.cuda.synchronize()
    worst = 0.0
    for b in sorted({0, batch - 1, batch // 2}):
        pages = table[b].long()
        k = cache[pages, :PAGE * DIM].reshape(-1, DIM)
        s = scales[pages].reshape(-1)
        worst = max(worst, check_rows(logits[b:b + 1], q[b, :], w[b:b + 1], k, s, [context], [0]))
    ours_ms = median_ms(ours, flush, repeats)

    # Plain PyTorch: gather the pages, decode to bf16, batched matmul, ReLU, weighted head sum.
    qb, wb = decoded(q).to(torch.bfloat16).view(batch, HEADS, DIM), w.to(torch.bfloat16)

    def plain():
        pages = table.long()
        k = cache[pages, :PAGE * DIM].view(torch.float8_e4m3fn).to(torch.bfloat16).view(batch, context, DIM)
        s = scales[pages].view(batch, context)
        u = torch.relu(torch.bmm(qb, k.transpose(1, 2)))
        return torch.bmm(wb.unsqueeze(1), u).squeeze(1).float() * s

    torch_ms = median_ms(plain, flush, repeats)
    read = PAGE_BYTES // PAGE * batch * context
    fused_ms, fused_ok = fused_decode(lib, flush, tensors, logits, out_t, batch, context, repeats)
    row = {"op": "indexer_logits_paged", "shape": f"{batch}x{context}", "ms": ours_ms, "torch_ms": torch_ms,
           "tbps": read / ours_ms / 1e9, "torch_tbps": read / torch_ms / 1e9, "max_error_over_m": worst,
           "checked": worst <= BOUND, "fused_topk_ms": fused_ms, "fused_checked": fused_ok}
    results.append(row)
    print(f"decode {batch:>4} x {context:>6}: libdsa {ours_ms * 1e3:8.1f} us = {row['tbps']:5.2f} TB/s | torch "
          f"{torch_ms * 1e3:8.1f} us = {row['torch_tbps']:5.2f} | x{torch_ms / ours_ms:5.1f} | max err/M {worst:.2e}"
          f"{'' if row['checked'] else '  OUT OF BOUND'}")
    print(f"    + top-k {K}: fused {fused_ms * 1e3:8.1f} us{'' if fused_ok else '  FUSED != UNFUSED'}")


def fused_decode(lib, flush, tensors, logits, logits_t, batch, context, repeats):
    params, fused, unfused, fused_t, unfused_t = selections(lib, batch)
    workspace = lib.workspace(batch, context)
    q_t, w_t, cache_t, table_t, lens_t = tensors

    def run_fused():
        lib.call("dsa_indexer_topk_paged", None, ref(params), ref(q_t), ref(w_t), ref(cache_t), ref(table_t),
                 ref(lens_t), ref(fused_t), None, workspace.data_ptr(), workspace.numel(), lib.stream)

    run_fused()
    lib.call("dsa_indexer_logits_paged", None, *[ref(t) for t in tensors], ref(logits_t), lib.stream)
    lib.call("dsa_topk", ref(params), ref(logits_t), None, None, None, ref(unfused_t), lib.stream)
    torch.cuda.synchronize()
    return median_ms(run_fused, flush, repeats), bool(torch.equal(fused, unfused))


def main():
    lib = Library(sys.argv[1])
    quick = "--quick" in sys.argv
    flush_buffer = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    flush = lambda: flush_buffer.fill_(1)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    results = []
    for seq in [8192] if quick else [8192, 32768]:
        prefill(lib, flush, seq, 10, results)
    for batch, context in [(64, 131072)] if quick else [(1, 131072), (64, 32768), (64, 131072), (128, 65536)]:
        decode(lib, flush, batch, context, 20, results)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")
    lib.lib.dsa_context_destroy(lib.context)
    return 0 if all(row["checked"] and row["fused_checked"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())

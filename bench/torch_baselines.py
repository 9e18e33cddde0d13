#!/usr/bin/env python3
"""PyTorch baselines for dsa-bench: the same cases (read from `dsa-bench --list --json -`, so the
shapes have one source of truth) done the way a user would without a kernel library, on the same
card in the same run:
  topk                    torch.topk over the f32 rows (the causal rows' tail is -inf)
  indexer_logits          the plain bf16 indexer: matmul, ReLU, head-weighted sum, scale, mask
  indexer_logits_paged    the same over the pages gathered through the block table
  indexer_topk(_paged)    the plain indexer followed by torch.topk (the logits materialised)
  sparse_attention        gather the selected KV rows, matmul, softmax, matmul
  sparse_attention_paged  the same, gathering (and for FP8 dequantising) the cache entries
  attention(_paged)       the three above in a row
  sparse_attention_backward  gather + matmul forward recomputed under autograd, backward from a
                          random dout (dq, and dkv scattered by index_add through the gather)
Ops without a baseline here (quantisation, Hadamard, cache writers) are left out.
Method as dsa-bench's: CUDA events, median of 10 after 2 warm-up calls, L2 flushed by writing
256 MB before each call; each baseline's result is checked on sampled rows against a float64
recomputation before timing. One JSON object per case: op, shape, params, baseline, ms, checked.

Usage: python3 bench/torch_baselines.py --bench path/to/dsa-bench [--preset P]... [--case C]...
           [--op OP]... [--json FILE]
"""
import argparse
import json
import subprocess
import sys

import torch

SCALE = 0.13523378  # DeepSeek-V3.2's softmax scale, as dsa-bench uses
PAGE = 64
CHUNK_BYTES = 1 << 30  # the largest intermediate a chunked baseline materialises
MAX_LOGITS_BYTES = 32 << 30  # a materialised logits matrix beyond this is reported as skipped

device = torch.device("cuda")


class Skipped(Exception):
    """The plain approach does not fit the card (the reason is the message)."""


def median_ms(run, repeats=10, warmup=2):
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    for _ in range(warmup):
        run()
    times = []
    for i in range(repeats):
        flush.fill_(i & 0xFF)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def sample(rows, count=3):
    return sorted({0, rows - 1, rows // 2})[:count]


def close(got, want, tolerance):
    got, want = got.double(), want.double()
    finite = torch.isfinite(want)
    if not torch.equal(finite, torch.isfinite(got)) or not torch.equal(got[~finite], want[~finite]):
        return False
    return bool((got[finite] - want[finite]).norm() <= tolerance * want[finite].norm() + 1e-30)


# ---- Inputs -------------------------------------------------------------------------------

def causal_ends(rows, columns, causal):
    t = torch.arange(rows, device=device)
    return columns - rows + t + 1 if causal else torch.full((rows,), columns, device=device)


class PlainIndexer:
    """bf16 q [R, H, D], weights f32 [R, H], k bf16 [N, D] or pages, k_scale f32, windows [0, end)."""

    def __init__(self, q, weights, k, k_scale, ends):
        self.q, self.weights, self.k, self.k_scale, self.ends = q, weights, k, k_scale, ends

    @staticmethod
    def prefill(p):
        rows, columns, heads, dim = p["S_q"], p["S_kv"], p["H_I"], p["D_I"]
        return PlainIndexer(torch.randn(rows, heads, dim, device=device, dtype=torch.bfloat16),
                            torch.randn(rows, heads, device=device),
                            torch.randn(columns, dim, device=device, dtype=torch.bfloat16),
                            torch.rand(columns, device=device) + 0.01, causal_ends(rows, columns, p["causal"]))

    def logits_rows(self, first, last, out=None):
        q, w = self.q[first:last], self.weights[first:last]
        scores = torch.matmul(q.reshape(-1, q.shape[-1]), self.k.T).view(q.shape[0], q.shape[1], -1).relu_()
        logits = torch.matmul(w.unsqueeze(1).to(torch.bfloat16), scores).squeeze(1).float() * self.k_scale
        columns = torch.arange(logits.shape[1], device=device)
        logits.masked_fill_(columns[None, :] >= self.ends[first:last, None], float("-inf"))
        if out is not None:
            out[first:last] = logits
        return logits

    def logits(self):
        rows, heads, columns = self.q.shape[0], self.q.shape[1], self.k.shape[0]
        if rows * columns * 4 > MAX_LOGITS_BYTES:
            raise Skipped(f"the [{rows}, {columns}] logits need {rows * columns * 4 >> 30} GiB")
        out = torch.empty(rows, columns, device=device)
        step = max(1, CHUNK_BYTES // (heads * columns * 2))
        for first in range(0, rows, step):
            self.logits_rows(first, min(rows, first + step), out)
        return out

    def check(self, logits):
        ok = True
        for r in sample(self.q.shape[0]):
            dots = self.q[r].double() @ self.k.double().T
            want = (self.weights[r].double()[:, None] * dots.relu()).sum(0) * self.k_scale.double()
            want[torch.arange(want.shape[0], device=device) >= self.ends[r]] = float("-inf")
            ok &= close(logits[r], want, 2e-2)
        return ok


class PlainPagedIndexer(PlainIndexer):
    """The paged cache gathered per sequence: u8 pages [P, 64 * (D + 4)] through the block table."""

    def __init__(self, p, next_n_key):
        batch, next_n, context, heads, dim = p["B"], p[next_n_key], p["context"], p["H_I"], p["D_I"]
        self.batch, self.next_n, self.dim = batch, next_n, dim
        self.max_pages = (context + PAGE - 1) // PAGE
        pages = batch * self.max_pages
        codes = torch.randn(pages, PAGE * dim, device=device).to(torch.float8_e4m3fn).view(torch.uint8)
        scales = (torch.rand(pages, PAGE, device=device) + 0.01).view(torch.uint8).view(pages, PAGE * 4)
        self.cache = torch.cat([codes, scales], dim=1)
        self.table = torch.randperm(pages, device=device, dtype=torch.int32).view(batch, self.max_pages)
        self.q = torch.randn(batch, next_n, heads, dim, device=device, dtype=torch.bfloat16)
        self.weights = torch.randn(batch * next_n, heads, device=device)
        self.ends = (context - next_n + 1 + torch.arange(batch * next_n, device=device) % next_n)

    def sequence_keys(self, b):
        pages = self.cache[self.table[b].long()]
        k = pages[:, :PAGE * self.dim].reshape(-1, self.dim).view(torch.float8_e4m3fn).to(torch.bfloat16)
        return k, pages[:, PAGE * self.dim:].contiguous().view(torch.float32).reshape(-1)

    def logits(self):
        out = torch.empty(self.batch * self.next_n, self.max_pages * PAGE, device=device)
        for b in range(self.batch):
            self.k, self.k_scale = self.sequence_keys(b)
            view = PlainIndexer(self.q[b], self.weights[b * self.next_n:(b + 1) * self.next_n], self.k, self.k_scale,
                                self.ends[b * self.next_n:(b + 1) * self.next_n])
            view.logits_rows(0, self.next_n, out[b * self.next_n:(b + 1) * self.next_n])
        return out

    def check(self, logits):
        ok = True
        for b in sample(self.batch, 2):
            self.k, self.k_scale = self.sequence_keys(b)
            rows = slice(b * self.next_n, (b + 1) * self.next_n)
            ok &= PlainIndexer(self.q[b], self.weights[rows], self.k, self.k_scale, self.ends[rows]).check(logits[rows])
        return ok


class PlainAttention:
    """Gather + matmul sparse attention: q bf16 [R, H, d_qk], KV rows [slots, d_qk] (bf16 or the
    656-byte FP8 entries, dequantised after the gather), indices [R, k] with -1 padding."""

    def __init__(self, rows, heads, d_qk, d_v, slots, fp8):
        self.heads, self.d_qk, self.d_v, self.fp8 = heads, d_qk, d_v, fp8
        self.q = torch.randn(rows, heads, d_qk, device=device, dtype=torch.bfloat16) * 0.5
        if fp8:
            codes = (torch.rand(slots, 512, device=device) * 2 - 1).to(torch.float8_e4m3fn).view(torch.uint8)
            scales = torch.full((slots, 4), 2.0 ** -7, device=device).view(torch.uint8)
            rope = (torch.rand(slots, 64, device=device) * 2 - 1).to(torch.bfloat16).view(torch.uint8)
            self.kv = torch.cat([codes, scales, rope], dim=1)
        else:
            self.kv = (torch.rand(slots, d_qk, device=device) * 2 - 1).to(torch.bfloat16)

    def entries(self, index):
        gathered = self.kv[index.clamp(min=0).long()]
        if not self.fp8:
            return gathered
        scales = gathered[..., 512:528].contiguous().view(torch.float32).repeat_interleave(128, dim=-1)
        latent = gathered[..., :512].contiguous().view(torch.float8_e4m3fn).float() * scales
        return torch.cat([latent.to(torch.bfloat16), gathered[..., 528:].contiguous().view(torch.bfloat16)], dim=-1)

    def rows(self, q, index):
        kv = self.entries(index)
        scores = torch.matmul(q, kv.transpose(1, 2)).float() * SCALE
        scores.masked_fill_((index < 0)[:, None, :], float("-inf"))
        probabilities = torch.softmax(scores, dim=-1).to(torch.bfloat16)
        return torch.matmul(probabilities, kv[..., :self.d_v])

    def run(self, indices):
        rows, k = indices.shape
        out = torch.empty(rows, self.heads, self.d_v, device=device, dtype=torch.bfloat16)
        step = max(1, CHUNK_BYTES // (k * self.d_qk * 2))
        for first in range(0, rows, step):
            last = min(rows, first + step)
            out[first:last] = self.rows(self.q[first:last], indices[first:last])
        return out

    def check(self, indices, out):
        ok = True
        for r in sample(indices.shape[0]):
            valid = indices[r][indices[r] >= 0]
            kv = self.entries(valid[None])[0].double()
            p = torch.softmax(self.q[r].double() @ kv.T * SCALE, dim=-1)
            ok &= close(out[r], p @ kv[:, :self.d_v], 2e-2)
        return ok


def random_indices(rows, k, ranges):
    """k distinct random tokens of [0, ranges[r]) per row (-1 padded), like dsa-bench's."""
    keys = torch.rand(rows, int(ranges.max()), device=device)
    keys.masked_fill_(torch.arange(keys.shape[1], device=device)[None, :] >= ranges[:, None], 2.0)
    picked = keys.topk(min(k, keys.shape[1]), dim=-1, largest=False)
    indices = picked.indices.int().masked_fill_(picked.values >= 2.0, -1)
    return torch.nn.functional.pad(indices, (0, k - indices.shape[1]), value=-1)


def paged_slots(tokens, table, next_n):
    """Token indices [B * next_n, k] of each sequence -> cache slots through its block table."""
    rows = torch.arange(tokens.shape[0], device=device) // next_n
    pages = table[rows[:, None], (tokens.clamp(min=0) // PAGE).long()]
    return torch.where(tokens >= 0, pages * PAGE + tokens % PAGE, -1)


def checked_topk(scores, k, order):
    result = torch.topk(scores, min(k, scores.shape[1]), dim=-1, sorted=order == 1)
    ok = all(torch.equal(result.values[r].sort().values, scores[r].sort(descending=True).values[:k].sort().values)
             for r in sample(scores.shape[0]))
    return result.indices, ok


# ---- The baselines: each returns (name, the timed call, checked) --------------------------

def topk_case(p):
    rows, n, k = p["rows"], p["n"], p["k"]
    scores = torch.rand(rows, n, device=device)
    if p["plateau"]:
        scores.masked_fill_(torch.rand(rows, n, device=device) < 0.9, 0.0)
    columns = torch.arange(n, device=device)
    scores.masked_fill_(columns[None, :] >= causal_ends(rows, n, p["causal"])[:, None], float("-inf"))
    _, ok = checked_topk(scores, k, p["order"])
    return "torch.topk", lambda: torch.topk(scores, min(k, n), dim=-1, sorted=p["order"] == 1), ok


def indexer_case(p, paged=False, next_n_key="n_next"):
    indexer = PlainPagedIndexer(p, next_n_key) if paged else PlainIndexer.prefill(p)
    return indexer, indexer.check(indexer.logits())


def indexer_logits_case(p):
    indexer, ok = indexer_case(p)
    return "plain bf16 indexer", indexer.logits, ok


def indexer_logits_paged_case(p):
    indexer, ok = indexer_case(p, paged=True)
    return "plain bf16 indexer over gathered pages", indexer.logits, ok


def indexer_topk_case(p, paged=False):
    indexer, ok = indexer_case(p, paged)
    logits = indexer.logits()
    _, topk_ok = checked_topk(logits, p["k"], 0)
    k = min(p["k"], logits.shape[1])
    return "plain bf16 indexer + torch.topk", lambda: torch.topk(indexer.logits(), k, dim=-1), ok and topk_ok


def sparse_attention_case(p):
    attention = PlainAttention(p["S_q"], p["H_q"], p["d_qk"], p["d_v"], p["S_kv"], False)
    indices = random_indices(p["S_q"], p["k"], torch.full((p["S_q"],), p["S_kv"], device=device))
    return "gather + matmul", lambda: attention.run(indices), attention.check(indices, attention.run(indices))


def sparse_attention_paged_case(p):
    batch, next_n, context = p["B"], p["s_q"], p["context"]
    max_pages = (context + PAGE - 1) // PAGE
    table = torch.randperm(batch * max_pages, device=device, dtype=torch.int32).view(batch, max_pages)
    attention = PlainAttention(batch * next_n, p["H_q"], 576, 512, batch * max_pages * PAGE, p["fp8"] != 0)
    ends = context - next_n + 1 + torch.arange(batch * next_n, device=device) % next_n
    slots = paged_slots(random_indices(batch * next_n, p["k"], ends), table, next_n)
    name = "gather + dequantise + matmul" if p["fp8"] else "gather + matmul"
    return name, lambda: attention.run(slots), attention.check(slots, attention.run(slots))


def sparse_attention_backward_case(p):
    """Chunks of rows: the forward recomputed with autograd from q and kv leaves, then backward."""
    rows, k = p["S_q"], p["k"]
    attention = PlainAttention(rows, p["H_q"], p["d_qk"], p["d_v"], p["S_kv"], False)
    indices = random_indices(rows, k, torch.full((rows,), p["S_kv"], device=device))
    dout = torch.randn(rows, p["H_q"], p["d_v"], device=device, dtype=torch.bfloat16)
    kv = attention.kv.detach().requires_grad_()
    step = max(1, CHUNK_BYTES // (k * p["H_q"] * 4))  # the f32 scores autograd keeps

    def run():
        q = attention.q.detach().requires_grad_()
        kv.grad = None
        for first in range(0, rows, step):
            last = min(rows, first + step)
            index = indices[first:last]
            gathered = kv[index.clamp(min=0).long()]
            scores = torch.matmul(q[first:last], gathered.transpose(1, 2)).float() * SCALE
            scores = scores.masked_fill((index < 0)[:, None, :], float("-inf"))
            out = torch.matmul(torch.softmax(scores, dim=-1).to(torch.bfloat16), gathered[..., :p["d_v"]])
            out.backward(dout[first:last])
        return q.grad, kv.grad

    dq, _ = run()
    ok = True
    for r in sample(rows):
        q_row = attention.q[r].double().requires_grad_()
        valid = indices[r][indices[r] >= 0].long()
        kv_rows = attention.kv[valid].double()
        out = torch.softmax(q_row @ kv_rows.T * SCALE, dim=-1) @ kv_rows[:, :p["d_v"]]
        out.backward(dout[r].double())
        ok &= close(dq[r], q_row.grad, 3e-2)
    return "gather + matmul + autograd", run, ok


def attention_case(p):
    indexer, ok = indexer_case(p)
    attention = PlainAttention(p["S_q"], p["H_q"], p["d_qk"], p["d_v"], p["S_kv"], False)

    def layer():
        selected = torch.topk(indexer.logits(), min(p["k"], p["S_kv"]), dim=-1)
        indices = selected.indices.int().masked_fill_(torch.isinf(selected.values), -1)
        indices = torch.nn.functional.pad(indices, (0, p["k"] - indices.shape[1]), value=-1)
        return indices, attention.run(indices)

    indices, out = layer()
    return "plain indexer + torch.topk + gather + matmul", layer, ok and attention.check(indices, out)


def attention_paged_case(p):
    indexer, ok = indexer_case(p, paged=True, next_n_key="s_q")
    attention = PlainAttention(p["B"] * p["s_q"], p["H_q"], 576, 512, p["B"] * indexer.max_pages * PAGE, p["fp8"] != 0)

    def layer():
        logits = indexer.logits()
        selected = torch.topk(logits, min(p["k"], logits.shape[1]), dim=-1)
        tokens = selected.indices.int().masked_fill_(torch.isinf(selected.values), -1)
        slots = torch.nn.functional.pad(paged_slots(tokens, indexer.table, p["s_q"]), (0, p["k"] - tokens.shape[1]),
                                        value=-1)
        return slots, attention.run(slots)

    slots, out = layer()
    return "plain indexer + torch.topk + gather + matmul", layer, ok and attention.check(slots, out)


BASELINES = {
    "topk": topk_case,
    "indexer_logits": indexer_logits_case,
    "indexer_logits_paged": indexer_logits_paged_case,
    "indexer_topk": indexer_topk_case,
    "indexer_topk_paged": lambda p: indexer_topk_case(p, paged=True),
    "sparse_attention": sparse_attention_case,
    "sparse_attention_paged": sparse_attention_paged_case,
    "attention": attention_case,
    "attention_paged": attention_paged_case,
    "sparse_attention_backward": sparse_attention_backward_case,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="path to dsa-bench (lists the cases)")
    parser.add_argument("--preset", action="append", default=[])
    parser.add_argument("--case", action="append", default=[])
    parser.add_argument("--op", action="append", default=[])
    parser.add_argument("--json", help="write one JSON object per case here")
    args = parser.parse_args()
    command = [args.bench, "--list", "--json", "-"]
    for flag, values in (("--preset", args.preset), ("--case", args.case), ("--op", args.op)):
        for value in values:
            command += [flag, value]
    listing = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    cases = [json.loads(line) for line in listing.splitlines() if line.strip()]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    print(f"{'op':<24} {'ms':>10} {'check':<7} baseline / shape", flush=True)
    results, failures = [], 0
    for case in cases:
        baseline = BASELINES.get(case["op"])
        if baseline is None:
            continue
        row = {"op": case["op"], "shape": case["shape"], "params": case["params"], "device": "cuda",
               "device_name": torch.cuda.get_device_name(), "torch": torch.__version__}
        try:
            torch.manual_seed(1)
            name, run, checked = baseline(case["params"])
            row.update(baseline=name, ms=median_ms(run), checked=bool(checked), status="ok")
            failures += not checked
        except (Skipped, torch.cuda.OutOfMemoryError) as reason:
            row.update(baseline=None, ms=None, checked=False, status="skipped", message=str(reason).split("\n")[0])
        except Exception as error:  # a broken baseline is reported, and the others still run
            row.update(baseline=None, ms=None, checked=False, status="failed", message=f"{type(error).__name__}: {error}")
            failures += 1
        torch.cuda.empty_cache()
        ms = f"{row['ms']:.4g}" if row["ms"] is not None else "-"
        check = "ok" if row["checked"] else ("skipped" if row["status"] == "skipped" else "FAILED")
        print(f"{case['op']:<24} {ms:>10} {check:<7} {row.get('baseline') or row.get('message')} / {case['shape']}",
              flush=True)
        results.append(row)
    if args.json:
        with open(args.json, "w") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

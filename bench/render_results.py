#!/usr/bin/env python3
"""Renders bench/RESULTS.md from the JSON of benchmark runs, so regenerating the report is one
command:

  python3 bench/render_results.py --cpu bench/results/cpu.json --cpu-notes bench/results/cpu-notes.md
      [--gpu deepseek.json --gpu tp.json --torch torch-deepseek.json --torch torch-tp.json
       --gpu-notes notes.md] [--commit HASH] > bench/RESULTS.md

--cpu / --gpu: dsa-bench --json output (CPU and CUDA runs); --torch: bench/torch_baselines.py
--json output of the same run as the GPU JSON. Without --gpu the GPU section keeps its structure
with the anchors and targets of ../shared/PERFORMANCE.md and no measured values.
"""
import argparse
import json
import subprocess
import sys

# ../shared/PERFORMANCE.md: the anchors (best systems, H100 80GB) and libdsa's targets, by case.
# metric: the unit compared ("tflops", "us" or "tbps"); target: the number the target states.
ANCHORS = [
    ("sparse_attention", {"S_q": 4096, "S_kv": 8192, "H_q": 128}, "FlashMLA 676 TFLOPS", "tflops", None, ""),
    ("sparse_attention", {"S_q": 4096, "S_kv": 32768, "H_q": 128}, "FlashMLA 634 TFLOPS", "tflops", 700, ">= 700 TFLOPS"),
    ("sparse_attention", {"S_q": 4096, "S_kv": 131072, "H_q": 128}, "FlashMLA 529 TFLOPS", "tflops", None, ""),
    ("sparse_attention", {"S_q": 4096, "S_kv": 8192, "H_q": 64}, "FlashMLA 663 TFLOPS", "tflops", None, ""),
    ("sparse_attention_paged", {"B": 128, "s_q": 2, "H_q": 128, "fp8": 1}, "FlashMLA 415 TFLOPS (352 us)", "tflops",
     450, ">= 450 TFLOPS"),
    ("sparse_attention_paged", {"B": 128, "s_q": 2, "H_q": 64, "fp8": 1}, "FlashMLA 298 TFLOPS", "tflops", None, ""),
    ("sparse_attention_paged", {"B": 2, "s_q": 2, "H_q": 128, "fp8": 1}, "FlashMLA 23 us", "us", None, ""),
    ("sparse_attention_paged", {"H_q": 8, "fp8": 1}, "none (nobody serves it natively)", "roof", 0.7,
     ">= 70% of HBM bandwidth"),
    ("sparse_attention_paged", {"H_q": 16, "fp8": 1}, "none (nobody serves it natively)", "roof", 0.7,
     ">= 70% of HBM bandwidth"),
    ("sparse_attention_paged", {"H_q": 32, "fp8": 1}, "none (nobody serves it natively)", "roof", 0.7,
     ">= 70% of HBM bandwidth"),
    ("sparse_attention_paged", {"H_q": 64, "B": 32, "fp8": 1}, "none", "roof", 0.7, ">= 70% of HBM bandwidth"),
    ("topk", {"rows": 1, "n": 131072, "causal": 0}, "FlashInfer 42 us; torch.topk 104 us", "us", None, ""),
    ("topk", {"rows": 64, "n": 131072, "causal": 0}, "FlashInfer 67 us; torch.topk 176 us", "us", 30,
     "<= 30 us, deterministic"),
    ("topk", {"rows": 128, "n": 131072, "causal": 0}, "FlashInfer 83 us; torch.topk 292 us", "us", None, ""),
    ("topk", {"rows": 2048, "n": 65536, "causal": 0}, "FlashInfer 595 us; torch.topk 1717 us", "us", None, ""),
    ("topk", {"rows": 4096, "n": 4096, "causal": 1}, "torch.topk 0.61 ms", "us", None, ""),
    ("topk", {"rows": 8192, "n": 8192, "causal": 1}, "torch.topk 1.63 ms", "us", None, ""),
    ("topk", {"rows": 4096, "n": 32768, "causal": 1}, "torch.topk 2.44 ms", "us", None, ""),
    ("topk", {"rows": 8192, "n": 65536, "causal": 1}, "torch.topk 8.61 ms", "us", None, ""),
    ("indexer_logits", {"S_q": 4096, "S_kv": 4096}, "DeepGEMM 841 TFLOPS-eq", "tflops", 1200, ">= 1200 TFLOPS-eq"),
    ("indexer_logits", {"S_q": 8192, "S_kv": 8192}, "DeepGEMM 953 TFLOPS-eq", "tflops", 1200, ">= 1200 TFLOPS-eq"),
    ("indexer_logits", {"S_q": 4096, "S_kv": 32768}, "DeepGEMM 1080 TFLOPS-eq", "tflops", 1200, ">= 1200 TFLOPS-eq"),
    ("indexer_logits", {"S_q": 8192, "S_kv": 65536}, "DeepGEMM 1037 TFLOPS-eq", "tflops", 1200, ">= 1200 TFLOPS-eq"),
    ("indexer_logits_paged", {"B": 64, "context": 32768}, "DeepGEMM 111 us (2.48 TB/s)", "tbps", 2.8, ">= 2.8 TB/s"),
    ("indexer_logits_paged", {"B": 64, "context": 131072}, "DeepGEMM 406 us (2.73 TB/s)", "tbps", 2.8, ">= 2.8 TB/s"),
    ("indexer_logits_paged", {"B": 128, "context": 65536}, "DeepGEMM 406 us (2.73 TB/s)", "tbps", 2.8, ">= 2.8 TB/s"),
    ("indexer_logits_paged", {"B": 1, "context": 131072}, "DeepGEMM 14 us", "us", 8, "<= 8 us"),
    ("indexer_topk", {"S_q": 131072, "S_kv": 131072}, "none", None, None,
     "faster than indexer + top-k apart, no [S, S] buffer"),
    ("indexer_topk", {}, "DeepGEMM logits + the best top-k", None, None, "the pair faster, logits never written"),
    ("indexer_topk_paged", {}, "DeepGEMM paged logits + the best top-k", None, None,
     "the pair faster, logits never written"),
]

METRIC_UNITS = {"tflops": "TFLOPS", "us": "us", "tbps": "TB/s", "roof": "of roof"}


def anchor_of(case):
    for op, match, anchor, metric, target, target_text in ANCHORS:
        if op == case["op"] and all(case["params"].get(key) == value for key, value in match.items()):
            return anchor, metric, target, target_text
    return "", None, None, ""


def value_of(case, metric):
    if case.get("status") != "ok" or metric is None:
        return None
    return {"tflops": case.get("tflops"), "us": case["ms"] * 1e3, "tbps": (case.get("gbps") or 0) / 1e3,
            "roof": case.get("ceiling_ratio")}[metric]


def gap_of(case, metric, target):
    ours = value_of(case, metric)
    if ours is None or target is None or not ours:
        return ""
    ratio = target / ours if metric == "us" else ours / target
    return f"meets ({ratio:.2f}x)" if ratio >= 1 else f"{ratio:.2f}x of target"


def number(value, digits=4):
    return "-" if value is None else f"{value:.{digits}g}"


def rate(case):
    if case.get("status") != "ok":
        return "-"
    if case.get("bound") == "compute" and case.get("tflops"):
        return f"{case['tflops']:.4g} TFLOP/s"
    return f"{case['gbps']:.4g} GB/s" if case.get("gbps") else "-"


def ms_of(case, repeats_expected=10):
    if case.get("status") == "unsupported":
        return "unsupported"
    if case.get("status") != "ok":
        return "FAILED"
    text = f"{case['ms']:.4g}"
    return text + (f" ({case['repeats']} runs)" if case["repeats"] < repeats_expected else "")


def roof(case):
    return f"{100 * case['ceiling_ratio']:.3g}%" if case.get("status") == "ok" and case.get("ceiling_ratio") else "-"


def load(paths):
    cases = []
    for path in paths:
        with open(path) as lines:
            cases += [json.loads(line) for line in lines if line.strip()]
    return cases


def read_notes(path):
    if not path:
        return ""
    with open(path) as notes:
        return notes.read().strip()


def header(cases, what, command, commit):
    first = cases[0]
    return [f"Measured {first['date']} on {first['device_name']}; libdsa commit {commit}; `{first['build']}`.",
            f"Ceilings measured in the same run: {first['ceiling_tflops']:.4g} TFLOP/s compute, "
            f"{first['ceiling_gbps']:.4g} GB/s copy ({what}). Checked against: {first['oracle']}.",
            f"Command: `{command}`", ""]


def gpu_section(gpu, torch_rows, commit, note):
    lines = ["## GPU", ""] + ([note, ""] if note else [])
    if gpu:
        lines += header(gpu, "cuBLAS bf16 GEMM 8192^3; device-to-device copy, read + write",
                        "bench/run_gpu.sh OUT", commit)
        torch_by_case = {(row["op"], row["shape"]): row for row in torch_rows}
        if torch_rows:
            lines += [f"PyTorch baselines: torch {torch_rows[0]['torch']}, same run, same card "
                      "(bench/torch_baselines.py; what a user writes without a kernel library).", ""]
        rows = gpu
    else:
        lines += ["Not measured yet: run `bench/run_gpu.sh OUT` on the GPU machine, then render this file from its "
                  "JSON (see the top). The rows below are the anchors and targets the run is compared with.", ""]
        rows = [{"op": op, "shape": " ".join(f"{k}={v}" for k, v in match.items()), "params": match,
                 "status": "not run"} for op, match, *_ in ANCHORS]
        torch_by_case = {}
    lines += ["Anchors are PERFORMANCE.md's, measured on an H100 80GB (same tensor rates as the H200; HBM 3.35 vs "
              "4.8 TB/s); compute ratios use the bf16 GEMM ceiling, so an FP8 kernel (the indexer) can pass 100%.", "",
              "| op | shape | ours ms | ours rate | of roof | PyTorch ms | vs PyTorch | anchor (H100) | target | gap |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for case in rows:
        anchor, metric, target, target_text = anchor_of(case)
        torch_row = torch_by_case.get((case["op"], case["shape"]))
        torch_ms = torch_row["ms"] if torch_row and torch_row.get("status") == "ok" else None
        speedup = f"{torch_ms / case['ms']:.2f}x" if torch_ms and case.get("status") == "ok" else "-"
        torch_text = number(torch_ms) if torch_ms else (torch_row.get("status", "-") if torch_row else "-")
        ours_ms = ms_of(case) if case["status"] != "not run" else "-"
        lines.append(f"| {case['op']} | {case['shape']} | {ours_ms} | {rate(case)} | {roof(case)} | {torch_text} | "
                     f"{speedup} | {anchor} | {target_text} | {gap_of(case, metric, target)} |")
    return lines + [""]


def cpu_section(cpu, commit, note):
    lines = ["## CPU", ""] + ([note, ""] if note else [])
    if not cpu:
        return lines + ["Not measured yet: `dsa-bench --preset cpu --device cpu --json bench/results/cpu.json`.", ""]
    lines += header(cpu, "f32 FMA loop of all threads, the faster of AVX2 and AVX-512; memcpy, read + write",
                    "build/bench/dsa-bench --preset cpu --device cpu --json bench/results/cpu.json", commit)
    lines += ["| op | shape | ms | TFLOP/s | GB/s | bound | of roof | checked |", "|---|---|---|---|---|---|---|---|"]
    for case in cpu:
        lines.append(f"| {case['op']} | {case['shape']} | {ms_of(case)} | {number(case.get('tflops'))} | "
                     f"{number(case.get('gbps'))} | {case.get('bound') or '-'} | {roof(case)} | "
                     f"{'yes' if case.get('checked') else 'NO'} |")
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="append", default=[])
    parser.add_argument("--gpu", action="append", default=[])
    parser.add_argument("--torch", action="append", default=[])
    parser.add_argument("--gpu-notes", help="a markdown file opening the GPU section (the machine's state, findings)")
    parser.add_argument("--cpu-notes", help="a markdown file opening the CPU section")
    parser.add_argument("--commit", help="libdsa commit measured (default: git rev-parse --short HEAD)")
    args = parser.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True).stdout.strip() or "unknown"
    lines = ["# libdsa benchmark results", "",
             "Rendered by `bench/render_results.py` from the JSON of `dsa-bench` runs (method: "
             "../shared/PERFORMANCE.md and `dsa-bench --help`; the notes on each kernel version: "
             "`bench/NOTES.md`). Regenerate after every kernel change:", "",
             "```sh",
             "bench/run_gpu.sh OUT     # on the GPU machine: tests, deepseek + tp, PyTorch; writes OUT/RESULTS-gpu.md too",
             "build/bench/dsa-bench --preset cpu --device cpu --json bench/results/cpu.json   # the dev machine",
             "python3 bench/render_results.py --cpu bench/results/cpu.json --cpu-notes bench/results/cpu-notes.md \\",
             "    --gpu OUT/deepseek.json --gpu OUT/tp.json --torch OUT/torch-deepseek.json --torch OUT/torch-tp.json \\",
             "    [--gpu-notes bench/results/gpu-notes.md] [--commit MEASURED] > bench/RESULTS.md",
             "```", "",
             "`bench/results/` keeps the JSON and notes of the runs shown here, so one section can be redone "
             "without the other.", "",
             "Columns: `ms` is the median of the timed calls; rates use PERFORMANCE.md's FLOP and byte counts; "
             "`of roof` is max(FLOP / compute ceiling, bytes / copy ceiling) / time with both ceilings measured in "
             "the same run; `unsupported` means the op has no kernel on that device yet.", ""]
    lines += gpu_section(load(args.gpu), load(args.torch), commit, read_notes(args.gpu_notes))
    lines += cpu_section(load(args.cpu), commit, read_notes(args.cpu_notes))
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

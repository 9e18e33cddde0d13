"""End-to-end check of stories-dsa on the real model: a reduced configuration runs twice; the two
reports must agree except for "seconds" (the CPU path is bitwise deterministic), have the issue's
shape, and order the methods: oracle >= indexer > window in attention-mass recall at every k, and
indexer < window in KL. A missing model reports the test skipped (exit 77); $DSA_MODEL overrides
the default path.

usage: demo_test.py STORIES_DSA DEFAULT_MODEL WORK_DIR
"""
import json
import os
import subprocess
import sys

SKIPPED = 77
REDUCED = ["--device", "cpu", "--train-sequences", "8", "--eval-sequences", "2", "--seq-len", "256",
           "--steps", "24", "--k", "32,64", "--quiet"]


def run(demo, model, out):
    command = [demo, "--model", model, "--out", out] + REDUCED
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    with open(os.path.join(out, "report.json")) as file:
        text = file.read()
    return text, json.loads(text)


def main():
    demo, default_model, work = sys.argv[1:4]
    model = os.environ.get("DSA_MODEL") or default_model
    if not os.path.exists(model):
        print(f"SKIP: the model is not at {model} (set DSA_MODEL to run this test)")
        return SKIPPED

    missing = subprocess.run([demo, "--model", os.path.join(work, "no-such-model.bin"), "--quiet"],
                             capture_output=True, text=True)
    if missing.returncode != 3 or "model not found" not in missing.stderr:
        sys.exit(f"FAIL: a missing model should exit 3 with a message, got {missing.returncode}: {missing.stderr}")

    first_text, report = run(demo, model, os.path.join(work, "first"))
    second_text, _ = run(demo, model, os.path.join(work, "second"))
    strip = lambda text: [line for line in text.splitlines() if not line.lstrip().startswith('"seconds"')]
    if strip(first_text) != strip(second_text):
        sys.exit("FAIL: two runs with the same seed wrote different reports")

    for key in ("model", "device", "train_sequences", "eval_sequences", "results", "dense_ppl", "seconds"):
        if key not in report:
            sys.exit(f"FAIL: report.json lacks {key!r}")
    if report["model"] != "stories260K" or report["device"] != "cpu":
        sys.exit(f"FAIL: unexpected model/device {report['model']}/{report['device']}")
    by = {(r["k"], r["method"]): r for r in report["results"]}
    for k in (32, 64):
        oracle, indexer, window = (by[(k, m)] for m in ("oracle", "indexer", "window"))
        for result in (oracle, indexer, window, by[(k, "hybrid")]):
            for field in ("mass_recall", "worst_head_mass", "oracle_overlap", "kl", "ppl"):
                if not isinstance(result[field], (int, float)):
                    sys.exit(f"FAIL: k={k} {result['method']}: {field} is {result[field]!r}")
        print(f"k={k}: mass oracle {oracle['mass_recall']:.3f} indexer {indexer['mass_recall']:.3f} "
              f"window {window['mass_recall']:.3f}; KL indexer {indexer['kl']:.3f} window {window['kl']:.3f}")
        if not oracle["mass_recall"] >= indexer["mass_recall"] > window["mass_recall"]:
            sys.exit(f"FAIL: k={k}: mass recall is not ordered oracle >= indexer > window")
        if not indexer["kl"] < window["kl"]:
            sys.exit(f"FAIL: k={k}: the indexer's KL is not below the window's")
    print("ok: deterministic, ordered")
    return 0


if __name__ == "__main__":
    sys.exit(main())

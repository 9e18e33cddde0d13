#!/usr/bin/env python3
"""The bench_smoke test: runs `dsa-bench --preset smoke --device cpu --json FILE` and checks the
JSON it writes: one object per case, every op dsa-bench knows present, the fields present and
sane, every case checked against the oracle. Never the speed.

Usage: check_smoke.py path/to/dsa-bench path/to/output.json
"""
import json
import math
import subprocess
import sys

FIELDS = {"op": str, "shape": str, "params": dict, "device": str, "status": str, "ms": float, "repeats": int,
          "flop": float, "bytes": float, "tflops": (float, type(None)), "gbps": (float, type(None)),
          "bound": str, "ceiling_ratio": float, "ceiling_tflops": float, "ceiling_gbps": float, "checked": bool}


def problems_of(case):
    for field, kind in FIELDS.items():
        if field not in case:
            yield f"no field {field}"
            continue
        value = case[field]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            yield f"{field} = {value!r} is not {kind}"
    if case.get("device") != "cpu":
        yield f"device {case.get('device')!r}"
    if case.get("status") != "ok" or case.get("checked") is not True:
        yield f"status {case.get('status')!r}, checked {case.get('checked')!r}: {case.get('message')}"
    if problems := [f for f in ("ms", "ceiling_tflops", "ceiling_gbps", "ceiling_ratio")
                    if not isinstance(case.get(f), (int, float)) or not math.isfinite(case[f]) or case[f] <= 0]:
        yield f"not positive and finite: {problems}"
    if isinstance(case.get("repeats"), int) and case["repeats"] < 10:
        yield f"only {case['repeats']} timed runs"
    for rate, work in (("tflops", "flop"), ("gbps", "bytes")):
        if (case.get(rate) is None) != (case.get(work, 0) == 0):
            yield f"{rate} {case.get(rate)!r} does not match {work} {case.get(work)!r}"
    if case.get("bound") not in ("compute", "memory"):
        yield f"bound {case.get('bound')!r}"
    # A shared machine can measure a ceiling low, but not by 10x.
    if isinstance(case.get("ceiling_ratio"), (int, float)) and case["ceiling_ratio"] > 10:
        yield f"ceiling_ratio {case['ceiling_ratio']} is not sane"
    if isinstance(case.get("params"), dict) and isinstance(case.get("shape"), str):
        if case["shape"] != " ".join(f"{k}={v}" for k, v in case["params"].items()):
            yield "shape and params disagree"


def main():
    bench, output = sys.argv[1], sys.argv[2]
    ops = subprocess.run([bench, "--list-ops"], check=True, capture_output=True, text=True).stdout.split()
    run = subprocess.run([bench, "--preset", "smoke", "--device", "cpu", "--json", output], text=True,
                         capture_output=True)
    print(run.stdout, run.stderr, sep="")
    if run.returncode != 0:
        print(f"dsa-bench exited with {run.returncode}")
        return 1
    with open(output) as lines:
        cases = [json.loads(line) for line in lines if line.strip()]
    expected = subprocess.run([bench, "--preset", "smoke", "--list"], check=True, capture_output=True,
                              text=True).stdout.splitlines()
    failures = []
    if len(cases) != len(expected):
        failures.append(f"{len(cases)} JSON objects for {len(expected)} cases")
    for op in ops:
        if not any(case.get("op") == op for case in cases):
            failures.append(f"op {op} missing from the smoke preset")
    for case in cases:
        failures += [f"{case.get('op')} {case.get('shape')}: {problem}" for problem in problems_of(case)]
    for failure in failures:
        print("FAIL:", failure)
    print(f"{len(cases)} cases, {len(ops)} ops, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

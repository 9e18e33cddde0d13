#!/usr/bin/env python3
"""Fails when a binding lags capi/include/dsa.h: every function declared there must be named in
each binding's sources, and every params struct field must be carried by the Rust `params!` block
and the Go toC method of that struct. (Python's ctypes structs and prototypes are checked against
the C compiler by bindings/python/tests/test_abi.py.)"""
import pathlib
import re
import sys

BINDINGS = pathlib.Path(__file__).resolve().parent
# Declarations only: comments mention function names too.
HEADER = re.sub(r"/\*.*?\*/", "", (BINDINGS.parent / "capi" / "include" / "dsa.h").read_text(), flags=re.S)

SOURCES = {
    "rust": sorted((BINDINGS / "rust" / "dsa" / "src").glob("*.rs")),
    "go": sorted(p for p in (BINDINGS / "go").glob("*.go") if not p.name.endswith("_test.go"))
    + [BINDINGS / "go" / "dsa_go.h"],
    "python": sorted((BINDINGS / "python" / "dsa").glob("*.py")),
}


def main():
    functions = re.findall(r"^DSA_API\s+[^;(]*?\b(dsa_\w+)\s*\(", HEADER, re.M)
    params = {
        tag: re.findall(r"\b(\w+)\s*;", body)
        for tag, body in re.findall(r"typedef struct (dsa_\w+_params) \{(.*?)\}", HEADER, re.S)
    }
    texts = {language: "\n".join(path.read_text() for path in paths) for language, paths in SOURCES.items()}
    problems = []
    for language, text in texts.items():
        problems += [f"{language}: {name} is not bound" for name in functions if not re.search(rf"\b{name}\b", text)]
    for tag, fields in params.items():
        fields = [field for field in fields if field != "struct_size"]
        rust = re.search(rf"\w+ = {tag}_t, {tag}_init \{{(.*?)\n    \}}", texts["rust"], re.S)
        go = re.search(rf"\) toC\(\) \*C\.{tag}_t \{{(.*?)\n\}}", texts["go"], re.S)
        for field in fields:
            if not rust or not re.search(rf"\b{field}:", rust.group(1)):
                problems.append(f"rust: params! for {tag}_t lacks field {field}")
            if not go or f"raw.{field} =" not in go.group(1):
                problems.append(f"go: the toC method for {tag}_t does not set {field}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check_coverage: {len(functions)} functions, {len(params)} params structs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ctypes mirror against dsa.h: every struct's size, alignment and field offsets as the C
compiler sees them, every function with its argument count, and how the library is found."""
import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

import dsa
from dsa import _library
from conftest import ROOT

HEADER = ROOT / "capi" / "include" / "dsa.h"


def declarations():
    """dsa.h without its comments, which mention function names too."""
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


def test_every_struct_matches_the_c_compiler(tmp_path):
    assert set(re.findall(r"typedef struct (\w+) \{", declarations())) == set(_library.STRUCTS)
    lines = []
    for tag, structure in _library.STRUCTS.items():
        lines.append(f'printf("{tag} size %zu align %zu\\n", sizeof(struct {tag}), _Alignof(struct {tag}));')
        for field, _ in structure._fields_:
            lines.append(f'printf("{tag}.{field} %zu\\n", offsetof(struct {tag}, {field}));')
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <dsa.h>\nint main(void) {\n"
        + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    compiler = os.environ.get("CC", "cc")
    subprocess.run([compiler, "-std=c11", f"-I{HEADER.parent}", str(source), "-o", str(tmp_path / "layout")], check=True)
    from_c = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True).stdout.splitlines()
    from_ctypes = []
    for tag, structure in _library.STRUCTS.items():
        from_ctypes.append(f"{tag} size {ctypes.sizeof(structure)} align {ctypes.alignment(structure)}")
        from_ctypes += [f"{tag}.{field} {getattr(structure, field).offset}" for field, _ in structure._fields_]
    assert from_ctypes == from_c


def test_every_function_has_a_prototype_with_its_argument_count():
    declared = {}
    for name, arguments in re.findall(r"^DSA_API\s+[^;(]*?\b(dsa_\w+)\s*\(([^)]*)\)", declarations(), re.M):
        declared[name] = 0 if arguments.strip() == "void" else arguments.count(",") + 1
    assert set(declared) == set(_library.PROTOTYPES)
    assert {name: len(argtypes) for name, (_, argtypes) in _library.PROTOTYPES.items()} == declared


def test_major_version_check():
    _library.check_version(dsa.version())
    with pytest.raises(ImportError, match="major version 0"):
        _library.check_version(10203)


def _import_in_subprocess(package_dir, environment):
    environment = {**os.environ, "PYTHONPATH": str(package_dir), "PYTHONDONTWRITEBYTECODE": "1", **environment}
    code = "import dsa, dsa._library as l; print(l.lib._name)"
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)


def test_library_lookup_order(tmp_path):
    loaded = _library.lib._name
    shutil.copytree(ROOT / "bindings" / "python" / "dsa", tmp_path / "dsa")
    # Next to the package when DSA_LIBRARY is unset.
    shutil.copy(loaded, tmp_path / "dsa" / "libdsa.so")
    environment = {key: value for key, value in os.environ.items() if key != "DSA_LIBRARY"}
    result = subprocess.run(
        [sys.executable, "-c", "import dsa._library as l; print(l.lib._name)"],
        env={**environment, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "dsa" / "libdsa.so")
    # DSA_LIBRARY wins, and a bad one is an ImportError that says what was tried.
    result = _import_in_subprocess(tmp_path, {"DSA_LIBRARY": str(tmp_path / "missing.so")})
    assert result.returncode != 0 and "DSA_LIBRARY" in result.stderr and "missing.so" in result.stderr

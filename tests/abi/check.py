#!/usr/bin/env python3
"""ABI stability of libdsa.so against the committed baseline of its major version.

    tests/abi/check.py LIBRARY            compare (exit 1 on an incompatible change)
    tests/abi/check.py --update LIBRARY   write the baseline of LIBRARY's major version

LIBRARY must carry DWARF (a Debug or RelWithDebInfo build) so that types can be compared. The
baseline is tests/abi/libdsa.so.<major>.abi, written by abidw over the exported interface only.
Within a major version the ABI may only grow: new functions, new types, and fields appended to
the end of a struct (the params convention of dsa.h). abidiff reports removed symbols as
incompatible by itself; any other change to an existing type or signature (a member moved,
removed or retyped, a struct that shrank, a parameter or return type changed) is refused here.
A library whose major version has no baseline yet passes (the major version changed): create
its baseline with --update and commit it.
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HEADERS = os.path.join(ROOT, "capi", "include")

# abidiff's exit status bits (libabigail: abidiff --help / tools documentation)
ERROR, USAGE_ERROR, CHANGE, INCOMPATIBLE = 1, 2, 4, 8

# Lines of a report that describe where a change is, or that a struct grew: all compatible.
CONTEXT = re.compile(
    r"^\s*(Functions changes summary|Variables changes summary|\d+ functions? with some indirect sub-type change"
    r"|\[C\] '.*' has some indirect sub-type changes:|parameter \d+ of type '.*' has sub-type changes:"
    r"|return type has sub-type changes:|in pointed to type '.*':|in unqualified underlying type '.*':"
    r"|in referenced type '.*':|underlying type '.*' changed:|type of '.*' changed:|type size hasn't changed)")


def major_version():
    with open(os.path.join(HEADERS, "dsa.h")) as header:
        return int(re.search(r"#define DSA_VERSION_MAJOR (\d+)", header.read()).group(1))


def dump(library, output):
    """abidw of LIBRARY's exported interface, source paths relative to the checkout (so a baseline
    does not depend on where it was built)."""
    subprocess.run(["abidw", "--headers-dir", HEADERS, "--drop-private-types", "--exported-interfaces-only",
                    "--no-corpus-path", "--no-show-locs", "--no-comp-dir-path", "--out-file", output, library],
                   check=True)
    with open(output) as corpus:
        text = corpus.read()
    with open(output, "w") as corpus:
        corpus.write(text.replace("path='%s/" % ROOT, "path='"))


def incompatible_lines(report):
    """The lines of an abidiff report that change something that existed before."""
    bad = []
    for line in report.splitlines():
        if "changed" not in line and "deletion" not in line and "removed" not in line.lower():
            continue
        if re.search(r"\b0 Removed\b", line) and "summary" in line:
            continue
        grew = re.search(r"type size changed from (\d+) to (\d+)", line)
        if grew and int(grew.group(2)) > int(grew.group(1)):
            continue
        if CONTEXT.match(line):
            continue
        bad.append(line.strip())
    return bad


def main(argv):
    update = "--update" in argv
    arguments = [a for a in argv if a != "--update"]
    if len(arguments) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    library = arguments[0]
    baseline = os.path.join(HERE, "libdsa.so.%d.abi" % major_version())
    if update:
        dump(library, baseline)
        print("abi: wrote %s" % os.path.relpath(baseline, ROOT))
        return 0
    if not os.path.exists(baseline):
        print("abi: no baseline for major version %d (the major version changed): create it with "
              "tests/abi/check.py --update LIBRARY and commit it" % major_version())
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        current = os.path.join(scratch, "current.abi")
        dump(library, current)
        result = subprocess.run(["abidiff", baseline, current], capture_output=True, text=True)
    report = result.stdout + result.stderr
    if result.returncode & (ERROR | USAGE_ERROR):
        print(report)
        print("abi: abidiff failed (exit %d)" % result.returncode)
        return 2
    if result.returncode == 0:
        print("abi: identical to %s" % os.path.relpath(baseline, ROOT))
        return 0
    print(report)
    bad = incompatible_lines(report)
    if result.returncode & INCOMPATIBLE or bad:
        for line in bad:
            print("abi: incompatible: " + line)
        print("abi: INCOMPATIBLE with %s; keep the old interface or raise DSA_VERSION_MAJOR"
              % os.path.relpath(baseline, ROOT))
        return 1
    print("abi: compatible additions only (refresh the baseline with --update when a release fixes them)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

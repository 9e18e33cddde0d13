#!/bin/sh
# Fails unless every dynamic symbol libdsa defines starts with dsa_ (and some exist), and the
# SONAME is libdsa.so.<major>.
set -eu
library="$1"
symbols=$(nm -D --defined-only "$library" | awk '$2 != "A" {print $3}' | sed 's/@.*//')
[ -n "$symbols" ] || { echo "no exported symbols in $library"; exit 1; }
stray=$(printf '%s\n' "$symbols" | grep -v '^dsa_' || true)
if [ -n "$stray" ]; then
  echo "symbols outside the dsa_ namespace are exported:"; printf '%s\n' "$stray"; exit 1
fi
soname=$(objdump -p "$library" | awk '/SONAME/ {print $2}')
case "$soname" in libdsa.so.[0-9]*) ;; *) echo "unexpected SONAME '$soname'"; exit 1 ;; esac
echo "$(printf '%s\n' "$symbols" | wc -l) exported symbols, all dsa_*; SONAME $soname"

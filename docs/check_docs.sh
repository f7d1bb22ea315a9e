#!/usr/bin/env bash
# Builds the API reference and fails on any Doxygen warning (an undocumented public type or
# function, a broken doc command), listing them.
set -euo pipefail
doxyfile=$1 log=$2
command -v doxygen >/dev/null || { echo "doxygen is missing: run scripts/test (it installs it)" >&2; exit 1; }
rm -f "$log"
(cd "$(dirname "$doxyfile")" && doxygen "$(basename "$doxyfile")")
count=$(grep -c 'warning:' "$log" || true)
if [ "$count" -ne 0 ]; then
    cat "$log"
    echo "docs: $count Doxygen warnings about the public API" >&2
    exit 1
fi
echo "docs: the API reference built with no warnings: $(dirname "$doxyfile")/html/index.html"

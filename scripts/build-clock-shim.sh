#!/usr/bin/env bash
# Builds scripts/future-clock/shift-clock.c into .tools/lib/shift-clock.so (git-ignored), when it
# is missing or older than its source. The shim moves a process's wall clock (LD_PRELOAD); the
# tests use it to run a Redis whose clock differs from theirs, and scripts/test-future.sh to run
# the whole suite years from now. Needs a C compiler (Debian's gcc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lib=".tools/lib/shift-clock.so"
src="scripts/future-clock/shift-clock.c"
if [ -f "$lib" ] && [ ! "$src" -nt "$lib" ]; then exit 0; fi
command -v cc >/dev/null 2>&1 || { echo "build-clock-shim: a C compiler (cc) is required; install Debian's gcc" >&2; exit 1; }
mkdir -p .tools/lib
cc -O2 -shared -fPIC -Wall -Wextra -Werror -o "$lib.tmp" "$src"
mv "$lib.tmp" "$lib"
echo "build-clock-shim: built $lib" >&2

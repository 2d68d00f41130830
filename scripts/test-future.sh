#!/usr/bin/env bash
# Runs the test suite with the wall clock moved into the future, to prove that no test only
# passes on the day it was written (a frozen date meeting a real clock: Redis TTLs, JWT exp/nbf,
# certificates, cache expiry).
#
#   bash scripts/test-future.sh              # five years (1826 days) from today
#   bash scripts/test-future.sh 2036-02-29   # a given UTC date, at the current time of day
#   bash scripts/test-future.sh +4000        # a number of days from today (negative: the past)
#   bash scripts/test-future.sh 2036-02-29 test/enforce-store.test.ts   # extra args go to vitest
#
# Every dynamically linked process of the run sees the moved clock: the test runner and its
# workers, the Signalbox replicas they start, redis-server, nginx and the LiteLLM proxy. They
# inherit LD_PRELOAD of scripts/future-clock/shift-clock.c, built here into .tools/lib. The
# statically linked Go tools (opa, caddy, envoy-client) read the clock through the vDSO and keep
# the real date; none of them judges a date that a test made. The kernel also stamps file
# mtimes with the real date. Run scripts/test.sh once first: this script installs nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target="${1:-+1826}"
shift $(( $# > 0 ? 1 : 0 ))
now="$(date -u +%s)"
case "$target" in
  [+-]*) seconds=$(( ${target#+} * 86400 )) ;;
  [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9])
    # Keep today's time of day so the shift is a whole number of days.
    at="$(date -u -d "${target}T$(date -u +%H:%M:%S)Z" +%s)" || { echo "test-future: not a date: $target" >&2; exit 2; }
    seconds=$(( at - now )) ;;
  *) echo "test-future: expected YYYY-MM-DD or +DAYS, got: $target" >&2; exit 2 ;;
esac

bash scripts/build-clock-shim.sh
lib=".tools/lib/shift-clock.so"

export SIGNALBOX_CLOCK_SHIFT_S="$seconds"
export LD_PRELOAD="$PWD/$lib${LD_PRELOAD:+ $LD_PRELOAD}"
seen="$(node -e 'process.stdout.write(new Date().toISOString())')"

echo "test-future: wall clock moved by ${seconds}s: node sees ${seen}, date(1) sees $(date -u +%FT%TZ)" >&2
exec npx vitest run "$@"

#!/usr/bin/env bash
# The whole test suite: the README's test command and CI's, one and the same.
# Builds the binaries the end-to-end tests run (cargo test builds only test
# targets), runs every test binary even after a failure, and closes with one
# line for the whole run: `tests: N passed, N failed, N skipped`.
#
# A skip is a test that could not run here (no root, a missing tool) and said
# so through calico-testsupport; under CI=true such a test fails instead.
# Ignored entries are helper entry points run as child processes, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
export CALICO_TEST_SKIPS=$skips

status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

skipped=$(wc -l <"$skips")
if [ "$skipped" -gt 0 ]; then
  echo "skipped tests:"
  sed 's/^/  /' "$skips"
fi
# libtest counts a skipped test as passed; a binary that died has no summary.
awk -v skipped="$skipped" -v status="$status" '
  /^test result:/ { p += $4; f += $6; ig += $8 }
  END {
    if (status != 0 && f == 0) f = 1
    if (ig > 0) printf "(%d ignored: helper entry points run as child processes, not tests)\n", ig
    printf "tests: %d passed, %d failed, %d skipped\n", p - skipped, f, skipped
  }' "$log"
exit "$status"

#!/usr/bin/env bash
# A bounded fuzz run of the wire decoder: ./run.sh [SECONDS] (default 60).
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. Exits
# non-zero if libFuzzer found a crash (the input is left in artifacts/decode/).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
mkdir -p corpus/decode
# Overflow checks stay on (debug assertions); the crate has no unsafe code,
# so AddressSanitizer would only slow the search down.
exec cargo +nightly fuzz run --sanitizer none decode corpus/decode seeds -- \
  -max_total_time="$secs" -max_len=8192 -print_final_stats=1

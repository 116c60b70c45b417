#!/usr/bin/env bash
# Churn soak (issue 5, point 8): 500 concurrent viewers, 50 ended and 50 started per second
# (1 in 5 ended without TEARDOWN, left to a 10 s session timeout) for 10 minutes on loopback,
# then a drain and a check that the server's descriptors, threads and RSS returned to their
# baseline. Writes target/soak/{bench.json,bench.html,summary.md}; exits non-zero on a leak.
#
#   scripts/churn-soak.sh                      # the full 10-minute soak (samples on stderr)
#   SOAK_DURATION=3m scripts/churn-soak.sh     # a shorter one (say so when quoting it)
#
# Honors CARGO_TARGET_DIR. Not part of `cargo test`: it takes ~11 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${SOAK_DURATION:-10m}"
rate="${SOAK_RATE:-50/s}"
viewers="${SOAK_VIEWERS:-500}"
out="${SOAK_OUT:-target/soak}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin shardcast
mkdir -p "$out"
echo "churn soak: --churn $rate --viewers $viewers --duration $duration (commit $(git rev-parse --short HEAD), $(nproc) cores, Linux $(uname -r))"
set +e
"$target_dir/release/shardcast" bench \
    --churn "$rate" --viewers "$viewers" --duration "$duration" \
    --session-timeout 10 --abandon-one-in 5 --out "$out" \
    | tee "$out/summary.md"
status=${PIPESTATUS[0]}
set -e
if ! grep -q '^PASS' "$out/summary.md"; then
    echo "churn soak: FAIL (see $out/summary.md)" >&2
    exit 1
fi
exit "$status"

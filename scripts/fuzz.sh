#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time on the STABLE toolchain: libFuzzer
# (from libfuzzer-sys) with SanitizerCoverage instrumentation through stable -C flags, plus
# debug assertions and overflow checks (no AddressSanitizer, which needs nightly). Each target
# starts from fuzz/seeds/<target> (real requests, files and packets); new inputs go to a
# scratch corpus, crashes to fuzz/artifacts/<target>/ and fail the run.
#   FUZZ_SECONDS=30 scripts/fuzz.sh            # all targets, 30 s each
#   scripts/fuzz.sh rtsp_request               # one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps RUSTFLAGS off build scripts, as cargo-fuzz does.
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" --bins
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rtsp_request transport range uri mp4_index packetize rtcp depacketize announce rtmp stun srtp_unprotect webrtc_offer dtls rtsp_http_tunnel hvcc mpegts_index mkv_index tls_record mikey waveformatex)
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  cp fuzz/seeds/"$t"/* "$corpus"/
  mkdir -p fuzz/artifacts/"$t"
  echo "== fuzzing $t for ${seconds}s"
  log=$(mktemp)
  if ! fuzz/target/"$triple"/release/"$t" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix=fuzz/artifacts/"$t"/ "$corpus" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; reproducer in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$log" || true
  rm -rf "$corpus" "$log"
done
echo "fuzzing: all targets ran ${seconds}s without a crash"

#!/usr/bin/env bash
# Takes docs/dashboard.png: starts a server (the bundled sample plus a live channel looping
# it), puts load on it (`shardcast bench` UDP viewers on the sample, ffmpeg TCP viewers on
# the live channel), lets the dashboard collect some history, and screenshots the page with
# headless Chromium. Everything runs on loopback and stops by itself.
#
#   scripts/screenshot-dashboard.sh [OUT.png]      (SHARDCAST_BIN=... to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/dashboard.png}"
bin="${SHARDCAST_BIN:-target/release/shardcast}"
viewers="${VIEWERS:-50}"
settle="${SETTLE_SECS:-30}"
if [ ! -x "$bin" ]; then
  cargo build --release
fi
command -v chromium >/dev/null || { echo "chromium missing: scripts/install-test-deps.sh" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "ffmpeg missing: scripts/install-test-deps.sh" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --hls-listen 127.0.0.1:0 --shards 2 --log warn \
  --live "news=tests/media/sample.mp4" >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^ready$' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
grep -q '^ready$' "$work/serve.out" || { cat "$work/serve.err" >&2; exit 1; }
rtsp="$(sed -n 's#^shardcast listening on rtsp://\([^/]*\)/.*#\1#p' "$work/serve.out")"
http="$(sed -n 's#^http listening on http://\([^/]*\)/#\1#p' "$work/serve.out")"
echo "server rtsp://$rtsp http://$http"

# A few real players first (they send RTCP receiver reports), then the bench's viewers.
for i in 1 2 3; do
  ffmpeg -hide_banner -nostdin -loglevel error -rtsp_transport tcp -i "rtsp://$rtsp/news" \
    -t $((settle + 20)) -f null - >/dev/null 2>&1 &
  pids+=($!)
done
ffmpeg -hide_banner -nostdin -loglevel error -rtsp_transport udp -i "rtsp://$rtsp/sample" \
  -f null - >/dev/null 2>&1 &
pids+=($!)
sleep 3
"$bin" bench --url "rtsp://$rtsp/sample" --viewers "$viewers" --ramp 10/s \
  --duration "$((settle + 20))s" --quiet --out "$work/bench" >/dev/null 2>&1 &
pids+=($!)
echo "loading for ${settle}s ($viewers bench viewers, 4 ffmpeg players)"
sleep "$settle"

profile="$work/chromium"
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1400,1000 \
  --virtual-time-budget=3000 --screenshot="$out" "http://$http/dashboard" >/dev/null 2>&1
echo "wrote $out"

#!/usr/bin/env bash
# shardcast against GStreamer's RTSP server (gst-rtsp-server, shared pipeline) in one run:
# the same file, the same load generator (`shardcast bench`), the same viewers and
# transport, rounds interleaved (gst, shardcast, gst, shardcast, …) so the machine's
# drifting speed hits both alike. Prints each round's server CPU per delivered packet and
# the ratio gst / shardcast, then the median ratio.
#
#   scripts/bench-vs-gst.sh [--transport tcp|udp] [--viewers N] [--duration 10s]
#                           [--rounds 3] [--media FILE] [--out DIR]
#
# Needs a release build (target/release/shardcast), python3-gi and
# gir1.2-gst-rtsp-server-1.0 (scripts/install-test-deps.sh installs them), and the
# long sample (scripts/make-sample-media.sh --large). Both servers are pinned to core 0 and
# the load generator to core 1; everything listens and sends on 127.0.0.1 only, and every
# run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

transport=tcp viewers=300 duration=10s rounds=3 media=target/media/long-60s.mp4
out=target/bench-vs-gst
while [ $# -gt 0 ]; do
  case "$1" in
    --transport) transport=$2; shift 2 ;;
    --viewers) viewers=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --media) media=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
exe=target/release/shardcast
[ -x "$exe" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$media" ] || { echo "no $media: scripts/make-sample-media.sh --large" >&2; exit 1; }
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
  || { echo "needs python3-gi and gir1.2-gst-rtsp-server-1.0" >&2; exit 1; }
mkdir -p "$out"
port=$((18000 + RANDOM % 2000))
gst_pid=
trap '[ -n "$gst_pid" ] && kill "$gst_pid" 2>/dev/null || true' EXIT

cpu_of() { # bench.json → "cpu_ns_per_packet packets_per_syscall lateness_p99 loss_pct mbit"
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["configs"][0]["runs"][0]
dp = r.get("data_plane") or {}
print(f'{r["server"]["cpu_ns_per_packet"]:.0f} {dp.get("packets_per_syscall", 0):.1f} '
      f'{dp.get("lateness_p99_ms", float("nan")):.2f} {r["loss_pct"]:.3f} '
      f'{r["mbit_per_viewer"]:.2f} {r["playing"]}')
PY
}

common=(--viewers "$viewers" --duration "$duration" --transport "$transport" --quiet)
printf '| round | server | viewers playing | Mbit/s per viewer | loss %% | server CPU ns/pkt | pkts/syscall | lateness p99 ms |\n|---|---|---|---|---|---|---|---|\n'
ratios=()
for round in $(seq 1 "$rounds"); do
  taskset -c 0 /usr/bin/python3 scripts/gst-rtsp-server.py "$media" --port "$port" \
    > "$out/gst-server.log" 2>&1 &
  gst_pid=$!
  for _ in $(seq 1 50); do
    grep -q rtsp:// "$out/gst-server.log" 2>/dev/null && break
    sleep 0.1
  done
  "$exe" bench --url "rtsp://127.0.0.1:$port/live" --server-pid "$gst_pid" "${common[@]}" \
    --out "$out/gst-r$round" > "$out/gst-r$round.txt" 2>&1 || true
  kill "$gst_pid" 2>/dev/null || true
  wait "$gst_pid" 2>/dev/null || true
  gst_pid=
  "$exe" bench --server-arg=--live --server-arg="live=$media" --stream live "${common[@]}" \
    --out "$out/shardcast-r$round" > "$out/shardcast-r$round.txt" 2>&1 || true
  read -r g_cpu g_pps _ g_loss g_mbit g_play < <(cpu_of "$out/gst-r$round/bench.json")
  read -r s_cpu s_pps s_late s_loss s_mbit s_play < <(cpu_of "$out/shardcast-r$round/bench.json")
  printf '| %s | gst-rtsp-server | %s | %s | %s | %s | — | — |\n' "$round" "$g_play" "$g_mbit" "$g_loss" "$g_cpu"
  printf '| %s | shardcast | %s | %s | %s | %s | %s | %s |\n' "$round" "$s_play" "$s_mbit" "$s_loss" "$s_cpu" "$s_pps" "$s_late"
  ratios+=("$(/usr/bin/python3 -c "print(f'{$g_cpu / $s_cpu:.2f}')")")
done
echo
echo "gst-rtsp-server CPU per packet / shardcast's, per round: ${ratios[*]}"
/usr/bin/python3 -c "import statistics,sys; print(f'median: {statistics.median(map(float, sys.argv[1:])):.2f}x')" "${ratios[@]}"

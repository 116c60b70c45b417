#!/usr/bin/env bash
# Installs the independent RTSP peers the test suite plays against (ffmpeg/ffprobe,
# GStreamer's rtspsrc with H.264/H.265/AAC decoders and its rtspclientsink publisher), the
# headless browser that drives the web page (Chromium), GStreamer's RTSP server (a camera
# to pull from), OpenSSL's DTLS client and nginx (the HLS bench's peer) from Debian
# packages, when missing.
set -euo pipefail

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
# tests/h265.rs makes its H.265 files with ffmpeg's libx265 (Debian's libavcodec has it).
if command -v ffmpeg >/dev/null 2>&1; then
  encoders=$(ffmpeg -hide_banner -encoders 2>/dev/null || true)
  [[ $encoders == *libx265* ]] || missing+=(libavcodec-extra)
fi
if ! command -v gst-launch-1.0 >/dev/null 2>&1 \
  || ! gst-inspect-1.0 rtspsrc >/dev/null 2>&1 \
  || ! gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 \
  || ! gst-inspect-1.0 avdec_aac >/dev/null 2>&1 \
  || ! gst-inspect-1.0 avdec_h265 >/dev/null 2>&1 \
  || ! gst-inspect-1.0 h265parse >/dev/null 2>&1 \
  || ! gst-inspect-1.0 rtph265depay >/dev/null 2>&1; then
  missing+=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
            gstreamer1.0-plugins-bad gstreamer1.0-libav)
fi
# GStreamer's RTSP publisher (tests/ingest_rtsp.rs), in its own Debian package.
if ! gst-inspect-1.0 rtspclientsink >/dev/null 2>&1; then
  missing+=(gstreamer1.0-rtsp)
fi
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The example web app of tests/three_party.rs (docs/examples/webapp.py, standard library only).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# GStreamer's RTSP server from Python (scripts/gst-rtsp-server.py): the camera tests/ingest_pull.rs
# pulls from, and the peer scripts/bench-vs-gst.sh measures against.
if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null; then
  missing+=(python3-gi gir1.2-gst-rtsp-server-1.0)
fi
# nginx, the reference HLS server `shardcast bench --protocol hls --against nginx` compares
# with; tests/bench_hls.rs runs that comparison, so the suite needs it (not only the bench).
# Not started as a service: the bench runs its own.
if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  missing+=(nginx)
fi
# OpenSSL's s_client: the independent DTLS 1.2 + use_srtp client of tests/webrtc_dtls.rs (and
# the X.509 reader of webrtc::cert's tests).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# aiortc (Debian's python3-aiortc, 1.4 on bookworm: H.264 through PyAV/FFmpeg, Opus): the
# second, independent WebRTC player of tests/webrtc_whep_browser.rs (tests/fixtures/whep_client.py,
# run with /usr/bin/python3).
if ! /usr/bin/python3 -c 'import aiortc, av' 2>/dev/null; then
  missing+=(python3-aiortc)
fi
# iproute2's `ip netns`: tests/multicast.rs runs the server and its players inside a network
# namespace it creates, so multicast never reaches a real network.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# Not a peer: backtraces of a server that stopped answering when a test fails.
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing test peers: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

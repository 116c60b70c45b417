#!/usr/bin/env bash
# The whole test suite: installs the external RTSP peers if missing, then runs every test
# (unit, retina, ffmpeg/ffprobe, GStreamer, headless Chromium, protocol, bad input, 200-viewer load).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
exec cargo test --all-targets "$@"

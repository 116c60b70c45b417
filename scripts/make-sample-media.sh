#!/usr/bin/env bash
# Re-creates the bundled sample clip (tests/media/sample.mp4), the 2 s live-test clip
# (tests/media/short.mp4) and the B-frame clip (tests/media/bframes.mp4); with --large, instead, bigger clips for load runs under target/media/; with --vod50, 50
# 1 Mbit/s files under target/media-vod50/. Needs ffmpeg
# with libx264 and aac.
#
# The sample is 10 s of 640x360 testsrc2 at 25 fps, H.264 Main profile without B-frames
# (decode order = presentation order, so browsers' WebRTC decoders, which do not reorder,
# play it: issue 17), a keyframe every 2 s, plus 48 kHz stereo AAC-LC. It stays under 1 MB
# because it is compiled into the binary. short.mp4 follows it (Main, no B-frames) because
# the live-channel tests loop it and a live channel must play over WebRTC too.
# bframes.mp4 keeps B-frame coverage (composition offsets / ctts, reordering, pts < dts
# before the edit list): 4 s of 320x180 at 25 fps, H.264 High with 2 B-frames, AAC.
set -euo pipefail
cd "$(dirname "$0")/.."

make_clip() { # out seconds size fps keyint video_kbps [profile b-frames]
  local out=$1 secs=$2 size=$3 fps=$4 gop=$5 vkbps=$6 profile=${7:-high} bf=${8:-2}
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=${size}:rate=${fps}:duration=${secs}" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=${secs}" \
    -map 0:v -map 1:a \
    -c:v libx264 -profile:v "$profile" -preset veryfast -bf "$bf" -g "$gop" -keyint_min "$gop" \
    -sc_threshold 0 -b:v "${vkbps}k" -maxrate "${vkbps}k" -bufsize "$((vkbps * 2))k" -pix_fmt yuv420p \
    -c:a aac -b:a 64k -ac 2 \
    -movflags +faststart "$out"
}

if [[ "${1:-}" == "--vod50" ]]; then
  # 50 distinct VOD files of 30 s at ~1 Mbit/s for the many-files ramp run (not committed):
  # one encode, then copies (distinct files and mappings, identical content).
  mkdir -p target/media-vod50
  make_clip target/media-vod50/vod00.mp4 30 854x480 30 60 930
  for i in $(seq -w 1 49); do cp target/media-vod50/vod00.mp4 "target/media-vod50/vod$i.mp4"; done
  ls target/media-vod50 | wc -l
  exit 0
fi

if [[ "${1:-}" == "--webrtc" ]]; then
  # A 2 Mbit/s clip WebRTC can carry, for `shardcast bench --protocol whep` (not committed):
  # H.264 Main without B-frames (browsers drop reordered frames over WebRTC) at 480p25, level
  # 3.0, which the bench's offer names (4d401e).
  mkdir -p target/media
  make_clip target/media/webrtc-60s.mp4 60 854x480 25 50 2000 main 0
  ls -l target/media
  exit 0
fi

if [[ "${1:-}" == "--large" ]]; then
  # Clips for load runs (not committed): 60 s of 720p30 at 2 Mbit/s.
  mkdir -p target/media
  make_clip target/media/long-60s.mp4 60 1280x720 30 60 2000
  ls -l target/media
  exit 0
fi

# (x264 output is not byte-reproducible across runs; the reader tests pin byte offsets of the
# committed clips, so re-create them only on purpose.)
make_clip tests/media/sample.mp4 10 640x360 25 50 600 main 0
# A 2 s clip with a 1 s GOP: live-channel tests loop it several times quickly.
make_clip tests/media/short.mp4 2 320x180 25 25 300 main 0
# B-frames (High, -bf 2), 2 s GOP: the tests of composition offsets and reordering.
make_clip tests/media/bframes.mp4 4 320x180 25 50 300 high 2
ls -l tests/media/sample.mp4 tests/media/short.mp4 tests/media/bframes.mp4

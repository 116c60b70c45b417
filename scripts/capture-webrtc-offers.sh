#!/usr/bin/env bash
# Records real SDP offers from headless Chromium into tests/fixtures/webrtc/ (the fixtures of
# src/webrtc/sdp/tests.rs and the seeds of the `webrtc_offer` fuzz target):
#   chromium-<major>_whep_offer.sdp   recvonly video + audio transceivers (a WHEP viewer)
#   chromium-<major>_whip_offer.sdp   sendonly video + audio tracks (a WHIP publisher)
# Each page creates an RTCPeerConnection, sets its local description, waits for ICE
# gathering, and prints `localDescription.sdp`; `--dump-dom` with a virtual time budget
# returns the page once the promise chain has run. Needs Debian's `chromium` (or $CHROMIUM).
set -euo pipefail
cd "$(dirname "$0")/.."
chromium=${CHROMIUM:-chromium}
major=$("$chromium" --version 2>/dev/null | grep -oE '[0-9]+\.' | head -1 | tr -d .)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=tests/fixtures/webrtc

page() { # $1 = name, $2 = JavaScript that adds the transceivers/tracks to `pc`
  cat >"$work/$1.html" <<HTML
<html><body><pre id=o></pre><script>
(async () => {
  const pc = new RTCPeerConnection();
  $2
  await pc.setLocalDescription();
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
    setTimeout(r, 2000);
  });
  document.getElementById('o').textContent = pc.localDescription.sdp;
})().catch(e => { document.getElementById('o').textContent = 'ERROR ' + e; });
</script></body></html>
HTML
  timeout 60 "$chromium" --headless=new --no-sandbox --disable-gpu --no-first-run \
    --use-fake-device-for-media-stream --use-fake-ui-for-media-stream \
    --user-data-dir="$work/profile-$1" --virtual-time-budget=5000 \
    --dump-dom "file://$work/$1.html" 2>/dev/null |
    python3 -c 'import sys,html,re; m=re.search(r"<pre id=\"o\">(.*?)</pre>", sys.stdin.read(), re.S); sys.stdout.buffer.write((html.unescape(m.group(1)) if m else "").encode())' |
    cat >"$out/chromium-${major}_$1_offer.sdp"
  if ! head -1 "$out/chromium-${major}_$1_offer.sdp" | grep -q '^v=0'; then
    echo "capturing $1 failed: $(head -c 300 "$out/chromium-${major}_$1_offer.sdp")" >&2
    exit 1
  fi
  echo "wrote $out/chromium-${major}_$1_offer.sdp"
}

page whep "pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});"
# getUserMedia never resolves under --dump-dom (even with the fake-device flags), so the
# publisher's tracks come from a canvas and Web Audio: the offer has the same shape (sendonly,
# msid, ssrc, the same codec list) as a camera's.
page whip "const c = document.createElement('canvas'); c.width = 320; c.height = 240;
  c.getContext('2d').fillRect(0, 0, 10, 10);
  const ac = new AudioContext(); const osc = ac.createOscillator();
  const dst = ac.createMediaStreamDestination(); osc.connect(dst); osc.start();
  const s = new MediaStream([...c.captureStream(25).getVideoTracks(), ...dst.stream.getAudioTracks()]);
  for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});"

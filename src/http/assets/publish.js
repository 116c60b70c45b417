// The "go live" page: publishes the browser's camera, screen or a test pattern over WHIP
// (RFC 9725) to this server's /whip/{path}. Everything is the browser's own WebRTC; the
// server answers the offer and takes the media into its live model.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { pc: null, stream: null, location: null, timer: null, ticker: null,
    status: 'idle', framesSent: 0, packetsSent: 0, bitrate: 0, codec: null, error: null };
  let last = null;

  function show(status, error) {
    state.status = status;
    $('state').textContent = status;
    const e = $('error');
    e.hidden = !error;
    e.textContent = error || '';
    state.error = error || null;
    $('start').disabled = status !== 'idle' && status !== 'failed' && status !== 'ended';
    $('stop').disabled = !state.pc;
  }

  // A moving pattern with a clock and a 440 Hz tone, for trying it out without devices.
  function pattern() {
    const c = document.createElement('canvas');
    c.width = 640; c.height = 360;
    const g = c.getContext('2d');
    let n = 0;
    state.ticker = setInterval(() => {
      g.fillStyle = '#10131a'; g.fillRect(0, 0, 640, 360);
      g.fillStyle = '#4da3ff'; g.fillRect((n * 6) % 600, 150, 40, 40);
      g.fillStyle = '#e8ecf2'; g.font = '36px monospace';
      g.fillText(new Date().toISOString().slice(11, 23), 20, 60);
      g.fillText('frame ' + n++, 20, 320);
    }, 40);
    const video = c.captureStream(25);
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    const gain = ac.createGain();
    gain.gain.value = 0.1;
    const dst = ac.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    return new MediaStream([...video.getVideoTracks(), ...dst.stream.getAudioTracks()]);
  }

  async function media(source) {
    if (source === 'pattern') return pattern();
    if (source === 'screen') return navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
    return navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
  }

  async function start(ev) {
    if (ev) ev.preventDefault();
    const path = $('path').value.trim().replace(/^\/+|\/+$/g, '');
    const key = $('key').value;
    if (!path) return show('idle', 'a stream path is needed');
    show('starting');
    try {
      const stream = await media($('source').value);
      state.stream = stream;
      $('preview').srcObject = stream;
      const pc = new RTCPeerConnection();
      state.pc = pc;
      for (const track of stream.getTracks()) {
        const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
        if (track.kind === 'video' && t.setCodecPreferences) {
          // The server takes H.264 (packetization-mode 1): offer it first, Constrained
          // Baseline before the others (no B-frames, what every player decodes).
          const caps = RTCRtpSender.getCapabilities('video').codecs;
          const h264 = caps.filter((c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
          h264.sort((a, b) => (/42e01f/.test(b.sdpFmtpLine) ? 1 : 0) - (/42e01f/.test(a.sdpFmtpLine) ? 1 : 0));
          if (h264.length) t.setCodecPreferences(h264);
        }
      }
      pc.onconnectionstatechange = () => {
        const s = pc.connectionState;
        if (s === 'connected') show('live');
        else if (s === 'failed') show('failed', 'the connection to the server failed');
        else if (s === 'disconnected') show('reconnecting');
      };
      await pc.setLocalDescription(await pc.createOffer());
      // ICE-lite server, one host candidate: our candidates go in the offer (no trickle).
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
        setTimeout(resolve, 2000);
      });
      const headers = { 'Content-Type': 'application/sdp' };
      if (key) headers.Authorization = 'Bearer ' + key;
      const r = await fetch('/whip/' + path.split('/').map(encodeURIComponent).join('/'),
        { method: 'POST', headers, body: pc.localDescription.sdp });
      const body = await r.text();
      if (r.status !== 201) throw new Error('the server refused (' + r.status + '): ' + body.trim());
      state.location = r.headers.get('location');
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      show(pc.connectionState === 'connected' ? 'live' : 'connecting');
      watchLinks(path);
      state.timer = setInterval(stats, 1000);
    } catch (e) {
      await stop(false);
      show('failed', String(e.message || e));
    }
  }

  async function watchLinks(path) {
    $('watch-link').textContent = path;
    $('watch-link').href = '/#play=' + encodeURIComponent(path);
    $('watch').hidden = false;
    // The stream's RTSP URL, once the server lists it (its first keyframe opened it).
    for (let i = 0; i < 20 && state.pc; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const r = await fetch('/api/v1/streams/' + path.split('/').map(encodeURIComponent).join('/'));
      if (r.ok) { const s = await r.json(); $('rtsp-url').textContent = s.url || ''; return; }
    }
  }

  async function stats() {
    if (!state.pc) return;
    const report = await state.pc.getStats();
    let bytes = 0;
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      bytes += s.bytesSent || 0;
      if (s.kind === 'video') {
        state.framesSent = s.framesSent || 0;
        state.packetsSent = s.packetsSent || 0;
        const c = report.get(s.codecId);
        state.codec = c ? c.mimeType : null;
      }
    });
    const now = performance.now();
    if (last) state.bitrate = (8 * (bytes - last.bytes)) / ((now - last.at) / 1000);
    last = { bytes, at: now };
    $('rate').textContent = (state.bitrate / 1000).toFixed(0) + ' kbit/s';
    $('frames').textContent = String(state.framesSent);
  }

  async function stop(user) {
    clearInterval(state.timer);
    clearInterval(state.ticker);
    state.timer = state.ticker = null;
    last = null;
    if (state.location) {
      // RFC 9725 §4.2: DELETE on the session's URL ends the publish.
      try { await fetch(state.location, { method: 'DELETE' }); } catch (_) { /* gone anyway */ }
      state.location = null;
    }
    if (state.pc) state.pc.close();
    state.pc = null;
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    $('preview').srcObject = null;
    if (user) show('ended');
  }

  $('form').addEventListener('submit', start);
  $('stop').addEventListener('click', () => stop(true));
  // Leaving the page ends the publish at once (the server would notice in 30 s anyway,
  // RFC 7675 consent); keepalive lets the DELETE outlive the page.
  window.addEventListener('pagehide', () => {
    if (state.location) fetch(state.location, { method: 'DELETE', keepalive: true });
  });

  // #path=live/cam&source=pattern&key=K&start=1
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get('path')) $('path').value = params.get('path');
  if (params.get('source')) $('source').value = params.get('source');
  if (params.get('key')) $('key').value = params.get('key');
  show('idle');
  if (params.get('start') === '1') start();

  // For tests and the console: what the page and the browser report.
  window.shardcastPublisher = {
    state: () => ({ status: state.status, error: state.error, framesSent: state.framesSent,
      packetsSent: state.packetsSent, bitrate: state.bitrate, codec: state.codec,
      location: state.location }),
    stop: () => stop(true),
  };
})();

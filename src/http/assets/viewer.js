// shardcast viewer: the catalog from /api/v1/streams, each stream playable in one <video>:
// over WebRTC (WHEP, draft-ietf-wish-whep: the lowest latency) when its catalog entry has a
// whep_url, else — or when WebRTC does not work out: the POST is refused (422: B-frames, no
// common codec; 503: admission; any 4xx/5xx) or the connection is not up within 5 s — over
// HLS (hls.js where the browser has Media Source Extensions, else the browser's own HLS
// player). Deep links: #play=NAME opens a stream from the catalog, #play=NAME&hls=URL plays
// any HLS URL (the server's CSP lets the page reach this host on any port),
// #play=NAME&whep=URL tries that WHEP endpoint first, #engine=hls.js|native|webrtc forces one.
//
// window.shardcastPlayer.state() reports what the <video> element and hls.js say about
// playback (time, frames decoded and dropped, audio bytes decoded, errors, latency), for
// tests and for anyone debugging a stream in the browser console; webrtcStats() what the
// RTCPeerConnection's getStats() says. Nothing in them is computed here: every figure is
// read from the media element, hls.js or the browser's WebRTC stack.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const video = $("video");

  // With api-read = "token" the admin token comes in the fragment (#token=...), as for the
  // dashboard; it is kept for this tab and removed from the address bar (the rest of the
  // fragment, such as play=, stays).
  let token = null;
  (function takeToken() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const t = params.get("token");
    if (t) {
      token = t;
      try { sessionStorage.setItem("shardcast-token", t); } catch (e) { /* private mode */ }
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "#" + rest : ""));
    } else {
      try { token = sessionStorage.getItem("shardcast-token"); } catch (e) { token = null; }
    }
  })();

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(path, { headers: headers, cache: "no-store" });
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clock(secs) {
    if (!(secs >= 0)) return "–";
    const t = Math.floor(secs), h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
    const two = (x) => String(x).padStart(2, "0");
    return h > 0 ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }
  // Only http(s) URLs are played: a fragment is attacker-controlled input.
  function httpUrl(raw) {
    try {
      const u = new URL(raw, location.href);
      return (u.protocol === "http:" || u.protocol === "https:") ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // ---- the player ----
  // One playback at a time: `current` is what plays, `hls` its hls.js instance if any.
  let current = null;
  let hls = null;
  let errors = [];
  let recovered = false;
  let meter = null;
  // The WebRTC attempt of the current playback, if any: its RTCPeerConnection, the WHEP
  // endpoint and session URL, the HTTP status of the POST, and a timer for the connection.
  let rtc = null;
  // Why the current HLS playback is not WebRTC (null when WebRTC was not tried).
  let fallback = null;
  // How long a WebRTC connection may take to reach "connected" before the page gives up on
  // it (ICE-lite server, loopback or LAN: well under a second when it works at all).
  const WEBRTC_CONNECT_MS = 5000;

  function forcedEngine() {
    return new URLSearchParams(location.hash.replace(/^#/, "")).get("engine");
  }

  function engineFor() {
    // hls.js first wherever MSE works, the browser's own player otherwise (iOS Safari before
    // Managed Media Source). Chromium 14x answers canPlayType(HLS) with "maybe" for its
    // own new player, which has no low-latency mode and reports neither latency nor errors,
    // so the brief's "native where canPlayType says so" would lose those on Chrome. Safari
    // on macOS plays through hls.js too (MSE); #engine=native forces the native player.
    const forced = new URLSearchParams(location.hash.replace(/^#/, "")).get("engine");
    const native = video.canPlayType("application/vnd.apple.mpegurl") !== "";
    const hlsjs = typeof window.Hls === "function" && window.Hls.isSupported();
    if (forced === "native") return native ? "native" : null;
    if (forced === "hls.js") return hlsjs ? "hls.js" : null;
    if (hlsjs) return "hls.js";
    if (native) return "native";
    return null;
  }

  function showError(text) {
    const p = $("now-error");
    p.textContent = text;
    p.hidden = !text;
  }
  function setStatus(text) {
    $("now-status").textContent = text;
  }
  function setKind(live) {
    const kind = $("now-kind");
    kind.textContent = live === true ? "LIVE" : live === false ? "VOD" : "";
    kind.className = "badge" + (live === true ? " live" : "");
    $("now-latency").hidden = live !== true;
  }

  function setEngine(engine, protocol) {
    const e = $("now-engine");
    e.textContent = engine === "webrtc" ? "WebRTC" : (engine || "no HLS player");
    e.dataset.protocol = protocol;
    e.title = protocol === "webrtc" ? "WebRTC (WHEP): sub-second latency" : "HLS";
  }
  function showFallback(why) {
    const p = $("now-fallback");
    p.textContent = why ? "WebRTC unavailable (" + why + "), playing HLS" : "";
    p.hidden = !why;
  }

  // Ends the WebRTC attempt: the session is DELETEd at its Location (keepalive, so it is
  // sent even while the page unloads) and the peer connection closed.
  function endRtc() {
    if (!rtc) return;
    const r = rtc;
    rtc = null;
    closeRtc(r);
  }
  function closeRtc(r) {
    clearTimeout(r.timer);
    if (r.session) {
      const headers = {};
      if (r.token) headers.Authorization = "Bearer " + r.token;
      fetch(r.session, { method: "DELETE", headers: headers, keepalive: true, cache: "no-store" })
        .catch(() => { /* the server ends it on consent expiry anyway */ });
    }
    r.pc.close();
  }

  function stop() {
    if (meter) { clearInterval(meter); meter = null; }
    if (hls) { hls.destroy(); hls = null; }
    if (pendingPlay) { video.removeEventListener("canplay", pendingPlay); pendingPlay = null; }
    endRtc();
    video.pause();
    video.srcObject = null;
    video.removeAttribute("src");
    video.load();
    current = null;
  }

  // Plays stream `s` (a catalog entry, or {name, live, hls_url}) over WebRTC from the WHEP
  // endpoint `whepUrl`; on a refusal or no connection, HLS from s.hls_url takes over.
  async function playWebrtc(s, whepUrl) {
    stop();
    errors = [];
    recovered = false;
    fallback = null;
    showError("");
    showFallback(null);
    $("player").hidden = false;
    $("now-name").textContent = s.name;
    const live = s.live === undefined ? undefined : !!s.live;
    setKind(live);
    const session = { name: s.name, url: whepUrl, live: live, engine: "webrtc", hlsUrl: s.hls_url || null };
    current = session;
    setEngine("webrtc", "webrtc");
    markPlaying(s.name);
    const pc = new RTCPeerConnection();
    const r = { pc: pc, endpoint: whepUrl, session: null, status: null, reason: null, timer: null, token: tokenOf(whepUrl) };
    rtc = r;
    const giveUp = (why) => {
      if (rtc !== r || current !== session) return;
      fallBack(session, why);
    };
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = (e) => {
      media.addTrack(e.track);
      if (video.srcObject !== media) video.srcObject = media;
    };
    pc.onconnectionstatechange = () => {
      if (rtc !== r) return;
      if (pc.connectionState === "connected") {
        clearTimeout(r.timer);
        setStatus("connected");
      } else if (pc.connectionState === "failed") {
        giveUp("connection failed");
      }
    };
    setStatus("connecting (WebRTC)");
    try {
      await pc.setLocalDescription(await pc.createOffer());
      // The server is ICE-lite: the browser's checks reach its one candidate, so the offer
      // needs none of ours; a short wait lets the candidates gathered so far go with it.
      await gathered(pc, 500);
      if (rtc !== r) return;
      r.timer = setTimeout(() => giveUp("not connected within " + WEBRTC_CONNECT_MS / 1000 + " s"), WEBRTC_CONNECT_MS);
      const headers = { "Content-Type": "application/sdp" };
      // A 503 with Retry-After (the stream's Opus audio being made for its first WebRTC
      // viewer, or an admission limit) is retried a few times within the connect timeout.
      let resp, body;
      for (let attempt = 0; ; attempt++) {
        resp = await fetch(whepUrl, { method: "POST", headers: headers, body: pc.localDescription.sdp, cache: "no-store" });
        body = await resp.text();
        const wait = Number(resp.headers.get("Retry-After"));
        if (resp.status !== 503 || !(wait > 0 && wait <= 2) || attempt >= 3 || rtc !== r) break;
        setStatus("WebRTC: " + body.trim().slice(0, 120));
        await new Promise((res) => setTimeout(res, wait * 1000));
      }
      r.status = resp.status;
      const loc = resp.headers.get("Location");
      if (resp.status === 201 && loc) r.session = new URL(loc, new URL(whepUrl, location.href)).href;
      if (rtc !== r) {
        // Stopped while the POST was under way: end the session it made.
        closeRtc(r);
        return;
      }
      if (resp.status !== 201) {
        r.reason = body.trim().slice(0, 300);
        giveUp("HTTP " + resp.status + (r.reason ? ": " + r.reason : ""));
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: body });
    } catch (e) {
      giveUp(String((e && e.message) || e));
      return;
    }
    const p = video.play();
    if (p && p.catch) p.catch((e) => setStatus("press play (" + e.name + ")"));
    meter = setInterval(showFacts, 1000);
  }

  // A play token in the WHEP URL (?token=) goes along with the DELETE too.
  function tokenOf(url) {
    try { return new URL(url, location.href).searchParams.get("token"); } catch (e) { return null; }
  }

  function gathered(pc, ms) {
    return new Promise((done) => {
      if (pc.iceGatheringState === "complete") { done(); return; }
      const t = setTimeout(done, ms);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); done(); }
      });
    });
  }

  // WebRTC did not work out for `session`: HLS instead, unless WebRTC was forced or the
  // stream has no HLS.
  function fallBack(session, why) {
    const r = rtc;
    const attempt = r ? { status: r.status, reason: r.reason } : null;
    stop();
    if (forcedEngine() === "webrtc" || !session.hlsUrl) {
      $("player").hidden = false;
      $("now-name").textContent = session.name;
      current = { name: session.name, url: session.url, live: session.live, engine: "webrtc", failed: why, attempt: attempt };
      setEngine("webrtc", "webrtc");
      showError("WebRTC playback failed: " + why + (session.hlsUrl ? "" : " (no HLS for this stream)"));
      return;
    }
    play(session.name, session.hlsUrl, session.live, why);
  }

  function markPlaying(name) {
    for (const li of document.querySelectorAll("#streams li")) {
      li.classList.toggle("playing", li.dataset.stream === name);
    }
  }

  function play(name, url, live, why) {
    stop();
    errors = [];
    recovered = false;
    fallback = why || null;
    showFallback(fallback);
    showError("");
    $("player").hidden = false;
    $("now-name").textContent = name || url;
    setKind(live);
    const engine = engineFor();
    current = { name: name, url: url, live: live, engine: engine };
    setEngine(engine, "hls");
    markPlaying(name);
    if (!engine) {
      showError("This browser can play HLS neither natively nor through Media Source Extensions.");
      return;
    }
    if (engine === "native") {
      video.src = url;
    } else {
      // The worker is off: the page's CSP allows no blob: workers, and fMP4 needs no
      // transmuxing, which is what the worker is for.
      hls = new window.Hls({ lowLatencyMode: live !== false, enableWorker: false, backBufferLength: 60 });
      hls.on(window.Hls.Events.ERROR, onHlsError);
      hls.on(window.Hls.Events.LEVEL_LOADED, (_, data) => {
        if (current && current.live === undefined) {
          current.live = !!data.details.live;
          setKind(current.live);
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }
    if (engine === "native") {
      startPlaying();
    } else {
      // hls.js: the element plays once it can at hls.js's start position (`canplay`). An
      // element already playing at 0 while the first data lands at the live window's start
      // lets hls.js's gap controller jump to the buffer's start before hls.js seeks to its
      // live start position — a `bufferSeekOverHole` and half a second or more of extra
      // latency, seen whenever the start segment's parts load slowly (a busy machine).
      pendingPlay = startPlaying;
      video.addEventListener("canplay", startPlaying, { once: true });
    }
    meter = setInterval(showFacts, 1000);
  }

  let pendingPlay = null;
  function startPlaying() {
    pendingPlay = null;
    const p = video.play();
    if (p && p.catch) {
      p.catch((e) => setStatus("press play (" + e.name + ")"));
    }
  }

  // hls.js errors: every one is recorded; a fatal one gets one recovery attempt (reload for
  // a network error, hls.js's media-error recovery for a decoder error), the next ends the
  // playback with a message. hls.js has already retried loads by its own policy by then.
  function onHlsError(_, data) {
    errors.push({
      type: data.type,
      details: data.details,
      fatal: !!data.fatal,
      url: (data.frag && data.frag.url) || (data.context && data.context.url) || null,
      status: (data.response && data.response.code) || null,
      // hls.js's own words (e.g. where a stall happened and what was buffered) and when, on
      // the page's clock: what a report of a failed playback needs.
      message: (data.error && data.error.message) || null,
      at: Math.round(performance.now()),
    });
    if (!data.fatal) return;
    const H = window.Hls;
    if (!recovered && data.type === H.ErrorTypes.NETWORK_ERROR) {
      recovered = true;
      setStatus("network error (" + data.details + "), retrying once");
      // Without a manifest there is nothing for startLoad to resume: load it again.
      if (/^manifest/.test(data.details)) hls.loadSource(current.url);
      else hls.startLoad();
    } else if (!recovered && data.type === H.ErrorTypes.MEDIA_ERROR) {
      recovered = true;
      setStatus("media error (" + data.details + "), recovering once");
      hls.recoverMediaError();
    } else {
      showError("Playback failed: " + data.type + " / " + data.details);
      if (hls) { hls.destroy(); hls = null; }
    }
  }
  // A live viewer who pauses stops downloading, and on resuming goes back to the live edge
  // as a broadcast would: a pause of more than a few seconds restarts the stream (a fresh
  // start takes a few hundred milliseconds from the shards' GOP-aligned parts), a short one
  // just resumes where it was.
  let pausedAt = null;
  video.addEventListener("pause", () => {
    // `paused` is false again when a restart's play() followed its own stop()'s pause; a
    // restart still waiting for `canplay` (pendingPlay) is not a viewer's pause either.
    if (!current || !current.live || !hls || !video.paused || pendingPlay) return;
    pausedAt = performance.now();
    hls.stopLoad();
  });
  video.addEventListener("play", () => {
    if (!current || !current.live || !hls || pausedAt === null) return;
    const away = performance.now() - pausedAt;
    pausedAt = null;
    if (away > 3000) {
      play(current.name, current.url, true);
    } else {
      hls.startLoad();
    }
  });
  video.addEventListener("error", () => {
    if (current && current.engine === "native" && video.error) {
      errors.push({ type: "mediaError", details: "code " + video.error.code + ": " + (video.error.message || ""), fatal: true, url: null, status: null });
      showError("Playback failed: " + (video.error.message || "media error " + video.error.code));
    }
  });

  function bufferedEnd() {
    const b = video.buffered;
    return b.length ? b.end(b.length - 1) : null;
  }
  function showFacts() {
    if (!current) return;
    if (rtc && current.engine === "webrtc") {
      // WebRTC: the jitter buffer's mean delay per frame and the round trip, from getStats().
      const r = rtc;
      webrtcStats().then((w) => {
        if (rtc !== r || !w) return;
        const v = w.video || {};
        const jb = v.jitterBufferEmittedCount ? 1000 * v.jitterBufferDelay / v.jitterBufferEmittedCount : null;
        $("latency").textContent = jb === null ? "–" : Math.round(jb + (w.rttMs || 0) / 2) + " ms";
        setStatus(r.pc.connectionState + " · " + (v.framesDecoded || 0) + " frames" +
          (v.packetsLost ? ", " + v.packetsLost + " packets lost" : "") +
          (v.framesPerSecond ? " · " + v.framesPerSecond + " fps" : ""));
      });
      return;
    }
    if (current.live && hls) {
      const l = hls.latency;
      $("latency").textContent = (l > 0 && isFinite(l)) ? l.toFixed(2) + " s" : "–";
    }
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const frames = q ? q.totalVideoFrames + " frames" + (q.droppedVideoFrames ? ", " + q.droppedVideoFrames + " dropped" : "") : "";
    setStatus((video.paused ? "paused" : "playing") + " · " + clock(video.currentTime) + (frames ? " · " + frames : ""));
  }

  function num(v) {
    return (typeof v === "number" && isFinite(v)) ? v : null;
  }
  // The inbound-rtp entries of the WebRTC playback (video, audio) as getStats() reports
  // them, the codecs they use, and the selected candidate pair's round trip; null without
  // WebRTC.
  async function webrtcStats() {
    if (!rtc) return null;
    const pc = rtc.pc;
    const report = await pc.getStats();
    const out = { connectionState: pc.connectionState, video: null, audio: null, rttMs: null };
    const codecs = {};
    for (const s of report.values()) {
      if (s.type === "inbound-rtp" && (s.kind === "video" || s.kind === "audio")) out[s.kind] = Object.assign({}, s);
      else if (s.type === "codec") codecs[s.id] = s.mimeType;
      else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) out.rttMs = 1000 * s.currentRoundTripTime;
    }
    for (const k of ["video", "audio"]) if (out[k]) out[k].codec = codecs[out[k].codecId] || null;
    return out;
  }
  window.shardcastPlayer = {
    /** What the <video> element and hls.js report now (plain JSON). */
    state() {
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      return {
        stream: current ? current.name : null,
        url: current ? current.url : null,
        engine: current ? current.engine : null,
        protocol: current ? (current.engine === "webrtc" ? "webrtc" : "hls") : null,
        fallback: current && current.engine !== "webrtc" ? fallback : null,
        whep: rtc ? { url: rtc.endpoint, session: rtc.session, status: rtc.status, reason: rtc.reason, connectionState: rtc.pc.connectionState }
          : (current && current.failed ? { failed: current.failed, status: current.attempt ? current.attempt.status : null, reason: current.attempt ? current.attempt.reason : null } : null),
        live: current ? (current.live === undefined ? null : current.live) : null,
        currentTime: video.currentTime,
        duration: num(video.duration),
        paused: video.paused,
        ended: video.ended,
        readyState: video.readyState,
        totalVideoFrames: q ? q.totalVideoFrames : null,
        droppedVideoFrames: q ? q.droppedVideoFrames : null,
        audioDecodedBytes: num(video.webkitAudioDecodedByteCount),
        videoDecodedBytes: num(video.webkitVideoDecodedByteCount),
        hlsErrors: errors.slice(),
        latency: hls ? num(hls.latency) : null,
        liveSyncPosition: hls ? num(hls.liveSyncPosition) : null,
        bufferedEnd: bufferedEnd(),
        /** Every buffered range of the element, [start, end] in seconds. */
        buffered: Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]),
        hlsVersion: window.Hls ? window.Hls.version : null,
      };
    },
    /** Plays `url` (HLS) under `name`; `live` true, false or undefined (ask the playlist). */
    play: play,
    /** Plays catalog entry `s` over WebRTC from WHEP endpoint `whepUrl`, HLS if that fails. */
    playWebrtc: playWebrtc,
    /** What getStats() says about the WebRTC playback (a promise; null without WebRTC). */
    webrtcStats: webrtcStats,
    /** Stops playback and hides the player. */
    stop() { stop(); $("player").hidden = true; },
  };

  // Leaving the page (or closing the tab) ends the WebRTC session at once, rather than when
  // the server's consent checks time out.
  window.addEventListener("pagehide", () => endRtc());

  $("close").addEventListener("click", () => {
    window.shardcastPlayer.stop();
    const forced = forcedEngine();
    history.replaceState(null, "", location.pathname + (forced ? "#engine=" + encodeURIComponent(forced) : ""));
    for (const li of document.querySelectorAll("#streams li")) li.classList.remove("playing");
  });

  // ---- the catalog ----
  let catalog = new Map();
  function renderCatalog(streams) {
    const list = $("streams");
    while (list.firstChild) list.removeChild(list.firstChild);
    catalog = new Map(streams.map((s) => [s.name, s]));
    $("catalog-note").textContent = streams.length
      ? streams.length + (streams.length === 1 ? " stream" : " streams")
      : "no streams in the media folder";
    for (const s of streams) {
      const li = el("li", "stream");
      li.dataset.stream = s.name;
      li.dataset.live = String(!!s.live);
      const head = el("div", "stream-head");
      head.appendChild(el("span", "stream-name", s.name));
      head.appendChild(s.live ? el("span", "badge live", "LIVE") : el("span", "length", clock(s.duration_secs)));
      li.appendChild(head);
      const facts = [];
      if (s.codecs && s.codecs.length) facts.push(s.codecs.join(" · "));
      if (s.width && s.height) facts.push(s.width + "×" + s.height + (s.frame_rate ? " @ " + Math.round(s.frame_rate * 100) / 100 + " fps" : ""));
      li.appendChild(el("div", "stream-facts", facts.join(" · ") || "–"));
      if (s.hls_url || s.whep_url) {
        const b = el("button", "play", "▶ play");
        if (s.whep_url) b.title = "plays over WebRTC" + (s.hls_url ? " (HLS if that fails)" : "");
        b.type = "button";
        // A forced engine (#engine=hls.js, native or webrtc) stays chosen across streams.
        b.addEventListener("click", () => {
          const forced = forcedEngine();
          location.hash = "play=" + encodeURIComponent(s.name) + (forced ? "&engine=" + encodeURIComponent(forced) : "");
        });
        li.appendChild(b);
      } else {
        // No HLS for this stream (an older server, or HLS switched off): RTSP players only.
        const note = el("div", "rtsp");
        note.appendChild(el("code", null, s.url));
        note.appendChild(el("span", "hint", s.token_required
          ? "needs a signed URL (POST /api/v1/play); open it in an RTSP player"
          : s.source
            ? "published over " + s.source.protocol.toUpperCase() + " (" + s.source.state + "), no HLS on this server: open it in an RTSP player (ffplay, VLC)"
            : "no HLS for this stream: open it in an RTSP player (ffplay, VLC)"));
        li.appendChild(note);
      }
      list.appendChild(li);
    }
  }

  // ---- deep links ----
  function follow() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const name = params.get("play");
    const explicit = params.get("hls");
    const whepParam = params.get("whep");
    if (!name && !explicit) return;
    const s = name ? catalog.get(name) : undefined;
    const forced = params.get("engine");
    const whep = forced === "hls.js" || forced === "native" || typeof window.RTCPeerConnection !== "function"
      ? null
      : (whepParam !== null ? httpUrl(whepParam) : (s && s.whep_url ? httpUrl(s.whep_url) : null));
    if (whep && !explicit && s) {
      if (current && current.engine === "webrtc" && current.url === whep) return;
      if (current && current.name === s.name && fallback) return; // already fell back
      playWebrtc(s, whep);
    } else if (explicit) {
      const url = httpUrl(explicit);
      if (!url) {
        $("player").hidden = false;
        $("now-name").textContent = name || "";
        showError("Not an http(s) URL: " + explicit);
        return;
      }
      if (current && current.url === url) return;
      play(name || url, url, s ? !!s.live : undefined);
    } else if (s && s.hls_url) {
      if (current && current.url === s.hls_url) return;
      play(s.name, s.hls_url, !!s.live);
    } else if (catalogLoaded) {
      $("player").hidden = false;
      $("now-name").textContent = name;
      setKind(undefined);
      showError(s ? "No HLS URL for this stream; play " + s.url + " in an RTSP player." : "No stream named " + name + ".");
    }
  }
  window.addEventListener("hashchange", follow);

  let catalogLoaded = false;
  async function loadCatalog() {
    try {
      renderCatalog((await api("/api/v1/streams")).streams);
      catalogLoaded = true;
    } catch (e) {
      $("catalog-note").textContent = "catalog unavailable: " + e.message;
    }
    if (current) {
      for (const li of document.querySelectorAll("#streams li")) {
        li.classList.toggle("playing", li.dataset.stream === current.name);
      }
    }
  }

  // An explicit hls= link plays at once; a stream name waits for the catalog.
  follow();
  loadCatalog().then(follow);
  setInterval(loadCatalog, 30000);
})();

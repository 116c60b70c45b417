// shardcast viewer: the catalog from /api/v1/streams, each stream playable in one <video>
// over HLS (hls.js where the browser has Media Source Extensions, else the browser's own
// HLS player). Deep links: #play=NAME opens a stream from the catalog, #play=NAME&hls=URL
// plays any HLS URL (the server's CSP lets the page reach this host on any port).
//
// window.shardcastPlayer.state() reports what the <video> element and hls.js say about
// playback (time, frames decoded and dropped, audio bytes decoded, errors, latency), for
// tests and for anyone debugging a stream in the browser console. Nothing in it is computed
// here: every figure is read from the media element or hls.js.
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

  function stop() {
    if (meter) { clearInterval(meter); meter = null; }
    if (hls) { hls.destroy(); hls = null; }
    video.pause();
    video.removeAttribute("src");
    video.load();
    current = null;
  }

  function play(name, url, live) {
    stop();
    errors = [];
    recovered = false;
    showError("");
    $("player").hidden = false;
    $("now-name").textContent = name || url;
    setKind(live);
    const engine = engineFor();
    current = { name: name, url: url, live: live, engine: engine };
    $("now-engine").textContent = engine || "no HLS player";
    for (const li of document.querySelectorAll("#streams li")) {
      li.classList.toggle("playing", li.dataset.stream === name);
    }
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
    const p = video.play();
    if (p && p.catch) {
      p.catch((e) => setStatus("press play (" + e.name + ")"));
    }
    meter = setInterval(showFacts, 1000);
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
    // `paused` is false again when a restart's play() followed its own stop()'s pause.
    if (!current || !current.live || !hls || !video.paused) return;
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
  window.shardcastPlayer = {
    /** What the <video> element and hls.js report now (plain JSON). */
    state() {
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      return {
        stream: current ? current.name : null,
        url: current ? current.url : null,
        engine: current ? current.engine : null,
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
        hlsVersion: window.Hls ? window.Hls.version : null,
      };
    },
    /** Plays `url` (HLS) under `name`; `live` true, false or undefined (ask the playlist). */
    play: play,
    /** Stops playback and hides the player. */
    stop() { stop(); $("player").hidden = true; },
  };

  $("close").addEventListener("click", () => {
    window.shardcastPlayer.stop();
    history.replaceState(null, "", location.pathname);
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
      if (s.hls_url) {
        const b = el("button", "play", "▶ play");
        b.type = "button";
        b.addEventListener("click", () => { location.hash = "play=" + encodeURIComponent(s.name); });
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
    if (!name && !explicit) return;
    const s = name ? catalog.get(name) : undefined;
    if (explicit) {
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

// shardcast dashboard: the catalog from /api/v1/streams, and every second the figures from
// /api/v1/stats, /api/v1/sessions and /api/v1/ingest (the sources), drawn as SVG line charts
// and tables by this file alone.
"use strict";
(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 150, PAD = 8;
  const $ = (id) => document.getElementById(id);

  // With api-read = "token" the admin token comes in the fragment (#token=...), which no
  // request line carries; it is kept for this tab only and removed from the address bar.
  let token = null;
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    try { sessionStorage.setItem("shardcast-token", token); } catch (e) { /* private mode */ }
    history.replaceState(null, "", location.pathname);
  } else {
    try { token = sessionStorage.getItem("shardcast-token"); } catch (e) { token = null; }
  }

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

  const num = (v, d) => (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toFixed(d);
  function clock(secs) {
    if (!(secs >= 0)) return "–";
    const t = Math.floor(secs), h = Math.floor(t / 3600), mm = Math.floor(t / 60) % 60, s = t % 60;
    const two = (x) => String(x).padStart(2, "0");
    return h > 0 ? h + ":" + two(mm) + ":" + two(s) : mm + ":" + two(s);
  }
  function span(secs) {
    if (!(secs >= 0)) return "–";
    const t = Math.floor(secs);
    if (t < 60) return t + " s";
    if (t < 3600) return Math.floor(t / 60) + " min " + (t % 60) + " s";
    return Math.floor(t / 3600) + " h " + (Math.floor(t / 60) % 60) + " min";
  }
  function bitrate(bps) {
    if (!(bps >= 0)) return "–";
    return bps >= 1e6 ? (bps / 1e6).toFixed(2) + " Mbit/s" : Math.round(bps / 1e3) + " kbit/s";
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // ---- clipboard ----
  function copy(text, btn) {
    const done = () => {
      btn.textContent = "copied";
      btn.classList.add("done");
      setTimeout(() => { btn.textContent = "copy"; btn.classList.remove("done"); }, 1200);
    };
    const fallback = () => {
      const ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      document.body.appendChild(ta);
      ta.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
      document.body.removeChild(ta);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }
  function copyLine(text, cls) {
    const line = el("div", "copyline" + (cls ? " " + cls : ""));
    const code = el("code", null, text);
    code.title = text;
    const btn = el("button", "copy", "copy");
    btn.type = "button";
    btn.addEventListener("click", () => copy(text, btn));
    line.append(code, btn);
    return line;
  }

  // ---- charts ----
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const k of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (k * p >= v) return k * p;
    return 10 * p;
  }
  function drawChart(name, history, key, unit, decimals) {
    const box = $("chart-" + name);
    while (box.firstChild) box.removeChild(box.firstChild);
    for (let i = 0; i <= 4; i++) {
      const y = PAD + (H - 2 * PAD) * i / 4;
      box.appendChild(svg("line", { class: "grid", x1: 0, x2: W, y1: y, y2: y, "vector-effect": "non-scaling-stroke" }));
    }
    const fig = box.closest("figure");
    if (!history.length) return;
    const now = history[history.length - 1].unix_ms;
    // The window grows with the history from one minute to the hub's ten.
    const win = Math.min(600e3, Math.max(60e3, now - history[0].unix_ms));
    const t0 = now - win;
    const shown = history.filter((p) => p.unix_ms >= t0);
    const max = niceMax(Math.max.apply(null, shown.map((p) => p[key] || 0)));
    const pts = shown.map((p) => [
      ((p.unix_ms - t0) / win) * W,
      H - PAD - (Math.max(0, p[key] || 0) / max) * (H - 2 * PAD),
    ]);
    const text = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    if (pts.length > 1) {
      const base = (H - PAD).toFixed(1);
      const area = text + " " + pts[pts.length - 1][0].toFixed(1) + "," + base + " " + pts[0][0].toFixed(1) + "," + base;
      box.appendChild(svg("polygon", { class: "area", points: area }));
    }
    box.appendChild(svg("polyline", { points: text, "vector-effect": "non-scaling-stroke" }));
    box.dataset.points = String(pts.length);
    $("scale-" + name).textContent = "now " + num(shown[shown.length - 1][key], decimals) + unit + " · top " + num(max, decimals > 0 ? Math.max(0, decimals - 1) : 0) + unit;
    fig.querySelector(".axis-start").textContent = "−" + Math.round(win / 60e3) + " min";
  }

  // ---- catalog ----
  let catalogRows = new Map();
  function renderCatalog(streams) {
    const body = $("catalog").tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    catalogRows = new Map();
    if (!streams.length) {
      const tr = el("tr", "empty");
      const td = el("td", null, "no streams in the media folder");
      td.colSpan = 7;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    const needsToken = streams.some((s) => s.token_required);
    $("catalog-note").textContent = needsToken
      ? "playing needs a signed URL: POST /api/v1/play (admin) returns one"
      : streams.length + (streams.length === 1 ? " stream" : " streams");
    for (const s of streams) {
      const tr = el("tr");
      tr.dataset.stream = s.name;
      tr.dataset.viewers = String(s.viewers);
      const name = el("td", "name", s.name + " ");
      if (s.live) name.appendChild(el("span", "badge live", "live"));
      const picture = [];
      if (s.width && s.height) picture.push(s.width + "×" + s.height + (s.frame_rate ? " @ " + num(s.frame_rate, s.frame_rate % 1 ? 2 : 0) + " fps" : ""));
      if (s.sample_rate_hz) picture.push(num(s.sample_rate_hz / 1000, 1) + " kHz" + (s.channels ? " ×" + s.channels : ""));
      const viewers = el("td", "num viewers", String(s.viewers));
      const play = el("td");
      const box = el("div", "play");
      box.appendChild(copyLine(s.url));
      box.appendChild(copyLine("ffplay -rtsp_transport tcp " + s.url, "cmd"));
      box.appendChild(copyLine("vlc " + s.url, "cmd"));
      play.appendChild(box);
      tr.append(
        name,
        el("td", null, s.live ? "live" : clock(s.duration_secs)),
        el("td", null, s.codecs.join(" · ")),
        el("td", null, picture.join(" · ") || "–"),
        el("td", "num", bitrate(s.bitrate_bps)),
        viewers,
        play,
      );
      body.appendChild(tr);
      catalogRows.set(s.name, { tr: tr, viewers: viewers });
    }
  }
  function updateCatalogViewers(stats) {
    const by = new Map(stats.streams.map((s) => [s.name, s.viewers]));
    for (const [name, row] of catalogRows) {
      const n = by.get(name) || 0;
      row.viewers.textContent = String(n);
      row.tr.dataset.viewers = String(n);
    }
  }

  // ---- sessions ----
  function renderSessions(list) {
    const body = $("sessions").tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    $("sessions-note").textContent = list.length ? list.length + (list.length === 1 ? " viewer" : " viewers") : "";
    if (!list.length) {
      const tr = el("tr", "empty");
      const td = el("td", null, "no one is watching");
      td.colSpan = 9;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    const now = Date.now();
    for (const s of list.slice(0, 500)) {
      const tr = el("tr");
      tr.dataset.session = s.id;
      const loss = el("td", "num" + (s.loss_pct >= 1 ? " bad" : ""), num(s.loss_pct, 2) + " %");
      tr.append(
        el("td", null, s.peer),
        el("td", null, s.stream),
        (() => { const td = el("td"); td.appendChild(el("span", "badge " + s.transport, s.transport.toUpperCase())); return td; })(),
        el("td", "num", String(s.shard)),
        el("td", "num", bitrate(s.bitrate_bps)),
        loss,
        el("td", "num", s.jitter_ms === null ? "–" : num(s.jitter_ms, 2) + " ms"),
        el("td", "num", s.rtt_ms === null ? "–" : num(s.rtt_ms, 2) + " ms"),
        el("td", "num", span(Math.max(0, now - s.since_unix_ms) / 1000)),
      );
      body.appendChild(tr);
    }
  }

  // ---- sources (published streams) ----
  function renderSources(list) {
    const body = $("sources").tBodies[0];
    while (body.firstChild) body.removeChild(body.firstChild);
    const online = list.filter((s) => s.state === "online").length;
    $("sources-note").textContent = list.length ? online + " of " + list.length + " online" : "";
    if (!list.length) {
      const tr = el("tr", "empty");
      const td = el("td", null, "no one is publishing");
      td.colSpan = 10;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const s of list) {
      const tr = el("tr");
      tr.dataset.source = s.name;
      tr.dataset.state = s.state;
      const state = el("td");
      state.appendChild(el("span", "badge " + (s.state === "online" ? "live" : "waiting"), s.state));
      tr.append(
        el("td", "name", s.name),
        el("td", null, s.protocol.toUpperCase()),
        state,
        el("td", "num", bitrate(s.bitrate_bps)),
        el("td", "num", num(s.frames_per_sec, 0)),
        el("td", "num" + (s.lost > 0 ? " bad" : ""), String(s.lost)),
        el("td", "num", s.protocol === "rtsp" ? num(s.jitter_ms, 2) + " ms" : "–"),
        el("td", "num", s.since_keyframe_secs === null ? "–" : num(s.since_keyframe_secs, 1) + " s ago"),
        el("td", "num viewers", String(s.viewers)),
        el("td", "num", span(s.since_secs)),
      );
      body.appendChild(tr);
    }
  }

  // ---- the loop ----
  function renderStats(st) {
    $("viewer-count").textContent = String(st.viewers);
    $("kpi-mbps").textContent = num(st.mbps, 2);
    $("kpi-pps").textContent = num(st.packets_per_sec, 0);
    $("kpi-loss").textContent = num(st.loss_pct, 2);
    $("kpi-jitter").textContent = st.jitter_ms.count ? num(st.jitter_ms.p95, 2) : "–";
    $("kpi-rtt").textContent = st.rtt_ms.count ? num(st.rtt_ms.p95, 2) : "–";
    $("kpi-lateness").textContent = st.lateness_ms.count ? num(st.lateness_ms.p99, 2) : "–";
    $("uptime").textContent = span(st.uptime_secs);
    $("shard-count").textContent = String(st.shards.length);
    $("rtcp-received").textContent = String(st.totals.rtcp_received);
    drawChart("viewers", st.history, "viewers", "", 0);
    drawChart("mbps", st.history, "mbps", "", 2);
    drawChart("loss", st.history, "loss_pct", " %", 2);
    drawChart("jitter", st.history, "jitter_p95_ms", " ms", 2);
    updateCatalogViewers(st);
  }
  function setState(state, text) {
    const pill = $("server-state");
    pill.dataset.state = state;
    pill.textContent = text;
  }

  async function tick() {
    try {
      const [st, sessions] = await Promise.all([api("/api/v1/stats"), api("/api/v1/sessions")]);
      renderStats(st);
      renderSessions(sessions.sessions);
      setState("live", "live");
    } catch (e) {
      setState("offline", "offline: " + e.message);
    }
    try {
      renderSources((await api("/api/v1/ingest")).ingest);
    } catch (e) {
      // A server without the ingest view: no sources to show.
      renderSources([]);
    }
  }
  async function loadCatalog() {
    try {
      renderCatalog((await api("/api/v1/streams")).streams);
    } catch (e) {
      setState("offline", "offline: " + e.message);
    }
  }

  loadCatalog().then(tick);
  setInterval(tick, 1000);
  setInterval(loadCatalog, 15000);
})();

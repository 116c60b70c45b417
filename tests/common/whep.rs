//! WHEP (draft-ietf-wish-whep) from the test's side: a viewer in headless Chromium that
//! offers, POSTs to shardcast's `/whep/{stream}` and plays the answer, with what the browser
//! reports read from its own `RTCPeerConnection.getStats()` (W3C webrtc-stats
//! `inbound-rtp`); plain HTTP requests for the status codes; the server's WebRTC sessions
//! as `GET /api/v1/sessions` lists them; and the independent aiortc player
//! (`tests/fixtures/whep_client.py`).
//!
//! The in-page code ([`HARNESS_JS`]) is ours, but every figure it returns is the browser's:
//! `framesDecoded`, `packetsLost`, `totalSamplesDuration` and the rest are copied from the
//! stats objects unchanged, and the first-frame time is when `requestVideoFrameCallback`
//! says the `<video>` presented a frame.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::browser::{Browser, Page};
use super::{http_request, run_with_timeout, HttpReply, Server};

/// `window.whep`, the viewer the tests drive: `start(path)` offers recvonly video + audio,
/// POSTs the offer and applies the answer; `stats()` reads `getStats()`; `del()` DELETEs the
/// session at the answer's `Location`; `close()` closes the peer connection.
pub const HARNESS_JS: &str = r#"
window.whep = {
  pc: null, video: null, tPost: null, tAnswer: null, tFirst: null, session: null,
  async start(path) {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    const v = document.createElement('video');
    v.muted = true; v.autoplay = true; v.playsInline = true;
    document.body.appendChild(v);
    this.video = v;
    const ms = new MediaStream();
    pc.ontrack = (e) => {
      ms.addTrack(e.track);
      if (v.srcObject !== ms) v.srcObject = ms;
      if (e.track.kind === 'video') {
        v.requestVideoFrameCallback(() => { if (this.tFirst === null) this.tFirst = performance.now(); });
      }
      v.play().catch(() => {});
    };
    await pc.setLocalDescription();
    // The server is ICE-lite: our checks reach its candidate, so the offer needs none of
    // ours; wait briefly for gathering anyway (a complete offer is what WHEP clients send).
    await new Promise((done) => {
      if (pc.iceGatheringState === 'complete') return done();
      const t = setTimeout(done, 2000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); done(); }
      });
    });
    this.tPost = performance.now();
    // A 503 with Retry-After (the sample's Opus rendition being made for its first WebRTC
    // viewer) is retried, as WHEP clients do.
    let r, body;
    for (let attempt = 0; ; attempt++) {
      r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                             body: pc.localDescription.sdp, cache: 'no-store'});
      body = await r.text();
      const wait = Number(r.headers.get('Retry-After'));
      if (r.status !== 503 || !(wait > 0) || attempt >= 20) break;
      await new Promise((res) => setTimeout(res, wait * 1000));
    }
    this.tAnswer = performance.now();
    const out = {status: r.status, location: r.headers.get('Location'),
                 contentType: r.headers.get('Content-Type'), body: body, setRemote: null};
    if (r.status !== 201) return out;
    if (out.location) this.session = new URL(out.location, new URL(path, location.href)).href;
    out.setRemote = await pc.setRemoteDescription({type: 'answer', sdp: body})
      .then(() => 'ok', (e) => String(e));
    return out;
  },
  async stats() {
    const pc = this.pc;
    const now = performance.now();
    const o = {
      connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
      firstFrameMs: this.tFirst === null ? null : this.tFirst - this.tPost,
      answerMs: this.tAnswer === null ? null : this.tAnswer - this.tPost,
      watchedSecs: this.tFirst === null ? 0 : (now - this.tFirst) / 1000,
      videoTime: this.video ? this.video.currentTime : null,
      video: null, audio: null, codecs: {}, transport: null,
    };
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp' && (s.kind === 'video' || s.kind === 'audio')) o[s.kind] = Object.assign({}, s);
      else if (s.type === 'codec') o.codecs[s.id] = s.mimeType + (s.sdpFmtpLine ? ' ' + s.sdpFmtpLine : '');
      else if (s.type === 'transport') o.transport = {dtlsState: s.dtlsState, srtpCipher: s.srtpCipher,
        tlsVersion: s.tlsVersion, dtlsCipher: s.dtlsCipher, iceRole: s.iceRole};
    }
    for (const k of ['video', 'audio']) if (o[k]) o[k].codec = o.codecs[o[k].codecId] || null;
    return o;
  },
  async del() {
    const r = await fetch(this.session, {method: 'DELETE', cache: 'no-store'});
    return r.status;
  },
  close() { this.pc.close(); return true; },
};
true
"#;

/// What the browser got back for its POST.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Location` header (the session's URL), when there was one.
    pub location: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body: the SDP answer on 201, the reason otherwise.
    pub body: String,
    /// `setRemoteDescription`'s verdict on the answer (`"ok"` or Chromium's error), after a 201.
    pub set_remote: Option<String>,
}

/// A Chromium tab on the server's own origin (`http://HTTP/`, so `fetch` to `/whep` is
/// same-origin) with [`HARNESS_JS`] loaded.
pub fn open_harness(server: &Server) -> Page {
    let mut page = Browser::open(&format!("http://{}/", server.http_addr()));
    page.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(20),
    );
    page.eval_json(HARNESS_JS);
    page
}

/// `window.whep.start(path)`: offer, POST, answer.
pub fn start(page: &mut Page, path: &str) -> Answer {
    let v = page.eval_json(&format!(
        "window.whep.start({})",
        serde_json::to_string(path).unwrap()
    ));
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    Answer {
        status: v["status"].as_u64().unwrap_or(0) as u16,
        location: s("location"),
        content_type: s("contentType"),
        body: s("body").unwrap_or_default(),
        set_remote: s("setRemote"),
    }
}

/// `start`, asserting the server answered `201` with an SDP answer and a `Location`, and
/// that Chromium accepted the answer.
pub fn start_playing(page: &mut Page, path: &str) -> Answer {
    let a = start(page, path);
    assert_eq!(
        a.status, 201,
        "POST {path}: the server answered {} ({:?}): {}",
        a.status, a.content_type, a.body
    );
    assert_eq!(
        a.content_type
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or("").trim()),
        Some("application/sdp"),
        "the answer's Content-Type"
    );
    let loc = a.location.as_deref().unwrap_or_default();
    assert!(
        loc.contains("/whep/session/"),
        "Location names the session (/whep/session/{{key}}): {:?}",
        a.location
    );
    assert_eq!(
        a.set_remote.as_deref(),
        Some("ok"),
        "Chromium refused the server's answer:\n{}",
        a.body
    );
    a
}

/// The browser's stats now (see [`HARNESS_JS`]'s `stats()`).
pub fn stats(page: &mut Page) -> Value {
    page.eval_json("window.whep.stats()")
}

/// Waits until the `<video>` presented its first frame; the milliseconds from the POST.
pub fn wait_first_frame(page: &mut Page, limit: Duration) -> f64 {
    let end = Instant::now() + limit;
    loop {
        let s = stats(page);
        if let Some(ms) = s["firstFrameMs"].as_f64() {
            return ms;
        }
        assert!(
            Instant::now() < end,
            "no video frame presented within {limit:?} of the POST; the browser reports: {s}\nconsole: {:#?}",
            page.console_errors()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A number from the stats (`kind` is `video` or `audio`), 0 when absent.
pub fn num(stats: &Value, kind: &str, key: &str) -> f64 {
    stats[kind][key].as_f64().unwrap_or(0.0)
}

/// Watches a playing session for `secs` after its first frame and checks the acceptance of
/// issue 17 on what Chromium reports: video `framesDecoded` ≥ 90 % of `fps` × seconds
/// watched, `packetsLost` 0 on both tracks, audio `totalSamplesDuration` and
/// `totalSamplesReceived` advancing with the wall clock from packets that keep arriving,
/// at most 10 % of those samples concealed (made up by NetEq for missing packets); and the jitter buffer's mean delay
/// (`jitterBufferDelay / jitterBufferEmittedCount`) ≤ 150 ms. Returns the last stats.
pub fn check_playback(page: &mut Page, what: &str, fps: f64, secs: f64) -> Value {
    let first_ms = wait_first_frame(page, Duration::from_secs(10));
    eprintln!("{what}: first frame {first_ms:.0} ms after the POST");
    std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
    let a = stats(page);
    let t_a = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs / 2.0));
    let b = stats(page);
    let dt = t_a.elapsed().as_secs_f64();
    eprintln!("{what}: after {:.1} s: {b}", b["watchedSecs"]);
    assert_eq!(b["connectionState"], "connected", "{what}: {b}");
    let watched = b["watchedSecs"].as_f64().unwrap_or(0.0);
    let decoded = num(&b, "video", "framesDecoded");
    assert!(
        decoded >= 0.9 * fps * watched,
        "{what}: Chromium decoded {decoded} frames in {watched:.2} s at {fps} fps (< 90 %); video inbound-rtp: {}",
        b["video"]
    );
    for kind in ["video", "audio"] {
        assert!(
            b[kind].is_object(),
            "{what}: no {kind} inbound-rtp in Chromium's stats: {b}"
        );
        assert_eq!(
            num(&b, kind, "packetsLost"),
            0.0,
            "{what}: Chromium counts {kind} packets lost on loopback: {}",
            b[kind]
        );
    }
    let played =
        num(&b, "audio", "totalSamplesDuration") - num(&a, "audio", "totalSamplesDuration");
    assert!(
        played >= 0.8 * dt,
        "{what}: audio totalSamplesDuration went from {} to {} in {dt:.2} s",
        a["audio"]["totalSamplesDuration"],
        b["audio"]["totalSamplesDuration"]
    );
    let clock = num(&b, "audio", "clockRate").max(48_000.0);
    let received =
        num(&b, "audio", "totalSamplesReceived") - num(&a, "audio", "totalSamplesReceived");
    assert!(
        received >= 0.8 * dt * clock,
        "{what}: {received} audio samples received in {dt:.2} s: {}",
        b["audio"]
    );
    let packets = num(&b, "audio", "packetsReceived") - num(&a, "audio", "packetsReceived");
    assert!(
        packets >= 5.0 * dt,
        "{what}: {packets} audio packets in {dt:.2} s: {}",
        b["audio"]
    );
    let concealed = num(&b, "audio", "concealedSamples") - num(&a, "audio", "concealedSamples");
    assert!(
        concealed <= 0.1 * received,
        "{what}: {concealed} of {received} audio samples concealed: {}",
        b["audio"]
    );
    let emitted = num(&b, "video", "jitterBufferEmittedCount");
    let jitter_ms = 1000.0 * num(&b, "video", "jitterBufferDelay") / emitted.max(1.0);
    eprintln!("{what}: video jitter buffer {jitter_ms:.0} ms per frame");
    assert!(
        jitter_ms <= 150.0,
        "{what}: Chromium's video jitter buffer holds {jitter_ms:.0} ms per frame (target ≤ 150 ms)"
    );
    b
}

/// The server's WebRTC sessions of `stream`, as `GET /api/v1/sessions` lists them.
pub fn webrtc_sessions(server: &Server, stream: &str) -> Vec<Value> {
    let all = server.http_get("/api/v1/sessions").json();
    all["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("sessions in /api/v1/sessions: {all}"))
        .iter()
        .filter(|s| s["transport"] == "webrtc" && s["stream"] == stream)
        .cloned()
        .collect()
}

/// Polls until the server lists `n` WebRTC sessions of `stream`; how long that took, or
/// `None` after `limit`.
pub fn sessions_become(
    server: &Server,
    stream: &str,
    n: usize,
    limit: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if webrtc_sessions(server, stream).len() == n {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP request to the WHEP endpoint with `content_type` (none when `None`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpReply {
    let headers: Vec<(&str, &str)> = content_type
        .map(|c| vec![("Content-Type", c)])
        .unwrap_or_default();
    http_request(addr, method, path, &headers, body)
}

/// A fresh offer from Chromium: `setup` adds transceivers to `pc`.
pub fn chromium_offer(page: &mut Page, setup: &str) -> String {
    let js = format!(
        "(async () => {{ const pc = new RTCPeerConnection(); window.offerPc = pc; {setup}
           await pc.setLocalDescription(); return pc.localDescription.sdp; }})()"
    );
    page.eval_json(&js)
        .as_str()
        .unwrap_or_else(|| panic!("an SDP offer from Chromium"))
        .to_owned()
}

/// Counts from `tests/fixtures/whep_client.py` (aiortc).
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// The script's JSON line.
    pub json: Value,
    /// Its stderr, for failure messages.
    pub stderr: String,
}

/// The Python with aiortc: `$WHEP_PYTHON`, else Debian's `/usr/bin/python3` (with the
/// `python3-aiortc` package `scripts/install-test-deps.sh` installs).
pub fn python() -> String {
    std::env::var("WHEP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned())
}

/// Runs the aiortc player against `url` for `secs` seconds of media.
pub fn run_aiortc(url: &str, secs: f64) -> ClientReport {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whep_client.py");
    let (ok, out, err) = run_with_timeout(
        Command::new(python())
            .arg(&script)
            .arg(url)
            .args(["--seconds", &secs.to_string()]),
        Duration::from_secs_f64(secs + 30.0),
    );
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    let json: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "whep_client.py ({}) printed no JSON ({e}; exit ok: {ok}):\nstdout: {out}\nstderr: {err}",
            python()
        )
    });
    ClientReport { json, stderr: err }
}

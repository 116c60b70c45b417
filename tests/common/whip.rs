//! WHIP (RFC 9725) from the test's side: a publisher in headless Chromium that draws an
//! animated canvas (`canvas.captureStream(25)`: a moving box and a frame counter) and a Web
//! Audio oscillator, sends both with `addTransceiver(track, {direction: 'sendonly'})`,
//! prefers H.264 (packetization-mode 1, RFC 6184 §6.2) with `setCodecPreferences`, POSTs its
//! offer to shardcast's `/whip/{path}` and applies the answer; what it sends is read from its
//! own `RTCPeerConnection.getStats()` (W3C webrtc-stats `outbound-rtp`). Plus SDP editing for
//! the 4xx cases (a real Chromium offer with codecs taken out), the server's ingest view, a
//! video-only retina player (retina 0.4 has no Opus depacketizer), and an ffmpeg decode of a
//! few seconds of a live stream.
//!
//! The in-page code ([`PUBLISHER_JS`]) is ours; every figure it returns is the browser's
//! (`framesEncoded`, `packetsSent`, `encoderImplementation`, the codec's `mimeType` are copied
//! from the stats objects unchanged).

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::CodecItem;
use serde_json::Value;

use super::browser::{Browser, Page};
use super::whep::Answer;
use super::{run_with_timeout, Server};

/// A real Chromium 148 WHIP offer (sendonly audio then video, every codec Chromium offers;
/// recorded by `scripts/capture-webrtc-offers.sh`), for requests that need no browser.
pub const CHROMIUM_WHIP_OFFER: &str =
    include_str!("../fixtures/webrtc/chromium-148_whip_offer.sdp");

/// `window.whip`, the publisher the tests drive: `start(path, key)` makes the canvas and
/// oscillator tracks, offers them sendonly with H.264 preferred, POSTs the offer (with
/// `Authorization: Bearer KEY` when `key` is given, RFC 9725 §4.5) and applies the answer;
/// `offer()` only makes the offer (no POST); `stats()` reads `getStats()`; `del()` DELETEs the
/// session at the answer's `Location`; `close()` closes the peer connection.
pub const PUBLISHER_JS: &str = r#"
window.whip = {
  pc: null, session: null, frame: 0, timer: null, audio: null, codecPrefs: null,
  tracks() {
    const c = document.createElement('canvas');
    c.width = 320; c.height = 240;
    document.body.appendChild(c);
    const g = c.getContext('2d');
    // A new picture every 20 ms: captureStream(25) then always has a fresh frame to take.
    this.timer = setInterval(() => {
      const n = this.frame++;
      g.fillStyle = '#203040'; g.fillRect(0, 0, 320, 240);
      g.fillStyle = '#f0c020'; g.fillRect((n * 4) % 280, 100 + 60 * Math.sin(n / 10), 40, 40);
      g.fillStyle = '#ffffff'; g.font = '24px monospace'; g.fillText('frame ' + n, 10, 30);
    }, 20);
    const video = c.captureStream(25).getVideoTracks()[0];
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    osc.frequency.value = 440;
    const dst = ac.createMediaStreamDestination();
    osc.connect(dst); osc.start();
    this.audio = ac;
    return {video, audio: dst.stream.getAudioTracks()[0], stream: new MediaStream([video, dst.stream.getAudioTracks()[0]])};
  },
  async offer() {
    const t = this.tracks();
    const pc = new RTCPeerConnection();
    this.pc = pc;
    const vt = pc.addTransceiver(t.video, {direction: 'sendonly', streams: [t.stream]});
    pc.addTransceiver(t.audio, {direction: 'sendonly', streams: [t.stream]});
    // H.264 with packetization-mode=1 only, Constrained Baseline 42e01f first.
    const caps = (RTCRtpSender.getCapabilities('video') || {codecs: []}).codecs;
    const h264 = caps.filter((c) => c.mimeType.toLowerCase() === 'video/h264'
      && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    h264.sort((a, b) => (/42e01f/.test(b.sdpFmtpLine) ? 1 : 0) - (/42e01f/.test(a.sdpFmtpLine) ? 1 : 0));
    this.codecPrefs = h264.map((c) => c.sdpFmtpLine);
    if (h264.length) vt.setCodecPreferences(h264);
    const p = vt.sender.getParameters();
    p.degradationPreference = 'maintain-framerate';
    await vt.sender.setParameters(p).catch(() => {});
    await pc.setLocalDescription();
    // The server is ICE-lite: our checks reach its candidate, so the offer needs none of
    // ours; wait briefly for gathering anyway (a complete offer is what WHIP clients send).
    await new Promise((done) => {
      if (pc.iceGatheringState === 'complete') return done();
      const timer = setTimeout(done, 2000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); done(); }
      });
    });
    return pc.localDescription.sdp;
  },
  async start(path, key) {
    const sdp = await this.offer();
    const headers = {'Content-Type': 'application/sdp'};
    if (key) headers['Authorization'] = 'Bearer ' + key;
    const r = await fetch(path, {method: 'POST', headers, body: sdp, cache: 'no-store'});
    const body = await r.text();
    const out = {status: r.status, location: r.headers.get('Location'),
                 contentType: r.headers.get('Content-Type'), body, setRemote: null, offer: sdp,
                 codecPrefs: this.codecPrefs};
    if (r.status !== 201) return out;
    if (out.location) this.session = new URL(out.location, new URL(path, location.href)).href;
    out.setRemote = await this.pc.setRemoteDescription({type: 'answer', sdp: body})
      .then(() => 'ok', (e) => String(e));
    return out;
  },
  async stats() {
    const pc = this.pc;
    const o = {connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
               canvasFrames: this.frame, audioState: this.audio ? this.audio.state : null,
               video: null, audio: null, codecs: {}, transport: null};
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type === 'outbound-rtp' && (s.kind === 'video' || s.kind === 'audio')) o[s.kind] = Object.assign({}, s);
      else if (s.type === 'codec') o.codecs[s.id] = s.mimeType + (s.sdpFmtpLine ? ' ' + s.sdpFmtpLine : '');
      else if (s.type === 'transport') o.transport = {dtlsState: s.dtlsState, srtpCipher: s.srtpCipher,
        iceRole: s.iceRole};
    }
    for (const k of ['video', 'audio']) if (o[k]) o[k].codec = o.codecs[o[k].codecId] || null;
    return o;
  },
  // The offer answered by a second peer connection in this page instead of a server: proves
  // the page's encoder and stats without shardcast.
  async loopback() {
    const sdp = await this.offer();
    const rx = new RTCPeerConnection();
    this.rx = rx;
    rx.ontrack = () => {};
    await rx.setRemoteDescription({type: 'offer', sdp});
    await rx.setLocalDescription();
    await new Promise((done) => {
      if (rx.iceGatheringState === 'complete') return done();
      const timer = setTimeout(done, 2000);
      rx.addEventListener('icegatheringstatechange', () => {
        if (rx.iceGatheringState === 'complete') { clearTimeout(timer); done(); }
      });
    });
    await this.pc.setRemoteDescription(rx.localDescription);
    return {offer: sdp, answer: rx.localDescription.sdp};
  },
  async del() {
    const r = await fetch(this.session, {method: 'DELETE', cache: 'no-store'});
    return r.status;
  },
  close() { clearInterval(this.timer); this.pc.close(); return true; },
};
true
"#;

/// A Chromium tab on the server's own origin (`http://HTTP/`, so `fetch` to `/whip` is
/// same-origin) with [`PUBLISHER_JS`] loaded.
pub fn open_publisher(server: &Server) -> Page {
    let mut page = Browser::open(&format!("http://{}/", server.http_addr()));
    page.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(20),
    );
    page.eval_json(PUBLISHER_JS);
    page
}

/// What the publisher's POST got, with the offer it sent.
#[derive(Debug, Clone)]
pub struct Published {
    /// The server's answer (status, `Location`, body, Chromium's verdict on it).
    pub answer: Answer,
    /// The offer Chromium POSTed.
    pub offer: String,
    /// The `sdpFmtpLine`s of the H.264 codecs given to `setCodecPreferences`, in order.
    pub codec_prefs: Value,
}

/// `window.whip.start(path, key)`: offer, POST, answer.
pub fn publish(page: &mut Page, path: &str, key: Option<&str>) -> Published {
    let v = page.eval_json(&format!(
        "window.whip.start({}, {})",
        serde_json::to_string(path).unwrap(),
        serde_json::to_string(&key).unwrap()
    ));
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    Published {
        answer: Answer {
            status: v["status"].as_u64().unwrap_or(0) as u16,
            location: s("location"),
            content_type: s("contentType"),
            body: s("body").unwrap_or_default(),
            set_remote: s("setRemote"),
        },
        offer: s("offer").unwrap_or_default(),
        codec_prefs: v["codecPrefs"].clone(),
    }
}

/// [`publish`] without a key, asserting the server answered `201 Created` with an SDP answer
/// and a `Location: /whip/session/…`, and that Chromium accepted the answer.
pub fn start_publishing(page: &mut Page, path: &str) -> Published {
    let p = publish(page, path, None);
    let a = &p.answer;
    assert_eq!(
        a.status, 201,
        "POST {path} (WHIP, RFC 9725 §4.2): expected 201 Created with an SDP answer; the server answered {} ({:?}): {}",
        a.status, a.content_type, a.body
    );
    assert_eq!(
        a.content_type
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or("").trim()),
        Some("application/sdp"),
        "the answer's Content-Type: expected application/sdp"
    );
    assert!(
        a.location
            .as_deref()
            .is_some_and(|l| l.contains("/whip/session/")),
        "Location: expected /whip/session/{{key}}, got {:?}",
        a.location
    );
    assert_eq!(
        a.set_remote.as_deref(),
        Some("ok"),
        "Chromium refused the server's answer (expected setRemoteDescription to succeed):\n{}",
        a.body
    );
    p
}

/// The publisher's stats now (see [`PUBLISHER_JS`]'s `stats()`).
pub fn publisher_stats(page: &mut Page) -> Value {
    page.eval_json("window.whip.stats()")
}

/// A number from the publisher's stats (`kind` is `video` or `audio`), 0 when absent.
pub fn out_num(stats: &Value, kind: &str, key: &str) -> f64 {
    stats[kind][key].as_f64().unwrap_or(0.0)
}

/// Waits until the publisher is connected and its video `framesEncoded` passes 10, then
/// checks over `secs` that it really sends H.264 and Opus: `framesEncoded` and both tracks'
/// `packetsSent` advance, the video codec is `video/H264` and the audio codec `audio/opus`.
/// Returns the last stats and the encoded frame rate measured.
pub fn check_sending(page: &mut Page, secs: f64) -> (Value, f64) {
    let end = Instant::now() + Duration::from_secs(15);
    let a = loop {
        let s = publisher_stats(page);
        if s["connectionState"] == "connected" && out_num(&s, "video", "framesEncoded") > 10.0 {
            break s;
        }
        assert!(
            Instant::now() < end,
            "the WHIP publisher: expected connectionState connected and video framesEncoded > 10 within 15 s of the answer; Chromium reports: {s}\nconsole: {:#?}",
            page.console_errors()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let t_a = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = publisher_stats(page);
    let dt = t_a.elapsed().as_secs_f64();
    let fps = (out_num(&b, "video", "framesEncoded") - out_num(&a, "video", "framesEncoded")) / dt;
    eprintln!("publisher: {fps:.1} frames encoded per second; {b}");
    for kind in ["video", "audio"] {
        let sent = out_num(&b, kind, "packetsSent") - out_num(&a, kind, "packetsSent");
        assert!(
            sent >= 10.0 * dt,
            "the WHIP publisher: expected {kind} outbound-rtp packetsSent to advance (≥ 10/s), got {} then {} over {dt:.1} s: {}",
            a[kind]["packetsSent"],
            b[kind]["packetsSent"],
            b[kind]
        );
    }
    assert!(
        fps >= 0.8 * 25.0,
        "the WHIP publisher: expected ≥ 20 frames encoded per second (canvas at 25 fps), got {fps:.1} (framesEncoded {} then {}): {}",
        a["video"]["framesEncoded"],
        b["video"]["framesEncoded"],
        b["video"]
    );
    let vcodec = b["video"]["codec"].as_str().unwrap_or_default();
    assert!(
        vcodec.starts_with("video/H264") && vcodec.contains("packetization-mode=1"),
        "the WHIP publisher: expected video codec video/H264 packetization-mode=1, got {vcodec:?} (encoder {})",
        b["video"]["encoderImplementation"]
    );
    let acodec = b["audio"]["codec"].as_str().unwrap_or_default();
    assert!(
        acodec.starts_with("audio/opus"),
        "the WHIP publisher: expected audio codec audio/opus, got {acodec:?}"
    );
    (b, fps)
}

/// Removes every `a=` line about payload types not in `keep` (`rtpmap`, `fmtp`, `rtcp-fb`)
/// from one m= section and rewrites its format list.
fn keep_formats(section: &[&str], keep: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in section.iter().enumerate() {
        if i == 0 {
            let mut words: Vec<&str> = line.split(' ').take(3).collect();
            words.extend(keep);
            out.push(words.join(" "));
            continue;
        }
        let pt = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|rest| rest.split(' ').next());
        if pt.is_some_and(|pt| !keep.contains(&pt)) {
            continue;
        }
        out.push((*line).to_owned());
    }
    out
}

/// Edits a Chromium offer: each m= section of `media` (`audio`/`video`) keeps only the
/// payload types `keep` gives it (a section whose list is empty is dropped, with its mid
/// left out of `a=group:BUNDLE`).
pub fn edit_offer(offer: &str, keep: &dyn Fn(&str) -> Option<Vec<String>>) -> String {
    let lines: Vec<&str> = offer.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m="))
        .map(|(i, _)| i)
        .collect();
    let session = &lines[..starts.first().copied().unwrap_or(lines.len())];
    let mut sections = Vec::new();
    let mut dropped_mids = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(lines.len());
        let sec = &lines[s..e];
        let media = sec[0]
            .strip_prefix("m=")
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        let mid = sec
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("");
        match keep(media) {
            Some(pts) if !pts.is_empty() => {
                let pts: Vec<&str> = pts.iter().map(String::as_str).collect();
                sections.push(keep_formats(sec, &pts));
            }
            _ => dropped_mids.push(mid.to_owned()),
        }
    }
    let mut out = Vec::new();
    for l in session {
        if let Some(mids) = l.strip_prefix("a=group:BUNDLE ") {
            let left: Vec<&str> = mids
                .split(' ')
                .filter(|m| !dropped_mids.iter().any(|d| d == m))
                .collect();
            out.push(format!("a=group:BUNDLE {}", left.join(" ")));
        } else {
            out.push((*l).to_owned());
        }
    }
    for s in sections {
        out.extend(s);
    }
    out.join("\r\n") + "\r\n"
}

/// The payload types of `codec` (`VP8`, `H264`, `opus`) in an offer's m= section for `media`,
/// with their RTX payload types (`apt=`).
pub fn payload_types(offer: &str, media: &str, codec: &str) -> Vec<String> {
    let mut in_media = false;
    let mut pts = Vec::new();
    for l in offer.lines() {
        if let Some(m) = l.strip_prefix("m=") {
            in_media = m.starts_with(media);
        } else if in_media {
            if let Some(rest) = l.strip_prefix("a=rtpmap:") {
                let (pt, enc) = rest.split_once(' ').unwrap_or((rest, ""));
                if enc
                    .to_lowercase()
                    .starts_with(&format!("{}/", codec.to_lowercase()))
                {
                    pts.push(pt.to_owned());
                }
            }
        }
    }
    let mut rtx = Vec::new();
    for l in offer.lines() {
        if let Some(rest) = l.strip_prefix("a=fmtp:") {
            let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some(apt) = params.strip_prefix("apt=") {
                if pts.iter().any(|p| p == apt) {
                    rtx.push(pt.to_owned());
                }
            }
        }
    }
    pts.extend(rtx);
    pts
}

/// The entry of `name` in `GET /api/v1/ingest`, if listed.
pub fn ingest_entry(server: &Server, name: &str) -> Option<Value> {
    let all = server.http_get("/api/v1/ingest").json();
    all["ingest"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /api/v1/ingest: expected an `ingest` array, got {all}"))
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// The entry of `name` in `GET /api/v1/streams`, if listed.
pub fn stream_entry(server: &Server, name: &str) -> Option<Value> {
    let all = server.http_get("/api/v1/streams").json();
    all["streams"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /api/v1/streams: expected a `streams` array, got {all}"))
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// Polls `probe` every 100 ms until `pred` holds; the last value, or a panic after `limit`
/// saying `what` was expected and what came last.
pub fn poll<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    pred: impl Fn(&T) -> bool,
) -> T {
    let end = Instant::now() + limit;
    loop {
        let v = probe();
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < end,
            "expected {what} within {limit:?}; last seen: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What ffmpeg decoded of a live stream in a bounded run.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveDecode {
    /// Video frames decoded.
    pub video: usize,
    /// Audio frames decoded.
    pub audio: usize,
}

/// ffmpeg (libavformat's RTSP client over `transport`) decodes `secs` seconds of the live
/// stream `url`, video and audio, at `-v warning`; panics if it fails, hangs, or prints
/// anything (any warning: missed packets, a decoder's concealment, a bad CSeq, …).
pub fn ffmpeg_decode_live(url: &str, transport: &str, secs: f64) -> LiveDecode {
    let t = format!("{secs}");
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-t",
            &t,
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs_f64(secs + 25.0),
    );
    assert!(
        ok,
        "ffmpeg decoding {url} over {transport}: expected a clean exit, it failed:\n{err}"
    );
    assert!(
        err.trim().is_empty(),
        "ffmpeg decoding {url} over {transport}: expected no warnings (-v warning), got:\n{err}"
    );
    let mut d = LiveDecode::default();
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        match line.split(',').next().map(str::trim) {
            Some("0") => d.video += 1,
            Some("1") => d.audio += 1,
            _ => {}
        }
    }
    d
}

/// The streams ffprobe finds in `url` (over TCP): `(codec_type, codec_name)` each.
pub fn ffprobe_streams(url: &str) -> Vec<(String, String)> {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_type,codec_name,sample_rate,channels,width,height",
            "-of",
            "json",
            url,
        ]),
        Duration::from_secs(30),
    );
    assert!(
        ok,
        "ffprobe {url}: expected a clean exit, it failed:\n{err}"
    );
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ffprobe {url}: expected JSON ({e}), got:\n{out}\n{err}"));
    eprintln!("ffprobe {url}: {v}");
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["codec_type"].as_str().unwrap_or("").to_owned(),
                        s["codec_name"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What retina received of the H.264 track of a live stream.
#[derive(Debug, Default)]
pub struct VideoPlay {
    /// The SDP's tracks: `(media, encoding name, clock rate, channels)`.
    pub tracks: Vec<(String, String, u32, Option<u16>)>,
    /// Each video frame: presentation time (90 kHz ticks since the first) and whether it is a
    /// random access point.
    pub frames: Vec<(i64, bool)>,
}

/// retina plays only the H.264 track of the live stream `url` over TCP for `secs` seconds
/// from PLAY (retina 0.4 has no Opus depacketizer, so the Opus track is described but not set
/// up); panics on any loss or error, or if no frame comes within 5 s.
pub async fn retina_play_video(url: &str, secs: f64) -> VideoPlay {
    let mut session = Session::describe(url::Url::parse(url).unwrap(), SessionOptions::default())
        .await
        .unwrap_or_else(|e| panic!("retina DESCRIBE {url}: expected 200 with an SDP, got: {e}"));
    let mut got = VideoPlay::default();
    for s in session.streams() {
        got.tracks.push((
            s.media().to_owned(),
            s.encoding_name().to_owned(),
            s.clock_rate_hz(),
            s.channels().map(|c| c.get()),
        ));
    }
    let video = got
        .tracks
        .iter()
        .position(|t| t.0 == "video" && t.1 == "h264")
        .unwrap_or_else(|| {
            panic!(
                "retina: expected an H.264 video track in {url}, the SDP has {:?}",
                got.tracks
            )
        });
    session
        .setup(
            video,
            SetupOptions::default().transport(Transport::Tcp(Default::default())),
        )
        .await
        .unwrap_or_else(|e| panic!("retina SETUP of the video track: {e}"));
    let playing = session
        .play(PlayOptions::default())
        .await
        .unwrap_or_else(|e| panic!("retina PLAY: {e}"));
    let mut demuxed = playing.demuxed().expect("retina demuxes the H.264 track");
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut first = None;
    while tokio::time::Instant::now() < end {
        let wait = if got.frames.is_empty() { 5 } else { 3 };
        match tokio::time::timeout(Duration::from_secs(wait), demuxed.next()).await {
            Err(_) => panic!(
                "retina: expected video frames, none came for {wait} s (after {} frames)",
                got.frames.len()
            ),
            Ok(Some(Ok(CodecItem::VideoFrame(f)))) => {
                assert_eq!(
                    f.loss(),
                    0,
                    "retina: expected no RTP loss, {} packets lost before video frame {}",
                    f.loss(),
                    got.frames.len()
                );
                let t = f.timestamp().elapsed();
                let t0 = *first.get_or_insert(t);
                got.frames.push((t - t0, f.is_random_access_point()));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!(
                "retina: expected a clean H.264 stream, error after {} frames: {e}",
                got.frames.len()
            ),
            Ok(None) => break,
        }
    }
    got
}

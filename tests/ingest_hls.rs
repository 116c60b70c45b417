//! Issue 16: a stream published over RTSP reaches browsers and other HLS players through the
//! shards' HLS port (`/hls/{stream}/index.m3u8`): a live fMP4 playlist cut at the stream's
//! keyframes, each finished segment copied once out of the live log into a bounded store
//! (docs/design/live-ingest.md, "HLS for ingested streams"). The publisher is ffmpeg's RTSP
//! muxer (and its FLV muxer over RTMP for the LL-HLS parts test); the players are
//! independent implementations started here: ffmpeg's and ffprobe's HLS demuxer, and hls.js
//! in headless Chromium (the viewer page), measured from the page.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::avsync::{assert_within_ebu_r37, hashed_packets, SourcePackets};
use common::browser::Browser;
use common::publishers::{
    ffmpeg_publish, ffmpeg_publish_looped, ffmpeg_publish_rtmp, media, wait_published,
};
use common::{http_request, run_with_timeout, HttpReply, Server};
use serde_json::Value;

/// The sample's video (`ffprobe tests/media/sample.mp4`): 640×360 at 25 fps, a keyframe
/// every 2 s.
const SAMPLE_FPS: f64 = 25.0;

fn get(addr: SocketAddr, path: &str) -> HttpReply {
    http_request(addr, "GET", path, &[], b"")
}

/// A server taking publishers on `live/*`, and ffmpeg publishing the sample three times in
/// a row (30 s) to `live/NAME` over TCP; returns once the stream's HLS playlist answers 200
/// (its first segment is finished).
fn publish(name: &str) -> (Server, std::process::Child, SocketAddr) {
    publish_with_timeout(name, "1")
}

/// [`publish`] with `--publisher-timeout` `timeout_secs`.
fn publish_with_timeout(
    name: &str,
    timeout_secs: &str,
) -> (Server, std::process::Child, SocketAddr) {
    let server =
        Server::start_logged(&["--publish", "live/*", "--publisher-timeout", timeout_secs]);
    let hls = server.hls.expect("the HLS port is on by default");
    let path = format!("live/{name}");
    let publisher = ffmpeg_publish_looped(&media("sample.mp4"), &server.url(&path), "tcp", 2);
    wait_published(&server, &path, Duration::from_secs(10));
    // The multivariant playlist is there as soon as the stream is (its codecs from the
    // publisher's SDP: the sample's SPS, Main profile 4d, constraint_set1 40, level 3.0 1e),
    // the media playlist once the first segment is finished.
    let r = get(hls, &format!("/hls/{path}/index.m3u8"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("CODECS=\"avc1.4d401e,mp4a.40.2\""),
        "{}",
        r.text()
    );
    let start = Instant::now();
    loop {
        let r = get(hls, &format!("/hls/{path}/media.m3u8"));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 404, "before the first segment: {}", r.text());
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no finished segment 10 s after publishing: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (server, publisher, hls)
}

/// Segment URIs of a media playlist (without their query), in order.
fn segments(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('?').next().unwrap_or(l).to_owned())
        .collect()
}

/// (d) Nothing is invented: an unknown stream, a publishable path nobody publishes, and a
/// segment of either, are 404.
#[test]
fn unknown_and_unpublished_streams_are_404() {
    let server = Server::start(&["--publish", "live/*"]);
    let hls = server.hls.unwrap();
    for path in [
        "/hls/nosuch/index.m3u8",
        "/hls/live/nobody/index.m3u8",
        "/hls/live/nobody/media.m3u8",
        "/hls/live/nobody/init.mp4",
        "/hls/live/nobody/seg0.m4s",
    ] {
        let r = get(hls, path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
}

/// (a) ffprobe finds the published tracks in the HLS stream (H.264 at the sample's size,
/// AAC), and ffmpeg's HLS demuxer decodes a few segments of it without one error line.
#[test]
fn ffmpeg_decodes_an_rtsp_published_stream_over_hls() {
    let (_server, mut publisher, hls) = publish("ff");
    let url = format!("http://{hls}/hls/live/ff/index.m3u8");
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "compact=p=0:nk=1",
            &url,
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "ffprobe failed: {err}");
    // ffprobe lists the streams once under the program and once alone.
    let mut streams: Vec<&str> = out
        .lines()
        .map(|l| l.trim().trim_end_matches('|'))
        .filter(|l| !l.is_empty())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    assert_eq!(streams, ["aac", "h264|640|360"], "ffprobe: {out}");
    // Six seconds of media: segments finished before and while ffmpeg reads.
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &url,
            "-t",
            "6",
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "ffmpeg reported errors: {err}");
    let video = out.lines().filter(|l| l.starts_with("0,")).count();
    let audio = out.lines().filter(|l| l.starts_with("1,")).count();
    eprintln!("decoded {video} video and {audio} audio frames");
    assert!(
        video as f64 >= 0.9 * SAMPLE_FPS * 6.0,
        "{video} video frames in 6 s"
    );
    // AAC at 48 kHz: 1024 samples a frame.
    assert!(
        audio as f64 >= 0.9 * 48_000.0 / 1024.0 * 6.0,
        "{audio} audio frames in 6 s"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// (c) For ten seconds while the publisher runs, every segment every playlist names is
/// there (200, an fMP4 fragment); the window moves on. Then the publisher ends: after its
/// timeout (1 s) the stream is gone and its playlist is 404.
#[test]
fn the_live_playlist_never_names_a_segment_that_is_gone() {
    let (_server, mut publisher, hls) = publish("window");
    let start = Instant::now();
    let mut fetched = 0;
    let mut first_seen = None;
    let mut last_seen = None;
    while start.elapsed() < Duration::from_secs(10) {
        let r = get(hls, "/hls/live/window/media.m3u8");
        assert_eq!(r.status, 200, "playlist: {}", r.text());
        let text = r.text();
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        let segs = segments(&text);
        assert!(!segs.is_empty(), "{text}");
        for seg in &segs {
            let s = get(hls, &format!("/hls/live/window/{seg}"));
            assert_eq!(s.status, 200, "{seg}, listed in\n{text}\nis {}", s.text());
            assert_eq!(s.body.get(4..8), Some(&b"moof"[..]), "{seg} is a fragment");
            fetched += 1;
        }
        first_seen.get_or_insert(segs[0].clone());
        last_seen = segs.last().cloned();
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("{fetched} segment fetches, window {first_seen:?} … {last_seen:?}");
    assert_ne!(first_seen, last_seen, "the window moved on");
    let status = publisher.wait().unwrap();
    assert!(status.success(), "the publisher failed: {status}");
    let start = Instant::now();
    loop {
        let r = get(hls, "/hls/live/window/media.m3u8");
        if r.status == 404 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still served 10 s after the publisher ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (b) The viewer page plays the published stream (its catalog entry's `hls_url`) with
/// hls.js in headless Chromium: frames decoded and presented, audio decoded, the playhead
/// advancing, no hls.js error — all read from the page (`window.shardcastPlayer.state()`),
/// nothing computed by our code. This viewer joins a running stream: the playlist holds
/// three segments and their parts.
#[test]
fn chromium_plays_an_rtsp_published_stream_with_hls_js() {
    let (server, mut publisher, hls) = publish("web");
    let joined = Instant::now();
    while segments(&get(hls, "/hls/live/web/media.m3u8").text()).len() < 3 {
        assert!(
            joined.elapsed() < Duration::from_secs(15),
            "no third segment 15 s after the first"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    chromium_plays_live_within_the_edge(&server, hls, "web");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// (b) A viewer joining as soon as the playlist answers, with only the first segment
/// listed: hls.js starts at that segment's independent part, more than its lookup tolerance
/// behind the playlist's end, and must still play across the segment's short last part
/// (the sample's 2 s GOP at 25 fps is six 320 ms parts and one of 80 ms) without a stall.
/// docs/design/live-ingest.md "Joining early".
#[test]
fn chromium_joining_at_the_first_segment_plays_across_its_short_last_part() {
    let (server, mut publisher, hls) = publish("early");
    let playlist = get(hls, "/hls/live/early/media.m3u8").text();
    assert!(
        playlist.contains("#EXT-X-PART:DURATION=0.080,URI=\"part0.6.m4s\""),
        "the first segment ends with a short part: {playlist}"
    );
    chromium_plays_live_within_the_edge(&server, hls, "early");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Opens the viewer page on `live/NAME` with hls.js and checks, from the page, five seconds
/// of playback: frames, audio, no hls.js error (a stall is one), within 2.5 s of the edge.
fn chromium_plays_live_within_the_edge(server: &Server, hls: SocketAddr, name: &str) {
    // The deep link the page documents: it takes the stream's `hls_url` from the catalog.
    let mut page = Browser::open(&format!(
        "http://{}/#play=live/{name}&engine=hls.js",
        server.http_addr()
    ));
    const STATE: &str = "window.shardcastPlayer.state()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = loop {
        // The page's player object appears once its script ran.
        let s = page.try_eval_json(STATE).unwrap_or(Value::Null);
        if s["currentTime"].as_f64().is_some_and(|t| t > 0.0) && s["paused"] == false {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "not playing after 30 s: {s}\nconsole: {:?}",
            page.console_errors()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("started: {start}");
    assert_eq!(start["engine"], "hls.js");
    assert_eq!(
        start["url"],
        format!("http://{hls}/hls/live/{name}/index.m3u8"),
        "the catalog's hls_url"
    );
    let t0 = start["currentTime"].as_f64().unwrap();
    let s = page.wait_until(
        &format!(
            "(() => {{ const s = {STATE}; return s.currentTime >= {} ? s : null; }})()",
            t0 + 5.0
        ),
        Duration::from_secs(20),
    );
    eprintln!("after 5 s: {s}");
    let num = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert!(num("totalVideoFrames") >= 0.9 * SAMPLE_FPS * 5.0, "{s}");
    assert!(num("audioDecodedBytes") > 0.0, "{s}");
    assert_eq!(s["live"], Value::Bool(true), "{s}");
    assert_eq!(s["hlsErrors"], Value::Array(vec![]), "no hls.js errors");
    assert_eq!(
        s["buffered"].as_array().map(Vec::len),
        Some(1),
        "one buffered range, no hole: {s}"
    );
    // LL-HLS (the page's hls.js runs in low-latency mode for live streams): hls.js's own
    // distance behind the live edge, the channels' bound (issue 15).
    let latency = num("latency");
    eprintln!("hls.js latency behind the live edge: {latency:.2} s");
    assert!(
        latency > 0.0 && latency <= 2.5,
        "{latency:.2} s behind the live edge (target ≤ 2.5 s): {s}"
    );
    assert!(
        page.console_errors().is_empty(),
        "console errors: {:#?}",
        page.console_errors()
    );
}

/// The media sequence number of a playlist's last segment and its `EXT-X-MEDIA-SEQUENCE`.
fn edge(playlist: &str) -> (u64, u64) {
    let first = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no media sequence in {playlist}"));
    let last = segments(playlist)
        .last()
        .and_then(|s| s.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok())
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    (first, last)
}

/// A publisher that vanishes (killed: no TEARDOWN) and returns within the publisher
/// timeout: as for RTSP viewers, the HLS stream waits and goes on. The playlist is never
/// 404 and never ends meanwhile, its numbering only grows, and segments cut after the
/// return are served.
#[test]
fn a_returning_publisher_continues_the_same_playlist() {
    let (server, mut first, hls) = publish_with_timeout("again", "5");
    let path = "/hls/live/again/media.m3u8";
    std::thread::sleep(Duration::from_secs(2));
    let (_, before) = edge(&get(hls, path).text());
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut second = ffmpeg_publish(&media("sample.mp4"), &server.url("live/again"), "tcp");
    let start = Instant::now();
    let mut last_edge = (0, before);
    while start.elapsed() < Duration::from_secs(9) {
        let r = get(hls, path);
        assert_eq!(
            r.status,
            200,
            "while the publisher is away or back: {}",
            r.text()
        );
        let text = r.text();
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        let e = edge(&text);
        assert!(
            e.0 >= last_edge.0 && e.1 >= last_edge.1,
            "{e:?} after {last_edge:?}"
        );
        last_edge = e;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        last_edge.1 >= before + 3,
        "segments after the return: {before} before, {} now",
        last_edge.1
    );
    let seg = get(hls, &format!("/hls/live/again/seg{}.m4s", last_edge.1));
    assert_eq!(seg.status, 200);
    assert_eq!(seg.body.get(4..8), Some(&b"moof"[..]));
    let _ = second.kill();
    let _ = second.wait();
}

/// One `EXT-X-PART` line: (msn, part index, duration, INDEPENDENT).
type PartLine = (u64, usize, f64, bool);

/// The value of attribute `name` in a tag line (`NAME=value` or `NAME="value"`).
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split(',').next()
    }
}

/// (msn, part) of a `part{msn}.{k}.m4s` URI (query dropped).
fn part_name(uri: &str) -> (u64, usize) {
    let stem = uri
        .split('?')
        .next()
        .and_then(|u| u.strip_prefix("part")?.strip_suffix(".m4s"))
        .unwrap_or_else(|| panic!("not a part URI: {uri}"));
    let (msn, k) = stem.split_once('.').unwrap();
    (msn.parse().unwrap(), k.parse().unwrap())
}

/// The LL-HLS view of a media playlist: part target, parts, preload hint.
fn ll_view(playlist: &str) -> (f64, Vec<PartLine>, Option<(u64, usize)>) {
    let mut target = None;
    let mut parts = Vec::new();
    let mut hint = None;
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-PART-INF:") {
            target = attribute(rest, "PART-TARGET").map(|v| v.parse::<f64>().unwrap());
        } else if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
            let (msn, k) = part_name(attribute(rest, "URI").unwrap());
            let d: f64 = attribute(rest, "DURATION").unwrap().parse().unwrap();
            parts.push((msn, k, d, attribute(rest, "INDEPENDENT") == Some("YES")));
        } else if let Some(rest) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attribute(rest, "TYPE"), Some("PART"), "{line}");
            hint = Some(part_name(attribute(rest, "URI").unwrap()));
        }
    }
    (
        target.unwrap_or_else(|| panic!("no EXT-X-PART-INF in\n{playlist}")),
        parts,
        hint,
    )
}

/// Every packet ffprobe reads from `bytes` (an init segment and fragments):
/// `stream_index,pts,dts,size,flags` lines.
/// `strict`: no line on stderr (a part that does not start with a keyframe makes ffprobe's
/// decoder complain about missing references, which is what INDEPENDENT=NO says).
fn ffprobe_packets(bytes: &[u8], tag: &str, strict: bool) -> Vec<String> {
    let path =
        std::env::temp_dir().join(format!("shardcast-llhls-{}-{tag}.mp4", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts,size,flags",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ]),
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_file(&path);
    assert!(ok, "ffprobe on {tag}: {err}");
    assert!(!strict || err.trim().is_empty(), "ffprobe on {tag}: {err}");
    out.lines().map(str::to_owned).collect()
}

/// LL-HLS for an RTSP publisher (RFC 8216bis): the media playlist has EXT-X-PART-INF,
/// EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD and PART-HOLD-BACK ≥ 3 part targets, parts no
/// longer than the part target, consecutive per segment and INDEPENDENT exactly where
/// ffprobe finds a keyframe first, and a preload hint naming the part after the last. ffprobe
/// reads the parts, and the parts of a segment hold the same packets (stream, pts, dts,
/// size, keyframe flag) as the segment itself.
#[test]
fn ll_hls_parts_of_an_rtsp_publisher_add_up_to_their_segment() {
    let (_server, mut publisher, hls) = publish("parts");
    // A few seconds in, so the playlist holds segments with parts.
    std::thread::sleep(Duration::from_secs(5));
    parts_add_up_to_their_segment(hls, "live/parts");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// The same for an RTMP publisher (ffmpeg `-f flv`, OBS's stand-in): the frames come from
/// FLV tags (one AAC frame per tag) instead of RTP, through the same log and part cutter.
#[test]
fn ll_hls_parts_of_an_rtmp_publisher_add_up_to_their_segment() {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let hls = server.hls.expect("the HLS port is on by default");
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher =
        ffmpeg_publish_rtmp(&media("sample.mp4"), &format!("rtmp://{rtmp}/live/flv"));
    wait_published(&server, "live/flv", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(6));
    parts_add_up_to_their_segment(hls, "live/flv");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// A/V sync: in the HLS segments of an RTSP publisher (ffmpeg packs several AAC frames in
/// one RTP packet), every AAC frame sits where it sat against the video in the published
/// file, within one AAC frame. Read by ffprobe: each segment packet is found in the source
/// file by its bytes (MD5), so its source time is known.
#[test]
fn hls_of_an_rtsp_publisher_keeps_audio_with_video() {
    let (_server, mut publisher, hls) = publish("sync");
    std::thread::sleep(Duration::from_secs(5));
    audio_sits_with_video_as_in_the_source(hls, "live/sync");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// The same for an RTMP publisher, whose one-frame AAC tags the server regroups (held up
/// to `--ingest-audio-hold-ms`) before the log: the hold must not move the audio.
#[test]
fn hls_of_an_rtmp_publisher_keeps_audio_with_video() {
    let server = Server::start_logged(&["--publish", "live/*", "--publisher-timeout", "1"]);
    let hls = server.hls.expect("the HLS port is on by default");
    let rtmp = server.rtmp.expect("the server printed its RTMP address");
    let mut publisher =
        ffmpeg_publish_rtmp(&media("sample.mp4"), &format!("rtmp://{rtmp}/live/flvsync"));
    wait_published(&server, "live/flvsync", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(6));
    audio_sits_with_video_as_in_the_source(hls, "live/flvsync");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// For the last two finished segments of `path`'s HLS playlist: every audio packet's time
/// after the segment's first video frame equals the same distance in `sample.mp4` within
/// EBU R37's tolerance for a broadcaster's output (sound at most 40 ms early, 60 ms late).
/// What remains is the publisher's: ffmpeg sends an AAC group one frame (21.3 ms at 48 kHz)
/// after its last frame, and its first groups later still; aligning by arrival, the audio
/// was 87 ms (RTMP) and 130 ms (RTSP) late.
fn audio_sits_with_video_as_in_the_source(hls: SocketAddr, path: &str) {
    let source = SourcePackets::of(&media("sample.mp4"));
    let playlist = get(hls, &format!("/hls/{path}/media.m3u8")).text();
    let names = segments(&playlist);
    assert!(names.len() >= 2, "two finished segments: {playlist}");
    let init = get(hls, &format!("/hls/{path}/init.mp4"));
    assert_eq!(init.status, 200);
    for name in &names[names.len() - 2..] {
        let seg = get(hls, &format!("/hls/{path}/{name}"));
        assert_eq!(seg.status, 200, "{name}");
        let file = std::env::temp_dir().join(format!(
            "shardcast-avsync-{}-{}-{name}.mp4",
            std::process::id(),
            path.replace('/', "-")
        ));
        std::fs::write(&file, [init.body.as_slice(), seg.body.as_slice()].concat()).unwrap();
        let packets = hashed_packets(file.to_str().unwrap());
        let _ = std::fs::remove_file(&file);
        let offsets = source.audio_against_video(&packets, &format!("{path} {name}"));
        assert!(offsets.len() > 50, "{name}: {} AAC frames", offsets.len());
        assert_within_ebu_r37(&offsets, &format!("{path} {name}"));
    }
}

/// Checks the LL-HLS view of ingested stream `path` (a few seconds into its publish): the
/// tags, the parts and their keyframes, and that a complete segment's parts hold exactly the
/// segment's packets.
fn parts_add_up_to_their_segment(hls: SocketAddr, path: &str) {
    let text = get(hls, &format!("/hls/{path}/media.m3u8")).text();
    assert!(text.contains("#EXT-X-VERSION:9\n"), "{text}");
    let control = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SERVER-CONTROL:"))
        .unwrap_or_else(|| panic!("no EXT-X-SERVER-CONTROL in\n{text}"));
    assert_eq!(
        attribute(control, "CAN-BLOCK-RELOAD"),
        Some("YES"),
        "{text}"
    );
    let (part_target, parts, hint) = ll_view(&text);
    assert!(
        (0.2..=0.5).contains(&part_target),
        "PART-TARGET {part_target}"
    );
    let hold_back: f64 = attribute(control, "PART-HOLD-BACK")
        .unwrap()
        .parse()
        .unwrap();
    assert!(hold_back >= 3.0 * part_target - 1e-9, "{text}");
    assert!(!parts.is_empty(), "no EXT-X-PART in\n{text}");
    for &(msn, k, d, _) in &parts {
        assert!(d > 0.0 && d <= part_target, "part {msn}.{k}: {d} s\n{text}");
    }
    // Consecutive within each segment, from 0; the hint is the next part.
    for pair in parts.windows(2) {
        let (a, b) = ((pair[0].0, pair[0].1), (pair[1].0, pair[1].1));
        assert!(
            b == (a.0, a.1 + 1) || (b.0 == a.0 + 1 && b.1 == 0),
            "{a:?} then {b:?}\n{text}"
        );
    }
    let last = parts.last().unwrap();
    let hint = hint.unwrap_or_else(|| panic!("no preload hint\n{text}"));
    assert!(
        hint == (last.0, last.1 + 1) || hint == (last.0 + 1, 0),
        "hint {hint:?} after {last:?}"
    );
    let init = get(hls, &format!("/hls/{path}/init.mp4"));
    assert_eq!(init.status, 200);
    // A complete segment whose parts are all listed (listed from part 0).
    let listed: Vec<u64> = segments(&text)
        .iter()
        .filter_map(|s| s.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok())
        .collect();
    let msn = *listed
        .iter()
        .rev()
        .find(|m| parts.iter().any(|p| p.0 == **m && p.1 == 0))
        .unwrap_or_else(|| panic!("no complete segment with its parts in\n{text}"));
    let mut from_parts = init.body.clone();
    let mut keyframe_parts = 0;
    for &(_, k, _, independent) in parts.iter().filter(|p| p.0 == msn) {
        let r = get(hls, &format!("/hls/{path}/part{msn}.{k}.m4s"));
        assert_eq!(r.status, 200, "part {msn}.{k}: {}", r.text());
        assert_eq!(r.header("Content-Type"), Some("video/mp4"));
        assert_eq!(r.body.get(4..8), Some(&b"moof"[..]), "part {msn}.{k}");
        // INDEPENDENT=YES exactly when the part's first video packet is a keyframe.
        let mut alone = init.body.clone();
        alone.extend_from_slice(&r.body);
        let packets = ffprobe_packets(&alone, &format!("part{msn}.{k}"), independent);
        let first_video = packets
            .iter()
            .find(|p| p.starts_with("0,"))
            .unwrap_or_else(|| panic!("part {msn}.{k} has no video: {packets:?}"));
        assert_eq!(
            first_video.ends_with(",K__") || first_video.ends_with(",K_"),
            independent,
            "part {msn}.{k} INDEPENDENT={independent}, first video packet {first_video}"
        );
        keyframe_parts += usize::from(independent);
        from_parts.extend_from_slice(&r.body);
    }
    assert_eq!(
        keyframe_parts, 1,
        "one keyframe per 2 s segment of the sample"
    );
    let seg = get(hls, &format!("/hls/{path}/seg{msn}.m4s"));
    assert_eq!(seg.status, 200);
    let mut from_segment = init.body.clone();
    from_segment.extend_from_slice(&seg.body);
    // ffprobe lists packets in file order (parts interleave tracks per part): compare sets.
    let mut a = ffprobe_packets(&from_parts, "parts", true);
    let mut b = ffprobe_packets(&from_segment, "segment", true);
    a.sort_unstable();
    b.sort_unstable();
    eprintln!(
        "segment {msn}: {} packets, {} parts",
        b.len(),
        parts.iter().filter(|p| p.0 == msn).count()
    );
    assert!(b.len() >= 50, "a 2 s segment: {b:?}");
    assert_eq!(a, b, "segment {msn}: its parts and itself");
}

/// Blocking playlist reloads (RFC 8216bis §6.2.5.2) of an ingested stream: a reload for
/// the hinted part returns once that part exists (about a part duration, loosely) and lists
/// it; the hinted part itself, asked for before it exists, is held and then served; a
/// reload far ahead of the live edge is 400 at once.
#[test]
fn blocking_reloads_of_an_rtsp_publisher_wait_for_their_part() {
    let (_server, mut publisher, hls) = publish("block");
    std::thread::sleep(Duration::from_secs(3));
    let mut waits = Vec::new();
    for _ in 0..4 {
        let text = get(hls, "/hls/live/block/media.m3u8").text();
        let (msn, k) = ll_view(&text).2.expect("a preload hint");
        let asked = Instant::now();
        let r = get(
            hls,
            &format!("/hls/live/block/media.m3u8?_HLS_msn={msn}&_HLS_part={k}"),
        );
        let waited = asked.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        // The part, or (if it ended its segment) that segment, with part k listed.
        assert!(
            text.contains(&format!("part{msn}.{k}.m4s")),
            "the reload for {msn}.{k} lists it:\n{text}"
        );
        assert!(
            waited < Duration::from_millis(1500),
            "answered {waited:?} after the request: about a part at most"
        );
        waits.push(waited);
        // The next hinted part, fetched before it exists: held, then its bytes.
        let (msn, k) = ll_view(&text).2.expect("a preload hint");
        let asked = Instant::now();
        let part = get(hls, &format!("/hls/live/block/part{msn}.{k}.m4s"));
        let waited = asked.elapsed();
        assert_eq!(part.status, 200, "hinted part {msn}.{k}: {}", part.text());
        assert_eq!(part.body.get(4..8), Some(&b"moof"[..]));
        assert!(
            waited < Duration::from_millis(1500),
            "part after {waited:?}"
        );
        waits.push(waited);
    }
    eprintln!("blocking waits: {waits:?}");
    // At least one of them had to wait for the publisher (parts last ~320 ms).
    assert!(
        waits.iter().any(|w| *w >= Duration::from_millis(50)),
        "nothing was held: {waits:?}"
    );
    // Far ahead of the live edge: 400 at once (RFC 8216bis §6.2.5.2).
    let text = get(hls, "/hls/live/block/media.m3u8").text();
    let (msn, k) = ll_view(&text).2.unwrap();
    for query in [
        format!("_HLS_msn={}", msn + 100),
        format!("_HLS_msn={}&_HLS_part=0", msn + 3),
        format!("_HLS_msn={msn}&_HLS_part={}", k + 40),
    ] {
        let asked = Instant::now();
        let r = get(hls, &format!("/hls/live/block/media.m3u8?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(asked.elapsed() < Duration::from_millis(500), "{query}");
    }
    let _ = publisher.kill();
    let _ = publisher.wait();
}

/// Malformed blocking-reload queries (a value that is not a number, a huge one, a sign, a
/// part without msn, a repeated directive) are 400 with one log line each; a viewer on
/// another connection meanwhile gets its playlist and a blocking reload as usual.
#[test]
fn malformed_blocking_reload_queries_are_400_and_others_play_on() {
    let (server, mut publisher, hls) = publish("badq");
    let bad = [
        "_HLS_msn=abc",
        "_HLS_msn=99999999999999999999999",
        "_HLS_msn=-1",
        "_HLS_part=2",
        "_HLS_msn=1&_HLS_part=x",
        "_HLS_msn=1&_HLS_msn=2",
    ];
    let before = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("blocking reload"))
        .count();
    for q in bad {
        let r = get(hls, &format!("/hls/live/badq/media.m3u8?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains("blocking reload"), "{q}: {}", r.text());
    }
    // Another viewer: its playlist and a blocking reload for the next part.
    let text = get(hls, "/hls/live/badq/media.m3u8").text();
    let (msn, k) = ll_view(&text).2.expect("a preload hint");
    let r = get(
        hls,
        &format!("/hls/live/badq/media.m3u8?_HLS_msn={msn}&_HLS_part={k}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&format!("part{msn}.{k}.m4s")));
    std::thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("blocking reload"))
        .collect();
    assert_eq!(
        lines.len() - before,
        bad.len(),
        "one log line per bad request: {lines:#?}"
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
}

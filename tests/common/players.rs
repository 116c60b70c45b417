//! External players run as programs: ffmpeg (libavformat's RTSP client) decoding a stream to
//! per-frame CRCs, and GStreamer's `rtspsrc` decoding to a fake sink until EOS. Both fail the
//! test on any error output, on a hang (bounded by a timeout) or on a missing program.

use std::process::Command;
use std::time::Duration;

use super::{gst_play, run_with_timeout};

/// `ffprobe` (errors only) with `args`, its output as `key=value` lines; fails on a nonzero
/// exit, a hang or any error output.
pub fn ffprobe(args: &[&str]) -> String {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-hide_banner", "-v", "error"])
            .args(args),
        Duration::from_secs(30),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe {args:?}: {err}");
    out
}

/// What ffmpeg decoded: frames of one stream and the end time of the last one, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    /// Frames decoded.
    pub frames: usize,
    /// End of the last frame on ffmpeg's output timeline (starts at 0 at the first packet).
    pub end_secs: f64,
}

/// Decodes `url`'s video with ffmpeg over `transport` (`udp` or `tcp`) into per-frame CRCs;
/// panics if ffmpeg fails, hangs or prints any error.
pub fn ffmpeg_decode(url: &str, transport: &str) -> Decoded {
    ffmpeg_decode_stream(url, transport, "0:v")
}

/// As [`ffmpeg_decode`], for the stream `map` selects (`0:v`, `0:a`).
pub fn ffmpeg_decode_stream(url: &str, transport: &str, map: &str) -> Decoded {
    ffmpeg_decode_at(url, transport, map, "error")
}

/// As [`ffmpeg_decode`], but ffmpeg logs at `-v warning` and any warning fails too (a
/// depacketizer's "missed packets", "RTP: PT=… bad cseq", a decoder's concealment, …).
pub fn ffmpeg_decode_without_warnings(url: &str, transport: &str) -> Decoded {
    ffmpeg_decode_at(url, transport, "0:v", "warning")
}

/// As [`ffmpeg_decode_without_warnings`], for the stream `map` selects (`0:a` for audio).
pub fn ffmpeg_decode_stream_without_warnings(url: &str, transport: &str, map: &str) -> Decoded {
    ffmpeg_decode_at(url, transport, map, "warning")
}

fn ffmpeg_decode_at(url: &str, transport: &str, map: &str, level: &str) -> Decoded {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            level,
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-map",
            map,
            "-f",
            "framecrc",
            "-",
        ]),
        Duration::from_secs(40),
    );
    assert!(ok, "ffmpeg failed over {transport} ({url}): {err}");
    // libavformat prints one fixed notice whenever it opens its VP9 depacketizer
    // (rtpdec_vp9.c, at warning level, whatever the stream holds): not about our packets.
    let err: String = err
        .lines()
        .filter(|l| !l.ends_with("RTP/VP9 support is still experimental"))
        .collect();
    assert!(
        err.trim().is_empty(),
        "ffmpeg reported errors (-v {level}) over {transport} ({url}):\n{err}"
    );
    let mut tb = 0.0;
    let mut frames = 0;
    let mut end_secs = 0.0;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("#tb 0: ") {
            let (n, d) = rest.split_once('/').unwrap();
            tb = n.trim().parse::<f64>().unwrap() / d.trim().parse::<f64>().unwrap();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            frames += 1;
            let pts: f64 = f[2].parse().unwrap();
            let dur: f64 = f[3].parse().unwrap();
            end_secs = f64::max(end_secs, (pts + dur) * tb);
        }
    }
    Decoded { frames, end_secs }
}

/// Plays `url` with GStreamer (`rtspsrc protocols=…`, each track `queue ! decodebin !
/// fakesink`, through [`gst_play`]) until EOS; panics if it fails, hangs, never reaches EOS or reports an error before it.
///
/// One error is tolerated, and only after "Got EOS" was printed: rtspsrc 1.22 queues
/// PAUSE (PLAYING→PAUSED) and TEARDOWN (PAUSED→READY) as the pipeline is shut down after
/// EOS, and now and then sends the TEARDOWN first, closes its own connection, then fails to
/// send the PAUSE ("Could not send message. (Received end-of-file)" from
/// `gst_rtspsrc_pause`). Seen once in CI; the server's log showed the session's TEARDOWN
/// answered. The player stops at the first error it sees, so an error before EOS never
/// reaches the "Got EOS" line and still fails.
pub fn gstreamer_reaches_eos(url: &str, protocol: &str) {
    let protocols = format!("protocols={protocol}");
    let (ok, out, err) = gst_play(
        url,
        &[&protocols],
        &[
            ("video", "queue ! decodebin ! fakesink"),
            ("audio", "queue ! decodebin ! fakesink"),
        ],
        &[],
        false,
        Duration::from_secs(40),
    );
    assert!(
        out.contains("Got EOS from element"),
        "gst-launch over {protocol} ({url}) never reached EOS:\n{out}\n{err}"
    );
    assert!(
        ended_cleanly_after_eos(ok, &out, &err),
        "gst-launch over {protocol} ({url}) failed:\n{out}\n{err}"
    );
}

/// Whether a gst-launch run that printed "Got EOS" ended without an error, allowing only
/// rtspsrc's PAUSE-after-TEARDOWN race at shutdown (see [`gstreamer_reaches_eos`]; noted
/// on stderr when it happened).
pub fn ended_cleanly_after_eos(ok: bool, out: &str, err: &str) -> bool {
    if ok && !err.contains("ERROR") && !out.contains("ERROR") {
        return true;
    }
    let race = only_rtspsrc_shutdown_race(err) && !out.contains("ERROR");
    if race {
        eprintln!(
            "note: rtspsrc's PAUSE-after-TEARDOWN race at shutdown after EOS (tolerated):\n{err}"
        );
    }
    race
}

/// True if every error in gst-launch's `stderr` is rtspsrc failing to send its PAUSE on the
/// connection it already closed after TEARDOWN (see [`gstreamer_reaches_eos`]).
fn only_rtspsrc_shutdown_race(stderr: &str) -> bool {
    let errors: Vec<&str> = stderr.split("ERROR: ").skip(1).map(str::trim).collect();
    !errors.is_empty()
        && errors.iter().all(|e| {
            e.starts_with(
                "from element /GstPipeline:pipeline0/GstRTSPSrc:src: Could not write to resource.",
            ) && e.contains("Could not send message. (Received end-of-file)")
                && (e.contains("gst_rtspsrc_pause") || e.contains("gst_rtspsrc_try_send"))
        })
}

/// Plays `url` with GStreamer over `protocol` (timestamps from RTP alone, see below) until
/// EOS, decoding video into `checksumsink`
/// (one line per decoded frame) and audio into a fake sink; returns the video frames decoded.
/// Panics if it fails, hangs, does not report EOS, posts a bus warning or error, or any element
/// logs at WARN or ERROR level (`GST_DEBUG=*:2`). The one exception: rtspsrc logs "…
/// interrupted" at WARN when gst-launch shuts the pipeline down after EOS.
pub fn gstreamer_decoded_video_frames(url: &str, protocol: &str) -> usize {
    gstreamer_decoded_video_frames_with(url, protocol, &[])
}

/// As [`gstreamer_decoded_video_frames`], with more `rtspsrc` properties (`extra`, e.g.
/// `tls-validation-flags=0` for RTSPS with a self-signed certificate).
pub fn gstreamer_decoded_video_frames_with(url: &str, protocol: &str, extra: &[&str]) -> usize {
    // gst_play.py's default branches: `queue ! decodebin ! checksumsink` for video and
    // `queue ! decodebin ! fakesink` for audio, each linked as rtspsrc adds its pad.
    // Timestamps come from the RTP timestamps alone (rtpjitterbuffer mode none), not
    // corrected by arrival times: what is checked is the stream the server sends. In its
    // default `slave` mode the jitter buffer re-times packets by when they arrived; on a
    // machine busy with parallel tests a late frame then gets a PTS a fraction of a
    // millisecond off, and avdec_h264 warns "decreasing timestamp" when reordering B-frames
    // (seen in CI over TCP when the bundled sample had B-frames, never with the stream's own
    // timestamps).
    let protocols = format!("protocols={protocol}");
    let mut props = vec![protocols.as_str(), "buffer-mode=none"];
    props.extend_from_slice(extra);
    let (ok, out, err) = gst_play(
        url,
        &props,
        &[],
        &[("GST_DEBUG", "*:2"), ("GST_DEBUG_NO_COLOR", "1")],
        false,
        Duration::from_secs(40),
    );
    let context = || format!("GStreamer (gst_play.py) over {protocol} ({url}):\n{out}\n{err}");
    assert!(ok, "{} failed", context());
    assert!(out.contains("Got EOS"), "{} ended without EOS", context());
    let complaints: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.contains("WARNING") || l.contains("ERROR") || l.contains(" WARN "))
        .filter(|l| !(l.contains(" rtspsrc ") && l.trim_end().ends_with("interrupted")))
        // At EOS gst-launch stops the pipeline and rtspsrc cancels its own connection's
        // GCancellable to send TEARDOWN; a receiver report being written over the interleaved
        // connection at that instant fails with G_IO_ERROR_CANCELLED ("writev_bytes:
        // Operation was cancelled", seen once in CI over TCP 0.2 s after the 2 s clip ended). Only gst's own
        // cancellable yields that error — a server that closed or reset the connection gives
        // "Broken pipe"/"Connection reset", which still fail the test.
        .filter(|l| {
            !(l.contains("gstrtspconnection.c")
                && l.trim_end().ends_with("Operation was cancelled"))
        })
        // When it closes after EOS, GStreamer 1.22's rtspsrc sometimes disconnects signal
        // handlers of its own connection twice, and GLib warns "instance … has no handler
        // with id 'N'" (seen in CI over rtsps:// of the sample, and here over plain TCP with
        // an H.265 file while other tests ran, both times after every frame and EOS). It is
        // client bookkeeping at close, about no byte we sent: the caller still requires EOS
        // and every frame; any other GLib warning still fails.
        .filter(|l| !(l.contains("GLib-GObject-WARNING") && l.contains("has no handler with id")))
        // rtspsrc picks its UDP port pair by binding port 0 and then the next port; when
        // another process (a parallel test) holds that one, udpsrc logs the failed bind at
        // ERROR and rtspsrc takes another pair (seen here under load over UDP). Client port
        // allocation, before any byte of ours: the caller still requires EOS and every frame.
        .filter(|l| !(l.contains(" udpsrc ") && l.contains("Address already in use")))
        .collect();
    assert!(
        complaints.is_empty(),
        "gst warnings/errors over {protocol} ({url}):\n{}",
        complaints.join("\n")
    );
    // checksumsink prints `H:MM:SS.NNNNNNNNN <sha1>` per buffer.
    out.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            matches!((w.next(), w.next(), w.next()), (Some(t), Some(h), None)
                if t.contains(':') && h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count()
}

/// Whether a test may run with send backend `io`: panics if io_uring is missing, unless
/// `SHARDCAST_ALLOW_MISSING=uring` is set (then it prints a loud line and the caller skips).
pub fn backend_available(io: &str) -> bool {
    if io != "uring" {
        return true;
    }
    match shardcast::shard::send::probe_io_uring() {
        Ok(()) => true,
        Err(e) if std::env::var("SHARDCAST_ALLOW_MISSING").as_deref() == Ok("uring") => {
            eprintln!(
                "!!!!! SKIPPING io_uring backend test: {e} (SHARDCAST_ALLOW_MISSING=uring) !!!!!"
            );
            false
        }
        Err(e) => panic!("io_uring unavailable: {e}; set SHARDCAST_ALLOW_MISSING=uring to skip"),
    }
}

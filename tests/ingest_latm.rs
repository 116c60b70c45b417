//! Conformance of MP4A-LATM ingest (RFC 6416) against GStreamer, the independent sender:
//! `rtpmp4apay` streams the AAC track of `tests/media/sample.mp4` to a UDP socket of this
//! test; the caps it prints (`-v`) give the `config` StreamMuxConfig, from which the test
//! writes the SDP `rtspclientsink` would announce and parses it with `parse_announce`; the
//! packets are depacketized and every access unit is compared with the file's audio samples
//! as the MP4 reader indexes them: count, size, bytes, and time since the first. Fails if an
//! AU is lost, merged, split, altered or mistimed, or the config is misread.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardcast::ingest::depacketize::Depacketizer;
use shardcast::ingest::sdp::{parse_announce, PayloadFormat};
use shardcast::media::track::{Codec, TrackKind};
use shardcast::media::MediaFile;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/media/sample.mp4")
}

/// Runs `rtpmp4apay` (with `pay_args`) over the file's AAC track to a socket here; returns
/// the `config` of its caps and the RTP packets in arrival order.
fn gst_latm(file: &Path, pay_args: &[&str]) -> (String, Vec<Vec<u8>>) {
    let (rtp, _rtcp) = common::udp_pair();
    let port = rtp.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut packets = Vec::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                match rtp.recv(&mut buf) {
                    Ok(n) => packets.push(buf[..n].to_vec()),
                    Err(_) if done.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            packets
        })
    };
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-v", "filesrc"])
        .arg(format!("location={}", file.display()))
        .args(["!", "qtdemux", "!", "aacparse", "!", "rtpmp4apay"])
        .args(pay_args)
        // The receiver thread keeps up on loopback; sync=false sends as fast as it reads.
        .args(["!", "udpsink", "host=127.0.0.1", "sync=false"])
        .arg(format!("port={port}"));
    let (ok, out, err) = common::run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(ok, "gst-launch failed: {out}\n{err}");
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::SeqCst);
    let packets = receiver.join().unwrap();
    // "... GstRtpMP4APay:rtpmp4apay0.GstPad:src: caps = application/x-rtp, ...,
    // config=(string)40002320adca00, ..."
    let config = out
        .lines()
        .filter(|l| l.contains("rtpmp4apay0.GstPad:src: caps"))
        .find_map(|l| {
            let rest = l.split("config=(string)").nth(1)?;
            Some(rest.split([',', ' ']).next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no config in rtpmp4apay's caps: {out}"));
    (config, packets)
}

/// Depacketizes GStreamer's LATM packets and compares them with the file's audio samples;
/// returns how many packets had no marker (fragments).
fn check(pay_args: &[&str]) -> usize {
    let file = MediaFile::open(&sample(), "sample").unwrap();
    let track = file
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .expect("sample.mp4 has an audio track");
    let Codec::Aac(want_config) = &track.codec else {
        panic!("sample.mp4's audio is not AAC")
    };
    let (config, packets) = gst_latm(&sample(), pay_args);
    let sdp = format!(
        "v=0\r\no=- 0 1 IN IP4 127.0.0.1\r\ns=Session streamed with GStreamer\r\nt=0 0\r\n\
         m=audio 0 RTP/AVP 96\r\na=rtpmap:96 MP4A-LATM/{}\r\n\
         a=fmtp:96 cpresent=0;config={config}\r\na=control:stream=0\r\n",
        want_config.sample_rate_hz
    );
    let announced = parse_announce(&sdp).unwrap_or_else(|e| panic!("{e}: {sdp}"));
    let t = &announced.tracks[0];
    let Codec::Aac(got_config) = &t.codec else {
        panic!("not AAC: {sdp}")
    };
    // The AudioSpecificConfig taken out of the StreamMuxConfig is the file's esds one.
    assert_eq!(
        got_config.audio_specific_config, want_config.audio_specific_config,
        "config={config}"
    );
    assert_eq!(
        (got_config.channels, got_config.object_type),
        (want_config.channels, want_config.object_type)
    );
    let PayloadFormat::Latm(format) = t.format else {
        panic!("not LATM: {:?}", t.format)
    };
    assert_eq!((format.sub_frames, format.frame_length), (1, 1024));

    let mut d = Depacketizer::new(0, t);
    let mut got: Vec<(i64, Vec<u8>)> = Vec::new();
    for p in &packets {
        d.push(p, &mut |f| {
            assert!(f.sync && f.pts == f.dts);
            got.push((f.pts, f.data.to_vec()));
        });
    }
    let s = d.stats();
    assert_eq!(
        (s.lost, s.reordered, s.not_rtp, s.wrong_payload_type),
        (0, 0, 0, 0),
        "packets were lost on loopback or misread: {s:?}"
    );
    assert_eq!(s.dropped, [0; 5], "frames dropped: {s:?}");
    let bytes = file.bytes.as_slice();
    // qtdemux applies sample.mp4's edit list (`elst` from media time 1024, 10 s) its own way:
    // it keeps the encoder's priming frame and leaves out the last sample, which ends past
    // the edit. So the AUs must be a run of the file's samples in order, all but one.
    let sample_bytes = |k: usize| {
        let s = &track.samples[k];
        let start = usize::try_from(s.offset).unwrap();
        &bytes[start..start + s.len as usize]
    };
    let skip = (0..2)
        .find(|&k| {
            got.first()
                .is_some_and(|(_, d)| d.as_slice() == sample_bytes(k))
        })
        .expect("the first AU is one of the file's first two samples");
    assert_eq!(
        got.len(),
        track.samples.len() - 1,
        "AU count (the file has {} samples)",
        track.samples.len()
    );
    let samples = &track.samples[skip..skip + got.len()];
    let rate = i64::from(want_config.sample_rate_hz);
    let timescale = i64::from(track.timescale);
    // The priming frame is clipped to the edit's start by qtdemux, so GStreamer stamps it
    // with the next frame's time; every later AU must be where the file puts it.
    let timed_from = usize::from(skip == 0);
    let first = &samples[timed_from];
    for (i, ((pts, data), sample)) in got.iter().zip(samples).enumerate() {
        let want = sample_bytes(skip + i);
        assert_eq!(data.len(), want.len(), "size of AU {i}");
        assert!(data == want, "bytes of AU {i}");
        if i >= timed_from {
            let want_ticks = (track.pts_ticks(sample) - track.pts_ticks(first)) * rate / timescale;
            // GStreamer keeps times in nanoseconds: its RTP timestamps round to ±1 tick.
            let got_ticks = pts - got[timed_from].0;
            assert!(
                (got_ticks - want_ticks).abs() <= 1,
                "AU {i} at {got_ticks} ticks, the file says {want_ticks}"
            );
        }
    }
    packets
        .iter()
        .filter(|p| p.get(1).is_some_and(|b| b & 0x80 == 0))
        .count()
}

/// One AudioMuxElement per packet (rtpmp4apay's default MTU holds every AU of the file).
#[test]
fn gstreamer_latm_matches_the_files_audio_samples() {
    let fragments = check(&[]);
    assert_eq!(fragments, 0, "no AU needed fragmenting at the default MTU");
}

/// A 100-byte MTU: sample.mp4's AUs (130 to 300 bytes) are fragmented over packets
/// (RFC 6416 §6.1), the marker on the last.
#[test]
fn gstreamer_latm_fragmented_matches_the_files_audio_samples() {
    let fragments = check(&["mtu=100"]);
    assert!(fragments > 400, "{fragments} fragments");
}

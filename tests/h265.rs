//! H.265 from MP4 over RTSP (issue 18, docs/design/reach.md "Codecs"), against independent
//! implementations: ffprobe and ffmpeg (libavformat's RFC 7798 depacketizer, libavcodec's
//! HEVC decoder), GStreamer (`rtph265depay`, `avdec_h265`), retina's H.265 depacketizer, and a
//! packet-level check of the RTP the server sends. The media are made by ffmpeg with libx265
//! (`hvc1` and `hev1` sample entries, an AAC tone alongside) in the test setup.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use common::players::{ffmpeg_decode_without_warnings, ffprobe, gstreamer_decoded_video_frames};
use common::retina_play::{expected_of, play_all_of};
use common::{parse_rtp, run_with_timeout, RawRtsp, Server};
use retina::client::{TcpTransportOptions, Transport, UdpTransportOptions};
use shardcast::media::track::{Codec, H265Config, Track, TrackKind};
use shardcast::media::MediaFile;

/// Frames in each generated file: 3 s at 25 fps.
const FRAMES: usize = 75;
/// The sample entries the files use.
const TAGS: [&str; 2] = ["hvc1", "hev1"];

/// The media directory with `hvc1.mp4` and `hev1.mp4` (made once per test run, in Cargo's
/// temporary directory for integration tests; each file is written aside and renamed in).
fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("h265-media");
        std::fs::create_dir_all(&dir).unwrap();
        for tag in TAGS {
            make_clip(&dir.join(format!("{tag}.mp4")), tag);
        }
        dir
    })
}

/// 3 s of `testsrc2` in H.265 (x265, a keyframe every second, no B-frames) tagged `tag`, with
/// a 440 Hz AAC tone at 48 kHz. x265 makes the first keyframe an IDR and the later ones CRA
/// pictures (open GOP). The colour description is set (BT.709): without one the SPS says
/// "unspecified" and GStreamer warns "invalid colorimetry" decoding the file itself.
fn make_clip(path: &Path, tag: &str) {
    let part = path.with_extension(format!("{}.part.mp4", std::process::id()));
    let (ok, _out, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=48000",
            "-t",
            "3",
            "-c:v",
            "libx265",
            "-x265-params",
            "keyint=25:bframes=0:log-level=error",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-tag:v",
            tag,
            "-c:a",
            "aac",
            part.to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    assert!(
        ok && err.trim().is_empty(),
        "ffmpeg with libx265 made {tag} (needs ffmpeg built with libx265):\n{err}"
    );
    std::fs::rename(&part, path).unwrap();
}

fn open(tag: &str) -> MediaFile {
    MediaFile::open(&media_dir().join(format!("{tag}.mp4")), tag).unwrap()
}

fn video(media: &MediaFile) -> (&Track, &H265Config) {
    let track = media
        .index
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .expect("the H.265 track is served, not skipped");
    match &track.codec {
        Codec::H265(c) => (track, c),
        other => panic!("video is {}", other.name()),
    }
}

fn server() -> Server {
    Server::start(&["--media", media_dir().to_str().unwrap()])
}

#[test]
fn index_matches_ffprobe_of_the_file() {
    for tag in TAGS {
        let media = open(tag);
        assert!(media.index.skipped.is_empty(), "{:?}", media.index.skipped);
        let (track, c) = video(&media);
        assert_eq!(track.samples.len(), FRAMES);
        let path = media_dir().join(format!("{tag}.mp4"));
        let out = ffprobe(&[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_tag_string,profile,level,width,height",
            "-of",
            "default=nw=1",
            path.to_str().unwrap(),
        ]);
        let want = format!(
            "profile=Main\ncodec_tag_string={tag}\nwidth={}\nheight={}\nlevel={}\n",
            c.width, c.height, c.level_idc
        );
        let mut got: Vec<&str> = out.lines().collect();
        let mut want: Vec<&str> = want.lines().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{tag}");
        assert_eq!((c.width, c.height, c.profile_idc), (640, 360, 1));
        assert!(!c.vps.is_empty() && !c.sps.is_empty() && !c.pps.is_empty());
    }
}

#[test]
fn ffprobe_over_rtsp_reports_hevc_and_aac() {
    let server = server();
    for tag in TAGS {
        let out = ffprobe(&[
            "-rtsp_transport",
            "tcp",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate",
            "-of",
            "default=nw=1",
            &server.url(tag),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "codec_name=hevc",
            "width=640",
            "height=360",
            "codec_name=aac",
            "sample_rate=48000",
        ] {
            assert!(lines.contains(&want), "{tag}: {want} in\n{out}");
        }
    }
}

#[test]
fn ffmpeg_decodes_every_frame_over_tcp_and_udp_without_warnings() {
    let server = server();
    for tag in TAGS {
        for transport in ["tcp", "udp"] {
            let got = ffmpeg_decode_without_warnings(&server.url(tag), transport);
            assert_eq!(got.frames, FRAMES, "{tag} over {transport}");
            assert!(
                (got.end_secs - 3.0).abs() < 0.05,
                "{tag} over {transport}: {}",
                got.end_secs
            );
        }
    }
}

#[test]
fn gstreamer_decodes_every_frame_to_eos_without_warnings() {
    // decodebin picks libav's HEVC decoder (rank primary) over libde265 (secondary).
    let (ok, _, err) = run_with_timeout(
        Command::new("gst-inspect-1.0").arg("avdec_h265"),
        Duration::from_secs(20),
    );
    assert!(
        ok,
        "GStreamer's avdec_h265 (gstreamer1.0-libav) is installed: {err}"
    );
    let server = server();
    for tag in TAGS {
        for protocol in ["tcp", "udp"] {
            let frames = gstreamer_decoded_video_frames(&server.url(tag), protocol);
            assert_eq!(frames, FRAMES, "{tag} over {protocol}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_plays_every_frame_with_the_files_timestamps() {
    let server = server();
    for tag in TAGS {
        let media = open(tag);
        let mut exp = expected_of(&media);
        assert_eq!(exp.video_frames, FRAMES);
        // retina 0.4.21 counts only IDR pictures as random access points, not the CRA
        // keyframes x265 makes after the first (its `UnitTypeClass` of CRA is "not intra").
        exp.video_keyframes = idr_samples(&media);
        assert_eq!(exp.video_keyframes, 1);
        play_all_of(
            &server.url(tag),
            Transport::Udp(UdpTransportOptions::default()),
            &exp,
        )
        .await;
        play_all_of(
            &server.url(tag),
            Transport::Tcp(TcpTransportOptions::default()),
            &exp,
        )
        .await;
    }
}

/// Samples of the video track holding an IDR picture (NAL types 19 and 20).
fn idr_samples(media: &MediaFile) -> usize {
    let (track, cfg) = video(media);
    let bytes = std::fs::read(media_dir().join(format!("{}.mp4", media.name))).unwrap();
    let prefix = usize::from(cfg.nal_length_size);
    track
        .samples
        .iter()
        .filter(|s| {
            sample_nals(&bytes, s.offset as usize, s.len as usize, prefix)
                .iter()
                .any(|n| matches!((n[0] >> 1) & 0x3f, 19 | 20))
        })
        .count()
}

#[test]
fn catalog_lists_h265_and_hls_and_webrtc_refuse_it() {
    let server = server();
    let streams = server.http_get("/api/v1/streams").json();
    let list = streams["streams"].as_array().unwrap();
    for tag in TAGS {
        let s = list.iter().find(|s| s["name"] == tag).expect("listed");
        assert_eq!(s["codecs"], serde_json::json!(["H.265", "AAC"]), "{s}");
        assert_eq!(s["tracks"][0]["codec"], "H.265");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(640), Some(360))
        );
        assert!(s["hls_url"].is_null(), "no HLS offered: {s}");
        assert!(s["whep_url"].is_null(), "no WHEP offered: {s}");
        let why = s["webrtc_unavailable"].as_str().unwrap();
        assert!(why.contains("H.265"), "{why}");
        let hls = common::http_request(
            server.hls.unwrap(),
            "GET",
            &format!("/hls/{tag}/index.m3u8"),
            &[],
            b"",
        );
        assert_eq!(hls.status, 415, "{}", hls.text());
        assert!(hls.text().contains("H.265"), "{}", hls.text());
    }
}

/// A play grant offers what the catalog does: for H.265 an RTSP URL with its token, no HLS
/// URL (HLS answers 415) and no WHEP URL.
#[test]
fn a_play_grant_for_h265_offers_no_hls_or_whep_url() {
    let admin = "h265-admin-token";
    let server = Server::start_env(
        &["--media", media_dir().to_str().unwrap()],
        &[("SHARDCAST_ADMIN_TOKEN", admin)],
    );
    let r = common::http_request(
        server.http_addr(),
        "POST",
        "/api/v1/play",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {admin}")),
        ],
        format!("{{\"stream\":\"{}\"}}", TAGS[0]).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json();
    assert!(g["url"].as_str().unwrap().contains("token="), "{g}");
    assert!(g["hls_url"].is_null(), "no HLS offered: {g}");
    assert!(g["whep_url"].is_null(), "no WHEP offered: {g}");
}

/// One received RTP packet of the video track.
struct Packet {
    marker: bool,
    ts: u32,
    payload: Vec<u8>,
}

/// Plays `url`'s video over TCP interleaved with a raw RTSP client; returns the SDP and the
/// video packets up to the last frame's marker.
fn raw_play_video(server: &Server, url: &str) -> (String, Vec<Packet>) {
    let mut c = RawRtsp::connect(server.addr);
    let (d, session) = c.setup_interleaved(url, &[0]);
    let sdp = String::from_utf8(d.body.clone()).unwrap();
    let p = c.request("PLAY", url, &[("Session", &session)]);
    assert_eq!(p.status, 200);
    let mut packets = Vec::new();
    let mut markers = 0;
    while markers < FRAMES {
        let (ch, frame) = c.read_frame().expect("media until the last frame");
        if ch != 0 {
            continue;
        }
        let rtp = parse_rtp(&frame).expect("RTP");
        assert_eq!(rtp.pt, 96);
        assert_eq!(frame[0] & 0x3f, 0, "no padding, extension or CSRCs");
        markers += usize::from(rtp.marker);
        packets.push(Packet {
            marker: rtp.marker,
            ts: rtp.ts,
            payload: frame[12..].to_vec(),
        });
    }
    (sdp, packets)
}

/// The NAL units of one sample of the file (AUDs left out, as the server drops them).
fn sample_nals(bytes: &[u8], offset: usize, len: usize, prefix: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = &bytes[offset..offset + len];
    while !rest.is_empty() {
        let n = rest[..prefix]
            .iter()
            .fold(0usize, |a, &b| a << 8 | usize::from(b));
        let nal = &rest[prefix..prefix + n];
        if (nal[0] >> 1) & 0x3f != 35 {
            out.push(nal.to_vec());
        }
        rest = &rest[prefix + n..];
    }
    out
}

#[test]
fn rtp_packets_follow_rfc7798() {
    let server = server();
    let b64 = base64::engine::general_purpose::STANDARD;
    for tag in TAGS {
        let media = open(tag);
        let (track, cfg) = video(&media);
        let bytes = std::fs::read(media_dir().join(format!("{tag}.mp4"))).unwrap();
        let (sdp, packets) = raw_play_video(&server, &server.url(tag));

        // §7.2.1: rtpmap and the parameter sets out of band.
        assert!(sdp.contains("a=rtpmap:96 H265/90000\r\n"), "{sdp}");
        let fmtp = sdp.lines().find(|l| l.starts_with("a=fmtp:96 ")).unwrap();
        for (name, set) in [("vps", &cfg.vps), ("sps", &cfg.sps), ("pps", &cfg.pps)] {
            let want = format!("sprop-{name}={}", b64.encode(&set[0]));
            assert!(
                fmtp.split([' ', ';']).any(|p| p == want),
                "{want} in {fmtp}"
            );
        }

        // Cut the packets into access units at the markers (§4.1) and unpack each.
        let mut units: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
        let mut current: Vec<Vec<u8>> = Vec::new();
        let mut fu: Option<(Vec<u8>, usize)> = None;
        let mut fu_sizes: Vec<usize> = Vec::new();
        let mut kinds = BTreeMap::<&str, usize>::new();
        let mut au_ts = None;
        for p in &packets {
            assert!(p.payload.len() <= 1200, "payload budget");
            assert_eq!(
                *au_ts.get_or_insert(p.ts),
                p.ts,
                "one timestamp per access unit"
            );
            let typ = (p.payload[0] >> 1) & 0x3f;
            match typ {
                48 => {
                    *kinds.entry("AP").or_default() += 1;
                    let mut rest = &p.payload[2..];
                    let mut n = 0;
                    while !rest.is_empty() {
                        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                        current.push(rest[2..2 + len].to_vec());
                        rest = &rest[2 + len..];
                        n += 1;
                    }
                    assert!(n >= 2, "§4.4.2: an AP carries at least two units");
                }
                49 => {
                    *kinds.entry("FU").or_default() += 1;
                    let (s, e, fu_type) = (
                        p.payload[2] & 0x80 != 0,
                        p.payload[2] & 0x40 != 0,
                        p.payload[2] & 0x3f,
                    );
                    assert!(!(s && e), "§4.4.3: S and E never both set");
                    let body = &p.payload[3..];
                    if s {
                        assert!(fu.is_none(), "a new FU starts only after the last ended");
                        let hdr = [(p.payload[0] & 0x81) | (fu_type << 1), p.payload[1]];
                        fu = Some((hdr.to_vec(), 0));
                        fu_sizes.clear();
                    }
                    let (nal, count) = fu.as_mut().expect("FU with S first");
                    nal.extend_from_slice(body);
                    *count += 1;
                    fu_sizes.push(body.len());
                    assert!(!p.marker || e, "the marker only on the end fragment");
                    if e {
                        // Equal sizes, the last no larger (UDP GSO segments).
                        let first = fu_sizes[0];
                        assert!(fu_sizes[..fu_sizes.len() - 1].iter().all(|&n| n == first));
                        assert!(*fu_sizes.last().unwrap() <= first, "{fu_sizes:?}");
                        current.push(fu.take().unwrap().0);
                    }
                }
                0..=40 => {
                    *kinds.entry("single").or_default() += 1;
                    current.push(p.payload.clone());
                }
                other => panic!("payload type {other}"),
            }
            if p.marker {
                assert!(fu.is_none(), "an access unit ends after its last fragment");
                units.push((p.ts, std::mem::take(&mut current)));
                au_ts = None;
            }
        }
        assert_eq!(units.len(), FRAMES);
        // Every frame here is larger than a packet: fragments, and the APs of parameter sets.
        assert!(
            kinds.get("FU") > Some(&0) && kinds.get("AP") > Some(&0),
            "{kinds:?}"
        );

        // Against the file: timestamps (90 kHz, §4.1) and the NAL units of every sample, the
        // parameter sets in band before every IRAP sample that lacks them.
        let first = track.pts_ticks(&track.samples[0]);
        let prefix = usize::from(cfg.nal_length_size);
        let mut with_sets = 0;
        for (k, ((ts, nals), sample)) in units.iter().zip(&track.samples).enumerate() {
            let want_ts = (track.pts_ticks(sample) - first) * 90_000 / i64::from(track.timescale);
            assert_eq!(
                i64::from(ts.wrapping_sub(units[0].0)),
                want_ts,
                "{tag}: frame {k} timestamp"
            );
            let file = sample_nals(&bytes, sample.offset as usize, sample.len as usize, prefix);
            let is_set = |n: &Vec<u8>| (32..=34).contains(&((n[0] >> 1) & 0x3f));
            let irap = file
                .iter()
                .any(|n| (16..=23).contains(&((n[0] >> 1) & 0x3f)));
            if irap && !file.iter().any(is_set) {
                with_sets += 1;
                let sets: Vec<Vec<u8>> = cfg
                    .vps
                    .iter()
                    .chain(&cfg.sps)
                    .chain(&cfg.pps)
                    .cloned()
                    .collect();
                assert_eq!(
                    nals[..3].to_vec(),
                    sets,
                    "{tag}: sets ahead of IRAP frame {k}"
                );
                assert_eq!(nals[3..].to_vec(), file, "{tag}: frame {k}");
            } else {
                assert_eq!(nals, &file, "{tag}: frame {k}");
            }
        }
        assert_eq!(
            with_sets,
            track.samples.iter().filter(|s| s.sync).count(),
            "{tag}: every keyframe of the file gets the sets in band"
        );
    }
}

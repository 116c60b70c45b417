//! A publisher whose clock is years away from ours, and the check that a viewer's sender
//! reports carry that clock (RFC 3550 §6.4.1; MediaMTX #1300: users recover capture times
//! from them). A report built from the server's own clock cannot pass.
//!
//! The publisher is a raw RTSP client (ANNOUNCE, SETUP `mode=record` over TCP, RECORD) that
//! sends the sample's AAC frames one per packet (RFC 3640 AAC-hbr): frame `n` has RTP time
//! `BASE + 1024·n` (wrapping during a test) and was captured at NTP `PUB_EPOCH + n·1024/rate`.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shardcast::media::track::{Codec, Sample, TrackKind};
use shardcast::media::MediaFile;

use super::{parse_rtp, publishers::media, RawRtsp};

/// The publisher's first RTP time (wraps after ~60 frames).
pub const BASE: u32 = 0xFFFF_0000;
/// The publisher's SSRC.
pub const SSRC: u32 = 0x5EED_0001;
/// The publisher's NTP time of frame 0: 2001-05-26, years from our clock.
pub const PUB_EPOCH: u64 = 3_200_000_000u64 << 32;

/// The sample's AAC frames and their clock.
pub struct AacClock {
    file: MediaFile,
    samples: Vec<Sample>,
    /// The AAC sample rate (the RTP clock).
    pub rate: u32,
    channels: u8,
    config: String,
}

impl AacClock {
    /// The bundled sample's audio track.
    pub fn of_sample() -> AacClock {
        let file = MediaFile::open(std::path::Path::new(&media("sample.mp4")), "sample").unwrap();
        let audio = file
            .index
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Audio)
            .unwrap();
        let Codec::Aac(aac) = &audio.codec else {
            panic!("AAC audio")
        };
        let (rate, channels) = (aac.sample_rate_hz, aac.channels);
        let config = aac
            .audio_specific_config
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let samples = audio.samples.clone();
        AacClock {
            file,
            samples,
            rate,
            channels,
            config,
        }
    }

    /// Frame `n`'s bytes (the file's frames, looped).
    pub fn frame(&self, n: usize) -> &[u8] {
        let s = self.samples[n % self.samples.len()];
        &self.file.bytes.as_slice()[s.offset as usize..(s.offset + u64::from(s.len)) as usize]
    }

    /// Frame `n`'s capture time on the publisher's clock.
    pub fn ntp_of(&self, n: u64) -> u64 {
        PUB_EPOCH + ((n * 1024) << 32) / u64::from(self.rate)
    }

    /// One frame's duration.
    pub fn frame_time(&self) -> Duration {
        Duration::from_secs_f64(1024.0 / f64::from(self.rate))
    }

    /// The frame whose bytes `payload` is, when exactly one of the first `within` is.
    pub fn frame_index(&self, payload: &[u8], within: usize) -> Option<usize> {
        let hits: Vec<usize> = (0..within).filter(|&n| self.frame(n) == payload).collect();
        (hits.len() == 1).then(|| hits[0])
    }
}

/// The raw publisher of [`AacClock`]'s frames on one path.
pub struct ClockedPublisher {
    rtsp: RawRtsp,
    clock: AacClock,
    start: Instant,
}

impl ClockedPublisher {
    /// Announces `name` on the server at `addr` and starts recording; frame 0 is due now.
    pub fn start(addr: SocketAddr, name: &str) -> ClockedPublisher {
        let clock = AacClock::of_sample();
        let url = format!("rtsp://{addr}/{name}");
        let sdp = format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\nm=audio 0 RTP/AVP 97\r\n\
             a=rtpmap:97 MPEG4-GENERIC/{}/{}\r\n\
             a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={}\r\n\
             a=control:streamid=0\r\n",
            clock.rate, clock.channels, clock.config
        );
        let mut rtsp = RawRtsp::connect(addr);
        rtsp.send_raw(
            format!(
                "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 100\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .as_bytes(),
        );
        assert_eq!(rtsp.read_response().unwrap().status, 200);
        let setup = rtsp.request(
            "SETUP",
            &format!("{url}/streamid=0"),
            &[(
                "Transport",
                "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            )],
        );
        assert_eq!(setup.status, 200);
        let session = setup.session().unwrap();
        assert_eq!(
            rtsp.request("RECORD", &url, &[("Session", &session)])
                .status,
            200
        );
        ClockedPublisher {
            rtsp,
            clock,
            start: Instant::now(),
        }
    }

    /// The frames and their clock.
    pub fn clock(&self) -> &AacClock {
        &self.clock
    }

    /// Sleeps until frame `n` is due (real time from the start).
    pub fn pace(&self, n: usize) {
        let due = self.start + self.clock.frame_time() * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    /// Sends frame `n` as one RTP packet in a `$` frame on channel 0.
    pub fn send_frame(&mut self, n: usize) {
        let au = self.clock.frame(n);
        let mut rtp = vec![0x80, 0x80 | 97];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&BASE.wrapping_add(n as u32 * 1024).to_be_bytes());
        rtp.extend_from_slice(&SSRC.to_be_bytes());
        // RFC 3640 §3.2.1: AU-headers-length 16 bits, one AU-header (13-bit size, 3-bit index).
        rtp.extend_from_slice(&16u16.to_be_bytes());
        rtp.extend_from_slice(&((au.len() as u16) << 3).to_be_bytes());
        rtp.extend_from_slice(au);
        let mut frame = vec![b'$', 0];
        frame.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
        frame.extend_from_slice(&rtp);
        self.rtsp.send_raw(&frame);
    }

    /// Sends a sender report for the instant frame `n` was captured, on channel 1.
    pub fn send_report(&mut self, n: usize) {
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&SSRC.to_be_bytes());
        sr.extend_from_slice(&self.clock.ntp_of(n as u64).to_be_bytes());
        sr.extend_from_slice(&BASE.wrapping_add(n as u32 * 1024).to_be_bytes());
        sr.extend_from_slice(&(n as u32).to_be_bytes());
        sr.extend_from_slice(&0u32.to_be_bytes());
        let mut frame = vec![b'$', 1];
        frame.extend_from_slice(&(sr.len() as u16).to_be_bytes());
        frame.extend_from_slice(&sr);
        self.rtsp.send_raw(&frame);
    }

    /// Frames `from..to`, paced, with a report after frame `from` and every `report_every`.
    pub fn run(&mut self, from: usize, to: usize, report_every: usize) {
        for n in from..to {
            self.pace(n);
            self.send_frame(n);
            if n == from || n % report_every == 0 {
                // After a packet, as ffmpeg does (the report's RTP time is unfolded against
                // the stream's).
                self.send_report(n);
            }
        }
    }
}

/// What a UDP viewer of the publisher's stream received: each frame it got (by its bytes)
/// and the RTP time we sent it with, and the constant `shift` from the publisher's RTP times
/// to ours.
pub struct ViewerTimeline {
    /// (publisher frame index, our RTP timestamp), in arrival order.
    pub frames: Vec<(usize, u32)>,
    /// Our RTP time minus the publisher's, the same for every frame.
    pub shift: u32,
}

/// Reads what `rtp` holds now (non-blocking) and maps each access unit to the publisher's
/// frame by its bytes; asserts consecutive sequence numbers, consecutive frames, and one
/// constant timestamp shift. A packet may carry several AUs (RFC 3640 §3.2.2: the server
/// groups a pulled source's frames, `ingest-audio-hold-ms`); the k-th is 1024 ticks after
/// the packet's timestamp (§3.2.1).
pub fn viewer_timeline(rtp: &UdpSocket, clock: &AacClock, within: usize) -> ViewerTimeline {
    rtp.set_nonblocking(true).unwrap();
    // Per packet: its sequence number, and its AUs' timestamps and bytes.
    type Units = Vec<(u32, Vec<u8>)>;
    let mut received: Vec<(u16, Units)> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(len) = rtp.recv(&mut buf) {
        let header = parse_rtp(&buf[..len]).unwrap();
        let aus = usize::from(u16::from_be_bytes([buf[12], buf[13]]) / 16);
        let mut at = 14 + 2 * aus;
        let mut units = Vec::new();
        for k in 0..aus {
            let size = usize::from(u16::from_be_bytes([buf[14 + 2 * k], buf[15 + 2 * k]]) >> 3);
            assert!(
                at + size <= len,
                "seq {}: AU {k} within the packet",
                header.seq
            );
            let ts = header.ts.wrapping_add(1024 * k as u32);
            units.push((ts, buf[at..at + size].to_vec()));
            at += size;
        }
        received.push((header.seq, units));
    }
    let (first, n0) = received
        .iter()
        .enumerate()
        .find_map(|(k, (_, units))| Some((k, clock.frame_index(&units.first()?.1, within)?)))
        .expect("a packet starting with one of the publisher's frames");
    let mut frames = Vec::new();
    let mut n = n0;
    for (k, (seq, units)) in received[first..].iter().enumerate() {
        assert_eq!(
            *seq,
            received[first].0.wrapping_add(k as u16),
            "no packet lost after the first"
        );
        for (ts, au) in units {
            assert_eq!(clock.frame(n), &au[..], "frame {n}'s bytes");
            frames.push((n, *ts));
            n += 1;
        }
    }
    let shift = frames[0]
        .1
        .wrapping_sub(BASE.wrapping_add(frames[0].0 as u32 * 1024));
    for &(n, ts) in &frames {
        assert_eq!(
            ts,
            BASE.wrapping_add(n as u32 * 1024).wrapping_add(shift),
            "frame {n}"
        );
    }
    ViewerTimeline { frames, shift }
}

/// How far the sender report in `packet` (if it is one) is off the publisher's clock, in ms:
/// its NTP time against the publisher's NTP time of its RTP time.
pub fn report_error_ms(packet: &[u8], clock: &AacClock, shift: u32) -> Option<f64> {
    if packet.len() < 28 || packet[1] != 200 {
        return None;
    }
    let ntp = u64::from_be_bytes(packet[8..16].try_into().unwrap());
    let rtp_ts = u32::from_be_bytes(packet[16..20].try_into().unwrap());
    // The publisher's frame index (fractional) of that RTP time, and its NTP time.
    let ticks = rtp_ts.wrapping_sub(shift).wrapping_sub(BASE) as i32 as f64;
    let expected = PUB_EPOCH as f64 + ticks / f64::from(clock.rate) * 4_294_967_296.0;
    Some((ntp as f64 - expected).abs() / 4_294_967_296.0 * 1000.0)
}

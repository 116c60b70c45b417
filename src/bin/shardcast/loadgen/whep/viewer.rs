//! One WebRTC viewer: a str0m `Rtc` in RTP mode (ICE-full, controlling; DTLS client; SRTP
//! decrypt; RTCP receiver reports — str0m does all of it) on its own UDP socket, and its
//! counters per SSRC. Sans-IO as str0m is: the engine feeds it datagrams and the time, it
//! sends what str0m hands out on its socket.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind as RtcKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use shardcast::net::RecvBatch;

use crate::loadgen::stats::{JitterEstimator, MediaKind};

/// The Opus payload type the offer names (draft-ietf-wish-whep: the answer keeps the
/// offer's numbers, RFC 3264 §6.1), so a packet's type tells audio from video.
pub(crate) const OPUS_PT: u8 = 111;
/// H.264 payload types offered: Main 3.0 (`4d401e`, the bundled sample's profile) and
/// Constrained Baseline 3.1 (`42e01f`, what every browser offers), packetization-mode 1
/// (RFC 6184 §8.1).
pub(crate) const H264_PTS: [(u8, u32); 2] = [(102, 0x4d401e), (108, 0x42e01f)];

/// Datagrams per `recvmmsg` call (the batch the engine passes to [`Viewer::read`]).
pub(crate) const READ_BATCH: usize = 32;

/// One SSRC's reception, RFC 3550 style.
#[derive(Debug, Clone)]
pub(crate) struct TrackCount {
    /// The SSRC.
    pub(crate) ssrc: u32,
    /// Audio (Opus) or video (H.264), from the payload type.
    pub(crate) kind: MediaKind,
    /// Packets delivered by str0m (decrypted, authenticated, duplicates dropped).
    pub(crate) packets: u64,
    /// Their RTP bytes (header and payload).
    pub(crate) bytes: u64,
    /// Lowest and highest extended sequence number seen.
    pub(crate) seq_range: (u64, u64),
    /// Interarrival jitter (RFC 3550 §6.4.1).
    pub(crate) jitter: JitterEstimator,
}

impl TrackCount {
    /// Packets the sequence numbers say were sent but never arrived.
    pub(crate) fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    /// Packets expected from the sequence range (RFC 3550 §A.3).
    pub(crate) fn expected(&self) -> u64 {
        self.seq_range.1.saturating_sub(self.seq_range.0) + 1
    }
}

/// Where a viewer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for its (next) POST.
    Waiting,
    /// Answer accepted; ICE and DTLS under way or done.
    Negotiated,
    /// Given up: signalling failed or the connection closed.
    Failed,
}

/// One viewer.
pub(crate) struct Viewer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// The offer, kept for a POST retried after `503`.
    pub(crate) offer: String,
    /// Lifecycle.
    pub(crate) state: State,
    /// When str0m next wants the time.
    pub(crate) next_timeout: Instant,
    /// Earliest next POST (after a `503 Retry-After`).
    pub(crate) retry_at: Option<Instant>,
    /// POSTs sent, `503`s among them.
    pub(crate) posts: u32,
    /// When the first POST went out.
    pub(crate) first_post: Option<Instant>,
    /// When the accepted answer came back.
    pub(crate) answered: Option<Instant>,
    /// ICE + DTLS done (str0m's `Connected`).
    pub(crate) connected: Option<Instant>,
    /// First RTP packet.
    pub(crate) first_packet: Option<Instant>,
    /// The session resource to `DELETE`.
    pub(crate) location: Option<String>,
    /// What went wrong, if anything.
    pub(crate) error: Option<String>,
    /// Per SSRC.
    pub(crate) tracks: Vec<TrackCount>,
    /// Datagrams str0m gave us that the socket refused.
    pub(crate) send_errors: u64,
    /// The engine's start, the origin of arrival times for jitter.
    epoch: Instant,
}

impl Viewer {
    /// A viewer on a fresh socket `sock` (non-blocking, bound to loopback), its offer made.
    /// `cert`: the DTLS certificate (one for all viewers of a run saves a key generation
    /// each; none: str0m makes one).
    pub(crate) fn new(
        sock: UdpSocket,
        provider: std::sync::Arc<str0m::config::CryptoProvider>,
        cert: Option<&str0m::config::DtlsCert>,
        now: Instant,
    ) -> Result<Self, String> {
        let local = sock
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?;
        let mut config = RtcConfig::new();
        if let Some(cert) = cert {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut config = config
            .set_rtp_mode(true)
            .set_crypto_provider(provider)
            .clear_codecs()
            .enable_opus(true, false);
        for (pt, profile) in H264_PTS {
            config
                .codec_config()
                .add_h264(pt.into(), None, true, profile);
        }
        let mut rtc = config.build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        api.add_media(RtcKind::Video, Direction::RecvOnly, None, None, None);
        api.add_media(RtcKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or("str0m made no offer")?;
        let offer = offer.to_sdp_string();
        let mut v = Self {
            rtc,
            socket: sock,
            local,
            pending: Some(pending),
            offer,
            state: State::Waiting,
            next_timeout: now,
            retry_at: None,
            posts: 0,
            first_post: None,
            answered: None,
            connected: None,
            first_packet: None,
            location: None,
            error: None,
            tracks: Vec::with_capacity(2),
            send_errors: 0,
            epoch: now,
        };
        v.drain(now);
        Ok(v)
    }

    /// The viewer's socket.
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Takes the server's answer; ICE starts.
    pub(crate) fn accept(&mut self, answer: &str, location: Option<String>, now: Instant) {
        let Some(pending) = self.pending.take() else {
            return self.fail("answer without an offer pending".into());
        };
        let answer = with_rejected_rtpmaps(answer, &self.offer);
        let parsed = match SdpAnswer::from_sdp_string(&answer) {
            Ok(a) => a,
            Err(e) => return self.fail(format!("answer does not parse: {e}")),
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, parsed) {
            return self.fail(format!("answer refused: {e}"));
        }
        self.location = location;
        self.answered = Some(now);
        self.state = State::Negotiated;
        self.drain(now);
    }

    /// Marks the viewer failed with `why` (the first reason is kept).
    pub(crate) fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
        self.state = State::Failed;
    }

    /// Reads every datagram waiting on the socket into str0m (`recvmmsg` batches, as the RTP
    /// receivers read); returns how many.
    pub(crate) fn read(&mut self, batch: &mut RecvBatch) -> u64 {
        let mut total = 0;
        while self.state == State::Negotiated {
            let n = match batch.recv(self.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(_) => break,
            };
            let now = Instant::now();
            for i in 0..n {
                let Some(source) = batch.source(i) else {
                    continue;
                };
                let d = batch.datagram(i);
                let Ok(contents) = d.bytes.try_into() else {
                    continue; // not STUN, DTLS, RTP or RTCP (RFC 7983): ignored
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    },
                );
                if let Err(e) = self.rtc.handle_input(input) {
                    self.fail(format!("str0m input: {e}"));
                    break;
                }
                self.drain(now);
            }
            total += n as u64;
            if n < READ_BATCH {
                break;
            }
        }
        total
    }

    /// Advances str0m's timers if they are due.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.state == State::Failed || now < self.next_timeout {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            return self.fail(format!("str0m timeout: {e}"));
        }
        self.drain(now);
    }

    /// Ends the connection (DTLS close_notify, RTCP BYE from str0m).
    pub(crate) fn close(&mut self, now: Instant) {
        if self.state == State::Negotiated {
            self.rtc.disconnect();
            self.drain(now);
        }
    }

    /// str0m's single-mutation rule: after every input, poll until `Timeout`.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.socket.send_to(&t.contents, t.destination).is_err() {
                        self.send_errors += 1;
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e, now),
                Err(e) => return self.fail(format!("str0m output: {e}")),
            }
        }
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                self.connected.get_or_insert(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.connected.is_none() =>
            {
                self.fail("ICE failed: no answer to our connectivity checks".into());
            }
            Event::RtpPacket(p) => self.on_rtp(&p, now),
            _ => {}
        }
    }

    fn on_rtp(&mut self, p: &RtpPacket, now: Instant) {
        self.first_packet.get_or_insert(now);
        let ssrc = *p.header.ssrc;
        let seq = *p.seq_no;
        let pt = *p.header.payload_type;
        let i = match self.tracks.iter().position(|t| t.ssrc == ssrc) {
            Some(i) => i,
            None => {
                let (kind, rate) = if pt == OPUS_PT {
                    (MediaKind::Audio, 48_000)
                } else if H264_PTS.iter().any(|(v, _)| *v == pt) {
                    (MediaKind::Video, 90_000)
                } else {
                    (MediaKind::Other, 90_000)
                };
                self.tracks.push(TrackCount {
                    ssrc,
                    kind,
                    packets: 0,
                    bytes: 0,
                    seq_range: (seq, seq),
                    jitter: JitterEstimator::new(rate),
                });
                self.tracks.len() - 1
            }
        };
        let Some(t) = self.tracks.get_mut(i) else {
            return;
        };
        t.packets += 1;
        t.bytes += (p.header.header_len + p.payload.len()) as u64;
        t.seq_range = (t.seq_range.0.min(seq), t.seq_range.1.max(seq));
        let arrival_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        t.jitter.observe(arrival_ns, p.header.timestamp);
    }

    /// RTP packets received so far, all SSRCs.
    pub(crate) fn packets(&self) -> u64 {
        self.tracks.iter().map(|t| t.packets).sum()
    }

    /// RTP bytes received so far, all SSRCs.
    pub(crate) fn bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.bytes).sum()
    }
}

/// The answer with an `a=rtpmap` added to each rejected section (port 0, RFC 3264 §6) for
/// its format, copied from our offer. A rejected section need not map its formats (RFC 8866
/// §5.14 asks for rtpmap only where the media is used) and shardcast writes none, but str0m's
/// parser refuses any section without them ("Missing a=rtp_map"): a stream without WebRTC
/// audio (an ingested stream with AAC) answers the audio section rejected.
pub(crate) fn with_rejected_rtpmaps(answer: &str, offer: &str) -> String {
    let mut out = String::with_capacity(answer.len() + 64);
    let mut lines = answer.lines().peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push_str("\r\n");
        let Some(rest) = line.strip_prefix("m=") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) != Some(&"0") {
            continue;
        }
        // The section's own lines, up to the next m=.
        let mut section = Vec::new();
        while let Some(l) = lines.next_if(|l| !l.starts_with("m=")) {
            section.push(l);
        }
        // c= must stay right after m= (RFC 8866 §5 order): rtpmaps go after the section's lines.
        for l in &section {
            out.push_str(l);
            out.push_str("\r\n");
        }
        for fmt in fields.iter().skip(3) {
            let attr = format!("a=rtpmap:{fmt} ");
            if section.iter().any(|l| l.starts_with(&attr)) {
                continue;
            }
            if let Some(map) = offer.lines().find(|l| l.starts_with(&attr)) {
                out.push_str(map);
                out.push_str("\r\n");
            }
        }
    }
    out
}

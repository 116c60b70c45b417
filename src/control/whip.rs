//! The WHIP shell: WebRTC publishers (RFC 9725) into live logs, on the control thread
//! (`docs/design/webrtc.md`, "WHIP"). The session core accepted the offer
//! ([`crate::rtsp::session::SessionCore::whip_offer`]); this module runs what follows, on
//! the UDP ingest port that RTSP publishers send to:
//!
//! - datagrams no RTSP publisher set up are classified by first byte (RFC 7983 §7): STUN
//!   finds its publisher by the ufrag its USERNAME names, DTLS and SRTP/SRTCP only by the
//!   address an ICE check nominated ([`PeerTransport`] refuses any other);
//! - SRTP is decrypted in place and handed to ingest by payload type, into the same
//!   depacketizers (RFC 6184 H.264, RFC 7587 Opus) and the same live log as every other
//!   publisher's; SRTCP sender reports give the log its clock;
//! - the log opens at the first keyframe: a browser's offer carries no SPS/PPS (RFC 6184
//!   `sprop-parameter-sets` is optional and browsers never send it), and the log's track
//!   needs them (SDP for RTSP viewers, the HLS init segment, recordings). Until then media is
//!   depacketized and dropped; the keyframe that brings them is kept and is the log's first;
//! - the publisher gets receiver reports once a second and a picture loss indication
//!   (RFC 4585 §6.3.1) at once and every [`KEYFRAME_INTERVAL`]: browsers send keyframes only
//!   when asked, and a viewer joins at the latest keyframe in the log.
//!
//! Work here is per publisher (a few hundred packets a second each, decrypted and copied
//! once into the log), never per viewer, as for RTSP publishers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ingest::{Ingest, Protocol};
use crate::ingest::depacketize::Depacketizer;
use crate::ingest::sdp::{AnnouncedTrack, PayloadFormat};
use crate::live_log::{LiveLog, LogTrackSpec};
use crate::media::track::{Codec, H264Config, OpusConfig, TrackKind};
use crate::rtsp::session::{WhipPublisher, WhipTrack};
use crate::shard::SessionId;
use crate::webrtc::ice::IceLite;
use crate::webrtc::peer::{is_rtcp, PeerError, PeerEvent, PeerTransport};
use crate::webrtc::sdp::ChosenCodec;
use crate::webrtc::stun::StunMessage;
use crate::webrtc::Demux;
use crate::wire::ntp::NtpTime;
use crate::wire::rtcp::{
    parse_compound, write_picture_loss, write_receiver_report, ReportBlock, RtcpPacket,
};
use crate::wire::rtp::Ssrc;

/// How often a publisher is asked for a keyframe. Browsers encode one only at the start and
/// when a receiver asks (PLI/FIR); viewers join at the log's latest keyframe, HLS cuts
/// segments at keyframes, and a keyframe older than the log's ring cannot be joined at all.
/// Two seconds is what encoders set for live streaming (and HLS's usual segment length).
pub(super) const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

/// How often receiver reports go to a publisher (RFC 3550 §6.2: one source, a few packets
/// a second; a browser's own reports come about as often).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Largest datagram the shell writes (DTLS flights are at most `webrtc::dtls::DTLS_MTU`).
const OUT_BUF: usize = 1500;

/// What the caller must carry out on the session core.
#[derive(Debug)]
pub(super) enum WhipEffect {
    /// A publisher's log opened: it enters the catalog.
    Opened(Arc<LiveLog>),
    /// A publisher ended: its path is free.
    Ended(SessionId),
}

/// One track as received: its negotiated form and, until the log opens, its depacketizer.
struct RxTrack {
    spec: WhipTrack,
    /// Extended highest sequence and packets at the last receiver report (fraction lost,
    /// RFC 3550 §A.3).
    last_report: (u64, u64),
    /// The middle 32 bits of the last sender report and when it came (LSR/DLSR, §6.4.1).
    last_sr: Option<(u32, Instant)>,
}

/// One WHIP publisher.
struct Publisher {
    path: String,
    key: String,
    transport: PeerTransport,
    tracks: Vec<RxTrack>,
    /// The depacketizers until the log opens; then ingest holds them.
    depacketizers: Vec<Depacketizer>,
    open: bool,
    /// Our SSRC in reports (RFC 3550 §8: random).
    ssrc: Ssrc,
    next_keyframe_request: Option<Instant>,
    next_report: Option<Instant>,
    /// Datagrams of this publisher refused (bad tag, replay, an unnominated address).
    refused: u64,
}

/// The control thread's WHIP publishers.
#[derive(Default)]
pub(super) struct WhipShell {
    publishers: HashMap<SessionId, Publisher>,
    by_ufrag: HashMap<String, SessionId>,
    by_addr: HashMap<SocketAddr, SessionId>,
    by_key: HashMap<String, SessionId>,
    /// Datagrams to send from the ingest port, in order.
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams refused from publishers' addresses since start (`/metrics`).
    pub(super) refused_total: u64,
}

impl WhipShell {
    /// Runs an accepted publisher (`key` its resource key). Fails only if DTLS cannot be set
    /// up with the offer's fingerprint.
    pub(super) fn start(
        &mut self,
        key: String,
        p: WhipPublisher,
        now: Instant,
    ) -> Result<(), PeerError> {
        let transport = PeerTransport::new(p.transport, now)?;
        let depacketizers = p
            .tracks
            .iter()
            .enumerate()
            .map(|(k, t)| Depacketizer::new(k, &announced(t)))
            .collect();
        let tracks = p
            .tracks
            .into_iter()
            .map(|spec| RxTrack {
                spec,
                last_report: (0, 0),
                last_sr: None,
            })
            .collect();
        self.by_ufrag
            .insert(transport.local_ufrag().to_owned(), p.id);
        self.by_key.insert(key.clone(), p.id);
        self.publishers.insert(
            p.id,
            Publisher {
                path: p.path,
                key,
                transport,
                tracks,
                depacketizers,
                open: false,
                ssrc: Ssrc(rand::random()),
                next_keyframe_request: None,
                next_report: None,
                refused: 0,
            },
        );
        Ok(())
    }

    /// Ends publisher `id` (its stream waits for a returning publisher, as after an RTSP
    /// publisher's TEARDOWN).
    pub(super) fn end(&mut self, id: SessionId, why: &str, ingest: &mut Ingest, now: Instant) {
        let Some(p) = self.publishers.remove(&id) else {
            return;
        };
        self.by_ufrag.retain(|_, v| *v != id);
        self.by_addr.retain(|_, v| *v != id);
        self.by_key.remove(&p.key);
        if p.open {
            ingest.stop(id, &p.path, now);
        }
        let refused = if p.refused > 0 {
            format!(" ({} datagrams refused)", p.refused)
        } else {
            String::new()
        };
        tracing::info!(stream = %p.path, "whip publisher ended: {why}{refused}");
    }

    /// A datagram on the ingest port that no RTSP publisher set up; false if it is no WHIP
    /// publisher's either. `buf` is decrypted in place.
    pub(super) fn datagram(
        &mut self,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) -> bool {
        match Demux::classify(buf) {
            Demux::Stun => self.on_stun(from, buf, now),
            Demux::Dtls => self.on_dtls(from, buf, now, ingest, effects),
            Demux::Rtp => self.on_rtp(from, buf, now, ingest, effects),
            Demux::Other => false,
        }
    }

    /// The datagrams to send from the ingest port since the last call.
    pub(super) fn take_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// A STUN binding request: answered to its source; a nomination moves the publisher's
    /// address (RFC 8445 §7.3.1.5).
    fn on_stun(&mut self, from: SocketAddr, buf: &[u8], now: Instant) -> bool {
        let Ok(msg) = StunMessage::parse(buf) else {
            return false;
        };
        let id = IceLite::local_ufrag_of(&msg)
            .and_then(|u| std::str::from_utf8(u).ok())
            .and_then(|u| self.by_ufrag.get(u))
            .copied();
        let Some(p) = id.and_then(|id| self.publishers.get_mut(&id)) else {
            return false;
        };
        let mut out = vec![0u8; OUT_BUF];
        match p.transport.on_stun(now, from, &msg, &mut out) {
            Ok((len, event)) => {
                out.truncate(len);
                if len > 0 {
                    self.outbox.push((from, out));
                }
                if let (Some(PeerEvent::Selected(addr)), Some(id)) = (event, id) {
                    self.by_addr.retain(|_, v| *v != id);
                    self.by_addr.insert(addr, id);
                }
            }
            Err(_) => {
                p.refused += 1;
                self.refused_total += 1;
            }
        }
        true
    }

    fn on_dtls(
        &mut self,
        from: SocketAddr,
        buf: &[u8],
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) -> bool {
        let Some(id) = self.by_addr.get(&from).copied() else {
            return false;
        };
        let outcome = match self.publishers.get_mut(&id) {
            Some(p) => p.transport.on_dtls(now, from, buf),
            None => return false,
        };
        self.after_dtls(id, outcome, now, ingest, effects);
        true
    }

    /// Sends what DTLS wants sent and acts on its event (keyed: ask for a keyframe at once;
    /// closed or failed: the publisher ends).
    fn after_dtls(
        &mut self,
        id: SessionId,
        outcome: Result<Option<PeerEvent>, PeerError>,
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) {
        let Some(p) = self.publishers.get_mut(&id) else {
            return;
        };
        if let Some(to) = p.transport.selected() {
            let mut out = vec![0u8; OUT_BUF];
            while let Some(len) = p.transport.poll_transmit(&mut out) {
                self.outbox.push((to, out[..len].to_vec()));
            }
        }
        match outcome {
            Ok(Some(PeerEvent::Keyed(profile))) => {
                tracing::info!(stream = %p.path, "whip publisher connected ({profile:?})");
                p.next_keyframe_request = Some(now);
                p.next_report = Some(now + REPORT_INTERVAL);
                self.send_reports(id, now, ingest);
            }
            Ok(Some(PeerEvent::Closed)) => {
                self.end(id, "the browser closed DTLS", ingest, now);
                effects.push(WhipEffect::Ended(id));
            }
            Ok(_) => {}
            Err(e) if e.is_fatal() => {
                self.end(id, &format!("DTLS failed: {e}"), ingest, now);
                effects.push(WhipEffect::Ended(id));
            }
            Err(_) => {
                p.refused += 1;
                self.refused_total += 1;
            }
        }
    }

    /// SRTP or SRTCP from a nominated address.
    fn on_rtp(
        &mut self,
        from: SocketAddr,
        buf: &mut [u8],
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) -> bool {
        let Some(id) = self.by_addr.get(&from).copied() else {
            return false;
        };
        let Some(p) = self.publishers.get_mut(&id) else {
            return false;
        };
        if is_rtcp(buf) {
            match p.transport.on_srtcp(from, buf) {
                Ok(len) => {
                    let rtcp = &buf[..len];
                    note_sender_reports(
                        &mut p.tracks,
                        &p.depacketizers,
                        rtcp,
                        now,
                        ingest,
                        id,
                        &p.path,
                    );
                    if p.open {
                        ingest.rtcp(id, &p.path, rtcp, now);
                    }
                }
                Err(_) => {
                    p.refused += 1;
                    self.refused_total += 1;
                }
            }
            return true;
        }
        let len = match p.transport.on_srtp(from, buf) {
            Ok(len) => len,
            Err(_) => {
                p.refused += 1;
                self.refused_total += 1;
                return true;
            }
        };
        let packet = &buf[..len];
        let Some(pt) = packet.get(1).map(|b| b & 0x7f) else {
            return true;
        };
        let Some(track) = p.tracks.iter().position(|t| t.spec.payload_type == pt) else {
            // A payload type the answer did not accept (the answer names one per section).
            p.refused += 1;
            self.refused_total += 1;
            return true;
        };
        if p.open {
            ingest.rtp(id, &p.path, track, packet, now);
            return true;
        }
        self.before_open(id, track, packet, now, ingest, effects);
        true
    }

    /// A packet before the log opened: depacketized here; a video keyframe that brings SPS
    /// and PPS (or, with no video, any audio frame) opens the log and is its first frame.
    fn before_open(
        &mut self,
        id: SessionId,
        track: usize,
        packet: &[u8],
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) {
        let Some(p) = self.publishers.get_mut(&id) else {
            return;
        };
        let has_video = p.tracks.iter().any(|t| t.spec.kind == TrackKind::Video);
        let kind = p.tracks[track].spec.kind;
        let Some(d) = p.depacketizers.get_mut(track) else {
            return;
        };
        let mut first: Option<(i64, i64, Vec<u8>)> = None;
        d.push(packet, &mut |frame| {
            let opens = if has_video {
                kind == TrackKind::Video && frame.sync
            } else {
                true
            };
            if opens && first.is_none() {
                first = Some((frame.pts, frame.dts, frame.data.to_vec()));
            }
        });
        let Some((pts, dts, data)) = first else {
            return;
        };
        let mut specs = Vec::with_capacity(p.tracks.len());
        for (k, t) in p.tracks.iter().enumerate() {
            let mut codec = announced(&t.spec).codec;
            if let Codec::H264(config) = &mut codec {
                if k == track {
                    match p.depacketizers[k].parameter_sets_changed() {
                        Some(learned) => {
                            *config = H264Config {
                                nal_length_size: 4,
                                ..learned
                            }
                        }
                        // A keyframe without SPS/PPS before it: wait for the next.
                        None => return,
                    }
                }
            }
            specs.push(LogTrackSpec {
                kind: t.spec.kind,
                codec,
            });
        }
        let depacketizers = std::mem::take(&mut p.depacketizers);
        let opened = ingest.open(
            id,
            &p.path,
            specs,
            depacketizers,
            (
                Protocol::Whip,
                p.transport
                    .selected()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
            now,
        );
        match opened {
            Ok(log) => {
                p.open = true;
                ingest.frame(
                    id,
                    &p.path,
                    &crate::ingest::Frame {
                        track,
                        pts,
                        dts,
                        sync: true,
                        data: &data,
                    },
                    now,
                );
                effects.push(WhipEffect::Opened(log));
            }
            Err(e) => {
                self.end(id, &format!("cannot ingest: {e}"), ingest, now);
                effects.push(WhipEffect::Ended(id));
            }
        }
    }

    /// Timers: DTLS retransmissions, consent (RFC 7675: a closed tab stops its checks),
    /// receiver reports and keyframe requests.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        ingest: &mut Ingest,
        effects: &mut Vec<WhipEffect>,
    ) {
        let ids: Vec<SessionId> = self.publishers.keys().copied().collect();
        for id in ids {
            let Some(p) = self.publishers.get_mut(&id) else {
                continue;
            };
            if p.transport.is_over(now) {
                let why = if p.transport.selected().is_some() {
                    "no consent (RFC 7675: the browser stopped its checks)"
                } else {
                    "no ICE check arrived"
                };
                self.end(id, why, ingest, now);
                effects.push(WhipEffect::Ended(id));
                continue;
            }
            if p.transport.poll_timeout().is_some_and(|t| t <= now) {
                let outcome = p.transport.handle_timeout(now);
                self.after_dtls(id, outcome, now, ingest, effects);
            }
            self.send_reports(id, now, ingest);
        }
    }

    /// Sends publisher `id` its due receiver report and, when due, a PLI for its video.
    fn send_reports(&mut self, id: SessionId, now: Instant, ingest: &Ingest) {
        let Some(p) = self.publishers.get_mut(&id) else {
            return;
        };
        let (Some(to), true) = (p.transport.selected(), p.transport.is_keyed()) else {
            return;
        };
        let report_due = p.next_report.is_some_and(|t| t <= now);
        let keyframe_due = p.next_keyframe_request.is_some_and(|t| t <= now);
        if !report_due && !keyframe_due {
            return;
        }
        let stats: Vec<_> = if p.open {
            ingest.receive_stats(id, &p.path)
        } else {
            p.depacketizers
                .iter()
                .map(|d| (d.ssrc(), *d.stats()))
                .collect()
        };
        let mut blocks = Vec::with_capacity(stats.len());
        let mut video_ssrc = None;
        for (t, (ssrc, s)) in p.tracks.iter_mut().zip(&stats) {
            let Some(ssrc) = *ssrc else { continue };
            if t.spec.kind == TrackKind::Video {
                video_ssrc = Some(ssrc);
            }
            // RFC 3550 §A.3: fraction lost over the interval, cumulative lost.
            let (last_ext, last_packets) = t.last_report;
            let expected = s.extended_highest_seq.saturating_sub(last_ext);
            let received = s.packets.saturating_sub(last_packets);
            let lost = expected.saturating_sub(received);
            let fraction_lost = if expected == 0 || last_ext == 0 {
                0
            } else {
                ((lost << 8) / expected).min(255) as u8
            };
            t.last_report = (s.extended_highest_seq, s.packets);
            let (lsr, dlsr) = match t.last_sr {
                Some((lsr, at)) => {
                    let delay = now.saturating_duration_since(at).as_secs_f64();
                    (lsr, (delay * 65_536.0) as u32)
                }
                None => (0, 0),
            };
            blocks.push(ReportBlock {
                ssrc: Ssrc(ssrc),
                fraction_lost,
                cumulative_lost: s.lost.min(0x7f_ffff) as i32,
                highest_seq: s.extended_highest_seq as u32,
                jitter: s.jitter_rtp_units,
                lsr,
                dlsr,
            });
        }
        let mut rtcp = [0u8; crate::wire::rtcp::MAX_RTCP_COMPOUND];
        let mut len = write_receiver_report(&mut rtcp, p.ssrc, &blocks, Some("shardcast"));
        if report_due {
            p.next_report = Some(now + REPORT_INTERVAL);
        }
        if keyframe_due {
            if let Some(media) = video_ssrc {
                // RFC 4585 §6.3.1: PLI names the media source; the browser answers with a
                // keyframe.
                len += write_picture_loss(&mut rtcp[len..], p.ssrc, Ssrc(media));
            }
            p.next_keyframe_request = Some(now + KEYFRAME_INTERVAL);
        }
        if len == 0 {
            return;
        }
        let Some(sender) = p.transport.sender() else {
            return;
        };
        let mut out = vec![0u8; OUT_BUF];
        if let Ok(n) = sender.protect_rtcp(&rtcp[..len], &mut out) {
            out.truncate(n);
            self.outbox.push((to, out));
        }
    }
}

/// Remembers each track's last sender report (for LSR/DLSR in our reports); before the log
/// opens, nothing else uses them.
fn note_sender_reports(
    tracks: &mut [RxTrack],
    depacketizers: &[Depacketizer],
    rtcp: &[u8],
    now: Instant,
    ingest: &Ingest,
    id: SessionId,
    path: &str,
) {
    let Ok(packets) = parse_compound(rtcp) else {
        return;
    };
    let ssrcs: Vec<Option<u32>> = if depacketizers.is_empty() {
        ingest
            .receive_stats(id, path)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    } else {
        depacketizers.iter().map(Depacketizer::ssrc).collect()
    };
    for packet in packets {
        if let RtcpPacket::SenderReport { ssrc, ntp, .. } = packet {
            for (t, s) in tracks.iter_mut().zip(&ssrcs) {
                if *s == Some(ssrc.0) {
                    t.last_sr = Some((NtpTime::middle32(ntp), now));
                }
            }
        }
    }
}

/// The track as the depacketizer and the log take it. H.264's SPS and PPS are not known yet
/// (they come in band); Opus from browsers is 48 kHz stereo, channel mapping family 0
/// (RFC 7587 §7: `opus/48000/2` whatever the content).
fn announced(t: &WhipTrack) -> AnnouncedTrack {
    let (codec, format) = match &t.codec {
        ChosenCodec::H264 {
            profile_level_id, ..
        } => (
            Codec::H264(H264Config {
                profile_idc: profile_level_id.profile_idc,
                profile_compat: profile_level_id.profile_iop,
                level_idc: profile_level_id.level_idc,
                nal_length_size: 4,
                sps: Vec::new(),
                pps: Vec::new(),
                width: 0,
                height: 0,
            }),
            PayloadFormat::H264 {
                packetization_mode: 1,
            },
        ),
        ChosenCodec::Opus => (
            Codec::Opus(OpusConfig {
                channels: 2,
                pre_skip: 0,
                input_sample_rate_hz: 48_000,
                output_gain: 0,
                channel_mapping_family: 0,
                channel_mapping_table: Vec::new(),
            }),
            PayloadFormat::Opus,
        ),
    };
    AnnouncedTrack {
        control: String::new(),
        payload_type: t.payload_type,
        codec,
        kind: t.kind,
        format,
    }
}

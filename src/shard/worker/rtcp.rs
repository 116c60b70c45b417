//! RTCP on the shard: what arrives on its UDP ports (receiver reports digested into
//! statistics, BYE, liveness; ICMP errors that mark a viewer's port unreachable), and what it
//! sends (sender reports, RFC 3550 §6.4.1, and BYE, §6.6) over UDP or as `$` frames.

use super::*;

impl Worker {
    /// Reads RTCP (and NAT keep-alives) from both server ports: arrival from a viewer's address
    /// is liveness; with statistics on, RTCP is validated and its report blocks stored in the
    /// session for the next report, and a BYE ends the session (RFC 3550 §6.6) if it names an
    /// SSRC the viewer reported from in an earlier packet (others are counted and ignored).
    ///
    /// Distrust: a datagram only ever updates the session whose address sent it, and only for
    /// that session's SSRCs; invalid packets are counted and dropped whole. Work per datagram
    /// is a hash lookup and, for RTCP, one validating pass over its bytes with no allocation
    /// ([`digest_rtcp_into`] over `wire::rtcp::visit_compound`).
    pub(super) fn drain_rtcp(&mut self, now: Instant) {
        // Sessions whose viewer said BYE; a Vec allocates only when one does.
        let mut byes: Vec<SessionId> = Vec::new();
        for socket_is_rtcp in [true, false] {
            let fd = if socket_is_rtcp {
                self.rtcp.as_raw_fd()
            } else {
                self.udp.socket().as_raw_fd()
            };
            let received = match self.recv.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    // A pending ICMP error (IP_RECVERR's sk_err) is reported here once.
                    tracing::trace!(shard = self.index, "rtcp receive: {e}");
                    0
                }
            };
            for k in 0..received {
                let datagram = self.recv.datagram(k);
                let bytes = datagram.bytes;
                // Only what demultiplexes as RTCP (RFC 5761 §4: second octet 192..=223) is
                // RTCP; anything else is a NAT keep-alive and only counts as liveness
                // (GStreamer sends 0xCEFAEDFE to both ports, ffmpeg an empty RTP packet to the
                // RTP port). On the RTP port, where RTCP is not negotiated, the first octet
                // must also say version 2: GStreamer's keep-alives there are 200 random bytes
                // (and one in 32 of those still passes: see `keepalive_like` below).
                let is_rtcp = match bytes {
                    [first, second, ..] => {
                        (192..=223).contains(second) && (socket_is_rtcp || first >> 6 == 2)
                    }
                    _ => false,
                };
                let session = self
                    .recv
                    .source(k)
                    .and_then(|from| self.by_peer.get(&from))
                    .and_then(|&slot| self.sessions.get_mut(slot))
                    .and_then(Option::as_mut);
                let Some(s) = session else {
                    self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .rtcp_unknown_source
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                s.activity.touch(now);
                // From the client's RTP port to ours: RTCP muxed there is taken (RFC 5761),
                // but what is no valid compound is one of GStreamer's random keep-alives
                // that passed the octet test (one in 32 do), not invalid RTCP; and an SRTP
                // track's SRTCP only ever comes from its RTCP port (seen in CI as a
                // "dropped SRTCP" when a keep-alive looked like RTCP).
                let keepalive_like = !socket_is_rtcp
                    && {
                        let from = self.recv.source(k);
                        s.tracks.iter().any(|t| {
                        matches!(t.setup.dest, crate::shard::TrackDest::Udp { rtp, .. } if Some(rtp) == from)
                    })
                    };
                let srtp = s.tracks.iter().any(|t| t.setup.srtp.is_some());
                let keepalive = !is_rtcp
                    || (keepalive_like && (srtp || !crate::wire::rtcp::is_valid_compound(bytes)));
                if keepalive {
                    self.counters.nat_keepalives.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
                // An RTSPS viewer's `RTP/SAVP` tracks send SRTCP (RFC 3711 §3.4): unprotected
                // with the key its `KeyMgmt` gave, into a stack buffer; a bad tag, a replay or
                // no key drops it (counted), nothing else is touched.
                let mut plain = [0u8; SRTCP_IN_MAX];
                let bytes = if srtp {
                    let from = self.recv.source(k);
                    let receiver = s
                        .tracks
                        .iter_mut()
                        .find(|t| {
                            matches!(t.setup.dest, crate::shard::TrackDest::Udp { rtcp, .. } if Some(rtcp) == from)
                        })
                        .and_then(|t| t.srtp.as_mut())
                        .and_then(|ctx| ctx.receiver.as_mut());
                    let opened = match (receiver, plain.get_mut(..bytes.len())) {
                        (Some(rx), Some(buf)) => {
                            buf.copy_from_slice(bytes);
                            rx.unprotect_rtcp(buf).map_err(|e| e.to_string())
                        }
                        (None, _) => Err(format!("no SRTP track's RTCP comes from {from:?}")),
                        (_, None) => Err(format!("{} bytes is too long", bytes.len())),
                    };
                    match opened {
                        Ok(n) => &plain[..n],
                        Err(why) => {
                            tracing::trace!(shard = self.index, session = %format_args!("{:016X}", s.id), "SRTCP dropped: {why}");
                            self.counters.srtcp_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                } else {
                    bytes
                };
                if !self.stats {
                    continue;
                }
                let arrival = NtpTime::from_system_time(
                    std::time::UNIX_EPOCH + Duration::from_nanos(datagram.arrival_ns),
                );
                match digest_rtcp_into(
                    bytes,
                    &s.track_keys,
                    arrival,
                    &mut s.receptions,
                    &mut s.viewer_ssrcs,
                ) {
                    Err(e) => {
                        self.counters.rtcp_invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::trace!(shard = self.index, session = %format_args!("{:016X}", s.id), "RTCP dropped: {e}");
                    }
                    Ok(summary) => {
                        if summary.unknown_ssrc_blocks > 0 {
                            self.counters.rtcp_unknown_ssrc.fetch_add(
                                u64::from(summary.unknown_ssrc_blocks),
                                Ordering::Relaxed,
                            );
                        }
                        if summary.bye && !byes.contains(&s.id) {
                            byes.push(s.id);
                        } else if summary.bye_refused {
                            self.counters
                                .rtcp_byes_refused
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(shard = self.index, session = %format_args!("{:016X}", s.id), "RTCP BYE ignored: it names no SSRC the viewer reported from before (RFC 3550 §6.6)");
                        }
                    }
                }
            }
        }
        for id in byes {
            if self.remove(id, "viewer sent RTCP BYE") {
                self.counters.rtcp_byes.fetch_add(1, Ordering::Relaxed);
                self.send_end(id, EndReason::ClientBye);
            }
        }
        self.drain_unreachable();
    }

    /// Stops sending to viewers whose RTP port answered ICMP "unreachable" (queued on the
    /// socket by `IP_RECVERR`); their sessions end at the session timeout, as no RTCP can
    /// come from a closed port.
    pub(super) fn drain_unreachable(&mut self) {
        for _ in 0..RTCP_DRAIN_PER_TICK {
            let Some(err) = take_error(self.udp.socket()) else {
                break;
            };
            let QueuedError::Unreachable(addr) = err else {
                continue;
            };
            let Some(s) = self
                .by_peer
                .get(&addr)
                .and_then(|&slot| self.sessions.get_mut(slot))
                .and_then(Option::as_mut)
            else {
                continue;
            };
            if !s.unreachable {
                s.unreachable = true;
                s.generation = s.generation.wrapping_add(1);
                if s.state == PlayState::Playing {
                    s.state = PlayState::Paused;
                }
                self.counters
                    .unreachable_viewers
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(shard = self.index, session = %format_args!("{:016X}", s.id), %addr, "viewer port unreachable (ICMP); stopped sending until the session times out");
            }
        }
    }
}

/// Largest SRTCP datagram unprotected (a receiver report compound is far smaller).
const SRTCP_IN_MAX: usize = 2048;

/// Largest SRTCP compound sent: an SR or BYE with SDES plus SRTCP's index and tag.
const MAX_SRTCP: usize = MAX_RTCP_COMPOUND + 64;

/// Sends an RTCP compound on track `i`'s RTCP path: UDP from our RTCP port, or the odd
/// interleaved channel — queued in `tcp` when a pass is being gathered (sender reports, so
/// they ride in the viewer's write), else written at once (BYE). Best effort: RTCP loss is
/// tolerated by design (RFC 3550 §6).
pub(super) fn deliver_rtcp(
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    bytes: &[u8],
    rtcp: &UdpSocket,
    tcp: Option<(&mut TcpBatch, Instant)>,
) {
    // An RTSPS viewer's `RTP/SAVP` track: SRTCP (RFC 3711 §3.4), protected into a stack
    // buffer (one compound per report interval, never per packet).
    let mut protected = [0u8; MAX_SRTCP];
    let keyed = s.tracks[i].setup.srtp.is_some();
    let bytes = match s.tracks[i].srtp.as_mut() {
        Some(ctx) => match ctx.sender.protect_rtcp(bytes, &mut protected) {
            Ok(n) => &protected[..n],
            Err(_) => return,
        },
        None if keyed => return,
        None => bytes,
    };
    match &s.tracks[i].setup.dest {
        crate::shard::TrackDest::Udp { rtcp: dest, .. } => {
            let _ = rtcp.send_to(bytes, dest);
        }
        crate::shard::TrackDest::Interleaved { rtcp_channel, .. } => match tcp {
            Some((batch, now)) => batch.push_rtcp(slot, *rtcp_channel, bytes, now),
            None => {
                if let Some(sink) = &s.sink {
                    let header = crate::shard::tcp::interleaved_header(*rtcp_channel, bytes.len());
                    let _ = sink.write_message(&[&header, bytes]);
                }
            }
        },
        // SRTCP, protected with the session's keys, to the nominated address (RFC 3711
        // §3.4; rtcp-mux, RFC 5761: the WebRTC port carries it too).
        crate::shard::TrackDest::WebRtc => {
            if let Some(peer) = s.webrtc.as_mut() {
                peer.send_rtcp(bytes);
            }
        }
    }
}

/// The SR sender info of track `i` for media time `media_secs` (RFC 3550 §6.4.1: NTP and RTP
/// time of the same instant).
pub(super) fn sender_info(s: &ShardSession, i: usize, media_secs: f64) -> SenderInfo {
    let t = &s.tracks[i];
    let (ntp, rtp_timestamp) = s
        .log_report(i, Instant::now())
        .unwrap_or_else(|| (NtpTime::now(), t.rtp_timestamp_at_secs(media_secs)));
    SenderInfo {
        ssrc: t.setup.ssrc,
        ntp,
        rtp_timestamp,
        packet_count: t.packets_sent,
        octet_count: t.octets_sent,
    }
}

/// RTCP SR (+SDES) for track `i` of the session in `slot`.
pub(super) fn send_sender_report(
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    now: Instant,
    out: &mut Outputs<'_>,
) {
    let info = sender_info(s, i, s.media_secs_at(now));
    let n = write_sender_report(out.rtcp_buf, &info, &s.cname);
    deliver_rtcp(
        s,
        slot,
        i,
        &out.rtcp_buf[..n],
        out.rtcp,
        Some((&mut *out.tcp, now)),
    );
    s.tracks[i].last_sender_report = Some(now);
}

/// RTCP SR + SDES + BYE on every track (RFC 3550 §6.6), at teardown and end of stream,
/// written at once (outside a pass: nothing of the session is queued in the TCP batch).
pub(super) fn send_byes(s: &mut ShardSession, rtcp: &UdpSocket, buf: &mut [u8; MAX_RTCP_COMPOUND]) {
    let media_secs = s.media_secs_at(Instant::now());
    for i in 0..s.tracks.len() {
        let n = write_bye(buf, &sender_info(s, i, media_secs), &s.cname);
        deliver_rtcp(s, 0, i, &buf[..n], rtcp, None);
    }
}

//! Sending one sample to one viewer: [`emit_sample`] packetizes it (or takes the shard's
//! shared packetization of a live channel) and [`deliver`] hands each packet to the viewer's
//! transport — the UDP batch, the TCP batch, or the WebRTC batch protected at the flush —
//! with the viewer's own accounting. Split from `worker.rs`, which owns the loop.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;

/// The shard state one sample's sending writes to besides its session (borrowed from the
/// [`Worker`] for one call: a few references on the stack, nothing allocated).
pub(super) struct Outputs<'a> {
    /// When the sample being sent was due.
    pub(super) due: Instant,
    /// For a live log's session: the lowest log position this pass may read (its pin).
    pub(super) log_readable: u64,
    /// UDP packets queued for the pass's batched send.
    pub(super) pending: &'a mut Vec<PendingPacket>,
    /// WebRTC packets queued for the pass's protection and batched send, and their history.
    pub(super) srtp: SrtpOut<'a>,
    /// TCP frames queued for the pass's writes.
    pub(super) tcp: &'a mut TcpBatch,
    /// Live samples packetized once for every viewer of their channel on this shard.
    pub(super) live: &'a mut LiveCache,
    /// The shard's RTCP socket, for sender reports.
    pub(super) rtcp: &'a UdpSocket,
    /// Scratch for the sender report.
    pub(super) rtcp_buf: &'a mut [u8; MAX_RTCP_COMPOUND],
    /// The shard's published counters.
    pub(super) counters: &'a ShardCounters,
}

/// Where a WebRTC viewer's packets go: the pass's queue (protected at the flush) and the
/// history NACKs are answered from — the shard's ring of a live stream's track, kept once
/// for all its viewers, or the session's own.
pub(super) struct SrtpOut<'a> {
    /// WebRTC packets queued for the pass's protection and batched send.
    pub(super) pending: &'a mut Vec<PendingPacket>,
    /// The shard's histories of live streams.
    pub(super) histories: &'a mut StreamHistories,
    /// For a live log's sample being sent: its absolute log position, kept with each of its
    /// packets so a NACK re-sends them only while the bytes are readable; 0 otherwise.
    pub(super) log_pos: u64,
    /// The arena RTSPS viewers' SRTP packets are protected into (`Worker::sealed`).
    pub(super) sealed: &'a mut Vec<u8>,
}

/// Sends the next sample of track `i` of session `s` (in slot `slot`): its packets into
/// `out.pending` (UDP) or `out.tcp` (TCP frames for the pass's write), after a sender report when one is due. A
/// live track takes them from the shard's `out.live` cache, packetized once for every
/// viewer of the channel on the shard (on the first viewer's miss); other tracks packetize
/// with their own packetizer.
pub(super) fn emit_sample(
    out: &mut Outputs<'_>,
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    now: Instant,
) {
    if s.log.is_some() {
        emit_log_sample(out, s, slot, i, now);
        return;
    }
    out.srtp.log_pos = 0;
    // Packets of this sample already sent, when it goes out in slices (TCP_SLICE_BYTES).
    let sliced = s.tracks[i].sliced_packets;
    if !next_slice_may_go(s, i, now) {
        return;
    }
    let media = s.track_file(i).clone();
    let track = &media.index.tracks[s.tracks[i].setup.track_index];
    let next = s.tracks[i].next_sample;
    let Some(&sample) = track.samples.get(next) else {
        return;
    };
    // One sample per packet sequence, or a group of small AAC access units in one packet
    // (RFC 3640 §3.2.2), cut by sample index alone (as live.rs counts a channel's packets);
    // a group never crosses the end of the track (a live loop point) or of the PLAY range.
    let stop = s.tracks[i].stop_sample.clamp(next, track.samples.len());
    let group_len = s.tracks[i].packetizer.samples_per_packet(
        &track.samples[next..stop],
        next as u64,
        track.timescale,
    );
    let group = &track.samples[next..next + group_len.max(1)];
    if sliced == 0
        && s.tracks[i]
            .last_sender_report
            .is_none_or(|t| now.saturating_duration_since(t) >= SENDER_REPORT_INTERVAL)
    {
        send_sender_report(s, slot, i, now, out);
    }
    let slice_limit = slice_limit(s, i);
    let mut handed = 0usize;
    let bytes = media.bytes.as_slice();
    let ts = s.stamp(i, track.pts_ticks(&sample));
    let cached = match s.tracks[i].live_stream {
        Some(stream) => out.live.packets(
            stream,
            &SampleRequest {
                abs: s.absolute_sample(i),
                samples: group,
                index: next as u64,
                media: bytes,
                seq: s.tracks[i].seq,
                ts,
            },
            out.counters,
        ),
        None => None,
    };
    let error = match cached {
        Some(packets) => {
            for j in sliced as usize..packets.len() {
                if handed >= slice_limit {
                    s.tracks[i].sliced_packets = j as u32;
                    return;
                }
                let packet = packets.get(j);
                handed += packet.payload_len();
                if !deliver(
                    s,
                    slot,
                    i,
                    packet,
                    out.pending,
                    &mut out.srtp,
                    out.tcp,
                    out.due,
                ) {
                    return;
                }
            }
            packets.error
        }
        None => {
            if sliced == 0 {
                if s.live.is_some() {
                    out.counters
                        .live_packetizations
                        .fetch_add(1, Ordering::Relaxed);
                }
                s.tracks[i].packetizer.begin_samples(group, next as u64);
            }
            let mut count = sliced;
            loop {
                if handed >= slice_limit {
                    s.tracks[i].sliced_packets = count;
                    return;
                }
                let spec = match s.tracks[i].packetizer.next_packet(bytes) {
                    Ok(Some(spec)) => spec,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                };
                let t = &s.tracks[i];
                let packet = WirePacket::new(spec, t.setup.payload_type, t.seq, ts, t.setup.ssrc);
                handed += packet.payload_len();
                count += 1;
                if !deliver(
                    s,
                    slot,
                    i,
                    &packet,
                    out.pending,
                    &mut out.srtp,
                    out.tcp,
                    out.due,
                ) {
                    return;
                }
            }
        }
    };
    s.tracks[i].sliced_packets = 0;
    if let Some(e) = error {
        s.tracks[i].corrupt_samples += 1;
        if s.tracks[i].corrupt_samples == 1 {
            tracing::warn!(stream = %media.name, track = i, "corrupt sample {}: {e}", s.tracks[i].next_sample);
        }
    }
    for _ in 0..group.len() {
        s.advance(i);
    }
}

/// Whether track `i` may send (more of) its next sample now. A sample half sent in slices
/// ([`TCP_SLICE_BYTES`]) goes on only once the viewer's backlog is back under a slice; until
/// then nothing is queued, and a viewer that reads nothing for [`TCP_SLICE_STALL`] is cut
/// off as too slow.
pub(super) fn next_slice_may_go(s: &mut ShardSession, i: usize, now: Instant) -> bool {
    if s.tracks[i].sliced_packets == 0 {
        return true;
    }
    if let Some(sink) = &s.sink {
        // Nothing else drains the backlog while this track waits (the shard drains it when
        // it writes): hand the socket what it takes now.
        let _ = sink.flush();
        if !sink.is_closed() && sink.backlog_bytes() > TCP_SLICE_BYTES {
            let since = *s.tracks[i].slice_waiting_since.get_or_insert(now);
            if now.saturating_duration_since(since) > TCP_SLICE_STALL {
                s.cut_off = true;
            }
            return false;
        }
    }
    s.tracks[i].slice_waiting_since = None;
    true
}

/// Payload bytes track `i` hands its viewer per visit: interleaved viewers take a large
/// sample (a multi-megabyte keyframe, of a file or a live log) in slices; UDP packets are
/// never held back.
pub(super) fn slice_limit(s: &ShardSession, i: usize) -> usize {
    if s.tracks[i].is_interleaved() {
        TCP_SLICE_BYTES
    } else {
        usize::MAX
    }
}

/// Hands one packet of track `i` to its viewer, with the viewer's own accounting (next
/// sequence number, SR packet and octet counts, totals): queued in `pending` for the
/// batched UDP send (the header slab copied, the viewer's track as destination) or in
/// `tcp` as a `$` frame for the pass's write on the RTSP connection (RFC 2326 §10.12), or
/// for a WebRTC viewer in `srtp.pending`, protected with its SRTP keys at the flush, and
/// recorded for NACKs: in the shard's ring of its live stream (once for every viewer there)
/// or in the session's own history.
/// False when the viewer has no connection to write to (it is then cut off).
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver(
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    packet: &WirePacket,
    pending: &mut Vec<PendingPacket>,
    srtp: &mut SrtpOut<'_>,
    tcp: &mut TcpBatch,
    due: Instant,
) -> bool {
    let payload_len = packet.payload_len();
    if s.tracks[i].setup.srtp.is_some() {
        if let Err(keep) = seal(s, slot, i, packet, pending, srtp.sealed, tcp, due) {
            return keep;
        }
    } else if let crate::shard::TrackDest::Interleaved { rtp_channel, .. } = s.tracks[i].setup.dest
    {
        if s.sink.is_none() {
            s.cut_off = true;
            return false;
        }
        // A body that does not resolve is never framed: the frame's length must match it.
        if body_of(&packet.spec, s, i).is_none() {
            s.tracks[i].corrupt_samples += 1;
            return true;
        }
        tcp.push_rtp(
            slot,
            rtp_channel,
            packet.header(),
            BodyRef {
                track: i as u16,
                spec: packet.spec,
            },
            packet.spec.body_len as usize,
            due,
        );
    } else if matches!(s.tracks[i].setup.dest, crate::shard::TrackDest::WebRtc) {
        match s.tracks[i].live_stream {
            Some(stream) => srtp.histories.record(stream, packet, srtp.log_pos),
            None => {
                if let Some(peer) = s.webrtc.as_mut() {
                    peer.history.record(i, packet, srtp.log_pos);
                }
            }
        }
        srtp.pending.push(PendingPacket {
            packet: *packet,
            slot,
            track: i as u16,
            sealed: None,
        });
    } else {
        pending.push(PendingPacket {
            packet: *packet,
            slot,
            track: i as u16,
            sealed: None,
        });
    }
    let t = &mut s.tracks[i];
    t.seq = t.seq.wrapping_add(1);
    t.packets_sent = t.packets_sent.wrapping_add(1);
    t.octets_sent = t.octets_sent.wrapping_add(payload_len as u32);
    s.packets_total += 1;
    s.bytes_total += (RTP_HEADER_LEN + payload_len) as u64;
    true
}

/// Protects one packet of an RTSPS viewer's `RTP/SAVP` track (RFC 3711 §3.1, its SRTP
/// sender) once, where it leaves: into `sealed` for the batched UDP send, or into the TCP
/// batch's arena as a `$` frame (RFC 2326 §10.12 over RFC 3711: SRTP inside the
/// interleaved frame, within TLS). One copy per viewer and packet — encryption makes it
/// unavoidable; nothing is allocated once the arenas have grown to a pass. `Err(keep)`
/// when nothing was queued (`keep` false: the viewer is cut off).
#[allow(clippy::too_many_arguments)]
fn seal(
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    packet: &WirePacket,
    pending: &mut Vec<PendingPacket>,
    sealed: &mut Vec<u8>,
    tcp: &mut TcpBatch,
    due: Instant,
) -> Result<(), bool> {
    // A track with keys but no contexts sends nothing: never plain RTP.
    let Some(mut ctx) = s.tracks[i].srtp.take() else {
        s.tracks[i].corrupt_samples += 1;
        return Err(true);
    };
    let room =
        packet.header().len() + packet.spec.body_len as usize + ctx.sender.overhead().rtp_bytes;
    let outcome = match body_of(&packet.spec, s, i) {
        None => Err(true),
        Some(body) => match s.tracks[i].setup.dest {
            crate::shard::TrackDest::Interleaved { rtp_channel, .. } if s.sink.is_some() => {
                let queued = tcp.push_rtp_sealed(slot, rtp_channel, room, due, |out| {
                    ctx.sender
                        .protect_rtp(packet.header(), body.as_slices(), out)
                        .ok()
                });
                if queued {
                    Ok(())
                } else {
                    Err(true)
                }
            }
            crate::shard::TrackDest::Interleaved { .. } => Err(false),
            crate::shard::TrackDest::Udp { .. } => {
                let at = sealed.len();
                sealed.resize(at + room, 0);
                match ctx
                    .sender
                    .protect_rtp(packet.header(), body.as_slices(), &mut sealed[at..])
                {
                    Ok(len) => {
                        sealed.truncate(at + len);
                        pending.push(PendingPacket {
                            packet: *packet,
                            slot,
                            track: i as u16,
                            sealed: Some((at as u32, len as u32)),
                        });
                        Ok(())
                    }
                    Err(_) => {
                        sealed.truncate(at);
                        Err(true)
                    }
                }
            }
            crate::shard::TrackDest::WebRtc => Err(true),
        },
    };
    s.tracks[i].srtp = Some(ctx);
    match outcome {
        Err(true) => s.tracks[i].corrupt_samples += 1,
        Err(false) => s.cut_off = true,
        Ok(()) => {}
    }
    outcome
}

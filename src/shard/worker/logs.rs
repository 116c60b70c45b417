//! The shard's side of live logs (`crate::live_log`): which logs its sessions watch (each
//! pinned for a pass, `Worker::send_due`), tracks waiting for their next sample (queued again
//! when the writer's wake shows it arrived, `Worker::poll_logs`), and sending a log's sample
//! (`emit_log_sample`). The ordering argument that makes reading a growing log safe is in
//! `live_log`'s module doc and docs/ARCHITECTURE.md ("Live logs").

use super::emit::{next_slice_may_go, slice_limit};
use super::*;
use crate::media::track::Sample;
use crate::packetize::aac::MAX_AUS_PER_PACKET;

/// A live log some of the shard's sessions watch.
pub(super) struct WatchedLog {
    pub(super) log: Arc<LiveLog>,
    /// Viewer tracks watching it on this shard.
    pub(super) tracks: usize,
    /// The lowest position the current pass may read (its pin), see `live_log`.
    pub(super) readable: u64,
    /// Samples published per track when waiting tracks were last checked.
    pub(super) seen: Vec<u64>,
    /// Tracks whose next sample has not arrived: queued again when it does.
    pub(super) waiting: Vec<Due>,
}

impl Worker {
    /// A session of a live log arrives (`start`) or leaves: the log wakes this shard while
    /// it has watchers here; the shard pins it during its passes.
    pub(super) fn watch_log(&mut self, session: &ShardSession, start: bool) {
        let Some(log) = &session.log else {
            return;
        };
        let n = session.tracks.len();
        for _ in 0..n {
            log.watch(self.index, start);
        }
        match self.logs.iter().position(|w| Arc::ptr_eq(&w.log, log)) {
            Some(k) if start => self.logs[k].tracks += n,
            Some(k) => {
                self.logs[k].tracks = self.logs[k].tracks.saturating_sub(n);
                if self.logs[k].tracks == 0 {
                    self.logs.swap_remove(k);
                }
            }
            None if start => self.logs.push(WatchedLog {
                log: log.clone(),
                tracks: n,
                readable: 0,
                seen: vec![0; log.tracks.len()],
                waiting: Vec::new(),
            }),
            None => {}
        }
    }

    /// Queues the tracks whose next log sample arrived since the last check; ends the
    /// sessions of a log whose stream ended (BYE after the last sample they were sent).
    pub(super) fn poll_logs(&mut self) {
        let now = Instant::now();
        for w in &mut self.logs {
            let ended = w.log.state() == LogState::Ended;
            let mut changed = ended;
            for (k, seen) in w.seen.iter_mut().enumerate() {
                let published = w.log.tracks[k].published();
                changed |= published != *seen;
                *seen = published;
            }
            if !changed || w.waiting.is_empty() {
                continue;
            }
            let sessions = &mut self.sessions;
            let queue = &mut self.queue;
            w.waiting.retain(|due| {
                let Some(s) = sessions.get_mut(due.slot as usize).and_then(Option::as_mut) else {
                    return false;
                };
                if s.generation != due.generation || s.state != PlayState::Playing {
                    return false;
                }
                match s.due(due.track as usize, s.tracks[due.track as usize].next_sample) {
                    Some(at) => {
                        queue.push(at, *due);
                        false
                    }
                    None if ended => {
                        s.state = PlayState::Ended;
                        queue.push(
                            now + BYE_DELAY,
                            Due {
                                track: BYE_TRACK,
                                ..*due
                            },
                        );
                        false
                    }
                    None => true,
                }
            });
        }
    }
}

/// Sends the next sample of track `i` of a live log's session: as `emit_sample` does for a
/// file, with the sample taken from the log's index (readable in this pass, see `live_log`)
/// and the log's numbering. A sample that is gone (the viewer fell behind by half the ring,
/// or its index entry was reused) moves the track to the latest keyframe instead.
pub(super) fn emit_log_sample(
    out: &mut Outputs<'_>,
    s: &mut ShardSession,
    slot: u32,
    i: usize,
    now: Instant,
) {
    let Some(log) = s.log.clone() else {
        return;
    };
    let track_index = s.tracks[i].setup.track_index;
    let next = s.tracks[i].next_sample as u64;
    // Packets of this sample already sent, when it goes out in slices (TCP_SLICE_BYTES).
    let sliced = s.tracks[i].sliced_packets;
    if !next_slice_may_go(s, i, now) {
        return;
    }
    let sample = match log.lookup(track_index, next, out.log_readable) {
        Lookup::Ready(sample) => sample,
        Lookup::NotYet => return,
        Lookup::Gone => {
            log.counters.reader_skips.fetch_add(1, Ordering::Relaxed);
            let to = log
                .latest_keyframe(track_index, out.log_readable)
                .map_or_else(|| log.tracks[track_index].published(), |k| k.n);
            s.tracks[i].next_sample = to.max(next + 1) as usize;
            s.tracks[i].sliced_packets = 0;
            return;
        }
    };
    if sample.joins && sliced == 0 {
        // Carried in the packet of its group's head (`LogSample::joins`): a viewer that
        // starts here (or jumped here) begins with the next group.
        s.advance(i);
        return;
    }
    let bytes = log.media.bytes.as_slice();
    // The AAC frames that arrived in one publisher packet go out as that one packet: the
    // samples after the head that join it were published with it, so they are readable now.
    let mut group_buf = [Sample::default(); MAX_AUS_PER_PACKET];
    group_buf[0] = sample.as_sample(log.capacity());
    let mut group_len = 1;
    let mut newest = sample;
    while group_len < MAX_AUS_PER_PACKET {
        match log.lookup(track_index, next + group_len as u64, out.log_readable) {
            Lookup::Ready(m) if m.joins => {
                group_buf[group_len] = m.as_sample(log.capacity());
                group_len += 1;
                newest = m;
            }
            _ => break,
        }
    }
    let group = &group_buf[..group_len];
    // Our sender reports without the publisher's clock map the RTP time of the group's
    // *last* frame to its arrival: the group arrived when that frame did (a publisher's or
    // our RTMP regrouping's packing holds the first ones back), so the head's time would
    // put the audio as late as the group is long (130 ms for a 150 ms hold).
    if sliced == 0
        && s.tracks[i]
            .last_sender_report
            .is_none_or(|t| now.saturating_duration_since(t) >= SENDER_REPORT_INTERVAL)
    {
        s.tracks[i]
            .log_last
            .get_or_insert((newest.pts, log.arrival(&newest)));
        send_sender_report(s, slot, i, now, out);
    }
    s.tracks[i].log_last = Some((newest.pts, log.arrival(&newest)));
    // The group's samples follow its head in the ring: its position bounds them all.
    out.srtp.log_pos = sample.pos;
    // The sample's first sequence number comes from the log; a slice continues after the
    // packets already sent.
    s.stamp_log(i, sample.packets_before);
    let ts = s.stamp(i, sample.pts);
    let first_seq = s.tracks[i].seq;
    s.tracks[i].seq = first_seq.wrapping_add(sliced as u16);
    let slice_limit = slice_limit(s, i);
    let mut handed = 0usize;
    let cached = match s.tracks[i].live_stream {
        Some(stream) => out.live.packets(
            stream,
            &SampleRequest {
                abs: next,
                samples: group,
                index: next,
                media: bytes,
                seq: first_seq,
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
                out.counters
                    .live_packetizations
                    .fetch_add(1, Ordering::Relaxed);
                s.tracks[i].packetizer.begin_samples(group, next);
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
            tracing::warn!(stream = %log.name(), track = i, "corrupt sample {next}: {e}");
        }
    }
    for _ in 0..group.len() {
        s.advance(i);
    }
}

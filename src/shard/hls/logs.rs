//! HLS for ingested streams, the shard side: each live log that HLS serves has one
//! [`LogHls`], shared by every shard through the context's [`LiveLogs`] directory, which
//! cuts the log into segments as samples arrive and keeps each finished segment's bytes in a
//! bounded store (`crate::hls::log_segments`). Design: docs/design/live-ingest.md, "HLS for
//! ingested streams".
//!
//! Why a copy: a response may take seconds, a shard's pin lasts a pass (`crate::live_log`).
//! The shard that first sees new samples takes the store's lock, pins the log with its own
//! pin slot (it runs outside its send pass, on its own thread, so the pin argument holds
//! unchanged), copies the finished segment out of the ring once, and unpins. Every viewer on
//! every shard then shares that copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::hls::fmp4::{fragment, init_segment, TrackRun};
use crate::hls::log_segments::{
    cut_before, Cut, LogReload, SegmentStore, StoredPart, StoredSegment,
};
use crate::hls::segments::{
    fragment_sequence_number, LIVE_WINDOW_SEGMENTS, MAX_SEGMENT, PART_TARGET,
};
use crate::live_log::{LiveLog, LogSample, LogState, Lookup};
use crate::media::track::{MediaIndex, Sample, Track, TrackKind};

/// How far the open segment may be behind the log's newest sample before the store starts
/// again a window behind the edge (more than the store holds: cutting through would copy
/// segments only to drop them).
const CATCH_UP: Duration = Duration::from_secs(
    (crate::hls::log_segments::STORE_SEGMENTS as u64 + 1) * MAX_SEGMENT.as_secs(),
);

/// The live logs HLS may serve, by stream path: written by the control thread as logs come
/// and go (`SessionCore::add_log`/`remove_log`), read by the shards per request.
pub type LiveLogs = Arc<RwLock<HashMap<String, Arc<LogHls>>>>;

/// One ingested stream as HLS serves it: the log, its init segment, its segment store.
#[derive(Debug)]
pub struct LogHls {
    /// The live log.
    pub log: Arc<LiveLog>,
    /// The init segment (`ftyp` + `moov`) from the tracks' parameter sets, or why not.
    init: Result<Arc<[u8]>, String>,
    state: Mutex<State>,
}

/// What a request sees of a log's HLS state after a refresh.
#[derive(Debug)]
pub(crate) enum LogView<T> {
    /// No finished segment yet.
    Empty,
    /// The answer.
    Ready(T),
}

/// What a held request of an ingested stream waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// A blocking playlist reload: segment `msn` (and its part `part`) in the playlist.
    Reload {
        /// `_HLS_msn`.
        msn: u64,
        /// `_HLS_part`.
        part: Option<usize>,
    },
    /// The part the preload hint names.
    Part {
        /// Its segment.
        msn: u64,
        /// Its index.
        part: usize,
    },
}

#[derive(Debug, Default)]
struct State {
    store: SegmentStore,
    open: Option<Open>,
    next_msn: u64,
    /// Per track, the log decode time that is fragment time zero (the lead track's fixed at
    /// the first start, the others' then or at their first sample after it).
    bases: Vec<Option<i64>>,
    /// Arrival of the keyframe the store started at (ns since the log's epoch).
    start_arrival_ns: u64,
    /// Fragment time zero on our clock (ns since the log's epoch) by the lead track's
    /// earliest arrival ([`LiveLog::earliest_arrival_lag_ns`]): the other tracks' media
    /// times are put against it.
    time0_ns: Option<i128>,
    /// The next finished segment follows a restart.
    discontinuity: bool,
}

/// The segment being filled, and its part being filled.
#[derive(Debug)]
struct Open {
    /// Per track, its first sample number.
    start: Vec<u64>,
    /// The lead track's decode time at the segment's start.
    lead_dts: i64,
    independent: bool,
    /// The next lead-track sample to look at.
    next_lead: u64,
    /// The decode time of its last lead-track sample so far, and the last step between two.
    last_dts: i64,
    step: i64,
    /// Arrival of its first lead-track sample (ns since the log's epoch).
    arrival_ns: u64,
    /// Per track, the first sample number of the part being filled (the end of the
    /// finished parts).
    part_start: Vec<u64>,
    /// The part's first lead-track sample and its decode time.
    part_lead: u64,
    part_lead_dts: i64,
    /// The part starts with a keyframe.
    part_independent: bool,
    /// Parts finished so far.
    parts: usize,
}

impl Open {
    fn at(start: Vec<u64>, key: &LogSample, independent: bool) -> Self {
        Self {
            part_start: start.clone(),
            start,
            lead_dts: key.dts,
            independent,
            next_lead: key.n + 1,
            last_dts: key.dts,
            step: 0,
            arrival_ns: key.arrival_ns,
            part_lead: key.n,
            part_lead_dts: key.dts,
            part_independent: independent,
            parts: 0,
        }
    }
}

/// A fragment built out of the ring: its bytes and, per track, the sample after its last.
struct Built {
    bytes: Result<Vec<u8>, String>,
    ends: Vec<u64>,
}

/// A log's video track, else its first track: the one segments are cut on.
fn lead_track(log: &LiveLog) -> usize {
    log.tracks
        .iter()
        .position(|t| t.spec.kind == TrackKind::Video)
        .unwrap_or(0)
}

/// How far before the store's time 0 (or a restart's keyframe) a track's sample may decode
/// and still start there: the rounding of converting between the tracks' clocks and ours.
const ALIGN_SLACK_NS: i128 = 1_000_000;

fn ticks_to_nanos(ticks: i64, clock_hz: u32) -> i128 {
    i128::from(ticks) * 1_000_000_000 / i128::from(clock_hz.max(1))
}

fn nanos_to_ticks(nanos: i128, clock_hz: u32) -> i64 {
    (nanos * i128::from(clock_hz.max(1)) / 1_000_000_000) as i64
}

impl LogHls {
    /// HLS state for `log` (nothing is read from the log until a request comes).
    pub fn new(log: Arc<LiveLog>) -> Self {
        let init = init_segment(&log.media.index)
            .map(Arc::from)
            .map_err(|e| e.to_string());
        Self {
            log,
            init,
            state: Mutex::new(State::default()),
        }
    }

    /// The init segment, or why the stream cannot be served as fMP4.
    pub(crate) fn init(&self) -> Result<Arc<[u8]>, String> {
        self.init.clone()
    }

    /// How much the log has grown: the samples published over all tracks plus its state (a
    /// shard holding blocking requests compares it after each wake, one atomic load a track).
    pub(crate) fn progress(&self) -> u64 {
        let samples: u64 = self.log.tracks.iter().map(|t| t.published()).sum();
        samples.wrapping_mul(4) + self.log.state() as u64
    }

    /// Whether a held request can be answered now (after bringing the store up to date):
    /// what it waits for is there, or will never come (the stream ended, the hinted part
    /// moved on).
    pub(crate) fn ready(&self, shard: usize, wanted: Wanted) -> bool {
        let view = self.with_store(shard, |store, ended| {
            ended
                || match wanted {
                    Wanted::Reload { msn, part } => {
                        store.reload(msn, part, PART_TARGET) != LogReload::Wait
                    }
                    Wanted::Part { msn, part } => store.open_edge() != (msn, part),
                }
        });
        match view {
            LogView::Ready(ready) => ready,
            LogView::Empty => self.log.state() == LogState::Ended,
        }
    }

    /// Cuts and stores what arrived since the last refresh (pinning the log with `shard`'s
    /// pin slot while copying), then reads the store (`ended`: the log ended).
    pub(crate) fn with_store<T>(
        &self,
        shard: usize,
        read: impl FnOnce(&SegmentStore, bool) -> T,
    ) -> LogView<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let readable = self.log.pin(shard);
        self.scan(&mut st, readable);
        self.log.unpin(shard);
        if st.store.is_empty() {
            return LogView::Empty;
        }
        LogView::Ready(read(&st.store, self.log.state() == LogState::Ended))
    }

    /// Starts the open segment at a keyframe: the oldest of the last few the log still
    /// holds (`back` of them), so a first player gets a window at once.
    fn start(&self, st: &mut State, readable: u64, back: usize) {
        let log = &*self.log;
        let lead = lead_track(log);
        let Some(latest) = log.latest_keyframe(lead, readable) else {
            return;
        };
        let mut key = latest;
        let mut found = 0;
        let mut n = latest.n;
        // Bounded: at most one index ring of entries.
        let floor = latest
            .n
            .saturating_sub(crate::live_log::INDEX_ENTRIES as u64 - 1);
        while found < back && n > floor {
            n -= 1;
            match log.lookup(lead, n, readable) {
                Lookup::Ready(s) if s.sync => {
                    key = s;
                    found += 1;
                }
                Lookup::Ready(_) => {}
                _ => break,
            }
        }
        let arrival = key.arrival_ns;
        if st.bases.is_empty() {
            let lead_clock = log.tracks[lead].clock_rate_hz();
            st.time0_ns = log
                .earliest_arrival_lag_ns(lead, readable)
                .map(|lag| ticks_to_nanos(key.dts, lead_clock) + lag);
            st.bases = (0..log.tracks.len())
                .map(|j| match j == lead {
                    true => Some(key.dts),
                    false => self.aligned_base(st.time0_ns, j, readable),
                })
                .collect();
            st.start_arrival_ns = arrival;
        }
        let lead_clock = log.tracks[lead].clock_rate_hz();
        // The keyframe's time on the store's timeline, where every track starts.
        let key_ns = st
            .bases
            .get(lead)
            .copied()
            .flatten()
            .map_or(0, |b| ticks_to_nanos(key.dts - b, lead_clock));
        let start: Vec<u64> = (0..log.tracks.len())
            .map(|j| match st.bases.get(j).copied().flatten() {
                _ if j == lead => key.n,
                Some(base) => {
                    let clock = log.tracks[j].clock_rate_hz();
                    let from = base + nanos_to_ticks(key_ns - ALIGN_SLACK_NS, clock);
                    log.first_decoding_from(j, from, readable)
                }
                None => log.first_arrived_since(j, arrival, readable),
            })
            .collect();
        st.open = Some(Open::at(start, &key, true));
    }

    /// Track `j`'s decode time at the store's time 0 (`time0_ns` on our clock), aligned by
    /// media time: the track's media is put on our clock by its earliest arrival relative to
    /// its decode times ([`LiveLog::earliest_arrival_lag_ns`]), so an AAC frame and a video
    /// frame the publisher captured together get the same time whatever the publisher's (or
    /// our RTMP regrouping's) audio packing delayed. Aligning by a first sample's own arrival
    /// put the audio 87 ms (RTMP) to 130 ms (ffmpeg's RTSP packing) late. `None` before the
    /// track's first sample (or without `time0_ns`).
    fn aligned_base(&self, time0_ns: Option<i128>, j: usize, readable: u64) -> Option<i64> {
        let lag = self.log.earliest_arrival_lag_ns(j, readable)?;
        Some(nanos_to_ticks(
            time0_ns? - lag,
            self.log.tracks[j].clock_rate_hz(),
        ))
    }

    /// The open segment is given up (the store starts again elsewhere): if parts of it were
    /// published, it is finished with them, so a part's URI never names other bytes.
    fn abandon(&self, st: &mut State, readable: u64) {
        let Some(open) = st.open.as_ref() else {
            return;
        };
        if open.parts > 0 {
            let (end, end_dts) = (open.part_lead, open.part_lead_dts);
            self.finish_segment(st, readable, end, end_dts);
        }
        st.open = None;
        st.discontinuity = true;
    }

    fn scan(&self, st: &mut State, readable: u64) {
        let log = &*self.log;
        let lead = lead_track(log);
        let video = log.tracks[lead].spec.kind == TrackKind::Video;
        let clock = log.tracks[lead].clock_rate_hz();
        let part_target = ticks_from(PART_TARGET, clock);
        if st.open.is_none() {
            self.start(st, readable, LIVE_WINDOW_SEGMENTS as usize);
        }
        // Nobody asked for a while: rather than cut (and copy) every segment since, only to
        // drop most from the store, start again a window behind the edge.
        if let Some(open) = &st.open {
            let newest = log.tracks[lead].published().checked_sub(1);
            // By arrival, not by timestamps (a source's clock may jump).
            let behind = match newest.map(|n| log.lookup(lead, n, readable)) {
                Some(Lookup::Ready(s)) => s.arrival_ns.saturating_sub(open.arrival_ns),
                _ => 0,
            };
            if u128::from(behind) > CATCH_UP.as_nanos() {
                self.abandon(st, readable);
                self.start(st, readable, LIVE_WINDOW_SEGMENTS as usize);
            }
        }
        // Bounded: one pass over at most the index ring.
        for _ in 0..crate::live_log::INDEX_ENTRIES {
            let Some(open) = st.open.as_mut() else {
                return;
            };
            match log.lookup(lead, open.next_lead, readable) {
                Lookup::NotYet => return,
                Lookup::Gone => {
                    // Nobody asked for so long that the log moved on: restart at its edge.
                    log.counters
                        .reader_skips
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.abandon(st, readable);
                    self.start(st, readable, 0);
                }
                Lookup::Ready(s) => {
                    let step = s.dts - open.last_dts;
                    if ticks_to_nanos(step, clock) > MAX_SEGMENT.as_nanos() as i128 {
                        // The source's clock jumped: the segment ends one step after its
                        // last sample, and the next starts with a discontinuity instead of
                        // an hour-long EXTINF (RFC 8216 §4.3.2.3).
                        let end_dts = open.last_dts + open.step.max(1);
                        self.finish_part(st, readable, s.n, end_dts);
                        self.finish_segment(st, readable, s.n, end_dts);
                        self.open_next(st, &s, s.sync || !video);
                        st.discontinuity = true;
                        continue;
                    }
                    // A part longer than the target (the frame rate dropped): it ends before
                    // its last sample, which starts the next part (RFC 8216bis §4.4.4.9:
                    // no part longer than PART-TARGET).
                    if open.next_lead > open.part_lead + 1
                        && s.dts - open.part_lead_dts > part_target
                    {
                        let (end, end_dts) = (open.next_lead - 1, open.last_dts);
                        self.finish_part(st, readable, end, end_dts);
                    }
                    let Some(open) = st.open.as_mut() else {
                        return;
                    };
                    let since = ticks_to_nanos(s.dts - open.lead_dts, clock).max(0);
                    let since = Duration::from_nanos(since as u64);
                    match cut_before(since, s.sync || !video, st.store.target_fixed()) {
                        Cut::No => {
                            // The part ends before `s` when one more frame would run it past
                            // the target: it is finished now, a frame early, rather than
                            // when the next sample arrives.
                            let next_step = if step > 0 { step } else { open.step };
                            if s.n > open.part_lead
                                && s.dts + next_step.max(0) - open.part_lead_dts > part_target
                            {
                                self.finish_part(st, readable, s.n, s.dts);
                            }
                            let Some(open) = st.open.as_mut() else {
                                return;
                            };
                            open.next_lead += 1;
                            open.last_dts = s.dts;
                            if step > 0 {
                                open.step = step;
                            }
                        }
                        cut => {
                            self.finish_part(st, readable, s.n, s.dts);
                            self.finish_segment(st, readable, s.n, s.dts);
                            self.open_next(st, &s, cut == Cut::AtKeyframe);
                        }
                    }
                }
            }
        }
    }

    /// Opens the next segment (and its first part) at lead sample `at`.
    fn open_next(&self, st: &mut State, at: &LogSample, independent: bool) {
        let start = match &st.open {
            Some(open) => open.part_start.clone(),
            None => return,
        };
        st.open = Some(Open::at(start, at, independent));
    }

    /// Builds the fragment of lead samples `from[lead]..lead_end` (ending at decode time
    /// `end_dts`) and, for the other tracks, from `from[j]` to `to[j]` when given, else up to
    /// the cut (their samples decoding before `end_dts`, as far as they arrived).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        st: &mut State,
        readable: u64,
        from: &[u64],
        to: Option<&[u64]>,
        lead_end: u64,
        end_dts: i64,
        sequence: u32,
    ) -> Option<Built> {
        let log = &*self.log;
        let lead = lead_track(log);
        let Some(Some(lead_base)) = st.bases.get(lead).copied() else {
            return None;
        };
        let lead_clock = log.tracks[lead].clock_rate_hz();
        let cut_ns = ticks_to_nanos(end_dts - lead_base, lead_clock);
        let capacity = log.capacity();
        let mut tracks: Vec<Track> = Vec::with_capacity(log.tracks.len());
        let mut runs = Vec::with_capacity(log.tracks.len());
        let mut ends = from.to_vec();
        for (j, media_track) in log.media.index.tracks.iter().enumerate() {
            let clock = log.tracks[j].clock_rate_hz();
            let mut base = st.bases.get(j).copied().flatten();
            let mut samples: Vec<Sample> = Vec::new();
            let mut n = from.get(j).copied().unwrap_or(0);
            let limit = if j == lead {
                Some(lead_end)
            } else {
                to.and_then(|t| t.get(j).copied())
            };
            let mut next_dts = None;
            loop {
                if limit.is_some_and(|l| n >= l) {
                    if j == lead {
                        next_dts = Some(end_dts);
                    } else if let Lookup::Ready(s) = log.lookup(j, n, readable) {
                        next_dts = Some(s.dts);
                    }
                    break;
                }
                match log.lookup(j, n, readable) {
                    Lookup::Ready(s) => {
                        let base = *base.get_or_insert_with(|| {
                            // The track's first sample since the start: aligned by media
                            // time, else as far after the keyframe as it arrived after it.
                            self.aligned_base(st.time0_ns, j, readable)
                                .unwrap_or_else(|| {
                                    let after = s.arrival_ns.saturating_sub(st.start_arrival_ns);
                                    s.dts - nanos_to_ticks(i128::from(after), clock)
                                })
                        });
                        if s.dts < base - nanos_to_ticks(ALIGN_SLACK_NS, clock) {
                            // Before the store's time 0 (an AAC group begun before the
                            // keyframe): no fragment can hold it. (Within the slack, the
                            // clocks' rounding: it starts at 0.)
                            n += 1;
                            continue;
                        }
                        // A sample goes to the fragment in which it starts (as channels'
                        // parts do): an AAC frame straddling the cut stays here, so this
                        // fragment's audio ends at or past its video's end and MSE's buffered
                        // range (the tracks' intersection) ends where the playlist says the
                        // part does. Ending a frame early instead left the buffer's end
                        // inside a segment's last part, and hls.js 1.7.4 reloaded that part
                        // in a loop instead of moving on to the next segment's first
                        // (docs/design/live-ingest.md "Joining early").
                        if limit.is_none() && ticks_to_nanos(s.dts - base, clock) >= cut_ns {
                            next_dts = Some(s.dts);
                            break;
                        }
                        let mut sample = s.as_sample(capacity);
                        sample.dts = (s.dts - base).max(0) as u64;
                        samples.push(sample);
                        n += 1;
                    }
                    Lookup::NotYet => break,
                    // Overwritten under a stalled store: leave it out.
                    Lookup::Gone => n += 1,
                }
                if samples.len() > crate::live_log::INDEX_ENTRIES {
                    break;
                }
            }
            if let Some(e) = ends.get_mut(j) {
                *e = n;
            }
            if let Some(b) = st.bases.get_mut(j) {
                *b = base;
            }
            let base = base.unwrap_or(0);
            // Up to the next sample, unless that is past a jump of the source's clock: then
            // as long as the one before.
            let max_ticks = nanos_to_ticks(MAX_SEGMENT.as_nanos() as i128, clock) as u64;
            let previous_step = match samples.len() {
                n if n > 1 => Some(samples[n - 1].dts.saturating_sub(samples[n - 2].dts)),
                _ => None,
            };
            let last_duration = match (samples.last(), next_dts) {
                (Some(last), Some(d)) => Some(((d - base).max(0) as u64).saturating_sub(last.dts))
                    .filter(|&d| d <= max_ticks)
                    .or(previous_step),
                (Some(_), None) => previous_step,
                _ => None,
            };
            runs.push(TrackRun {
                track: j,
                samples: 0..samples.len(),
                base_decode_time: samples.first().map_or(0, |s| s.dts),
                last_duration: last_duration.filter(|&d| d > 0),
            });
            tracks.push(Track {
                samples,
                ..media_track.clone()
            });
        }
        let index = MediaIndex {
            tracks,
            skipped: Vec::new(),
        };
        // The copy, under this shard's pin: every sample was readable at `readable`.
        let bytes = fragment(&index, sequence, &runs)
            .map(|f| f.to_vec(log.media.bytes.as_slice()))
            .map_err(|e| e.to_string());
        Some(Built { bytes, ends })
    }

    /// Finishes the open part before lead sample `end` (decode time `end_dts`) and stores
    /// it; the next part starts there.
    fn finish_part(&self, st: &mut State, readable: u64, end: u64, end_dts: i64) {
        let Some(open) = st.open.as_ref() else {
            return;
        };
        if end <= open.part_lead {
            return;
        }
        let from = open.part_start.clone();
        let (part_dts, independent, k) = (open.part_lead_dts, open.part_independent, open.parts);
        let msn = st.next_msn;
        let lead = lead_track(&self.log);
        let clock = self.log.tracks[lead].clock_rate_hz();
        let sequence = fragment_sequence_number(msn, k);
        let Some(built) = self.build(st, readable, &from, None, end, end_dts, sequence) else {
            return;
        };
        match built.bytes {
            Ok(bytes) => {
                let duration = ticks_to_nanos(end_dts - part_dts, clock).max(0);
                st.store.push_part(
                    msn,
                    st.discontinuity,
                    StoredPart {
                        duration: Duration::from_nanos(duration as u64),
                        independent,
                        bytes: bytes.into(),
                    },
                );
            }
            Err(e) => tracing::warn!(stream = %self.log.name(), "HLS part {msn}.{k}: {e}"),
        }
        if let Some(open) = st.open.as_mut() {
            open.part_start = built.ends;
            open.part_lead = end;
            open.part_lead_dts = end_dts;
            open.part_independent = false;
            open.parts += 1;
            let video = self.log.tracks[lead].spec.kind == TrackKind::Video;
            if let Lookup::Ready(s) = self.log.lookup(lead, end, readable) {
                open.part_independent = s.sync || !video;
            }
        }
    }

    /// Finishes the open segment at the end of its last finished part (lead sample `end`,
    /// decode time `end_dts`) and stores it: one fragment over exactly its parts' samples.
    fn finish_segment(&self, st: &mut State, readable: u64, end: u64, end_dts: i64) {
        let Some(open) = st.open.as_ref() else {
            return;
        };
        let (from, to) = (open.start.clone(), open.part_start.clone());
        let (lead_dts, independent) = (open.lead_dts, open.independent);
        let msn = st.next_msn;
        let lead = lead_track(&self.log);
        let clock = self.log.tracks[lead].clock_rate_hz();
        let sequence = fragment_sequence_number(msn, 0);
        let Some(built) = self.build(st, readable, &from, Some(&to), end, end_dts, sequence) else {
            return;
        };
        let duration =
            Duration::from_nanos(ticks_to_nanos(end_dts - lead_dts, clock).max(0) as u64);
        match built.bytes {
            Ok(bytes) => {
                st.store.push(StoredSegment {
                    msn,
                    duration,
                    independent,
                    discontinuity: std::mem::take(&mut st.discontinuity),
                    bytes: bytes.into(),
                    parts: Vec::new(),
                });
                st.next_msn += 1;
            }
            Err(e) => {
                tracing::warn!(stream = %self.log.name(), "HLS segment {msn}: {e}");
            }
        }
    }
}

/// `d` in ticks of a `clock_hz` clock.
fn ticks_from(d: Duration, clock_hz: u32) -> i64 {
    nanos_to_ticks(d.as_nanos() as i128, clock_hz)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::ingest::{Frame, LogTrackSpec};
    use crate::live_log::{LogWriter, DEFAULT_CAPACITY};
    use crate::media::library::SAMPLE_MP4;
    use crate::media::mp4::parse_mp4;
    use crate::media::MediaFile;
    use crate::packetize::DEFAULT_PAYLOAD_BUDGET;
    use crate::poll::Waker;

    /// The bundled sample's frames as a real-time publisher sends them (decode order across
    /// tracks, each track's clock the RTP one: 90 kHz video, 48 kHz AAC), up to `secs`.
    fn publish_sample(w: &mut LogWriter, file: &MediaFile, t0: Instant, secs: f64) {
        publish_range(w, file, t0, 0.0..secs, 0.0);
    }

    /// Like [`publish_sample`], the frames decoded in `range` (seconds), their timestamps
    /// `jump_secs` later than the file's (a source whose clock jumped).
    pub(super) fn publish_range(
        w: &mut LogWriter,
        file: &MediaFile,
        t0: Instant,
        range: std::ops::Range<f64>,
        jump_secs: f64,
    ) {
        let bytes = file.bytes.as_slice();
        let mut frames = Vec::new();
        for (k, t) in file.index.tracks.iter().enumerate() {
            let clock = t.codec.clock_rate_hz();
            let jump = (jump_secs * f64::from(clock)) as i64;
            let rescale = |v: i64| v * i64::from(clock) / i64::from(t.timescale) + jump;
            for s in &t.samples {
                let at = t.dts_ticks(s) as f64 / f64::from(t.timescale);
                // From the start: the frames before zero too (B-frames decode early).
                let from = if range.start <= 0.0 {
                    f64::MIN
                } else {
                    range.start
                };
                if at >= from && at < range.end {
                    frames.push((at, k, rescale(t.pts_ticks(s)), rescale(t.dts_ticks(s)), *s));
                }
            }
        }
        frames.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, k, pts, dts, s) in frames {
            let data = &bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize];
            let frame = Frame {
                track: k,
                pts,
                dts,
                sync: s.sync,
                data,
            };
            let now = t0 + Duration::from_secs_f64(at.max(0.0));
            assert!(w.append(&frame, now).is_ok(), "frame at {at}");
        }
    }

    pub(super) fn writer(file: &MediaFile, capacity: usize, t0: Instant) -> LogWriter {
        let specs: Vec<LogTrackSpec> = file
            .index
            .tracks
            .iter()
            .map(|t| LogTrackSpec {
                kind: t.kind,
                codec: t.codec.clone(),
            })
            .collect();
        let wakers = vec![Arc::new(Waker::new().unwrap())];
        LogWriter::create(
            "live/t",
            &specs,
            capacity,
            DEFAULT_PAYLOAD_BUDGET,
            wakers,
            t0,
        )
        .unwrap()
    }

    /// Init segment plus every stored segment, read back by the crate's fragmented-MP4
    /// reader: each segment starts at a keyframe, lasts the sample's GOP (2 s), and the
    /// samples are the publisher's, every one once, in order, byte for byte.
    #[test]
    fn segments_start_at_keyframes_and_hold_every_published_sample_once() {
        let file = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
        let t0 = Instant::now();
        let mut w = writer(&file, DEFAULT_CAPACITY, t0);
        publish_sample(&mut w, &file, t0, 9.0);
        let hls = LogHls::new(w.log().clone());
        let LogView::Ready((mp4, listed, target)) = hls.with_store(0, |store, _| {
            let target = store.target();
            let mut mp4 = hls.init().unwrap().to_vec();
            let mut listed = Vec::new();
            for seg in store.window() {
                assert!(seg.independent);
                assert_eq!(seg.duration, Duration::from_secs(2), "segment {}", seg.msn);
                mp4.extend_from_slice(&seg.bytes);
                listed.push(seg.msn);
            }
            (mp4, listed, target)
        }) else {
            panic!("no segment after 9 s");
        };
        // Keyframes at 0, 2, 4, 6, 8 s: four finished segments, the fifth open.
        assert_eq!(listed, [0, 1, 2, 3]);
        assert_eq!(target, Duration::from_secs(2));
        let index = parse_mp4(&mp4).unwrap();
        let video = &index.tracks[0];
        let source = &file.index.tracks[0];
        assert_eq!(video.samples.len(), 200, "8 s at 25 fps");
        for (got, want) in video.samples.iter().zip(&source.samples) {
            assert_eq!(got.sync, want.sync);
            let a = &mp4[got.offset as usize..][..got.len as usize];
            let b = &SAMPLE_MP4[want.offset as usize..][..want.len as usize];
            assert_eq!(a, b);
        }
        let audio = &index.tracks[1];
        let source = &file.index.tracks[1];
        // Audio up to the last cut (8 s, as far as it had arrived), from the first frame
        // decoding at the video's first keyframe or later: the file's priming frame (at
        // -21.3 ms, arriving with the keyframe) is before the store's time 0, aligned by
        // media time.
        let from_zero: Vec<_> = source
            .samples
            .iter()
            .filter(|s| source.dts_ticks(s) >= 0)
            .collect();
        assert_eq!(
            from_zero.len() + 1,
            source.samples.len(),
            "one priming frame"
        );
        let expected = from_zero
            .iter()
            .filter(|s| (source.dts_ticks(s) as f64 / f64::from(source.timescale)) < 8.0)
            .count();
        assert!(
            audio.samples.len().abs_diff(expected) <= 2,
            "{} audio frames, the source has {expected} in [0, 8 s)",
            audio.samples.len()
        );
        assert!(audio.samples.len() > 300);
        // Aligned by media time: the frame the file decodes at 0 s does so here too, and
        // every later one as far after it as in the file.
        assert_eq!(audio.timescale, 48_000);
        for (got, want) in audio.samples.iter().zip(&from_zero) {
            let file_ticks = source.dts_ticks(want) * 48_000 / i64::from(source.timescale);
            assert!(
                (got.dts as i64 - file_ticks).abs() <= 48,
                "an AAC frame at {} ticks, the file's at {file_ticks}",
                got.dts
            );
        }
        for (got, want) in audio.samples.iter().zip(from_zero) {
            let a = &mp4[got.offset as usize..][..got.len as usize];
            let b = &SAMPLE_MP4[want.offset as usize..][..want.len as usize];
            assert_eq!(a, b);
        }
        // Decode times continue from segment to segment: no gap, no overlap.
        for pair in video.samples.windows(2) {
            assert_eq!(pair[1].dts - pair[0].dts, 3600, "25 fps at 90 kHz");
        }
    }

    /// A store nobody asked for while the log moved on a whole store's length does not cut
    /// its way through: it starts again near the edge, numbering on, with a discontinuity;
    /// the playlist lists only stored segments.
    #[test]
    fn a_store_left_behind_starts_again_near_the_edge_with_a_discontinuity() {
        let file = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
        let t0 = Instant::now();
        let mut w = writer(&file, DEFAULT_CAPACITY, t0);
        publish_sample(&mut w, &file, t0, 5.0);
        let hls = LogHls::new(w.log().clone());
        let LogView::Ready(first) =
            hls.with_store(0, |s, _| s.window().map(|s| s.msn).collect::<Vec<_>>())
        else {
            panic!("no segment after 5 s");
        };
        assert_eq!(first, [0, 1]);
        // 90 s more (the sample again and again, its timeline running on).
        let video = &file.index.tracks[0];
        let audio = &file.index.tracks[1];
        let bytes = file.bytes.as_slice();
        let mut at = 5.0f64;
        let (mut v, mut a) = (125usize, 0usize);
        // Audio from 5 s on.
        while (audio.dts_ticks(&audio.samples[a]) as f64 / f64::from(audio.timescale)) < 5.0 {
            a += 1;
        }
        let (mut vloop, mut aloop) = (0i64, 0i64);
        while at < 95.0 {
            let vs = video.samples[v];
            let vt = (video.dts_ticks(&vs) + vloop * i64::from(video.timescale) * 10) as f64
                / f64::from(video.timescale);
            let asmp = audio.samples[a];
            let atime = (audio.dts_ticks(&asmp) + aloop * i64::from(audio.timescale) * 10) as f64
                / f64::from(audio.timescale);
            let (k, s, t, off) = if vt <= atime {
                (0, vs, vt, vloop * 90_000 * 10)
            } else {
                (1, asmp, atime, aloop * 48_000 * 10)
            };
            let track = &file.index.tracks[k];
            let clock = i64::from(track.codec.clock_rate_hz());
            let rescale = |x: i64| x * clock / i64::from(track.timescale) + off;
            let frame = Frame {
                track: k,
                pts: rescale(track.pts_ticks(&s)),
                dts: rescale(track.dts_ticks(&s)),
                sync: s.sync,
                data: &bytes[s.offset as usize..(s.offset + u64::from(s.len)) as usize],
            };
            let _ = w.append(&frame, t0 + Duration::from_secs_f64(t));
            at = t;
            if k == 0 {
                v += 1;
                if v == video.samples.len() {
                    v = 0;
                    vloop += 1;
                }
            } else {
                a += 1;
                if a == audio.samples.len() {
                    a = 0;
                    aloop += 1;
                }
            }
        }
        let LogView::Ready((listed, text)) = hls.with_store(0, |s, ended| {
            let listed: Vec<(u64, bool)> = s.window().map(|s| (s.msn, s.discontinuity)).collect();
            let text = crate::hls::log_segments::log_media_playlist(
                s,
                PART_TARGET,
                &crate::hls::QuerySuffix::none(),
                ended,
            );
            (listed, text)
        }) else {
            panic!("the store emptied");
        };
        // A window's worth behind the edge, not 45 segments cut through.
        assert!(listed.len() <= LIVE_WINDOW_SEGMENTS as usize, "{listed:?}");
        assert!(
            listed.iter().any(|&(_, d)| d),
            "a discontinuity: {listed:?}"
        );
        assert!(
            listed.first().is_some_and(|&(m, _)| m >= 2),
            "numbering runs on: {listed:?}"
        );
        assert!(
            listed.last().is_some_and(|&(m, _)| m < 2 + 45 / 2),
            "{listed:?}"
        );
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }
}

#[cfg(test)]
mod part_tests {
    use std::time::Instant;

    use super::tests::{publish_range, writer};
    use super::*;
    use crate::hls::log_segments::LogReload;
    use crate::live_log::DEFAULT_CAPACITY;
    use crate::media::library::SAMPLE_MP4;
    use crate::media::mp4::parse_mp4;
    use crate::media::MediaFile;

    /// (data, decode time) of every sample of `track` in `init` + `fragments`, read back by
    /// the crate's fragmented-MP4 reader.
    fn samples(init: &[u8], fragments: &[&[u8]], track: usize) -> Vec<(Vec<u8>, u64)> {
        let mut mp4 = init.to_vec();
        for f in fragments {
            mp4.extend_from_slice(f);
        }
        let index = parse_mp4(&mp4).unwrap();
        index.tracks[track]
            .samples
            .iter()
            .map(|s| {
                (
                    mp4[s.offset as usize..][..s.len as usize].to_vec(),
                    index.tracks[track].dts_ticks(s) as u64,
                )
            })
            .collect()
    }

    /// The sample published a frame time at a time, the store refreshed after each: parts
    /// are finished as soon as the next part's first frame is in the log (the finished parts
    /// reach within a part target of the newest frame), none is longer than the part target,
    /// parts starting at a keyframe are independent and only those, and each segment holds
    /// exactly its parts' samples (same bytes, same decode times), so a player reading parts
    /// and one reading segments get the same media.
    #[test]
    fn parts_follow_the_log_and_add_up_to_their_segment() {
        let file = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
        let t0 = Instant::now();
        let mut w = writer(&file, DEFAULT_CAPACITY, t0);
        let hls = LogHls::new(w.log().clone());
        let frame = 0.04;
        let mut at = 0.0f64;
        let mut checked = 0;
        while at < 9.0 {
            publish_range(&mut w, &file, t0, at..at + frame, 0.0);
            at += frame;
            let view = hls.with_store(0, |store, _| {
                let done: Duration = store.window().map(|s| s.duration).sum::<Duration>()
                    + store
                        .open_parts()
                        .iter()
                        .map(|p| p.duration)
                        .sum::<Duration>();
                done
            });
            if let LogView::Ready(done) = view {
                // The newest video frame starts at `at - frame`; the finished parts end at
                // most a part target before it.
                let newest = Duration::from_secs_f64(at - frame);
                assert!(
                    done + PART_TARGET + Duration::from_millis(1) >= newest,
                    "parts end at {done:?}, the log at {newest:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked} refreshes saw a store");
        let init = hls.init().unwrap();
        let LogView::Ready(()) = hls.with_store(0, |store, _| {
            let window: Vec<&StoredSegment> = store.window().collect();
            assert_eq!(window.len(), 4, "keyframes at 0, 2, 4, 6, 8 s");
            for seg in window {
                assert_eq!(seg.parts.len(), 7, "segment {}: 6 × 320 ms + 80 ms", seg.msn);
                for (k, p) in seg.parts.iter().enumerate() {
                    assert!(p.duration <= PART_TARGET, "part {}.{k}: {:?}", seg.msn, p.duration);
                    assert_eq!(p.independent, k == 0, "part {}.{k}", seg.msn);
                    assert_eq!(&p.bytes[4..8], b"moof");
                }
                let parts: Vec<&[u8]> = seg.parts.iter().map(|p| &p.bytes[..]).collect();
                for track in 0..2 {
                    let from_parts = samples(&init, &parts, track);
                    let from_segment = samples(&init, &[&seg.bytes[..]], track);
                    assert!(!from_segment.is_empty());
                    assert_eq!(from_parts, from_segment, "segment {} track {track}", seg.msn);
                }
            }
            // The segment being filled: its parts so far, and the hint is the next one.
            let (open, done) = store.open_edge();
            assert_eq!(open, 4);
            assert!(done >= 2, "{done} parts of segment 4 after 1 s of it");
            assert_eq!(store.part(open, done).map(|_| ()), None);
            assert!(store.part(open, done - 1).is_some());
            // Blocking reloads (RFC 8216bis §6.2.5.2).
            let r = |msn, part| store.reload(msn, part, PART_TARGET);
            assert_eq!(r(3, None), LogReload::Now);
            assert_eq!(r(4, None), LogReload::Wait);
            assert_eq!(r(5, None), LogReload::Wait);
            assert_eq!(r(6, None), LogReload::TooFar);
            assert_eq!(r(open, Some(done - 1)), LogReload::Now);
            assert_eq!(r(open, Some(done)), LogReload::Wait);
            assert_eq!(r(open, Some(done + 8)), LogReload::Wait);
            assert_eq!(r(open, Some(done + 9)), LogReload::TooFar);
            assert_eq!(r(3, Some(6)), LogReload::Now);
            // One past segment 3's last part is segment 4's part 0, there already.
            assert_eq!(r(3, Some(7)), LogReload::Now);
            assert_eq!(r(open + 1, Some(0)), LogReload::Wait);
            assert_eq!(r(open + 1, Some(20)), LogReload::TooFar);
            assert_eq!(r(u64::MAX, Some(usize::MAX)), LogReload::TooFar);
            let text = crate::hls::log_segments::log_media_playlist(
                store,
                PART_TARGET,
                &crate::hls::QuerySuffix::none(),
                false,
            );
            assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.334\n"), "{text}");
            assert!(
                text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002,HOLD-BACK=6.000\n"),
                "{text}"
            );
            assert!(
                text.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.{done}.m4s\"\n")),
                "{text}"
            );
            assert!(
                text.contains("#EXT-X-PART:DURATION=0.320,URI=\"part3.0.m4s\",INDEPENDENT=YES\n"),
                "{text}"
            );
            assert!(text.contains("#EXT-X-PART:DURATION=0.080,URI=\"part3.6.m4s\"\n#EXTINF:2.000,\nseg3.m4s\n"), "{text}");
            // Parts only for the segments ending within 3 target durations of the end.
            assert!(!text.contains("part0."), "{text}");
        }) else {
            panic!("no store");
        };
    }
}

#[cfg(test)]
mod jump_tests {
    use std::time::Instant;

    use super::tests::{publish_range, writer};
    use super::*;
    use crate::live_log::DEFAULT_CAPACITY;
    use crate::media::library::SAMPLE_MP4;
    use crate::media::MediaFile;

    /// A source whose clock jumps an hour ahead mid-GOP: the live log rebases the jump
    /// (`live_log::MAX_CLOCK_JUMP`), so the playlist runs on as one timeline, with no
    /// discontinuity and no segment claiming the hour (every EXTINF rounds to the target at
    /// most, RFC 8216 §4.3.3.1). A real gap longer than a segment, which the log keeps, still
    /// ends the segment and tags the next as a discontinuity.
    #[test]
    fn a_jump_in_the_sources_clock_is_not_an_hour_long_segment() {
        let file = MediaFile::from_static("sample", SAMPLE_MP4).unwrap();
        let t0 = Instant::now();
        let mut w = writer(&file, DEFAULT_CAPACITY, t0);
        publish_range(&mut w, &file, t0, 0.0..5.0, 0.0);
        publish_range(&mut w, &file, t0, 5.0..10.0, 3600.0);
        let hls = LogHls::new(w.log().clone());
        let LogView::Ready((segments, target)) = hls.with_store(0, |store, _| {
            let target = store.target();
            let segments: Vec<(u64, Duration, bool)> = store
                .window()
                .map(|s| (s.msn, s.duration, s.discontinuity))
                .collect();
            (segments, target)
        }) else {
            panic!("no segment");
        };
        assert_eq!(target, Duration::from_secs(2));
        for &(msn, d, _) in &segments {
            assert!(
                d <= target + Duration::from_millis(499),
                "segment {msn}: {d:?}"
            );
        }
        assert!(segments.iter().all(|s| !s.2), "{segments:?}");
        let total: Duration = segments.iter().map(|s| s.1).sum();
        assert!(
            total >= Duration::from_secs(6) && total <= Duration::from_secs(10),
            "one continuous timeline of 10 s of media: {segments:?}"
        );
    }
}

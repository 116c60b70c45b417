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
use crate::hls::log_segments::{cut_before, target_from_first, Cut, SegmentStore, StoredSegment};
use crate::hls::segments::{fragment_sequence_number, LIVE_WINDOW_SEGMENTS};
use crate::live_log::{LiveLog, LogSample, LogState, Lookup};
use crate::media::track::{MediaIndex, Sample, Track, TrackKind};

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

#[derive(Debug, Default)]
struct State {
    store: SegmentStore,
    target: Option<Duration>,
    open: Option<Open>,
    next_msn: u64,
    /// Per track, the log decode time that is fragment time zero (the lead track's fixed at
    /// the first start, the others' at their first sample after it).
    bases: Vec<Option<i64>>,
    /// Arrival of the keyframe the store started at (ns since the log's epoch).
    start_arrival_ns: u64,
    /// The next finished segment follows a restart.
    discontinuity: bool,
}

/// The segment being filled.
#[derive(Debug)]
struct Open {
    /// Per track, its first sample number.
    start: Vec<u64>,
    /// The lead track's decode time at the segment's start.
    lead_dts: i64,
    independent: bool,
    /// The next lead-track sample to look at.
    next_lead: u64,
}

/// A log's video track, else its first track: the one segments are cut on.
fn lead_track(log: &LiveLog) -> usize {
    log.tracks
        .iter()
        .position(|t| t.spec.kind == TrackKind::Video)
        .unwrap_or(0)
}

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

    /// Cuts and stores what arrived since the last refresh (pinning the log with `shard`'s
    /// pin slot while copying), then reads the store.
    pub(crate) fn with_store<T>(
        &self,
        shard: usize,
        read: impl FnOnce(&SegmentStore, Duration, bool) -> T,
    ) -> LogView<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let readable = self.log.pin(shard);
        self.scan(&mut st, readable);
        self.log.unpin(shard);
        if st.store.is_empty() {
            return LogView::Empty;
        }
        let target = st.target.unwrap_or(Duration::from_secs(2));
        LogView::Ready(read(&st.store, target, self.log.state() == LogState::Ended))
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
        let start: Vec<u64> = (0..log.tracks.len())
            .map(|j| {
                if j == lead {
                    key.n
                } else {
                    log.first_arrived_since(j, arrival, readable)
                }
            })
            .collect();
        if st.bases.is_empty() {
            // Tracks aligned by arrival at the start: each other track's first sample sits as
            // far after the keyframe as it arrived after it (set when that sample is seen).
            st.bases = (0..log.tracks.len())
                .map(|j| (j == lead).then_some(key.dts))
                .collect();
            st.start_arrival_ns = arrival;
        }
        st.open = Some(Open {
            start,
            lead_dts: key.dts,
            independent: true,
            next_lead: key.n + 1,
        });
    }

    fn scan(&self, st: &mut State, readable: u64) {
        let log = &*self.log;
        let lead = lead_track(log);
        let video = log.tracks[lead].spec.kind == TrackKind::Video;
        let clock = log.tracks[lead].clock_rate_hz();
        if st.open.is_none() {
            self.start(st, readable, LIVE_WINDOW_SEGMENTS as usize);
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
                    st.open = None;
                    st.discontinuity = true;
                    self.start(st, readable, 0);
                }
                Lookup::Ready(s) => {
                    let since = ticks_to_nanos(s.dts - open.lead_dts, clock).max(0);
                    let since = Duration::from_nanos(since as u64);
                    match cut_before(since, s.sync || !video, st.target) {
                        Cut::No => open.next_lead += 1,
                        cut => self.finish(st, readable, s, cut == Cut::AtKeyframe),
                    }
                }
            }
        }
    }

    /// Closes the open segment before lead sample `end` and stores it; the next opens at
    /// `end`.
    fn finish(&self, st: &mut State, readable: u64, end: LogSample, keyframe: bool) {
        let log = &*self.log;
        let lead = lead_track(log);
        let Some(open) = st.open.take() else {
            return;
        };
        let Some(Some(lead_base)) = st.bases.get(lead).copied() else {
            return;
        };
        let lead_clock = log.tracks[lead].clock_rate_hz();
        let cut_ns = ticks_to_nanos(end.dts - lead_base, lead_clock);
        let capacity = log.capacity();
        let mut tracks: Vec<Track> = Vec::with_capacity(log.tracks.len());
        let mut runs = Vec::with_capacity(log.tracks.len());
        let mut next_start = open.start.clone();
        for (j, media_track) in log.media.index.tracks.iter().enumerate() {
            let clock = log.tracks[j].clock_rate_hz();
            let mut base = st.bases.get(j).copied().flatten();
            let mut samples: Vec<Sample> = Vec::new();
            let mut n = open.start[j];
            let mut next_dts = None;
            loop {
                if j == lead && n >= end.n {
                    next_dts = Some(end.dts);
                    break;
                }
                match log.lookup(j, n, readable) {
                    Lookup::Ready(s) => {
                        let base = *base.get_or_insert_with(|| {
                            let after = s.arrival_ns.saturating_sub(st.start_arrival_ns);
                            s.dts - nanos_to_ticks(i128::from(after), clock)
                        });
                        if j != lead && ticks_to_nanos(s.dts - base, clock) >= cut_ns {
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
            next_start[j] = n;
            if let Some(b) = st.bases.get_mut(j) {
                *b = base;
            }
            let base = base.unwrap_or(0);
            let last_duration = match (samples.last(), next_dts) {
                (Some(last), Some(d)) => Some(((d - base).max(0) as u64).saturating_sub(last.dts)),
                (Some(last), None) if samples.len() > 1 => {
                    Some(last.dts.saturating_sub(samples[samples.len() - 2].dts))
                }
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
        let msn = st.next_msn;
        let duration_ns = ticks_to_nanos(end.dts - open.lead_dts, lead_clock).max(0);
        let duration = Duration::from_nanos(duration_ns as u64);
        match fragment(&index, fragment_sequence_number(msn, 0), &runs) {
            Ok(f) => {
                // The copy, under this shard's pin: every sample was readable at `readable`.
                let bytes: Arc<[u8]> = f.to_vec(log.media.bytes.as_slice()).into();
                st.store.push(StoredSegment {
                    msn,
                    duration,
                    independent: open.independent,
                    discontinuity: std::mem::take(&mut st.discontinuity),
                    bytes,
                });
                st.next_msn += 1;
                if st.target.is_none() {
                    st.target = Some(target_from_first(duration));
                }
            }
            Err(e) => {
                tracing::warn!(stream = %log.name(), "HLS segment {msn}: {e}");
            }
        }
        st.open = Some(Open {
            start: next_start,
            lead_dts: end.dts,
            independent: keyframe,
            next_lead: end.n + 1,
        });
    }
}

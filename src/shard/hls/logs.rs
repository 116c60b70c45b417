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
use crate::hls::segments::{fragment_sequence_number, LIVE_WINDOW_SEGMENTS, MAX_SEGMENT};
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
    /// The decode time of its last lead-track sample so far, and the last step between two.
    last_dts: i64,
    step: i64,
    /// Arrival of its first lead-track sample (ns since the log's epoch).
    arrival_ns: u64,
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
            last_dts: key.dts,
            step: 0,
            arrival_ns: key.arrival_ns,
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
                st.open = None;
                st.discontinuity = true;
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
                    st.open = None;
                    st.discontinuity = true;
                    self.start(st, readable, 0);
                }
                Lookup::Ready(s) => {
                    let step = s.dts - open.last_dts;
                    if ticks_to_nanos(step, clock) > MAX_SEGMENT.as_nanos() as i128 {
                        // The source's clock jumped: the segment ends one step after its
                        // last sample, and the next starts with a discontinuity instead of
                        // an hour-long EXTINF (RFC 8216 §4.3.2.3).
                        let end_dts = open.last_dts + open.step.max(1);
                        self.finish(st, readable, s, end_dts, s.sync || !video);
                        st.discontinuity = true;
                        continue;
                    }
                    let since = ticks_to_nanos(s.dts - open.lead_dts, clock).max(0);
                    let since = Duration::from_nanos(since as u64);
                    match cut_before(since, s.sync || !video, st.target) {
                        Cut::No => {
                            open.next_lead += 1;
                            open.last_dts = s.dts;
                            if step > 0 {
                                open.step = step;
                            }
                        }
                        cut => self.finish(st, readable, s, s.dts, cut == Cut::AtKeyframe),
                    }
                }
            }
        }
    }

    /// Closes the open segment before lead sample `end`, at decode time `end_dts` (`end`'s
    /// own unless the clock jumped), and stores it; the next opens at `end`.
    fn finish(&self, st: &mut State, readable: u64, end: LogSample, end_dts: i64, keyframe: bool) {
        let log = &*self.log;
        let lead = lead_track(log);
        let Some(open) = st.open.take() else {
            return;
        };
        let Some(Some(lead_base)) = st.bases.get(lead).copied() else {
            return;
        };
        let lead_clock = log.tracks[lead].clock_rate_hz();
        let cut_ns = ticks_to_nanos(end_dts - lead_base, lead_clock);
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
                    next_dts = Some(end_dts);
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
        let msn = st.next_msn;
        let duration_ns = ticks_to_nanos(end_dts - open.lead_dts, lead_clock).max(0);
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
            last_dts: end.dts,
            step: 0,
            arrival_ns: end.arrival_ns,
        });
    }
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
        let LogView::Ready((mp4, listed, target)) = hls.with_store(0, |store, target, _| {
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
        // Audio up to the last cut (8 s, as far as it had arrived), from the first frame on.
        let expected = source
            .samples
            .iter()
            .filter(|s| (source.dts_ticks(s) as f64 / f64::from(source.timescale)) < 8.0)
            .count();
        assert!(
            audio.samples.len().abs_diff(expected) <= 2,
            "{} audio frames, the source has {expected} before 8 s",
            audio.samples.len()
        );
        for (got, want) in audio.samples.iter().zip(&source.samples) {
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
            hls.with_store(0, |s, _, _| s.window().map(|s| s.msn).collect::<Vec<_>>())
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
        let LogView::Ready((listed, text)) = hls.with_store(0, |s, target, ended| {
            let listed: Vec<(u64, bool)> = s.window().map(|s| (s.msn, s.discontinuity)).collect();
            let text = crate::hls::log_segments::log_media_playlist(
                s,
                target,
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
        let LogView::Ready((segments, target)) = hls.with_store(0, |store, target, _| {
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

//! The live log: one ingested stream's recent samples in a memory mapping, written once by
//! its source and read by every shard the way a mapped MP4 is read (design:
//! `docs/design/live-ingest.md`).
//!
//! - **Bytes**: a ring of `capacity` bytes (`sys::ring`), one memfd mapped writable for the
//!   single writer ([`LogWriter`]) and read-only for the shards (the log's
//!   [`MediaFile::bytes`]). Sample `n` of a track is written contiguously at absolute byte
//!   position `pos` (physical offset `pos % capacity`; a sample that would cross the end
//!   starts at the next lap), so a [`Sample`] with that offset feeds the packetizers as a file
//!   sample does.
//! - **Index**: per track a ring of entries, each a seqlock of atomics. The writer stamps an
//!   entry odd, stores its fields, stamps it `2(n+1)` (Release), then publishes the count
//!   (Release). A reader loads the stamp (Acquire), the fields, fences (Acquire), loads the
//!   stamp again: equal stamps naming `n` mean the fields are sample `n`'s, whole.
//! - **Pins: why a reader never sees bytes change under it.** At the start of a pass a shard
//!   computes `readable = head − capacity/2`, stores it as its pin (SeqCst), loads `head`
//!   again and raises `readable` to `head' − capacity/2`; it uses only samples at or above it
//!   and clears the pin when its sends are complete. Before overwriting bytes that were at
//!   absolute positions below `p`, the writer loads every pin (SeqCst) and drops the frame
//!   if one is below `p` ([`DropReason::ReaderStalled`]) instead of waiting. Sequential
//!   consistency gives the usual store-then-load guarantee: either the writer sees the pin,
//!   or the reader's second load of `head` sees every write that did not — and those wrote
//!   below `head' + 2·max_sample − capacity ≤ readable` (a sample is at most a quarter of
//!   the ring). A pass lasts milliseconds, half a ring is seconds to minutes of media: the
//!   writer meeting a pin means a shard thread stalled, never a slow viewer (a viewer's
//!   position is only a sample number).
//! - **Falling behind**: a sample whose entry was overwritten or whose bytes are below
//!   `readable` is gone; its reader jumps to the latest keyframe ([`LiveLog::latest_keyframe`]).
//! - **Numbering**: every viewer of a track gets the same SSRC, sequence and timestamp space
//!   (as a live channel's, `crate::live`): the writer counts the packets each sample makes
//!   with the server's payload budget, so `seq(n) = seq0 + packets_before(n)` on every shard.
//! - **Waking**: after each append the writer wakes the shards that have viewers on the log
//!   ([`LiveLog::watch`]).
//! - **Batches and AAC groups**: the frames of one publisher packet are appended in a batch
//!   ([`LogWriter::begin_batch`]) and published together (one store of `published`), so a
//!   reader sees all of them or none. AAC frames of a batch keep the publisher's grouping
//!   (RFC 3640 §3.2.2): a frame the aggregation rules let into the open group is marked
//!   [`LogSample::joins`] and makes no packet of its own; shards send the group from its head
//!   as one packet, at no added latency. Sources that hand frames over one at a time (RTMP,
//!   pulled sources) are grouped before the log by `crate::ingest::regroup`, which appends
//!   each group in one batch.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::{DropReason, Frame, MAX_ACCESS_UNIT};
use crate::media::library::RingBytes;
use crate::media::track::{Sample, Track, TrackKind};
use crate::media::MediaFile;
use crate::packetize::aac::MAX_AUS_PER_PACKET;
use crate::packetize::{PacketizeError, Packetizer};
use crate::poll::Waker;
use crate::sys::ring::{ring, RingWriter};
use crate::wire::ntp::NtpTime;
use crate::wire::rtp::{RtpTimestamp, SeqNum, Ssrc};

/// Default ring size: 64 MiB, minutes of a typical stream (pages are committed as written).
pub const DEFAULT_CAPACITY: usize = 64 << 20;
/// Smallest ring accepted (tests use small rings to exercise wrap-around).
pub const MIN_CAPACITY: usize = 1 << 16;
/// Index entries per track (a power of two): about 2 minutes of 60 fps video.
pub const INDEX_ENTRIES: usize = 8192;
/// Flood allowance: media time a track may run ahead of real time in one burst (an encoder's
/// start-up burst, a reconnect's backlog). Past it frames are dropped as
/// [`DropReason::Flood`] until real time catches up.
pub const FLOOD_BURST: Duration = Duration::from_secs(10);
/// What one frame costs the flood allowance at least and at most, whatever its timestamp step
/// says: a flood of equal timestamps still runs out (1,000 frames per second), and a jump in a
/// source's timestamps does not spend the whole allowance.
const FRAME_COST: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(200));
/// How far a frame's timestamp may stray from what its arrival says (its step from the last
/// frame against the time since that frame arrived) before it counts as a jump of the
/// source's clock. A jump is rebased as a returning publisher's first frame is: the frame
/// follows the last one by one frame step, so viewers' timestamps stay continuous instead of
/// leaping hours ahead (players then wait for them) or running backwards (players drop
/// frames until the clock catches up). Real gaps in a live source (a stall, silence) arrive
/// as late as their timestamps say and are kept; B-frame reordering and bursts are far
/// below this.
pub const MAX_CLOCK_JUMP: Duration = Duration::from_secs(5);
/// A pin value meaning "not reading".
const IDLE: u64 = u64::MAX;

/// One track of a log as its source declares it (defined with the sources, in `ingest`).
pub use crate::ingest::LogTrackSpec;

/// The publisher state of a log, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    /// A source is writing.
    Online,
    /// The source went away; viewers wait for it to return (until the publisher timeout).
    Waiting,
    /// The stream ended; viewers get BYE.
    Ended,
}

/// What the index says about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSample {
    /// The sample's number in its track (0, 1, …, never reused).
    pub n: u64,
    /// Absolute byte position (laps included).
    pub pos: u64,
    /// Length in bytes.
    pub len: u32,
    /// A keyframe (random access point).
    pub sync: bool,
    /// Presentation time in the track's clock, continuous across publisher reconnects.
    pub pts: i64,
    /// Decode time in the same clock.
    pub dts: i64,
    /// When it arrived, in nanoseconds since the log's epoch.
    pub arrival_ns: u64,
    /// Packets all earlier samples of the track make (the sequence number offset).
    pub packets_before: u64,
    /// Carried in the packet of the sample before it: an AAC frame that arrived in the same
    /// publisher packet as its predecessor and is sent aggregated with it (RFC 3640 §3.2.2),
    /// as the publisher grouped them. Readers send a group from its head and skip such a
    /// sample on its own.
    pub joins: bool,
}

impl LogSample {
    /// The sample as the packetizers take it: its offset in the ring (`capacity`).
    pub fn as_sample(&self, capacity: usize) -> Sample {
        Sample {
            offset: self.pos % capacity as u64,
            len: self.len,
            dts: self.dts.max(0) as u64,
            cts_offset: (self.pts - self.dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                as i32,
            sync: self.sync,
        }
    }
}

/// Where a reader's next sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Readable now.
    Ready(LogSample),
    /// Not written yet: wait for the writer's wake.
    NotYet,
    /// Overwritten or below the pass's readable bound: jump ahead.
    Gone,
}

/// One index slot: a seqlock over the fields of a [`LogSample`].
#[derive(Debug, Default)]
struct Entry {
    /// `2(n+1)` when sample `n` is complete here; odd while being written.
    stamp: AtomicU64,
    pos: AtomicU64,
    /// Length in the low 32 bits, the keyframe flag in bit 32.
    len_sync: AtomicU64,
    pts: AtomicU64,
    dts: AtomicU64,
    arrival_ns: AtomicU64,
    packets_before: AtomicU64,
}

/// One track's index and numbering.
#[derive(Debug)]
pub struct LogTrack {
    /// The source's declaration.
    pub spec: LogTrackSpec,
    /// SSRC every viewer sees for this track.
    pub ssrc: Ssrc,
    /// Sequence number of the first packet ever (`seq(n) = seq0 + packets_before(n)`).
    pub seq0: SeqNum,
    /// RTP timestamp of log time zero.
    pub ts0: RtpTimestamp,
    entries: Box<[Entry]>,
    /// Samples published.
    published: AtomicU64,
    /// Packets all published samples make (the next sample's `packets_before`).
    next_packets: AtomicU64,
    /// The next sample's expected presentation time (the last one's plus its step).
    next_pts: AtomicU64,
    /// The publisher's last sender report (RFC 3550 §6.4.1) on the log's timeline: a
    /// seqlock (`report_stamp` odd while written) over its NTP time, the log `pts` of the same
    /// instant and when it arrived (ns since the log's epoch).
    report_stamp: AtomicU64,
    report_ntp: AtomicU64,
    report_pts: AtomicU64,
    report_arrival_ns: AtomicU64,
}

/// A publisher's clock as its sender reports give it: NTP time `ntp` was log time `pts`, and
/// that report arrived at `arrival`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceClock {
    /// The publisher's wall clock (NTP format, RFC 3550 §4).
    pub ntp: NtpTime,
    /// The same instant on the log's timeline (the track's RTP clock, `LogSample::pts`).
    pub pts: i64,
    /// When the report arrived.
    pub arrival: Instant,
}

impl SourceClock {
    /// The publisher's NTP time and the log time of `now` (RFC 3550 §6.4.1: what a sender
    /// report sent at `now` must carry so viewers keep the publisher's mapping).
    pub fn at(&self, now: Instant, clock_rate_hz: u32) -> (NtpTime, i64) {
        let since = now.saturating_duration_since(self.arrival);
        // NTP fraction: 2^32 per second.
        let ntp = self
            .ntp
            .0
            .wrapping_add(((since.as_nanos() << 32) / 1_000_000_000) as u64);
        let ticks = (since.as_nanos() * u128::from(clock_rate_hz) / 1_000_000_000) as i64;
        (NtpTime(ntp), self.pts.wrapping_add(ticks))
    }
}

impl LogTrack {
    /// The RTP clock rate of the track.
    pub fn clock_rate_hz(&self) -> u32 {
        self.spec.codec.clock_rate_hz()
    }

    /// Samples written so far (the next sample's number).
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// The sequence number offset and presentation time the next sample to be written will
    /// have (for RTP-Info when a viewer joins before the first keyframe).
    pub fn next_numbers(&self) -> (u64, i64) {
        (
            self.next_packets.load(Ordering::Acquire),
            self.next_pts.load(Ordering::Acquire) as i64,
        )
    }

    /// The publisher's clock from its last sender report, if it sent one (`epoch`: the log's).
    pub fn source_clock(&self, epoch: Instant) -> Option<SourceClock> {
        let stamp = self.report_stamp.load(Ordering::Acquire);
        if stamp == 0 || stamp & 1 == 1 {
            return None;
        }
        let ntp = self.report_ntp.load(Ordering::Relaxed);
        let pts = self.report_pts.load(Ordering::Relaxed) as i64;
        let arrival = self.report_arrival_ns.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.report_stamp.load(Ordering::Relaxed) == stamp).then(|| SourceClock {
            ntp: NtpTime(ntp),
            pts,
            arrival: epoch + Duration::from_nanos(arrival),
        })
    }

    /// Reads entry `n` if it still holds sample `n`.
    fn entry(&self, n: u64) -> Option<LogSample> {
        let e = &self.entries[(n as usize) & (self.entries.len() - 1)];
        let want = n.wrapping_add(1).wrapping_mul(2);
        if e.stamp.load(Ordering::Acquire) != want {
            return None;
        }
        let pos = e.pos.load(Ordering::Relaxed);
        let len_sync = e.len_sync.load(Ordering::Relaxed);
        let pts = e.pts.load(Ordering::Relaxed) as i64;
        let dts = e.dts.load(Ordering::Relaxed) as i64;
        let arrival_ns = e.arrival_ns.load(Ordering::Relaxed);
        let packets_before = e.packets_before.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (e.stamp.load(Ordering::Relaxed) == want).then_some(LogSample {
            n,
            pos,
            len: len_sync as u32,
            sync: len_sync >> 32 & 1 == 1,
            pts,
            dts,
            arrival_ns,
            packets_before,
            joins: len_sync >> 33 & 1 == 1,
        })
    }
}

/// Counters of a log (read by statistics).
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Frames appended.
    pub frames: AtomicU64,
    /// Bytes appended.
    pub bytes: AtomicU64,
    /// Keyframes appended.
    pub keyframes: AtomicU64,
    /// Frames dropped, by [`DropReason::ALL`] index.
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    /// Readers that fell behind and jumped to the live edge.
    pub reader_skips: AtomicU64,
    /// Arrival of the last video keyframe, in nanoseconds since the log's epoch plus one
    /// (0: none yet).
    pub last_keyframe_ns: AtomicU64,
}

/// One live stream's log, shared by its writer and every shard.
#[derive(Debug)]
pub struct LiveLog {
    /// The facade the RTSP core and the shards read: the stream name, the ring as bytes, the
    /// tracks' codecs (empty sample tables).
    pub media: Arc<MediaFile>,
    /// Per track, in the source's order, then the WebRTC-only Opus track if there is one.
    pub tracks: Vec<LogTrack>,
    /// The facade of every track, the WebRTC-only one included (its last): what a WebRTC
    /// viewer's Opus track reads, as a file viewer's reads its rendition file. `None` when
    /// the log has no such track.
    pub webrtc_media: Option<Arc<MediaFile>>,
    /// Arrival times count from here.
    pub epoch: Instant,
    /// Counters.
    pub counters: LogCounters,
    capacity: usize,
    /// Absolute end of the last sample written.
    head: AtomicU64,
    /// Per shard: the readable bound of its current pass, or [`IDLE`].
    pins: Box<[AtomicU64]>,
    /// Per shard: viewer tracks watching (the writer wakes shards with any).
    watchers: Box<[AtomicU32]>,
    wakers: Vec<Arc<Waker>>,
    state: AtomicU8,
}

impl LiveLog {
    /// The stream name.
    pub fn name(&self) -> &str {
        &self.media.name
    }

    /// Ring size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The publisher state.
    pub fn state(&self) -> LogState {
        match self.state.load(Ordering::Acquire) {
            0 => LogState::Online,
            1 => LogState::Waiting,
            _ => LogState::Ended,
        }
    }

    /// Sets the publisher state (and wakes the watching shards, which end their viewers on
    /// [`LogState::Ended`]).
    pub fn set_state(&self, state: LogState) {
        let v = match state {
            LogState::Online => 0,
            LogState::Waiting => 1,
            LogState::Ended => 2,
        };
        self.state.store(v, Ordering::Release);
        self.wake_watchers();
    }

    /// A shard begins a pass that may read the log: publishes its pin and returns the lowest
    /// absolute position it may read (see the module doc).
    pub fn pin(&self, shard: usize) -> u64 {
        let half = (self.capacity / 2) as u64;
        let first = self.head.load(Ordering::SeqCst).saturating_sub(half);
        if let Some(p) = self.pins.get(shard) {
            p.store(first, Ordering::SeqCst);
        }
        let again = self.head.load(Ordering::SeqCst).saturating_sub(half);
        first.max(again)
    }

    /// The shard's pass is over and its sends complete: it reads nothing until its next pin.
    pub fn unpin(&self, shard: usize) {
        if let Some(p) = self.pins.get(shard) {
            p.store(IDLE, Ordering::SeqCst);
        }
    }

    /// Sample `n` of track `track` for a pass pinned at `readable`.
    pub fn lookup(&self, track: usize, n: u64, readable: u64) -> Lookup {
        let Some(t) = self.tracks.get(track) else {
            return Lookup::Gone;
        };
        if n >= t.published() {
            return Lookup::NotYet;
        }
        match t.entry(n) {
            Some(s) if s.pos >= readable => Lookup::Ready(s),
            _ => Lookup::Gone,
        }
    }

    /// The latest keyframe of `track` still readable at `readable` (for video; the latest
    /// sample for audio, every frame of which is a random access point).
    pub fn latest_keyframe(&self, track: usize, readable: u64) -> Option<LogSample> {
        let t = self.tracks.get(track)?;
        let end = t.published();
        let start = end.saturating_sub(t.entries.len() as u64);
        (start..end)
            .rev()
            .map_while(|n| t.entry(n).filter(|s| s.pos >= readable))
            .find(|s| s.sync)
    }

    /// How early `track`'s media arrives: the least, over its readable indexed samples, of
    /// arrival minus decode time (ns, on the log's epoch and the track's clock). The sample
    /// that waited least in the publisher's and our buffers gives it, as NTP's minimum-delay
    /// filter does (RFC 5905 §10): an AAC frame sent in a group of several arrives as late as
    /// the group's last, which arrives on time. `None` before the track's first sample.
    pub fn earliest_arrival_lag_ns(&self, track: usize, readable: u64) -> Option<i128> {
        let all = self.tracks.get(track)?.entries.len();
        self.least_lag_ns(track, readable, all, |s| s.dts)
    }

    /// [`LiveLog::earliest_arrival_lag_ns`] of presentation times over the last `last`
    /// samples (their index entries only: any still indexed will do): what puts the track's
    /// RTP time on our clock for sender reports without the publisher's.
    pub fn recent_presentation_lag_ns(&self, track: usize, last: usize) -> Option<i128> {
        self.least_lag_ns(track, 0, last, |s| s.pts)
    }

    /// The least arrival minus `time(sample)` (ns) over the last `last` readable samples.
    fn least_lag_ns(
        &self,
        track: usize,
        readable: u64,
        last: usize,
        time: impl Fn(&LogSample) -> i64,
    ) -> Option<i128> {
        let t = self.tracks.get(track)?;
        let clock = i128::from(t.clock_rate_hz().max(1));
        let end = t.published();
        let start = end.saturating_sub(t.entries.len().min(last) as u64);
        (start..end)
            .rev()
            .map_while(|n| t.entry(n).filter(|s| s.pos >= readable))
            .map(|s| i128::from(s.arrival_ns) - i128::from(time(&s)) * 1_000_000_000 / clock)
            .min()
    }

    /// The first readable sample of `track` decoding at or after `dts` (the track's clock),
    /// or the next to be written.
    pub fn first_decoding_from(&self, track: usize, dts: i64, readable: u64) -> u64 {
        let Some(t) = self.tracks.get(track) else {
            return 0;
        };
        let end = t.published();
        let start = end.saturating_sub(t.entries.len() as u64);
        let mut first = end;
        for n in (start..end).rev() {
            match t.entry(n).filter(|s| s.pos >= readable) {
                Some(s) if s.dts >= dts => first = n,
                _ => break,
            }
        }
        first
    }

    /// The first sample of `track` whose arrival is at or after `arrival_ns` (to start the
    /// other tracks with the video's keyframe), or the next to be written.
    pub fn first_arrived_since(&self, track: usize, arrival_ns: u64, readable: u64) -> u64 {
        let Some(t) = self.tracks.get(track) else {
            return 0;
        };
        let end = t.published();
        let start = end.saturating_sub(t.entries.len() as u64);
        let mut first = end;
        for n in (start..end).rev() {
            match t.entry(n).filter(|s| s.pos >= readable) {
                Some(s) if s.arrival_ns >= arrival_ns => first = n,
                _ => break,
            }
        }
        first
    }

    /// A shard's viewer track starts (`+1`) or stops (`-1`) watching the log: the writer
    /// wakes shards with watchers after each append.
    pub fn watch(&self, shard: usize, start: bool) {
        if let Some(w) = self.watchers.get(shard) {
            if start {
                w.fetch_add(1, Ordering::AcqRel);
            } else {
                let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            }
        }
    }

    /// The instant a sample arrived.
    pub fn arrival(&self, sample: &LogSample) -> Instant {
        self.epoch + Duration::from_nanos(sample.arrival_ns)
    }

    fn wake_watchers(&self) {
        for (w, waker) in self.watchers.iter().zip(&self.wakers) {
            if w.load(Ordering::Acquire) > 0 {
                waker.wake();
            }
        }
    }
}

/// Why a log could not be created.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The ring could not be created (memfd, mmap).
    #[error("live log ring: {0}")]
    Ring(#[from] std::io::Error),
    /// A track's codec cannot be packetized with the payload budget.
    #[error("live log track: {0}")]
    Packetize(#[from] PacketizeError),
    /// No track.
    #[error("a live log needs at least one track")]
    NoTracks,
}

/// Per track writing state.
#[derive(Debug)]
struct TrackWriter {
    packetizer: Packetizer,
    packets_total: u64,
    /// Samples written, published or not (the next sample's number).
    written: u64,
    /// The AAC frames of the open group, in the current batch ([`LogWriter::begin_batch`]):
    /// a frame that arrives in the same batch joins their packet if the packetizer's rules
    /// for aggregation take it (budget, equal steps, at most `MAX_AUS_PER_PACKET`).
    group: [Sample; MAX_AUS_PER_PACKET],
    group_len: usize,
    /// Added to the source's times (continuity across reconnects).
    offset: i64,
    /// Last pts written (after the offset), and the last pts step seen.
    last_pts: Option<i64>,
    last_step: i64,
    last_dts: Option<i64>,
    /// Rebase the next frame to follow `last_pts` (set by [`LogWriter::resume`]).
    rebase: bool,
    /// The presentation time the next sample will have (published with the samples).
    next_pts: i64,
    /// When the last frame written arrived (to tell a clock jump from a real gap).
    last_arrival: Option<Instant>,
    /// Flood allowance left (media time this track may still run ahead of real time), and
    /// when it was last refilled (a token bucket refilled at real time, capped at
    /// [`FLOOD_BURST`]).
    allowance: Duration,
    allowance_at: Instant,
}

/// The one writer of a log (the ingest side owns it; `&mut` makes it unique).
#[derive(Debug)]
pub struct LogWriter {
    log: Arc<LiveLog>,
    ring: RingWriter,
    tracks: Vec<TrackWriter>,
    max_sample: usize,
    /// Inside [`begin_batch`](Self::begin_batch): appended samples are published at
    /// [`end_batch`](Self::end_batch), all at once.
    batching: bool,
}

impl LogWriter {
    /// Creates a log for stream `name` with `tracks`, a ring of `capacity` bytes (at least
    /// [`MIN_CAPACITY`]), the payload budget viewers are packetized with, and the shards'
    /// wakers (one per shard, in shard order).
    pub fn create(
        name: &str,
        tracks: &[LogTrackSpec],
        capacity: usize,
        payload_budget: usize,
        wakers: Vec<Arc<Waker>>,
        now: Instant,
    ) -> Result<Self, LogError> {
        Self::create_with_webrtc_audio(name, tracks, None, capacity, payload_budget, wakers, now)
    }

    /// [`LogWriter::create`] with one more track after the source's: `webrtc_audio`, the
    /// Opus the ingest side makes of the source's AAC for WebRTC viewers
    /// (`crate::rendition::live`). It is in [`LiveLog::tracks`] and
    /// [`LiveLog::webrtc_media`], never in [`LiveLog::media`], which RTSP, HLS and the
    /// catalog read.
    pub fn create_with_webrtc_audio(
        name: &str,
        tracks: &[LogTrackSpec],
        webrtc_audio: Option<LogTrackSpec>,
        capacity: usize,
        payload_budget: usize,
        wakers: Vec<Arc<Waker>>,
        now: Instant,
    ) -> Result<Self, LogError> {
        let served = tracks.len();
        let all: Vec<LogTrackSpec> = tracks.iter().cloned().chain(webrtc_audio).collect();
        let tracks = &all[..];
        if served == 0 {
            return Err(LogError::NoTracks);
        }
        let capacity = capacity.max(MIN_CAPACITY);
        let (writer, view) = ring(capacity, "shardcast-live-log")?;
        let mut writers = Vec::with_capacity(tracks.len());
        let mut log_tracks = Vec::with_capacity(tracks.len());
        let mut media_tracks = Vec::with_capacity(tracks.len());
        for (k, spec) in tracks.iter().enumerate() {
            writers.push(TrackWriter {
                packetizer: Packetizer::new(&spec.codec, payload_budget)?,
                packets_total: 0,
                written: 0,
                group: [Sample::default(); MAX_AUS_PER_PACKET],
                group_len: 0,
                offset: 0,
                last_pts: None,
                last_step: 0,
                last_dts: None,
                rebase: false,
                next_pts: 0,
                last_arrival: None,
                allowance: FLOOD_BURST,
                allowance_at: now,
            });
            log_tracks.push(LogTrack {
                spec: spec.clone(),
                ssrc: rand::random(),
                seq0: rand::random(),
                ts0: rand::random(),
                entries: (0..INDEX_ENTRIES).map(|_| Entry::default()).collect(),
                published: AtomicU64::new(0),
                next_packets: AtomicU64::new(0),
                next_pts: AtomicU64::new(0),
                report_stamp: AtomicU64::new(0),
                report_ntp: AtomicU64::new(0),
                report_pts: AtomicU64::new(0),
                report_arrival_ns: AtomicU64::new(0),
            });
            media_tracks.push(Track {
                track_id: k as u32 + 1,
                kind: spec.kind,
                codec: spec.codec.clone(),
                timescale: spec.codec.clock_rate_hz().max(1),
                edit_offset: 0,
                samples: Vec::new(),
            });
        }
        let shards = wakers.len();
        let bytes = RingBytes(view);
        let webrtc_media = (media_tracks.len() > served)
            .then(|| Arc::new(MediaFile::live(name, bytes.clone(), media_tracks.clone())));
        media_tracks.truncate(served);
        let log = Arc::new(LiveLog {
            media: Arc::new(MediaFile::live(name, bytes, media_tracks)),
            webrtc_media,
            tracks: log_tracks,
            epoch: now,
            counters: LogCounters::default(),
            capacity,
            head: AtomicU64::new(0),
            pins: (0..shards).map(|_| AtomicU64::new(IDLE)).collect(),
            watchers: (0..shards).map(|_| AtomicU32::new(0)).collect(),
            wakers,
            state: AtomicU8::new(0),
        });
        Ok(Self {
            log,
            ring: writer,
            tracks: writers,
            // A sample is at most a quarter of the ring: the pin argument needs the writer's
            // in-flight sample (plus the lap it may skip) below half a ring.
            max_sample: MAX_ACCESS_UNIT.min(capacity / 4),
            batching: false,
        })
    }

    /// Starts a batch: the frames appended until [`end_batch`](Self::end_batch) came in one
    /// publisher packet. They are published together, so no reader sees part of them, and
    /// AAC frames among them keep the publisher's grouping: they go to viewers aggregated
    /// in one packet as they came (RFC 3640 §3.2.2), at no added latency, instead of one
    /// packet (one send per viewer, never a GSO train) each.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch: publishes what it appended and wakes the shards watching the log.
    pub fn end_batch(&mut self) {
        self.batching = false;
        let mut any = false;
        for (tw, t) in self.tracks.iter_mut().zip(&self.log.tracks) {
            tw.group_len = 0;
            any |= publish(tw, t);
        }
        if any {
            self.log.wake_watchers();
        }
    }

    /// The shared log.
    pub fn log(&self) -> &Arc<LiveLog> {
        &self.log
    }

    /// A publisher (re)starts: each track's next frame is rebased to follow the last one
    /// written by one frame step, so viewers' timestamps run on (RFC 3550 §5.1).
    pub fn resume(&mut self) {
        for t in &mut self.tracks {
            t.rebase = t.last_pts.is_some();
        }
        // The old publisher's clock is not the new one's: no mapping until it reports.
        for t in &self.log.tracks {
            t.report_stamp.store(0, Ordering::Release);
        }
        self.log.set_state(LogState::Online);
    }

    /// The publisher's sender report for `track`: NTP time `ntp` is the source's unfolded
    /// timestamp `source_pts` (the scale of [`Frame::pts`]), received at `now`. Shards' sender
    /// reports to viewers then carry the publisher's clock, so players sync tracks and
    /// recover capture times as the publisher meant (RFC 3550 §6.4.1).
    pub fn sender_report(&mut self, track: usize, source_pts: i64, ntp: NtpTime, now: Instant) {
        let (Some(tw), Some(t)) = (self.tracks.get(track), self.log.tracks.get(track)) else {
            return;
        };
        if tw.rebase || tw.last_pts.is_none() {
            // The offset of a returning publisher, or of a track before its first frame, is
            // set by that frame; the next report (seconds away) will map.
            return;
        }
        let stamp = t.report_stamp.load(Ordering::Relaxed);
        t.report_stamp.store(stamp | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        t.report_ntp.store(ntp.0, Ordering::Relaxed);
        t.report_pts
            .store(source_pts.wrapping_add(tw.offset) as u64, Ordering::Relaxed);
        t.report_arrival_ns.store(
            now.saturating_duration_since(self.log.epoch).as_nanos() as u64,
            Ordering::Relaxed,
        );
        t.report_stamp
            .store((stamp | 1).wrapping_add(1), Ordering::Release);
    }

    /// Appends one frame; returns its sample number, or why it was dropped (counted).
    pub fn append(&mut self, frame: &Frame<'_>, now: Instant) -> Result<u64, DropReason> {
        let result = self.try_append(frame, now);
        let c = &self.log.counters;
        // The counters are the source's: the WebRTC-only track (made here of the source's
        // own audio) is not counted, as the catalog and the API never list it.
        let counted = frame.track < self.log.media.index.tracks.len();
        match result {
            Ok(_) if !counted => {
                if !self.batching {
                    self.log.wake_watchers();
                }
            }
            Err(_) if !counted => {}
            Ok(_) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
                c.bytes
                    .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                let video = self
                    .log
                    .tracks
                    .get(frame.track)
                    .is_some_and(|t| t.spec.kind == TrackKind::Video);
                if frame.sync && video {
                    c.keyframes.fetch_add(1, Ordering::Relaxed);
                    let at = now.saturating_duration_since(self.log.epoch).as_nanos() as u64;
                    c.last_keyframe_ns.store(at + 1, Ordering::Relaxed);
                }
                if !self.batching {
                    self.log.wake_watchers();
                }
            }
            Err(reason) => {
                if let Some(i) = DropReason::ALL.iter().position(|&r| r == reason) {
                    c.dropped[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        result
    }

    fn try_append(&mut self, frame: &Frame<'_>, now: Instant) -> Result<u64, DropReason> {
        let len = frame.data.len();
        if len > self.max_sample {
            return Err(DropReason::TooLarge);
        }
        let Some(tw) = self.tracks.get_mut(frame.track) else {
            return Err(DropReason::Malformed);
        };
        // Flood control: media time may not run ahead of real time by more than the burst.
        let clock = u64::from(self.log.tracks[frame.track].clock_rate_hz().max(1));
        let step_ticks = tw
            .last_pts
            .map_or(0, |last| (frame.pts + tw.offset - last).max(0) as u64);
        let step = Duration::from_nanos(step_ticks.saturating_mul(1_000_000_000) / clock);
        let cost = step.clamp(FRAME_COST.0, FRAME_COST.1);
        let refill = now.saturating_duration_since(tw.allowance_at);
        let allowance = (tw.allowance + refill).min(FLOOD_BURST);
        let Some(left) = allowance.checked_sub(cost) else {
            tw.allowance = allowance;
            tw.allowance_at = now.max(tw.allowance_at);
            return Err(DropReason::Flood);
        };
        let capacity = self.ring.len() as u64;
        let head = self.log.head.load(Ordering::Relaxed);
        let mut pos = head;
        let phys = pos % capacity;
        if phys + len as u64 > capacity {
            pos += capacity - phys;
        }
        let end = pos + len as u64;
        // Bytes at absolute positions below `end − capacity` are about to be overwritten.
        let reclaimed = end.saturating_sub(capacity);
        if reclaimed > 0
            && self
                .log
                .pins
                .iter()
                .any(|p| p.load(Ordering::SeqCst) < reclaimed)
        {
            return Err(DropReason::ReaderStalled);
        }
        // Packets this sample makes with the viewers' budget: the same count every shard's
        // packetizer gets, so sequence numbers agree everywhere.
        let sample = Sample {
            offset: 0,
            len: len as u32,
            dts: 0,
            cts_offset: 0,
            sync: frame.sync,
        };
        let mut packets = 0u64;
        tw.packetizer.begin_sample(sample);
        while let Ok(Some(_)) = tw.packetizer.next_packet(frame.data) {
            packets += 1;
        }
        if let (Some(last), Some(at), false) = (tw.last_pts, tw.last_arrival, tw.rebase) {
            // A jump of the source's clock: the step its timestamps say against the time
            // that passed since the last frame arrived (MAX_CLOCK_JUMP).
            let step_ns =
                i128::from(frame.pts + tw.offset - last) * 1_000_000_000 / i128::from(clock);
            let arrival_ns = now.saturating_duration_since(at).as_nanos() as i128;
            if (step_ns - arrival_ns).unsigned_abs() > MAX_CLOCK_JUMP.as_nanos() {
                tw.rebase = true;
                // The publisher's sender reports map its old timeline; the next one maps.
                self.log.tracks[frame.track]
                    .report_stamp
                    .store(0, Ordering::Release);
            }
        }
        if tw.rebase {
            if let Some(last) = tw.last_pts {
                tw.offset = last + tw.last_step.max(1) - frame.pts;
            }
            tw.rebase = false;
        }
        if tw.last_pts.is_none() {
            // The track's first frame takes the time `next_numbers` announced (0): a viewer
            // whose PLAY was answered before it arrived got that in RTP-Info (RFC 2326
            // §12.33), and a source's first timestamp is arbitrary (RTP starts at a random
            // value, RFC 3550 §5.1). Tracks are aligned by arrival, never by these times.
            tw.offset = tw.next_pts - frame.pts;
        }
        let pts = frame.pts + tw.offset;
        let mut dts = frame.dts + tw.offset;
        if let Some(last) = tw.last_dts {
            // Decode times never go backwards (a source's jump is absorbed).
            dts = dts.max(last);
        }
        if let Some(last) = tw.last_pts {
            let step = pts - last;
            if step > 0 {
                tw.last_step = step;
            }
        }
        tw.last_pts = Some(tw.last_pts.map_or(pts, |l| l.max(pts)));
        tw.last_dts = Some(dts);
        if !self.ring.write((pos % capacity) as usize, frame.data) {
            return Err(DropReason::Malformed);
        }
        // Only a frame that goes in spends the allowance.
        tw.last_arrival = Some(now);
        tw.allowance = left;
        tw.allowance_at = now.max(tw.allowance_at);
        // An AAC frame of the same publisher packet as the open group joins its packet when
        // the packetizer's aggregation rules take it (within the budget, equal steps).
        let as_sample = Sample {
            offset: pos % capacity,
            len: len as u32,
            dts: dts.max(0) as u64,
            cts_offset: (pts - dts).clamp(0, i64::from(i32::MAX)) as i32,
            sync: frame.sync,
        };
        // The group's bytes must lie back to back in the ring (one slice of the mapping per
        // packet: a log has no sample table to gather separate AUs by).
        let contiguous = tw.group_len > 0 && {
            let last = &tw.group[tw.group_len - 1];
            last.offset + u64::from(last.len) == as_sample.offset
        };
        let joins = self.batching && contiguous && tw.group_len < MAX_AUS_PER_PACKET && {
            tw.group[tw.group_len] = as_sample;
            // Index 1: the alignment rule for channels' viewers (`GROUP_ALIGN`) never binds
            // within `MAX_AUS_PER_PACKET`; a log's numbering comes from the writer alone.
            tw.packetizer
                .samples_per_packet(&tw.group[..=tw.group_len], 1, clock as u32)
                == tw.group_len + 1
        };
        if joins {
            packets = 0;
            tw.group_len += 1;
        } else if self.batching && packets == 1 && matches!(tw.packetizer, Packetizer::Aac(_)) {
            tw.group[0] = as_sample;
            tw.group_len = 1;
        } else {
            tw.group_len = 0;
        }
        let t = &self.log.tracks[frame.track];
        let n = tw.written;
        let e = &t.entries[(n as usize) & (t.entries.len() - 1)];
        e.stamp
            .store(n.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        e.pos.store(pos, Ordering::Relaxed);
        e.len_sync.store(
            len as u64 | u64::from(frame.sync) << 32 | u64::from(joins) << 33,
            Ordering::Relaxed,
        );
        e.pts.store(pts as u64, Ordering::Relaxed);
        e.dts.store(dts as u64, Ordering::Relaxed);
        e.arrival_ns.store(
            now.saturating_duration_since(self.log.epoch).as_nanos() as u64,
            Ordering::Relaxed,
        );
        e.packets_before.store(tw.packets_total, Ordering::Relaxed);
        e.stamp
            .store(n.wrapping_add(1).wrapping_mul(2), Ordering::Release);
        tw.packets_total += packets;
        tw.written = n + 1;
        tw.next_pts = pts + tw.last_step.max(1);
        self.log.head.store(end, Ordering::SeqCst);
        if !self.batching {
            publish(tw, t);
        }
        Ok(n)
    }
}

/// Publishes what `tw` wrote to `t`'s readers (the next sample's numbers first); true if
/// there was anything new.
fn publish(tw: &TrackWriter, t: &LogTrack) -> bool {
    if t.published.load(Ordering::Relaxed) == tw.written {
        return false;
    }
    t.next_packets.store(tw.packets_total, Ordering::Release);
    t.next_pts.store(tw.next_pts as u64, Ordering::Release);
    t.published.store(tw.written, Ordering::Release);
    true
}

#[cfg(test)]
mod tests;

//! One packetization per live sample and shard: every viewer of a live channel on the shard
//! sends the same bytes (one SSRC, sequence and timestamp space per channel track, see
//! [`crate::live`]), so the shard packetizes a sample once, keeps each packet's complete
//! header slab (RTP header, RFC 3550 §5.1, plus the payload header: FU indicator and header,
//! RFC 6184 §5.8, or the AU header section, RFC 3640 §3.2.1) and its body range, and every
//! viewer copies that slab into its own `PendingPacket` with its own destination. Fan-out to
//! N viewers costs N sends of shared bytes, not N packetizations.
//!
//! A [`LiveStream`] exists per (channel, track) as long as a viewer on the shard watches it
//! (plus the fields that must agree for two viewers' bytes to be equal: payload type, SSRC,
//! timestamp origin, payload budget). Its storage is allocated once, when the first viewer
//! attaches, and reused: a ring of packets and a direct-mapped index of samples by absolute
//! sample number (`loop · samples + k`, unique across loops). A sample's packets stay valid
//! until the ring wraps over them; a lookup checks the sample number and that the packets
//! were not overwritten, so an evicted or colliding sample is a miss (packetized again),
//! never wrong bytes.
//!
//! Sizing: viewers of a channel ask for samples no older than the longest GOP behind the
//! live edge (the delayed start policy paces a viewer up to one GOP behind; the burst policy
//! replays the current GOP) and no newer than the edge. A sample is first packetized at
//! most a GOP after its decode time and last needed at most a GOP (plus slack) after it, and
//! everything packetized meanwhile lies within a GOP (plus slack) of it on either side, so
//! the ring holds the packets of the busiest stretch of twice (longest GOP + [`SLACK`]) of
//! the file. Memory is fixed per stream: it grows neither with time nor with viewers.

use std::sync::Arc;
use std::time::Duration;

use super::{ShardCounters, TrackSetup};
use crate::live::LiveChannel;
use crate::live_log::LiveLog;
use crate::media::track::Sample;
use crate::packetize::{PacketSpec, PacketizeError, Packetizer};
use crate::wire::rtp::{write_rtp_header, RtpTimestamp, SeqNum, Ssrc, RTP_HEADER_LEN};

// Header slabs are copied whole into the io_uring arena's header slots.
const _: () = assert!(HEADER_SLAB <= crate::sys::mmsg::MAX_COPIED_HEADER);

/// Room for the RTP header and the longest payload header (an aggregated AAC packet's).
pub(super) const HEADER_SLAB: usize = RTP_HEADER_LEN + crate::packetize::MAX_PAYLOAD_HEADER;

/// How far past one GOP behind the live edge a viewer may fall (a late tick, a slow pass)
/// before its samples may have been evicted. Past it a viewer still gets correct packets,
/// packetized again.
const SLACK: Duration = Duration::from_secs(1);

/// Sample-index entry marking "nothing here".
const EMPTY: u64 = u64::MAX;

/// An RTP packet ready for the wire: its header slab and where its body lives.
#[derive(Debug, Clone, Copy)]
pub(super) struct WirePacket {
    /// RTP header followed by the payload-format header.
    pub(super) header: [u8; HEADER_SLAB],
    /// Used bytes of `header`.
    pub(super) header_len: u8,
    /// The packetizer's description (body range, marker).
    pub(super) spec: PacketSpec,
}

impl WirePacket {
    /// Writes the RTP header (RFC 3550 §5.1) and the payload header of `spec`.
    pub(super) fn new(
        spec: PacketSpec,
        payload_type: u8,
        seq: SeqNum,
        ts: RtpTimestamp,
        ssrc: Ssrc,
    ) -> Self {
        let mut rtp = [0u8; RTP_HEADER_LEN];
        write_rtp_header(&mut rtp, payload_type, spec.marker, seq, ts, ssrc);
        let ph = spec.header();
        let mut header = [0u8; HEADER_SLAB];
        header[..RTP_HEADER_LEN].copy_from_slice(&rtp);
        header[RTP_HEADER_LEN..RTP_HEADER_LEN + ph.len()].copy_from_slice(ph);
        Self {
            header,
            header_len: (RTP_HEADER_LEN + ph.len()) as u8,
            spec,
        }
    }

    /// The header slab's used bytes.
    pub(super) fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len).min(HEADER_SLAB)]
    }

    /// RTP payload bytes (payload header + body), for SR octet counts.
    pub(super) fn payload_len(&self) -> usize {
        usize::from(self.header_len).saturating_sub(RTP_HEADER_LEN) + self.spec.body_len as usize
    }
}

const BLANK: WirePacket = WirePacket {
    header: [0; HEADER_SLAB],
    header_len: 0,
    spec: PacketSpec {
        payload_header: [0; crate::packetize::MAX_PAYLOAD_HEADER],
        payload_header_len: 0,
        body_source: crate::packetize::BodySource::Media,
        body_offset: 0,
        body_len: 0,
        marker: false,
    },
};

/// One live sample as a viewer asks the cache for it ([`LiveCache::packets`]): which sample,
/// where its bytes are, and the viewer's numbers for packetizing it on a miss.
#[derive(Debug, Clone, Copy)]
pub(super) struct SampleRequest<'a> {
    /// The sample's absolute number (`loop · samples + k`), the cache key.
    pub(super) abs: u64,
    /// The samples that leave together (one, or a group of AAC access units).
    pub(super) samples: &'a [Sample],
    /// Index of `samples[0]` in its track.
    pub(super) index: u64,
    /// The media file's bytes.
    pub(super) media: &'a [u8],
    /// Sequence number of the sample's first packet.
    pub(super) seq: SeqNum,
    /// RTP timestamp of the sample's packets.
    pub(super) ts: RtpTimestamp,
}

/// What a live stream plays: a looped file or an ingested stream's log (by identity).
#[derive(Debug, Clone)]
pub(super) enum LiveSource {
    /// A live channel (`crate::live`).
    Channel(Arc<LiveChannel>),
    /// A live log (`crate::live_log`).
    Log(Arc<LiveLog>),
}

impl LiveSource {
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (LiveSource::Channel(a), LiveSource::Channel(b)) => Arc::ptr_eq(a, b),
            (LiveSource::Log(a), LiveSource::Log(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Ring sizes for a live log's stream: a log's viewers all follow the live edge (they join
/// at the latest keyframe and are sent samples as they arrive), so the cache needs about a
/// GOP of packets — 4,096 packets is 4 s of a 10 Mbit/s stream at 1,200-byte payloads. A
/// viewer further behind gets its samples packetized again, never stale bytes.
const LOG_RING_PACKETS: usize = 4096;
/// Sample slots for a live log's stream (a power of two).
const LOG_RING_SAMPLES: usize = 1024;

/// Everything two viewers' packets of one track depend on: equal keys, equal bytes.
#[derive(Debug, Clone)]
pub(super) struct StreamKey {
    /// The channel or log (by identity).
    pub(super) source: LiveSource,
    /// Track of the channel's media.
    pub(super) track_index: usize,
    /// RTP payload type.
    pub(super) payload_type: u8,
    /// SSRC (the channel track's).
    pub(super) ssrc: Ssrc,
    /// RTP timestamp of media time zero in loop 0 (the channel track's).
    pub(super) initial_rtptime: RtpTimestamp,
    /// Largest RTP payload.
    pub(super) payload_budget: usize,
}

impl StreamKey {
    /// The key of a viewer's track.
    pub(super) fn of(
        channel: &Arc<LiveChannel>,
        setup: &TrackSetup,
        payload_budget: usize,
    ) -> Self {
        Self {
            source: LiveSource::Channel(channel.clone()),
            track_index: setup.track_index,
            payload_type: setup.payload_type,
            ssrc: setup.ssrc,
            initial_rtptime: setup.initial_rtptime,
            payload_budget,
        }
    }

    /// The key of a live log viewer's track.
    pub(super) fn of_log(log: &Arc<LiveLog>, setup: &TrackSetup, payload_budget: usize) -> Self {
        Self {
            source: LiveSource::Log(log.clone()),
            track_index: setup.track_index,
            payload_type: setup.payload_type,
            ssrc: setup.ssrc,
            initial_rtptime: setup.initial_rtptime,
            payload_budget,
        }
    }

    fn same(&self, other: &Self) -> bool {
        self.source.same(&other.source)
            && (self.track_index, self.payload_type, self.ssrc)
                == (other.track_index, other.payload_type, other.ssrc)
            && (self.initial_rtptime, self.payload_budget)
                == (other.initial_rtptime, other.payload_budget)
    }
}

/// Where one sample's packets are in the ring.
#[derive(Debug, Clone, Copy)]
struct SampleEntry {
    /// Absolute sample number, or [`EMPTY`].
    abs: u64,
    /// Ring position (packets written before it, ever) of its first packet.
    pos: u64,
    /// Packets it yielded.
    count: u32,
    /// The error that cut the sample short (corrupt media), if any.
    error: Option<PacketizeError>,
}

/// One live track's shared packets on a shard.
#[derive(Debug)]
struct LiveStream {
    key: StreamKey,
    /// Sessions' tracks attached.
    viewers: usize,
    packetizer: Packetizer,
    /// Direct-mapped by `abs & (len − 1)`; the length is a power of two.
    samples: Box<[SampleEntry]>,
    /// Packets in write order, position `p` at `p & (len − 1)`; the length is a power of two.
    ring: Box<[WirePacket]>,
    /// Packets ever written.
    head: u64,
}

impl LiveStream {
    fn new(key: StreamKey) -> Result<Self, PacketizeError> {
        let (codec, sample_slots, ring_slots) = match &key.source {
            LiveSource::Channel(ch) => {
                let track = ch
                    .media
                    .index
                    .tracks
                    .get(key.track_index)
                    .ok_or(PacketizeError::SampleOutOfRange)?;
                let span = (ch.longest_gop() + SLACK) * 2;
                let (samples, packets) = ch.busiest_span(key.track_index, span);
                // Absolute numbers skip a loop's unsent first samples at every loop point in
                // the span.
                let first = ch.tracks.get(key.track_index).map_or(0, |t| t.first_sample);
                let loop_points =
                    (span.as_secs_f64() / ch.loop_duration.as_secs_f64()).ceil() as usize + 1;
                (
                    &track.codec,
                    (samples + first * loop_points + 1).next_power_of_two(),
                    (packets + 1).next_power_of_two(),
                )
            }
            LiveSource::Log(log) => {
                let track = log
                    .tracks
                    .get(key.track_index)
                    .ok_or(PacketizeError::SampleOutOfRange)?;
                (&track.spec.codec, LOG_RING_SAMPLES, LOG_RING_PACKETS)
            }
        };
        let packetizer = Packetizer::new(codec, key.payload_budget)?;
        Ok(Self {
            key,
            viewers: 0,
            packetizer,
            samples: vec![
                SampleEntry {
                    abs: EMPTY,
                    pos: 0,
                    count: 0,
                    error: None,
                };
                sample_slots
            ]
            .into_boxed_slice(),
            ring: vec![BLANK; ring_slots].into_boxed_slice(),
            head: 0,
        })
    }

    /// The entry of sample `abs` if its packets are all still in the ring.
    fn lookup(&self, abs: u64) -> Option<SampleEntry> {
        let e = self.samples[(abs as usize) & (self.samples.len() - 1)];
        (e.abs == abs && self.head - e.pos <= self.ring.len() as u64).then_some(e)
    }
}

/// A cached sample's packets, borrowed from the ring.
#[derive(Debug, Clone, Copy)]
pub(super) struct CachedSample<'a> {
    ring: &'a [WirePacket],
    pos: u64,
    count: u32,
    /// The error that cut the sample short, if any (its packets before it are here).
    pub(super) error: Option<PacketizeError>,
}

impl<'a> CachedSample<'a> {
    /// Packets of the sample.
    pub(super) fn len(&self) -> usize {
        self.count as usize
    }

    /// Packet `j` (`j < len()`).
    pub(super) fn get(&self, j: usize) -> &'a WirePacket {
        let mask = self.ring.len() - 1;
        &self.ring[(self.pos as usize).wrapping_add(j) & mask]
    }
}

/// A shard's live streams. Single-threaded: it belongs to the shard's worker.
#[derive(Debug, Default)]
pub(super) struct LiveCache {
    streams: Vec<Option<LiveStream>>,
}

impl LiveCache {
    /// Attaches a viewer's track to the stream of `key`, creating the stream (and its storage)
    /// for the first viewer. Returns the stream's id for [`LiveCache::packets`].
    pub(super) fn attach(&mut self, key: StreamKey) -> Result<u32, PacketizeError> {
        let found = self
            .streams
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.key.same(&key)));
        let id = match found {
            Some(id) => id,
            None => {
                let stream = LiveStream::new(key)?;
                match self.streams.iter().position(Option::is_none) {
                    Some(free) => {
                        self.streams[free] = Some(stream);
                        free
                    }
                    None => {
                        self.streams.push(Some(stream));
                        self.streams.len() - 1
                    }
                }
            }
        };
        if let Some(s) = self.streams.get_mut(id).and_then(Option::as_mut) {
            s.viewers += 1;
        }
        Ok(id as u32)
    }

    /// Detaches a viewer's track; the last one frees the stream's storage.
    pub(super) fn detach(&mut self, id: u32) {
        let Some(entry) = self.streams.get_mut(id as usize) else {
            return;
        };
        if let Some(s) = entry.as_mut() {
            s.viewers = s.viewers.saturating_sub(1);
            if s.viewers == 0 {
                *entry = None;
            }
        }
    }

    /// Streams alive (tests).
    #[cfg(test)]
    pub(super) fn streams(&self) -> usize {
        self.streams.iter().flatten().count()
    }

    /// The packets of the sample `req` asks for, of stream `id`. On a miss the sample is
    /// packetized into the ring, numbered from `req.seq` and stamped `req.ts` — the asking
    /// viewer's numbers, equal for every viewer of the stream by its key — and counted in
    /// `live_packetizations`. `None` if the stream is unknown or the sample has more packets
    /// than the ring holds: the caller packetizes it itself.
    pub(super) fn packets(
        &mut self,
        id: u32,
        req: &SampleRequest<'_>,
        counters: &ShardCounters,
    ) -> Option<CachedSample<'_>> {
        let SampleRequest {
            abs,
            samples,
            index,
            media,
            seq,
            ts,
        } = *req;
        let stream = self.streams.get_mut(id as usize)?.as_mut()?;
        let entry = match stream.lookup(abs) {
            Some(e) => e,
            None => {
                counters
                    .live_packetizations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mask = stream.ring.len() - 1;
                let slot = (abs as usize) & (stream.samples.len() - 1);
                // Invalid until complete: the sample's own packets may wrap over its entry's.
                stream.samples[slot].abs = EMPTY;
                let pos = stream.head;
                let mut count = 0u32;
                let mut error = None;
                stream.packetizer.begin_samples(samples, index);
                loop {
                    match stream.packetizer.next_packet(media) {
                        Ok(Some(spec)) => {
                            let k = &stream.key;
                            stream.ring[(stream.head as usize) & mask] = WirePacket::new(
                                spec,
                                k.payload_type,
                                seq.wrapping_add(count as u16),
                                ts,
                                k.ssrc,
                            );
                            stream.head += 1;
                            count += 1;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                if count as usize > stream.ring.len() {
                    return None;
                }
                let e = SampleEntry {
                    abs,
                    pos,
                    count,
                    error,
                };
                stream.samples[slot] = e;
                e
            }
        };
        Some(CachedSample {
            ring: &stream.ring,
            pos: entry.pos,
            count: entry.count,
            error: entry.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request for sample `k` of `track` alone, as absolute sample `abs`.
    fn request<'a>(
        track: &'a crate::media::track::Track,
        media: &'a [u8],
        abs: u64,
        k: usize,
        seq: SeqNum,
        ts: RtpTimestamp,
    ) -> SampleRequest<'a> {
        SampleRequest {
            abs,
            samples: std::slice::from_ref(&track.samples[k]),
            index: k as u64,
            media,
            seq,
            ts,
        }
    }
    use crate::live::StartPolicy;
    use crate::media::library::SAMPLE_MP4;
    use crate::media::MediaFile;
    use crate::packetize::payload_bytes;
    use crate::shard::TrackDest;
    use std::sync::atomic::Ordering;

    fn channel() -> Arc<LiveChannel> {
        let media = Arc::new(MediaFile::from_static("sample", SAMPLE_MP4).unwrap());
        Arc::new(LiveChannel::new("live", media, 1200, StartPolicy::Delayed).unwrap())
    }

    fn key(ch: &Arc<LiveChannel>, track_index: usize) -> StreamKey {
        let setup = TrackSetup {
            track_index,
            payload_type: 96 + track_index as u8,
            ssrc: ch.tracks[track_index].ssrc,
            initial_seq: ch.tracks[track_index].seq0,
            initial_rtptime: ch.tracks[track_index].ts0,
            dest: TrackDest::Interleaved {
                rtp_channel: 0,
                rtcp_channel: 1,
            },
            source: None,
            srtp: None,
        };
        StreamKey::of(ch, &setup, 1200)
    }

    /// Viewers with equal keys share a stream, a different key gets its own, and the last
    /// detach frees it.
    #[test]
    fn equal_keys_share_a_stream_until_the_last_viewer_leaves() {
        let ch = channel();
        let mut cache = LiveCache::default();
        let a = cache.attach(key(&ch, 0)).unwrap();
        let b = cache.attach(key(&ch, 0)).unwrap();
        let audio = cache.attach(key(&ch, 1)).unwrap();
        let mut other = key(&ch, 0);
        other.payload_budget = 600;
        let c = cache.attach(other).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, audio);
        assert_ne!(a, c);
        assert_eq!(cache.streams(), 3);
        cache.detach(a);
        assert_eq!(cache.streams(), 3);
        cache.detach(b);
        assert_eq!(cache.streams(), 2);
        // Another channel playing the same file is another stream.
        let again = cache.attach(key(&channel(), 0)).unwrap();
        assert_eq!(again, a, "the freed slot is reused");
        assert_eq!(cache.streams(), 3);
    }

    /// A sample whose packets the ring has since overwritten is a miss even though its index
    /// entry is intact, and one with more packets than the ring holds is not cached at all
    /// (the viewer packetizes it itself). Fails if overwritten ring slots are ever served.
    #[test]
    fn overwritten_and_oversized_samples_are_never_served_from_the_ring() {
        let ch = channel();
        let counters = ShardCounters::default();
        let packetized = || counters.live_packetizations.load(Ordering::Relaxed);
        let mut cache = LiveCache::default();
        let id = cache.attach(key(&ch, 0)).unwrap();
        let track = &ch.media.index.tracks[0];
        let bytes = ch.media.bytes.as_slice();
        let keyframe_packets = ch.tracks[0].packets_of(0) as usize;
        assert!(keyframe_packets > 8, "{keyframe_packets}");
        let small = (keyframe_packets / 2).next_power_of_two();
        assert!(small < keyframe_packets);
        fn stream(c: &mut LiveCache, id: u32) -> &mut LiveStream {
            c.streams[id as usize].as_mut().unwrap()
        }
        stream(&mut cache, id).ring = vec![BLANK; small].into_boxed_slice();

        assert!(cache
            .packets(
                id,
                &request(track, bytes, 0, 0, SeqNum(0), RtpTimestamp(0)),
                &counters,
            )
            .is_none());
        let seq = SeqNum(4321);
        let one = cache
            .packets(
                id,
                &request(track, bytes, 1, 1, seq, RtpTimestamp(0)),
                &counters,
            )
            .unwrap();
        let first: Vec<u8> = one.get(0).header().to_vec();
        let pos = one.pos;
        let mut abs = 2;
        while stream(&mut cache, id).head - pos <= small as u64 {
            let k = abs as usize;
            cache.packets(
                id,
                &request(track, bytes, abs, k, SeqNum(0), RtpTimestamp(0)),
                &counters,
            );
            abs += 1;
        }
        assert_eq!(
            stream(&mut cache, id).samples[1].abs,
            1,
            "index entry intact"
        );
        let before = packetized();
        let again = cache
            .packets(
                id,
                &request(track, bytes, 1, 1, seq, RtpTimestamp(0)),
                &counters,
            )
            .unwrap();
        assert_eq!(again.get(0).header(), &first[..]);
        assert_eq!(packetized(), before + 1, "packetized again");
    }

    /// A hit returns what a fresh packetizer yields for the sample, with the numbers of the
    /// miss; a second lookup packetizes nothing; samples far enough back are evicted by the
    /// ring and packetized again, correctly. Fails if bytes, numbering or the counter drift.
    #[test]
    fn hits_are_the_packetizers_bytes_and_evicted_samples_come_back_right() {
        let ch = channel();
        let counters = ShardCounters::default();
        let mut cache = LiveCache::default();
        let id = cache.attach(key(&ch, 0)).unwrap();
        let track = &ch.media.index.tracks[0];
        let bytes = ch.media.bytes.as_slice();
        let mut fresh = Packetizer::new(&track.codec, 1200).unwrap();
        let n = track.samples.len() as u64;
        // Three loops, every sample once: many ring wraps.
        for abs in 0..3 * n {
            let k = (abs % n) as usize;
            let seq = ch.tracks[0].seq_of(abs / n, k);
            let sample = track.samples[k];
            let got = cache
                .packets(
                    id,
                    &request(track, bytes, abs, k, seq, RtpTimestamp(1234)),
                    &counters,
                )
                .unwrap();
            assert_eq!(got.error, None);
            fresh.begin_sample(sample);
            let mut j = 0;
            while let Some(spec) = fresh.next_packet(bytes).unwrap() {
                let p = got.get(j);
                assert_eq!(p.spec, spec);
                let expect = WirePacket::new(
                    spec,
                    96,
                    seq.wrapping_add(j as u16),
                    RtpTimestamp(1234),
                    ch.tracks[0].ssrc,
                );
                assert_eq!(p.header(), expect.header());
                assert_eq!(
                    payload_bytes(&p.spec, bytes, fresh.parameter_sets(), &track.samples).len(),
                    p.payload_len()
                );
                j += 1;
            }
            assert_eq!(j, got.len());
            assert_eq!(j as u32, ch.tracks[0].packets_of(k));
            let first: Vec<u8> = got.get(0).header().to_vec();
            // A second viewer asking for the same sample costs nothing and gets the first
            // viewer's numbers, not its own.
            let again = cache
                .packets(
                    id,
                    &request(track, bytes, abs, k, SeqNum(0), RtpTimestamp(0)),
                    &counters,
                )
                .unwrap();
            assert_eq!(again.len(), j);
            assert_eq!(again.get(0).header(), &first[..]);
        }
        assert_eq!(counters.live_packetizations.load(Ordering::Relaxed), 3 * n);
        // The first loop is long gone from the ring (it holds about 6 s of the 10 s file).
        let before = counters.live_packetizations.load(Ordering::Relaxed);
        let seq = ch.tracks[0].seq_of(0, 0);
        let old = cache
            .packets(
                id,
                &request(track, bytes, 0, 0, seq, RtpTimestamp(1234)),
                &counters,
            )
            .unwrap();
        assert_eq!(
            counters.live_packetizations.load(Ordering::Relaxed),
            before + 1
        );
        assert_eq!(old.get(0).header()[2..4], seq.to_be_bytes());
    }
}

//! One pass's TCP media, gathered per connection: each connection's frames leave in one
//! gathered `sendmsg` (up to the kernel's iovec limit) under one take of its sink's lock.
//!
//! A frame is a small head copied into the batch's arena (the `$` interleaved header and the
//! RTP header slab, or a whole RTCP compound) and, for media, a body that stays where it is
//! (slices of the memory-mapped file, or a track's parameter-set buffer) and is resolved
//! only when the batch is written, through [`FrameBodies`]. Nothing is allocated per frame:
//! the arena, the item list and the per-connection lists grow to the largest pass and are
//! reused.
//!
//! This is the writer for all of a shard's TCP media: interleaved RTP today, HLS bodies and
//! other stream-socket media later (their bodies become further [`BodyRef`] kinds).

use std::io::IoSlice;
use std::time::{Duration, Instant};

use super::sink::{interleaved_header, SinkError, TcpSink, Written};
use crate::packetize::aac::MAX_AUS_PER_PACKET;
use crate::packetize::{BodySlices, PacketSpec};
use crate::sys::tcp::MAX_IOVECS;

/// "No item" in the per-connection lists.
const NONE: u32 = u32::MAX;

/// Zeros standing in for a body that no longer resolves (never expected: bodies are checked
/// when queued), so a frame's length always matches its header and framing survives.
static ZEROS: [u8; 65_536] = [0; 65_536];

/// Where a queued frame's body lives, resolved when the batch is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRef {
    /// The track whose media (or parameter sets) the body indexes.
    pub(crate) track: u16,
    /// The packetizer's description of the body.
    pub(crate) spec: PacketSpec,
}

/// What a batch needs from the shard when it writes: each connection's sink, and the bytes
/// of each queued body (borrowed for `'s`, the write).
pub(crate) trait FrameBodies<'s> {
    /// The sink of connection `conn` (a session slot), `None` if it has none.
    fn sink(&self, conn: u32) -> Option<&'s TcpSink>;
    /// The body of a frame queued for `conn`.
    fn body(&self, conn: u32, body: &BodyRef) -> Option<BodySlices<'s>>;
}

/// How one connection's write went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnWrite {
    /// RTP packets the connection was given.
    pub(crate) packets: u32,
    /// Their RTP bytes (header + payload).
    pub(crate) bytes: u64,
    /// `sendmsg` calls and backlogged bytes.
    pub(crate) written: Written,
    /// `Err` when the viewer is to be cut off (backlog over the limit) or its connection failed.
    pub(crate) result: Result<(), SinkError>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    /// When the frame was due (media frames; for lateness).
    due: Instant,
    head_start: u32,
    head_len: u16,
    /// RTP payload length (0 for RTCP frames, which are not counted as packets).
    rtp_len: u16,
    body: Option<BodyRef>,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: u32,
    first: u32,
    last: u32,
}

/// A pass's TCP frames, per connection, in the order they were queued.
#[derive(Debug, Default)]
pub(crate) struct TcpBatch {
    items: Vec<Item>,
    heads: Vec<u8>,
    conns: Vec<Conn>,
    /// Index into `conns` by connection id (a shard's session slot), `NONE` when absent.
    conn_index: Vec<u32>,
    rtp_frames: usize,
}

impl TcpBatch {
    /// An empty batch with room for `frames` frames.
    pub(crate) fn with_capacity(frames: usize) -> Self {
        Self {
            items: Vec::with_capacity(frames),
            heads: Vec::with_capacity(frames * 40),
            conns: Vec::with_capacity(frames),
            conn_index: Vec::new(),
            rtp_frames: 0,
        }
    }

    /// RTP frames queued.
    pub(crate) fn rtp_frames(&self) -> usize {
        self.rtp_frames
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues an RTP packet due at `due` for `conn` on interleaved `channel` (RFC 2326
    /// §10.12): `header` is its RTP header slab (RTP + payload-format header), `body` its
    /// payload body of `body_len` bytes.
    pub(crate) fn push_rtp(
        &mut self,
        conn: u32,
        channel: u8,
        header: &[u8],
        body: BodyRef,
        body_len: usize,
        due: Instant,
    ) {
        let len = header.len() + body_len;
        self.push(conn, channel, header, Some(body), len, due);
        self.rtp_frames += 1;
    }

    /// Queues an SRTP packet for `conn` on interleaved `channel` (RFC 2326 §10.12 over RFC
    /// 3711): `fill` protects it into the `room` bytes reserved in the arena and returns its
    /// length. False (nothing queued) when it fails or does not fit a frame.
    pub(crate) fn push_rtp_sealed(
        &mut self,
        conn: u32,
        channel: u8,
        room: usize,
        due: Instant,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if room > usize::from(u16::MAX) - 4 {
            return false;
        }
        let head_start = self.heads.len();
        self.heads.resize(head_start + 4 + room, 0);
        let len = match fill(&mut self.heads[head_start + 4..]) {
            Some(len) if len <= room => len,
            _ => {
                self.heads.truncate(head_start);
                return false;
            }
        };
        self.heads.truncate(head_start + 4 + len);
        self.heads[head_start..head_start + 4].copy_from_slice(&interleaved_header(channel, len));
        self.link(
            conn,
            Item {
                due,
                head_start: head_start as u32,
                head_len: (4 + len) as u16,
                rtp_len: len as u16,
                body: None,
                next: NONE,
            },
        );
        self.rtp_frames += 1;
        true
    }

    /// Queues an RTCP compound for `conn` on interleaved `channel` (copied).
    pub(crate) fn push_rtcp(&mut self, conn: u32, channel: u8, packet: &[u8], now: Instant) {
        self.push(conn, channel, packet, None, packet.len(), now);
    }

    fn push(
        &mut self,
        conn: u32,
        channel: u8,
        head: &[u8],
        body: Option<BodyRef>,
        len: usize,
        due: Instant,
    ) {
        let head_start = self.heads.len() as u32;
        self.heads
            .extend_from_slice(&interleaved_header(channel, len));
        self.heads.extend_from_slice(head);
        self.link(
            conn,
            Item {
                due,
                head_start,
                head_len: (4 + head.len()) as u16,
                rtp_len: if body.is_some() { len as u16 } else { 0 },
                body,
                next: NONE,
            },
        );
    }

    /// Appends `item` to `conn`'s list.
    fn link(&mut self, conn: u32, item: Item) {
        let index = self.items.len() as u32;
        self.items.push(item);
        let c = conn as usize;
        if self.conn_index.len() <= c {
            self.conn_index.resize(c + 1, NONE);
        }
        match self.conn_index[c] {
            NONE => {
                self.conn_index[c] = self.conns.len() as u32;
                self.conns.push(Conn {
                    id: conn,
                    first: index,
                    last: index,
                });
            }
            k => {
                let conn = &mut self.conns[k as usize];
                self.items[conn.last as usize].next = index;
                conn.last = index;
            }
        }
    }

    /// Writes every connection's frames (one gathered `sendmsg` per [`MAX_IOVECS`] slices,
    /// under one take of its sink's lock), tells `done` how each went, and empties the batch.
    /// A connection whose backlog passes `limit` is reported with [`SinkError::Overflow`].
    /// With `lateness`, each media frame's time from its due time to the end of its
    /// connection's write is passed to it (one clock read per connection).
    pub(crate) fn write<'s>(
        &mut self,
        src: &impl FrameBodies<'s>,
        limit: usize,
        mut done: impl FnMut(u32, ConnWrite),
        mut lateness: Option<&mut dyn FnMut(Duration)>,
    ) {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        for conn in &self.conns {
            let mut out = ConnWrite {
                packets: 0,
                bytes: 0,
                written: Written::default(),
                result: Ok(()),
            };
            let Some(sink) = src.sink(conn.id) else {
                out.result = Err(SinkError::Closed);
                done(conn.id, out);
                continue;
            };
            let mut n = 0;
            let mut k = conn.first;
            while k != NONE {
                let item = &self.items[k as usize];
                if n + 1 + MAX_AUS_PER_PACKET > MAX_IOVECS {
                    if let Err(e) = write_chunk(sink, &iov[..n], limit, &mut out.written) {
                        out.result = Err(e);
                        break;
                    }
                    n = 0;
                }
                let head =
                    item.head_start as usize..item.head_start as usize + item.head_len as usize;
                iov[n] = IoSlice::new(&self.heads[head]);
                n += 1;
                if let Some(body) = &item.body {
                    match src.body(conn.id, body) {
                        Some(slices) => {
                            for s in slices.as_slices() {
                                iov[n] = IoSlice::new(s);
                                n += 1;
                            }
                        }
                        None => {
                            let len = (body.spec.body_len as usize).min(ZEROS.len());
                            iov[n] = IoSlice::new(&ZEROS[..len]);
                            n += 1;
                        }
                    }
                }
                if item.rtp_len > 0 {
                    out.packets += 1;
                    out.bytes += u64::from(item.rtp_len);
                }
                k = item.next;
            }
            if out.result.is_ok() && n > 0 {
                out.result = write_chunk(sink, &iov[..n], limit, &mut out.written);
            }
            if let Some(record) = lateness.as_deref_mut() {
                let written_at = Instant::now();
                let mut k = conn.first;
                while k != NONE {
                    let item = &self.items[k as usize];
                    if item.rtp_len > 0 {
                        record(written_at.saturating_duration_since(item.due));
                    }
                    k = item.next;
                }
            }
            done(conn.id, out);
        }
        for conn in &self.conns {
            if let Some(slot) = self.conn_index.get_mut(conn.id as usize) {
                *slot = NONE;
            }
        }
        self.items.clear();
        self.heads.clear();
        self.conns.clear();
        self.rtp_frames = 0;
    }
}

fn write_chunk(
    sink: &TcpSink,
    slices: &[IoSlice<'_>],
    limit: usize,
    total: &mut Written,
) -> Result<(), SinkError> {
    let w = sink.write_frames(slices, limit)?;
    total.syscalls += w.syscalls;
    total.queued += w.queued;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    struct OneSink(TcpSink);

    impl<'s> FrameBodies<'s> for &'s OneSink {
        fn sink(&self, conn: u32) -> Option<&'s TcpSink> {
            (conn == 0).then_some(&self.0)
        }
        fn body(&self, _: u32, _: &BodyRef) -> Option<BodySlices<'s>> {
            None
        }
    }

    /// A sealed (SRTP) frame is framed with the length `fill` wrote, counted as a packet, and
    /// goes out in queue order with RTCP; a `fill` that fails queues nothing.
    #[test]
    fn sealed_frames_take_the_length_fill_wrote() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let sink = OneSink(TcpSink::new(tx).unwrap());
        let mut batch = TcpBatch::with_capacity(4);
        let now = Instant::now();
        assert!(!batch.push_rtp_sealed(0, 0, 100, now, |_| None));
        assert!(
            !batch.push_rtp_sealed(0, 0, 10, now, |_| Some(11)),
            "over the room"
        );
        assert!(batch.is_empty());
        assert!(batch.push_rtp_sealed(0, 2, 100, now, |out| {
            out[..5].copy_from_slice(b"srtp!");
            Some(5)
        }));
        batch.push_rtcp(0, 3, b"rtcp", now);
        assert_eq!(batch.rtp_frames(), 1);
        let mut done = Vec::new();
        batch.write(&&sink, usize::MAX, |conn, w| done.push((conn, w)), None);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].1.packets, done[0].1.bytes), (1, 5));
        assert!(done[0].1.result.is_ok());
        let mut got = [0u8; 9 + 8];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"$\x02\x00\x05srtp!$\x03\x00\x04rtcp");
    }
}

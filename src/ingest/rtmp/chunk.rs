//! A guard in front of `rml_rtmp`'s chunk deserializer: it walks the same RTMP chunk stream
//! (Adobe RTMP 1.0 §5.3.1 chunk format, §5.4.1 Set Chunk Size, §7.1 message types) without
//! keeping media bytes, and refuses, before `rml_rtmp` sees them, the inputs on which
//! `rml_rtmp` 0.8 panics, overflows its stack or buffers without bound. Found by reading its
//! source and by this module's fuzz test:
//!
//! - a type 1/2/3 chunk whose extended timestamp is below 0xffffff: `timestamp - 0xffffff`
//!   underflows (a panic in debug builds, a garbage time in release);
//! - a chunk of another chunk stream, or a new header, in the middle of a message: rml keeps
//!   one partial payload, not one per chunk stream, and computes `length - received`, which
//!   underflows (debug panic; in release `reserve(huge)` aborts). The specification allows
//!   interleaving chunk streams (§5.3.1, "chunks from different streams may be interleaved"),
//!   but ffmpeg, librtmp (OBS) and GStreamer send each message's chunks back to back, so this
//!   guard refuses interleaving with a clear error instead of letting rml mix two messages;
//! - an AMF0 command with fewer than 3 values (`drain(..3)` panics), an `@setDataFrame` data
//!   message with fewer than 3 values (`data[0]`, `remove(1)` panic), and deeply nested AMF0
//!   objects/arrays (rml's AMF0 reader recurses once per level: a 16 MiB message of nested
//!   objects overflows the stack);
//! - a chunk size of 0 (no message ever completes) or above 2^31 - 1 (§5.4.1).
//!
//! It also bounds what rml would keep: at most [`MAX_CHUNK_STREAMS`] chunk stream ids (rml
//! keeps a header per id, up to 65 599), command and data messages of at most
//! [`MAX_COMMAND_BYTES`], at most [`MAX_CREATE_STREAMS`] `createStream` calls (rml keeps
//! every created stream), and window acknowledgement sizes below 2^31 (rml's byte counter is
//! 32-bit). A message can be at most 2^24 - 1 bytes (the 24-bit message length of §5.3.1.2),
//! which is below [`crate::ingest::MAX_ACCESS_UNIT`], so media messages need no extra cap.

use std::collections::HashMap;

/// Most distinct chunk stream ids one connection may use (encoders use 2 to 8 of them).
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Largest command or data message (AMF0, message types 15, 17, 18, 20); OBS's onMetaData
/// is under 1 KiB.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Most `createStream` commands one connection may send (a publisher sends one).
pub const MAX_CREATE_STREAMS: u32 = 16;
/// Deepest nesting of AMF0 objects and arrays accepted (onMetaData is 1 or 2 levels deep).
pub const MAX_AMF_DEPTH: usize = 16;

/// Why the guard refused the chunk stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A type 1, 2 or 3 chunk names a chunk stream that has no previous header (§5.3.1.2).
    #[error("chunk on stream {0} without a previous full header")]
    NoPreviousHeader(u32),
    /// A chunk of another stream, or a new header, arrived inside a message.
    #[error("interleaved chunk streams are not supported (chunk stream {0} inside a message)")]
    Interleaved(u32),
    /// An extended timestamp delta below 0xffffff (§5.3.1.3 uses it only for larger values).
    #[error("extended timestamp delta below 0xffffff")]
    ExtendedTimestamp,
    /// More than [`MAX_CHUNK_STREAMS`] chunk stream ids.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// A Set Chunk Size of 0 or above 2^31 - 1, or shorter than 4 bytes (§5.4.1).
    #[error("invalid set chunk size")]
    ChunkSize,
    /// A Window Acknowledgement Size of 2^31 or more, or shorter than 4 bytes (§5.4.4).
    #[error("invalid window acknowledgement size")]
    WindowSize,
    /// A command or data message longer than [`MAX_COMMAND_BYTES`].
    #[error("command or data message longer than {MAX_COMMAND_BYTES} bytes")]
    CommandTooLarge,
    /// AMF0 that does not parse, nests deeper than [`MAX_AMF_DEPTH`], or is a command with
    /// fewer than 3 values or an `@setDataFrame` with fewer than 3 values.
    #[error("malformed amf0 command or data: {0}")]
    Amf(&'static str),
    /// More than [`MAX_CREATE_STREAMS`] `createStream` commands.
    #[error("more than {MAX_CREATE_STREAMS} createStream commands")]
    TooManyStreams,
}

/// The header fields remembered per chunk stream (what rml remembers).
#[derive(Debug, Clone, Copy)]
struct Header {
    timestamp_field: u32,
    length: u32,
    type_id: u8,
}

/// Where the guard is in the byte stream.
#[derive(Debug)]
enum Stage {
    /// Collecting the bytes of a chunk header.
    Header,
    /// Inside a chunk's payload of `len` bytes: `left` of them still to come.
    Payload { csid: u32, len: u32, left: u32 },
}

/// Walks the chunk stream ahead of `rml_rtmp` (see the module doc).
#[derive(Debug)]
pub(crate) struct ChunkGuard {
    chunk_size: u32,
    headers: HashMap<u32, Header>,
    /// The chunk stream and bytes received so far of a message spread over several chunks.
    partial: Option<(u32, u32)>,
    stage: Stage,
    head: [u8; 18],
    head_len: usize,
    /// Payload of the current command/control message (types 1, 5, 15, 17, 18, 20).
    capture: Vec<u8>,
    create_streams: u32,
    /// Bytes of the current `check` input walked so far.
    consumed: usize,
    /// Offsets in the last `check` input just past each command message (see `splits`).
    splits: Vec<usize>,
}

/// The initial maximum chunk size (§5.4.1: "The maximum chunk size defaults to 128 bytes").
const INITIAL_CHUNK_SIZE: u32 = 128;
const EXTENDED: u32 = 0x00ff_ffff;

impl ChunkGuard {
    pub(crate) fn new() -> Self {
        Self {
            chunk_size: INITIAL_CHUNK_SIZE,
            headers: HashMap::new(),
            partial: None,
            stage: Stage::Header,
            head: [0; 18],
            head_len: 0,
            capture: Vec::new(),
            create_streams: 0,
            consumed: 0,
            splits: Vec::new(),
        }
    }

    /// Walks `bytes` (the next bytes of the chunk stream after the handshake); an error means
    /// the connection must be closed before rml sees these bytes.
    pub(crate) fn check(&mut self, mut bytes: &[u8]) -> Result<(), ChunkError> {
        let total = bytes.len();
        self.splits.clear();
        while !bytes.is_empty() {
            self.consumed = total - bytes.len();
            match self.stage {
                Stage::Header => {
                    let need = self.header_len();
                    let take = need.saturating_sub(self.head_len).min(bytes.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
                    self.head_len += take;
                    bytes = &bytes[take..];
                    self.consumed += take;
                    // The needed length grows as the header reveals its format and fields.
                    if self.head_len == self.header_len() {
                        self.finish_header()?;
                    }
                }
                Stage::Payload { csid, len, left } => {
                    let take = (left as usize).min(bytes.len());
                    if self.capturing(csid) {
                        self.capture.extend_from_slice(&bytes[..take]);
                    }
                    bytes = &bytes[take..];
                    self.consumed += take;
                    // take <= left, a u32.
                    let left = left - take as u32;
                    self.stage = Stage::Payload { csid, len, left };
                    if left == 0 {
                        self.finish_chunk(csid, len)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Offsets into the input of the last [`check`](Self::check) just past each command
    /// message (types 17 and 20). rml handles every message of an input before the caller
    /// can answer a request, so the caller feeds rml up to each offset and answers (accepts
    /// `connect`) before rml reads the next command (`publish` needs the connection accepted).
    pub(crate) fn splits(&self) -> &[usize] {
        &self.splits
    }

    /// Bytes the current header needs, from what is known of it so far (§5.3.1.1 basic
    /// header: 1, 2 or 3 bytes; §5.3.1.2 message header: 11, 7, 3 or 0 bytes by `fmt`;
    /// §5.3.1.3 extended timestamp: 4 bytes when the timestamp field is 0xffffff).
    fn header_len(&self) -> usize {
        let Some(&b0) = self.head.first().filter(|_| self.head_len > 0) else {
            return 1;
        };
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let fmt = b0 >> 6;
        let message = [11, 7, 3, 0][usize::from(fmt)];
        if self.head_len < basic + message {
            return basic + message;
        }
        let field = if fmt < 3 {
            u32::from_be_bytes([
                0,
                self.head[basic],
                self.head[basic + 1],
                self.head[basic + 2],
            ])
        } else {
            // Type 3 repeats the stream's previous timestamp field (rml reads the extended
            // timestamp again exactly when that field was 0xffffff).
            self.headers
                .get(&csid(&self.head, basic))
                .map_or(0, |h| h.timestamp_field)
        };
        basic + message + if field >= EXTENDED { 4 } else { 0 }
    }

    fn finish_header(&mut self) -> Result<(), ChunkError> {
        let head = self.head;
        let len = self.head_len;
        self.head_len = 0;
        let b0 = head[0];
        let basic = match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let fmt = b0 >> 6;
        let id = csid(&head, basic);
        if let Some((partial_csid, _)) = self.partial {
            if fmt != 3 || id != partial_csid {
                return Err(ChunkError::Interleaved(id));
            }
        }
        let previous = self.headers.get(&id).copied();
        let m = &head[basic..];
        let u24 = |i: usize| u32::from_be_bytes([0, m[i], m[i + 1], m[i + 2]]);
        let header = match fmt {
            0 => Header {
                timestamp_field: u24(0),
                length: u24(3),
                type_id: m[6],
            },
            1 => {
                previous.ok_or(ChunkError::NoPreviousHeader(id))?;
                Header {
                    timestamp_field: u24(0),
                    length: u24(3),
                    type_id: m[6],
                }
            }
            2 => Header {
                timestamp_field: u24(0),
                ..previous.ok_or(ChunkError::NoPreviousHeader(id))?
            },
            _ => previous.ok_or(ChunkError::NoPreviousHeader(id))?,
        };
        if header.timestamp_field >= EXTENDED && fmt != 0 && self.partial.is_none() {
            let ext = &head[len - 4..len];
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            if ext < EXTENDED {
                return Err(ChunkError::ExtendedTimestamp);
            }
        }
        if previous.is_none() && self.headers.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyChunkStreams);
        }
        if is_amf(header.type_id) && header.length as usize > MAX_COMMAND_BYTES {
            return Err(ChunkError::CommandTooLarge);
        }
        self.headers.insert(id, header);
        let received = self.partial.map_or(0, |(_, r)| r);
        if received == 0 {
            self.capture.clear();
        }
        // rml reads min(remaining, chunk size) bytes; with no message in progress that is
        // also what it reads when the whole message fits one chunk.
        // `received < length` holds for a message in progress (it would have completed).
        let len = header.length.saturating_sub(received).min(self.chunk_size);
        self.stage = Stage::Payload {
            csid: id,
            len,
            left: len,
        };
        if len == 0 {
            self.finish_chunk(id, 0)?;
        }
        Ok(())
    }

    fn capturing(&self, csid: u32) -> bool {
        self.headers
            .get(&csid)
            .is_some_and(|h| matches!(h.type_id, 1 | 5) || is_amf(h.type_id))
    }

    fn finish_chunk(&mut self, id: u32, len: u32) -> Result<(), ChunkError> {
        self.stage = Stage::Header;
        let Some(header) = self.headers.get(&id).copied() else {
            return Ok(());
        };
        let received = self.partial.map_or(0, |(_, r)| r) + len;
        if received < header.length {
            self.partial = Some((id, received));
            return Ok(());
        }
        self.partial = None;
        self.message(header.type_id)
    }

    /// A whole message arrived: apply or check what rml will do with it.
    fn message(&mut self, type_id: u8) -> Result<(), ChunkError> {
        let data = std::mem::take(&mut self.capture);
        let result = match type_id {
            //= Adobe RTMP 1.0 §5.4.1 Set Chunk Size (1)
            //# The first bit of the payload MUST be zero. ... Valid sizes are 1 to
            //# 2147483647 (0x7FFFFFFF) inclusive
            1 => match be32(&data) {
                Some(size @ 1..=0x7fff_ffff) => {
                    self.chunk_size = size;
                    Ok(())
                }
                _ => Err(ChunkError::ChunkSize),
            },
            // §5.4.4 Window Acknowledgement Size (5).
            5 => match be32(&data) {
                Some(size) if size < 0x8000_0000 => Ok(()),
                _ => Err(ChunkError::WindowSize),
            },
            // rml strips one leading 0 byte of an AMF3 command (type 17) and reads AMF0.
            17 => {
                let body = match data.split_first() {
                    Some((0, rest)) => rest,
                    _ => &data[..],
                };
                self.command(body)
            }
            20 => self.command(&data),
            15 | 18 => {
                let summary = scan_amf0(&data)?;
                if summary.first_string.as_deref() == Some(b"@setDataFrame".as_slice())
                    && summary.values < 3
                {
                    return Err(ChunkError::Amf("@setDataFrame with fewer than 3 values"));
                }
                Ok(())
            }
            _ => Ok(()),
        };
        // Keep the allocation for the next message, but not a large one.
        if data.capacity() <= 4096 {
            self.capture = data;
            self.capture.clear();
        }
        result
    }

    fn command(&mut self, body: &[u8]) -> Result<(), ChunkError> {
        self.splits.push(self.consumed);
        let summary = scan_amf0(body)?;
        if summary.values < 3 {
            return Err(ChunkError::Amf("command with fewer than 3 values"));
        }
        if summary.first_string.as_deref() == Some(b"createStream".as_slice()) {
            self.create_streams += 1;
            if self.create_streams > MAX_CREATE_STREAMS {
                return Err(ChunkError::TooManyStreams);
            }
        }
        Ok(())
    }
}

/// Chunk stream id from a basic header of `basic` bytes (§5.3.1.1: ids 2-63 in one byte,
/// 64-319 as byte + 64, 64-65599 as two bytes little-endian + 64).
fn csid(head: &[u8], basic: usize) -> u32 {
    match basic {
        2 => u32::from(head[1]) + 64,
        3 => u32::from(head[2]) * 256 + u32::from(head[1]) + 64,
        _ => u32::from(head[0] & 0x3f),
    }
}

fn is_amf(type_id: u8) -> bool {
    matches!(type_id, 15 | 17 | 18 | 20)
}

fn be32(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?))
}

/// What the guard needs to know of an AMF0 value list.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AmfSummary {
    /// Top-level values, counted as rml counts them (up to the end or an object-end marker).
    pub(crate) values: usize,
    /// The first value when it is a string (a command name, `@setDataFrame`).
    pub(crate) first_string: Option<Vec<u8>>,
}

/// Walks an AMF0 value list (AMF0 specification §2) without recursion, exactly as
/// `rml_amf0::deserialize` reads it (a string shorter than its length ends the input; a strict
/// array stops early at an object-end marker), counting top-level values and the nesting depth.
pub(crate) fn scan_amf0(data: &[u8]) -> Result<AmfSummary, ChunkError> {
    enum Ctx {
        Object,
        Array(u32),
    }
    let truncated = ChunkError::Amf("truncated");
    let mut pos = 0usize;
    let mut stack: Vec<Ctx> = Vec::new();
    let mut summary = AmfSummary::default();
    let take = |pos: &mut usize, n: usize| -> Result<usize, ChunkError> {
        let start = *pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or(truncated)?;
        *pos = end;
        Ok(start)
    };
    loop {
        // Where the next value comes from, and what "no value" means there.
        match stack.last_mut() {
            None => {
                if pos >= data.len() || data[pos] == 0x09 {
                    return Ok(summary);
                }
                summary.values += 1;
            }
            Some(Ctx::Object) => {
                let at = take(&mut pos, 2)?;
                let label = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                if label == 0 {
                    let at = take(&mut pos, 1)?;
                    if data[at] != 0x09 {
                        return Err(ChunkError::Amf("empty property name"));
                    }
                    stack.pop();
                    continue;
                }
                pos = pos.saturating_add(label).min(data.len());
                if pos >= data.len() || data[pos] == 0x09 {
                    return Err(ChunkError::Amf("property without a value"));
                }
            }
            Some(Ctx::Array(left)) => {
                if *left == 0 {
                    stack.pop();
                    continue;
                }
                *left -= 1;
                if pos >= data.len() || data[pos] == 0x09 {
                    pos += 1;
                    stack.pop();
                    continue;
                }
            }
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0x00 => {
                take(&mut pos, 8)?;
            }
            0x01 => {
                take(&mut pos, 1)?;
            }
            0x05 | 0x06 => {}
            0x02 => {
                let at = take(&mut pos, 2)?;
                let len = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
                let end = pos.saturating_add(len).min(data.len());
                if stack.is_empty() && summary.values == 1 {
                    summary.first_string = Some(data[pos..end].to_vec());
                }
                pos = end;
            }
            0x03 | 0x08 | 0x0a => {
                if stack.len() >= MAX_AMF_DEPTH {
                    return Err(ChunkError::Amf("nested too deep"));
                }
                match marker {
                    0x03 => stack.push(Ctx::Object),
                    // ECMA array: a 32-bit count rml ignores, then properties as an object.
                    0x08 => {
                        take(&mut pos, 4)?;
                        stack.push(Ctx::Object);
                    }
                    _ => {
                        let at = take(&mut pos, 4)?;
                        let count = u32::from_be_bytes([
                            data[at],
                            data[at + 1],
                            data[at + 2],
                            data[at + 3],
                        ]);
                        stack.push(Ctx::Array(count));
                    }
                }
            }
            _ => return Err(ChunkError::Amf("unknown marker")),
        }
    }
}

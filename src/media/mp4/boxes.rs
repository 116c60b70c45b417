//! Box framing and bounds-checked field reading (ISO/IEC 14496-12 §4.2 `Box` and `FullBox`):
//! 32-bit sizes, `size == 1` with a 64-bit `largesize`, `size == 0` (box extends to the end of
//! its container), and `uuid` extended types. Every read is checked against the box body.

use super::error::{Mp4Error, Mp4ErrorKind};

/// A four-character box or sample-entry type.
pub(crate) type FourCc = [u8; 4];

/// Renders a four-character code for paths and messages (non-printable bytes as `.`).
pub(crate) fn fourcc_str(t: FourCc) -> String {
    t.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                char::from(c)
            } else {
                '.'
            }
        })
        .collect()
}

/// One box: its type, where it sits in the file, and its body (the bytes after the header).
#[derive(Debug, Clone)]
pub(crate) struct Mp4Box<'a> {
    /// Box type.
    pub(crate) typ: FourCc,
    /// Absolute offset of the box header.
    pub(crate) offset: u64,
    /// Box body (after size, type, largesize and usertype).
    pub(crate) body: &'a [u8],
    /// Absolute offset of the body.
    pub(crate) body_offset: u64,
    /// Path from the file root, e.g. `moov/trak[0]/mdia`.
    pub(crate) path: String,
}

impl<'a> Mp4Box<'a> {
    /// An error located at this box's header.
    pub(crate) fn err(&self, kind: Mp4ErrorKind) -> Mp4Error {
        Mp4Error::new(self.offset, &self.path, kind)
    }

    /// A reader over the body.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader::new(self.body, self.body_offset, &self.path)
    }

    /// Reads the `FullBox` version and flags (§4.2), returning a reader positioned after them.
    pub(crate) fn full_box(&self) -> Result<(u8, u32, Reader<'_>), Mp4Error> {
        let mut r = self.reader();
        let vf = r.u32()?;
        Ok(((vf >> 24) as u8, vf & 0x00ff_ffff, r))
    }

    /// Iterates the child boxes that make up the whole body.
    pub(crate) fn children(&self) -> BoxIter<'a> {
        BoxIter::new(self.body, self.body_offset, &self.path)
    }

    /// The first child of type `typ`, if any (errors in earlier siblings propagate).
    pub(crate) fn child(&self, typ: &FourCc) -> Result<Option<Mp4Box<'a>>, Mp4Error> {
        for b in self.children() {
            let b = b?;
            if &b.typ == typ {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Like [`Mp4Box::child`] but a missing child is an error.
    pub(crate) fn require(&self, typ: &FourCc, name: &'static str) -> Result<Mp4Box<'a>, Mp4Error> {
        self.child(typ)?
            .ok_or_else(|| self.err(Mp4ErrorKind::MissingBox(name)))
    }
}

/// Iterator over consecutive boxes filling a byte range (a file or a container body).
#[derive(Debug)]
pub(crate) struct BoxIter<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    parent: String,
    done: bool,
}

impl<'a> BoxIter<'a> {
    /// Boxes in `data`, which starts at absolute offset `base` inside the box at path `parent`.
    pub(crate) fn new(data: &'a [u8], base: u64, parent: &str) -> Self {
        Self {
            data,
            pos: 0,
            base,
            parent: parent.to_owned(),
            done: false,
        }
    }

    fn abs(&self, pos: usize) -> u64 {
        self.base.saturating_add(pos as u64)
    }

    fn read_one(&self) -> Result<(Mp4Box<'a>, usize), Mp4Error> {
        let start = self.pos;
        let at = self.abs(start);
        let avail = self.data.get(start..).unwrap_or_default();
        let mut r = Reader::new(avail, at, &self.parent);
        let size32 = r.u32()?;
        let typ: FourCc = r.array()?;
        let path = if self.parent.is_empty() {
            fourcc_str(typ)
        } else {
            format!("{}/{}", self.parent, fourcc_str(typ))
        };
        let size: u64 = match size32 {
            // §4.2: size 1 means a 64-bit largesize follows the type.
            1 => r.u64()?,
            // §4.2: size 0 means the box extends to the end of the file (its container here).
            0 => avail.len() as u64,
            n => u64::from(n),
        };
        if typ == *b"uuid" {
            r.skip(16)?;
        }
        let header = r.pos();
        if size < header as u64 {
            return Err(Mp4Error::new(
                at,
                &path,
                Mp4ErrorKind::Invalid("box size smaller than its header"),
            ));
        }
        if size > avail.len() as u64 {
            return Err(Mp4Error::new(at, &path, Mp4ErrorKind::BoxTooLarge));
        }
        // size <= avail.len(), so it fits in usize.
        let size = size as usize;
        let body = avail
            .get(header..size)
            .ok_or_else(|| Mp4Error::new(at, &path, Mp4ErrorKind::Truncated))?;
        let b = Mp4Box {
            typ,
            offset: at,
            body,
            body_offset: at.saturating_add(header as u64),
            path,
        };
        Ok((b, start.saturating_add(size)))
    }
}

impl<'a> Iterator for BoxIter<'a> {
    type Item = Result<Mp4Box<'a>, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        // QuickTime sample entries may end with a 32-bit zero terminator: tolerate short
        // all-zero tails, reject any other leftover shorter than a box header.
        if rest.is_empty() || (rest.len() < 8 && rest.iter().all(|&b| b == 0)) {
            self.done = true;
            return None;
        }
        match self.read_one() {
            Ok((b, next)) => {
                self.pos = next;
                Some(Ok(b))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A bounds-checked big-endian reader over a box body; errors carry the box path.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    path: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader over `data`, which starts at absolute offset `base` in the box at `path`.
    pub(crate) fn new(data: &'a [u8], base: u64, path: &'a str) -> Self {
        Self {
            data,
            pos: 0,
            base,
            path,
        }
    }

    /// Current position relative to the start of the data.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Current absolute file offset.
    pub(crate) fn abs(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }

    /// The path of the box being read.
    pub(crate) fn path(&self) -> &'a str {
        self.path
    }

    /// An error at the current position.
    pub(crate) fn err(&self, kind: Mp4ErrorKind) -> Mp4Error {
        Mp4Error::new(self.abs(), self.path, kind)
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The unread bytes (without consuming them).
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or_else(|| self.err(Mp4ErrorKind::Truncated))?;
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }

    /// Consumes a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Mp4Error> {
        let s = self.bytes(N)?;
        s.first_chunk::<N>()
            .copied()
            .ok_or_else(|| self.err(Mp4ErrorKind::Truncated))
    }

    /// Reads a `u8`.
    pub(crate) fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Result<u16, Mp4Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, Mp4Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, Mp4Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `i32`.
    pub(crate) fn i32(&mut self) -> Result<i32, Mp4Error> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `i64`.
    pub(crate) fn i64(&mut self) -> Result<i64, Mp4Error> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Consumes a table of `count` entries of `entry_size` bytes, checking that the declared
    /// count fits in the remaining bytes before anything is sized from it.
    pub(crate) fn table(&mut self, count: u64, entry_size: usize) -> Result<&'a [u8], Mp4Error> {
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(entry_size))
            .filter(|&len| len <= self.remaining())
            .ok_or_else(|| self.err(Mp4ErrorKind::Truncated))?;
        self.bytes(len)
    }
}

/// Big-endian `u32` from the start of `c` (0 if `c` is shorter; callers pass exact chunks).
pub(crate) fn be_u32(c: &[u8]) -> u32 {
    c.first_chunk::<4>().map_or(0, |a| u32::from_be_bytes(*a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Vec<Result<(FourCc, usize), Mp4ErrorKind>> {
        BoxIter::new(data, 0, "")
            .map(|r| r.map(|b| (b.typ, b.body.len())).map_err(|e| e.kind))
            .collect()
    }

    #[test]
    fn plain_large_and_to_end_sizes() {
        let mut d = Vec::new();
        d.extend_from_slice(&[0, 0, 0, 10]);
        d.extend_from_slice(b"free");
        d.extend_from_slice(&[1, 2]);
        d.extend_from_slice(&[0, 0, 0, 1]);
        d.extend_from_slice(b"mdat");
        d.extend_from_slice(&20u64.to_be_bytes());
        d.extend_from_slice(&[9; 4]);
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.extend_from_slice(b"skip");
        d.extend_from_slice(&[7; 3]);
        assert_eq!(
            collect(&d),
            vec![Ok((*b"free", 2)), Ok((*b"mdat", 4)), Ok((*b"skip", 3))]
        );
    }

    #[test]
    fn bad_sizes() {
        let mut d = vec![0, 0, 0, 100];
        d.extend_from_slice(b"moov");
        assert_eq!(collect(&d), vec![Err(Mp4ErrorKind::BoxTooLarge)]);
        let mut d = vec![0, 0, 0, 4];
        d.extend_from_slice(b"moov");
        assert!(matches!(collect(&d)[0], Err(Mp4ErrorKind::Invalid(_))));
        let mut d = vec![0, 0, 0, 1];
        d.extend_from_slice(b"moov");
        d.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(collect(&d), vec![Err(Mp4ErrorKind::BoxTooLarge)]);
        assert_eq!(collect(&[0, 0, 9]), vec![Err(Mp4ErrorKind::Truncated)]);
        assert!(collect(&[0, 0, 0, 0]).is_empty());
    }

    #[test]
    fn reader_is_bounds_checked() {
        let mut r = Reader::new(&[1, 2, 3], 100, "x");
        assert_eq!(r.u16().ok(), Some(0x0102));
        let e = r.u16().err().map(|e| (e.kind, e.offset));
        assert_eq!(e, Some((Mp4ErrorKind::Truncated, 102)));
        assert!(r.table(u64::MAX, 8).is_err());
        assert!(r.table(1 << 62, 4).is_err());
        assert_eq!(r.table(1, 1).ok(), Some(&[3u8][..]));
    }
}

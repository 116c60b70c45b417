//! EBML primitives (RFC 8794): variable-size integers (§4), element IDs (§5) and data sizes
//! (§6), unsigned integer, float and string element bodies (§7), and a bounded walk over the
//! children of a master element, including master elements of unknown size (§6.2).

use super::error::{MkvError, MkvErrorKind};

/// An element header read from the file: its ID (with the length marker, as written in
/// specifications), where the header starts, where the data starts, and where the data ends
/// (`None` for an unknown size, RFC 8794 §6.2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element {
    /// Element ID, marker bits included (e.g. `0x1A45DFA3`).
    pub id: u32,
    /// Absolute offset of the first byte of the ID.
    pub start: usize,
    /// Absolute offset of the first data byte.
    pub data: usize,
    /// Absolute end of the data, or `None` when the size is unknown.
    pub end: Option<usize>,
}

/// Reads a variable-size integer (RFC 8794 §4): returns its value with the length marker
/// removed, its length (1 to 8), and whether all its value bits are set (the reserved
/// "unknown size" value, §6.2). `None` when truncated or longer than 8 bytes.
pub(crate) fn read_vint(data: &[u8]) -> Option<(u64, usize, bool)> {
    let first = *data.first()?;
    if first == 0 {
        // RFC 8794 §4.1: VINT_WIDTH of more than 7 zero bits is not allowed here (max 8 bytes).
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let bytes = data.get(..len)?;
    let mut v = u64::from(first) & (0xFFu64 >> len);
    for b in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(*b);
    }
    let all_ones = v == (1u64 << (7 * len)) - 1;
    Some((v, len, all_ones))
}

/// Reads an element ID (RFC 8794 §5): up to 4 bytes (EBMLMaxIDLength), marker kept.
fn read_id(data: &[u8]) -> Option<(u32, usize)> {
    let first = *data.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let bytes = data.get(..len)?;
    let id = bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
    Some((id, len))
}

/// Reads the element header at absolute offset `pos`, whose data must end by `limit`
/// (the parent's end, itself within the file). A known size past `limit` is
/// [`MkvErrorKind::SizeTooLarge`]; a truncated header [`MkvErrorKind::Truncated`].
pub(crate) fn read_header(file: &[u8], pos: usize, limit: usize) -> Result<Element, MkvError> {
    let err = |kind| MkvError::new(pos as u64, kind);
    let window = file.get(pos..limit).ok_or(err(MkvErrorKind::Truncated))?;
    let (id, id_len) = match read_id(window) {
        Some(v) => v,
        None if window.len() < 4 && window.first().is_some_and(|b| *b != 0) => {
            return Err(err(MkvErrorKind::Truncated))
        }
        None => return Err(err(MkvErrorKind::Invalid("element id"))),
    };
    let rest = window.get(id_len..).unwrap_or_default();
    let (size, size_len, unknown) = match read_vint(rest) {
        Some(v) => v,
        None if rest.first().is_some_and(|b| *b == 0) => {
            return Err(err(MkvErrorKind::Invalid(
                "element size longer than 8 bytes",
            )))
        }
        None => return Err(err(MkvErrorKind::Truncated)),
    };
    let data = pos + id_len + size_len;
    let end = if unknown {
        None
    } else {
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| data.checked_add(s))
            .filter(|&e| e <= limit)
            .ok_or(err(MkvErrorKind::SizeTooLarge))?;
        Some(end)
    };
    Ok(Element {
        id,
        start: pos,
        data,
        end,
    })
}

/// Like [`read_header`], but when `limit` is the end of the file a known size past it is
/// clamped to it and reported (a file cut short inside this element).
pub(crate) fn read_header_clamped(
    file: &[u8],
    pos: usize,
    limit: usize,
) -> Result<(Element, bool), MkvError> {
    match read_header(file, pos, limit) {
        Err(e) if e.kind == MkvErrorKind::SizeTooLarge && limit >= file.len() => {
            let mut el = read_header_unbounded(file, pos)?;
            el.end = Some(limit);
            Ok((el, true))
        }
        other => other.map(|e| (e, false)),
    }
}

/// The header at `pos` with its size ignored (used only to locate its data start).
fn read_header_unbounded(file: &[u8], pos: usize) -> Result<Element, MkvError> {
    let window = file
        .get(pos..)
        .ok_or(MkvError::new(pos as u64, MkvErrorKind::Truncated))?;
    let (id, id_len) = read_id(window).ok_or(MkvError::new(pos as u64, MkvErrorKind::Truncated))?;
    let (_, size_len, _) = read_vint(window.get(id_len..).unwrap_or_default())
        .ok_or(MkvError::new(pos as u64, MkvErrorKind::Truncated))?;
    Ok(Element {
        id,
        start: pos,
        data: pos + id_len + size_len,
        end: None,
    })
}

/// An unsigned integer element body (RFC 8794 §7.2: 0 to 8 bytes, big-endian).
pub(crate) fn read_uint(body: &[u8], at: usize) -> Result<u64, MkvError> {
    if body.len() > 8 {
        return Err(MkvError::new(
            at as u64,
            MkvErrorKind::Invalid("unsigned integer longer than 8 bytes"),
        ));
    }
    Ok(body.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
}

/// A float element body (RFC 8794 §7.3: 0, 4 or 8 bytes).
pub(crate) fn read_float(body: &[u8], at: usize) -> Result<f64, MkvError> {
    match body.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_bits(read_uint(body, at)? as u32))),
        8 => Ok(f64::from_bits(read_uint(body, at)?)),
        _ => Err(MkvError::new(
            at as u64,
            MkvErrorKind::Invalid("float size"),
        )),
    }
}

/// A string element body (RFC 8794 §7.4/§7.5): trailing NUL padding removed, invalid UTF-8
/// replaced.
pub(crate) fn read_string(body: &[u8]) -> String {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Walks the children of a master element whose data spans `pos..end`. With `stop_ids`,
/// the walk also ends (cleanly) at the first child whose ID is one of them: how the end of
/// an unknown-size element is found (RFC 8794 §6.2: it ends at an element that is not a
/// valid child, i.e. one of its parent's level).
pub(crate) struct Children<'a> {
    file: &'a [u8],
    pos: usize,
    end: usize,
    stop_ids: &'a [u32],
    done: bool,
}

impl<'a> Children<'a> {
    /// Children of the data `pos..end` of `file`.
    pub(crate) fn new(file: &'a [u8], pos: usize, end: usize, stop_ids: &'a [u32]) -> Self {
        Self {
            file,
            pos,
            end: end.min(file.len()),
            stop_ids,
            done: false,
        }
    }

    /// Where the walk stands: after the last child returned, or at the child that stopped it.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
}

impl Iterator for Children<'_> {
    type Item = Result<Element, MkvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.end {
            return None;
        }
        let el = match read_header(self.file, self.pos, self.end) {
            Ok(el) => el,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        if self.stop_ids.contains(&el.id) {
            self.done = true;
            return None;
        }
        match el.end {
            Some(end) => self.pos = end,
            // The caller decides where an unknown-size child ends; the walk cannot go on.
            None => self.done = true,
        }
        Some(Ok(el))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints() {
        assert_eq!(read_vint(&[0x81]), Some((1, 1, false)));
        assert_eq!(read_vint(&[0xFF]), Some((127, 1, true)));
        assert_eq!(read_vint(&[0x40, 0x02]), Some((2, 2, false)));
        assert_eq!(
            read_vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).map(|v| v.2),
            Some(true)
        );
        assert_eq!(read_vint(&[0x00, 0x81]), None, "longer than 8 bytes");
        assert_eq!(read_vint(&[0x40]), None, "truncated");
    }

    #[test]
    fn headers_are_bounded_by_their_parent() {
        // EBML header ID, size 4, 4 data bytes.
        let f = [0x1A, 0x45, 0xDF, 0xA3, 0x84, 1, 2, 3, 4];
        let el = read_header(&f, 0, f.len()).unwrap();
        assert_eq!((el.id, el.data, el.end), (0x1A45DFA3, 5, Some(9)));
        assert_eq!(
            read_header(&f, 0, 8).unwrap_err().kind,
            MkvErrorKind::SizeTooLarge
        );
        let (el, cut) = read_header_clamped(&f[..8], 0, 8).unwrap();
        assert!(cut);
        assert_eq!(el.end, Some(8));
        assert!(
            read_header_clamped(&f, 0, 8).is_err(),
            "a parent's end is no file end"
        );
        assert_eq!(
            read_header(&f, 0, 3).unwrap_err().kind,
            MkvErrorKind::Truncated
        );
        let unknown = [0x1F, 0x43, 0xB6, 0x75, 0xFF];
        assert_eq!(read_header(&unknown, 0, 5).unwrap().end, None);
    }
}

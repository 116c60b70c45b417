//! Matroska `Block` and `SimpleBlock` bodies (RFC 9559 §10.1–§10.4 and §10.3 lacing): the
//! track number, the timestamp relative to the cluster, the flags, and the frames — one, or
//! several laced with Xiph, EBML or fixed-size lacing. Every size is checked against the
//! block: a block whose lace sizes lie is refused as a whole.

use super::ebml::read_vint;

/// Most frames a laced block holds (RFC 9559 §10.3: the count is one byte, minus one).
pub(crate) const MAX_LACED_FRAMES: usize = 256;

/// The header fields of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    /// Track number (RFC 9559 §10.1: an EBML vint).
    pub track: u64,
    /// Timestamp relative to the cluster's, in TimestampScale units (signed 16 bits).
    pub relative: i16,
    /// The flags byte (§10.2 for SimpleBlock: 0x80 keyframe, 0x06 lacing).
    pub flags: u8,
}

/// Why a block cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// Shorter than its header.
    Truncated,
    /// The lace sizes do not add up to the block (or a frame is empty).
    BadLacing,
}

/// Parses a block body: its header, and the frames as (offset within `body`, length) into
/// `frames` (cleared first; at most [`MAX_LACED_FRAMES`]).
pub(crate) fn parse_block(
    body: &[u8],
    frames: &mut Vec<(usize, usize)>,
) -> Result<BlockHeader, BlockError> {
    frames.clear();
    let (track, n, _) = read_vint(body).ok_or(BlockError::Truncated)?;
    let head = body.get(n..n + 3).ok_or(BlockError::Truncated)?;
    let relative = i16::from_be_bytes([head[0], head[1]]);
    let flags = head[2];
    let mut pos = n + 3;
    let header = BlockHeader {
        track,
        relative,
        flags,
    };
    // RFC 9559 §10.2: bits 0x06 of the flags select the lacing.
    let lacing = (flags >> 1) & 0x03;
    if lacing == 0 {
        if pos >= body.len() {
            return Err(BlockError::BadLacing);
        }
        frames.push((pos, body.len() - pos));
        return Ok(header);
    }
    let count = usize::from(*body.get(pos).ok_or(BlockError::Truncated)?) + 1;
    pos += 1;
    // Sizes of all frames but the last; the last takes what is left.
    let mut sizes = [0usize; MAX_LACED_FRAMES];
    match lacing {
        // §10.3.2 Xiph lacing: each size is a run of 255s ended by a byte below 255.
        0b01 => {
            for size in sizes.iter_mut().take(count - 1) {
                loop {
                    let b = *body.get(pos).ok_or(BlockError::BadLacing)?;
                    pos += 1;
                    *size += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
            }
        }
        // §10.3.3 EBML lacing: the first size as a vint, then signed vint differences.
        0b11 => {
            if count > 1 {
                let (first, len, _) =
                    read_vint(body.get(pos..).unwrap_or_default()).ok_or(BlockError::BadLacing)?;
                pos += len;
                let mut size = i64::try_from(first).map_err(|_| BlockError::BadLacing)?;
                sizes[0] = usize::try_from(size).map_err(|_| BlockError::BadLacing)?;
                for s in sizes.iter_mut().take(count - 1).skip(1) {
                    let (raw, len, _) = read_vint(body.get(pos..).unwrap_or_default())
                        .ok_or(BlockError::BadLacing)?;
                    pos += len;
                    // Signed vint: the raw value minus half its range (2^(7*len-1) - 1).
                    let bias = (1i64 << (7 * len - 1)) - 1;
                    let diff = i64::try_from(raw).map_err(|_| BlockError::BadLacing)? - bias;
                    size = size.checked_add(diff).ok_or(BlockError::BadLacing)?;
                    *s = usize::try_from(size).map_err(|_| BlockError::BadLacing)?;
                }
            }
        }
        // §10.3.4 fixed-size lacing: every frame the same size.
        _ => {
            let rest = body.len().saturating_sub(pos);
            if rest % count != 0 {
                return Err(BlockError::BadLacing);
            }
            sizes
                .iter_mut()
                .take(count - 1)
                .for_each(|s| *s = rest / count);
        }
    }
    let laced: usize = sizes
        .iter()
        .take(count - 1)
        .try_fold(0usize, |a, s| a.checked_add(*s))
        .ok_or(BlockError::BadLacing)?;
    let data_end = pos.checked_add(laced).ok_or(BlockError::BadLacing)?;
    if data_end >= body.len() {
        // The sizes claim more than the block holds, or leave nothing for the last frame.
        return Err(BlockError::BadLacing);
    }
    for size in sizes.iter().take(count - 1) {
        if *size == 0 {
            return Err(BlockError::BadLacing);
        }
        frames.push((pos, *size));
        pos += size;
    }
    frames.push((pos, body.len() - pos));
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(body: &[u8]) -> Result<Vec<(usize, usize)>, BlockError> {
        let mut f = Vec::new();
        parse_block(body, &mut f).map(|_| f)
    }

    #[test]
    fn unlaced() {
        let body = [0x81, 0x00, 0x10, 0x80, 1, 2, 3];
        let mut f = Vec::new();
        let h = parse_block(&body, &mut f).unwrap();
        assert_eq!((h.track, h.relative, h.flags), (1, 16, 0x80));
        assert_eq!(f, vec![(4, 3)]);
        assert_eq!(frames(&[0x81, 0x00]), Err(BlockError::Truncated));
        assert_eq!(
            frames(&[0x81, 0, 0, 0]),
            Err(BlockError::BadLacing),
            "empty frame"
        );
    }

    #[test]
    fn xiph_lacing() {
        // 3 frames: 300 (255 + 45), 2, and the rest (3).
        let mut body = vec![0x82, 0xFF, 0xFE, 0x02, 2, 255, 45, 2];
        body.extend(std::iter::repeat_n(7, 305));
        let f = frames(&body).unwrap();
        assert_eq!(f, vec![(8, 300), (308, 2), (310, 3)]);
        assert_eq!(parse_block(&body, &mut Vec::new()).unwrap().relative, -2);
        // Sizes claiming more than the block.
        let mut lie = body.clone();
        lie[6] = 250;
        lie.truncate(200);
        assert_eq!(frames(&lie), Err(BlockError::BadLacing));
        // Truncated inside the sizes.
        assert_eq!(frames(&body[..6]), Err(BlockError::BadLacing));
    }

    #[test]
    fn ebml_lacing() {
        // 3 frames of 5, 4 (diff -1: 0xBF - 63 = -1 as a 1-byte signed vint) and the rest 6.
        let mut body = vec![0x81, 0, 0, 0x06, 2, 0x85, 0xBE];
        body.extend([1u8; 15]);
        assert_eq!(frames(&body).unwrap(), vec![(7, 5), (12, 4), (16, 6)]);
        // A difference making a size negative.
        let mut neg = body.clone();
        neg[6] = 0x80; // -63
        assert_eq!(frames(&neg), Err(BlockError::BadLacing));
    }

    #[test]
    fn fixed_lacing() {
        let mut body = vec![0x81, 0, 0, 0x04, 3];
        body.extend([9u8; 8]);
        assert_eq!(
            frames(&body).unwrap(),
            vec![(5, 2), (7, 2), (9, 2), (11, 2)]
        );
        body.push(1);
        assert_eq!(
            frames(&body),
            Err(BlockError::BadLacing),
            "9 bytes in 4 frames"
        );
    }
}

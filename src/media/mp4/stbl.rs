//! Sample table flattening (ISO/IEC 14496-12 §8.5–§8.7): `stsz`/`stz2` sizes (§8.7.3),
//! `stsc` chunk runs (§8.7.4), `stco`/`co64` chunk offsets (§8.7.5), `stts` decode deltas
//! (§8.6.1.2), `ctts` composition offsets (§8.6.1.3, versions 0 and 1, read as signed) and
//! `stss` sync samples (§8.6.2) become one `Vec<Sample>` in decode order.
//!
//! Hostile input is bounded: every table's entry count is checked against its box's bytes
//! before use, the sample count is checked against what the file can hold before the output
//! is reserved, and all loops stop at the declared sample count, so work and memory stay
//! linear in the input.

use super::boxes::{be_u32, Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::Sample;

/// Per-sample sizes from `stsz` or `stz2`.
enum Sizes<'a> {
    /// Every sample has this size (`stsz` with a non-zero `sample_size`).
    Constant(u32),
    /// Packed entries of `bits` (4, 8, 16 or 32) each.
    Table { data: &'a [u8], bits: u8 },
}

impl Sizes<'_> {
    /// Size of sample `i` (zero-based); `None` past the table.
    fn get(&self, i: usize) -> Option<u32> {
        match *self {
            Sizes::Constant(s) => Some(s),
            Sizes::Table { data, bits: 4 } => {
                // §8.7.3.3: two 4-bit sizes per byte, the first in the high nibble.
                let b = data.get(i / 2)?;
                Some(u32::from(if i.is_multiple_of(2) {
                    b >> 4
                } else {
                    b & 0x0f
                }))
            }
            Sizes::Table { data, bits: 8 } => data.get(i).map(|&b| u32::from(b)),
            Sizes::Table { data, bits: 16 } => {
                let at = i.checked_mul(2)?;
                let b = data.get(at..at.checked_add(2)?)?.first_chunk::<2>()?;
                Some(u32::from(u16::from_be_bytes(*b)))
            }
            Sizes::Table { data, .. } => {
                let at = i.checked_mul(4)?;
                data.get(at..at.checked_add(4)?).map(be_u32)
            }
        }
    }
}

/// The boxes of one `stbl` that the flattener needs.
pub(crate) struct SampleTableBoxes<'a> {
    /// `stsz` or `stz2`.
    pub(crate) sizes: Mp4Box<'a>,
    /// `stsc`.
    pub(crate) stsc: Mp4Box<'a>,
    /// `stco` or `co64`.
    pub(crate) chunks: Mp4Box<'a>,
    /// `stts`.
    pub(crate) stts: Mp4Box<'a>,
    /// `ctts`, if present.
    pub(crate) ctts: Option<Mp4Box<'a>>,
    /// `stss`, if present (absent: every sample is a sync sample).
    pub(crate) stss: Option<Mp4Box<'a>>,
}

impl<'a> SampleTableBoxes<'a> {
    /// Collects the sample table boxes from an `stbl`.
    pub(crate) fn from_stbl(stbl: &Mp4Box<'a>) -> Result<Self, Mp4Error> {
        let (mut sizes, mut stsc, mut chunks, mut stts, mut ctts, mut stss) =
            (None, None, None, None, None, None);
        for b in stbl.children() {
            let b = b?;
            let slot = match &b.typ {
                b"stsz" | b"stz2" => &mut sizes,
                b"stsc" => &mut stsc,
                b"stco" | b"co64" => &mut chunks,
                b"stts" => &mut stts,
                b"ctts" => &mut ctts,
                b"stss" => &mut stss,
                _ => continue,
            };
            if slot.is_some() {
                return Err(b.err(Mp4ErrorKind::Inconsistent("duplicate sample table box")));
            }
            *slot = Some(b);
        }
        let missing = |name| stbl.err(Mp4ErrorKind::MissingBox(name));
        Ok(Self {
            sizes: sizes.ok_or_else(|| missing("stsz"))?,
            stsc: stsc.ok_or_else(|| missing("stsc"))?,
            chunks: chunks.ok_or_else(|| missing("stco"))?,
            stts: stts.ok_or_else(|| missing("stts"))?,
            ctts,
            stss,
        })
    }
}

/// Reads `stsz`/`stz2` (§8.7.3): the sample count and sizes. The count is bounded by the
/// table bytes, or for a constant size by how many such samples fit in the file.
fn read_sizes<'a>(b: &'a Mp4Box<'_>, file_len: u64) -> Result<(usize, Sizes<'a>), Mp4Error> {
    let (_v, _f, mut r) = b.full_box()?;
    if b.typ == *b"stz2" {
        // §8.7.3.3: reserved(24), field_size(8), sample_count(32), packed entries.
        r.skip(3)?;
        let bits = r.u8()?;
        let count = r.u32()?;
        let per_entry_bits = match bits {
            4 | 8 | 16 => u64::from(bits),
            _ => return Err(r.err(Mp4ErrorKind::Invalid("stz2 field size must be 4, 8 or 16"))),
        };
        let bytes = u64::from(count)
            .checked_mul(per_entry_bits)
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| r.err(Mp4ErrorKind::Truncated))?;
        let data = r.table(bytes, 1)?;
        let count = usize::try_from(count).map_err(|_| r.err(Mp4ErrorKind::Truncated))?;
        return Ok((count, Sizes::Table { data, bits }));
    }
    // §8.7.3.2: sample_size, sample_count, then entries only when sample_size == 0.
    let size = r.u32()?;
    let count = r.u32()?;
    if size != 0 {
        // Samples occupy distinct bytes of the file, so at most file_len / size of them exist.
        if u64::from(count) > file_len / u64::from(size) {
            return Err(r.err(Mp4ErrorKind::SampleOutOfRange));
        }
        let count = usize::try_from(count).map_err(|_| r.err(Mp4ErrorKind::SampleOutOfRange))?;
        return Ok((count, Sizes::Constant(size)));
    }
    let data = r.table(u64::from(count), 4)?;
    let count = usize::try_from(count).map_err(|_| r.err(Mp4ErrorKind::Truncated))?;
    Ok((count, Sizes::Table { data, bits: 32 }))
}

/// Reads a `FullBox` whose body is `entry_count` then `entry_count` entries of `entry_size`
/// bytes, returning the entries (count checked against the box bytes).
fn read_table<'a>(r: &mut Reader<'a>, entry_size: usize) -> Result<&'a [u8], Mp4Error> {
    let count = r.u32()?;
    r.table(u64::from(count), entry_size)
}

/// Flattens the sample tables into samples in decode order, every one checked to lie within
/// `file_len` bytes, and the decode time where the table ends (the sum of every `stts`
/// delta: where the first movie fragment continues, §8.8.12). Returns no samples for a track
/// without samples (as in a fragmented file's `moov`).
pub(crate) fn flatten(
    t: &SampleTableBoxes<'_>,
    file_len: u64,
) -> Result<(Vec<Sample>, u64), Mp4Error> {
    let (count, sizes) = read_sizes(&t.sizes, file_len)?;
    let mut samples: Vec<Sample> = Vec::with_capacity(count);
    place_samples(t, count, &sizes, file_len, &mut samples)?;
    let end_dts = apply_stts(&t.stts, &mut samples)?;
    if let Some(ctts) = &t.ctts {
        apply_ctts(ctts, &mut samples)?;
    }
    match &t.stss {
        Some(stss) => apply_stss(stss, &mut samples)?,
        None => samples.iter_mut().for_each(|s| s.sync = true),
    }
    Ok((samples, end_dts))
}

/// Walks `stsc` runs over the chunks of `stco`/`co64` (§8.7.4, §8.7.5), giving each sample its
/// byte offset (chunk offset plus the sizes of the samples before it in the chunk).
fn place_samples(
    t: &SampleTableBoxes<'_>,
    count: usize,
    sizes: &Sizes<'_>,
    file_len: u64,
    out: &mut Vec<Sample>,
) -> Result<(), Mp4Error> {
    let (_v, _f, mut cr) = t.chunks.full_box()?;
    let wide = t.chunks.typ == *b"co64";
    let chunk_table_at = cr.abs().saturating_add(4);
    let chunk_data = read_table(&mut cr, if wide { 8 } else { 4 })?;
    let chunk_size = if wide { 8 } else { 4 };
    let chunk_count = chunk_data.len() / chunk_size;
    let mut chunk_offsets = chunk_data.chunks_exact(chunk_size).map(|c| {
        if wide {
            c.first_chunk::<8>().map_or(0, |a| u64::from_be_bytes(*a))
        } else {
            u64::from(be_u32(c))
        }
    });

    let (_v, _f, mut sr) = t.stsc.full_box()?;
    let stsc_data = read_table(&mut sr, 12)?;
    let mut runs = stsc_data.chunks_exact(12).peekable();
    let stsc_err = |what| t.stsc.err(Mp4ErrorKind::Inconsistent(what));
    let mut chunk_index: usize = 0; // zero-based index of the next chunk to place
                                    // The first run must start at chunk 1; later runs at strictly greater chunks.
    let mut min_first: u64 = 1;
    let mut is_first = true;
    while let Some(run) = runs.next() {
        let first_chunk = u64::from(be_u32(run));
        let per_chunk = be_u32(run.get(4..).unwrap_or_default());
        let description = be_u32(run.get(8..).unwrap_or_default());
        if is_first && first_chunk != 1 {
            return Err(stsc_err("stsc first entry must start at chunk 1"));
        }
        is_first = false;
        if first_chunk < min_first {
            return Err(stsc_err("stsc first_chunk values not increasing"));
        }
        if first_chunk > chunk_count as u64 {
            return Err(stsc_err("stsc entry references a chunk out of range"));
        }
        if description != 1 {
            return Err(t.stsc.err(Mp4ErrorKind::Unsupported(
                "multiple sample descriptions".to_owned(),
            )));
        }
        // This run covers chunks first_chunk .. next first_chunk (or the last chunk).
        let end_chunk = match runs.peek() {
            Some(next) => u64::from(be_u32(next)).min(chunk_count as u64 + 1),
            None => chunk_count as u64 + 1,
        };
        min_first = first_chunk.saturating_add(1);
        let run_chunks = end_chunk.saturating_sub(first_chunk);
        for _ in 0..run_chunks {
            let mut offset = chunk_offsets
                .next()
                .ok_or_else(|| stsc_err("stsc entry references a chunk out of range"))?;
            let entry_at = chunk_table_at
                .saturating_add((chunk_index as u64).saturating_mul(chunk_size as u64));
            for _ in 0..per_chunk {
                let i = out.len();
                if i >= count {
                    return Err(stsc_err("stsc describes more samples than stsz"));
                }
                let len = sizes
                    .get(i)
                    .ok_or_else(|| t.sizes.err(Mp4ErrorKind::Truncated))?;
                let end = offset
                    .checked_add(u64::from(len))
                    .filter(|&end| end <= file_len)
                    .ok_or_else(|| {
                        Mp4Error::new(entry_at, &t.chunks.path, Mp4ErrorKind::SampleOutOfRange)
                    })?;
                out.push(Sample {
                    offset,
                    len,
                    dts: 0,
                    cts_offset: 0,
                    sync: false,
                });
                offset = end;
            }
            chunk_index = chunk_index.saturating_add(1);
        }
    }
    if out.len() != count {
        return Err(stsc_err("stsc and stco describe fewer samples than stsz"));
    }
    Ok(())
}

/// Assigns decode times from `stts` runs of (sample_count, sample_delta) (§8.6.1.2);
/// returns the decode time after the last sample.
fn apply_stts(stts: &Mp4Box<'_>, samples: &mut [Sample]) -> Result<u64, Mp4Error> {
    let (_v, _f, mut r) = stts.full_box()?;
    let data = read_table(&mut r, 8)?;
    let disagree = || {
        stts.err(Mp4ErrorKind::Inconsistent(
            "stts sample count disagrees with stsz",
        ))
    };
    let mut it = samples.iter_mut();
    let mut dts: u64 = 0;
    for e in data.chunks_exact(8) {
        let n = be_u32(e);
        let delta = u64::from(be_u32(e.get(4..).unwrap_or_default()));
        for _ in 0..n {
            let s = it.next().ok_or_else(disagree)?;
            s.dts = dts;
            dts = dts
                .checked_add(delta)
                .ok_or_else(|| stts.err(Mp4ErrorKind::Invalid("decode time overflow")))?;
        }
    }
    if it.next().is_some() {
        return Err(disagree());
    }
    Ok(dts)
}

/// Assigns composition offsets from `ctts` runs (§8.6.1.3). Version 0 offsets are unsigned
/// in the specification but widely written negative, so both versions are read as `i32`.
fn apply_ctts(ctts: &Mp4Box<'_>, samples: &mut [Sample]) -> Result<(), Mp4Error> {
    let (_v, _f, mut r) = ctts.full_box()?;
    let data = read_table(&mut r, 8)?;
    let disagree = || {
        ctts.err(Mp4ErrorKind::Inconsistent(
            "ctts sample count disagrees with stsz",
        ))
    };
    let mut it = samples.iter_mut();
    for e in data.chunks_exact(8) {
        let n = be_u32(e);
        let off = be_u32(e.get(4..).unwrap_or_default()) as i32;
        for _ in 0..n {
            it.next().ok_or_else(disagree)?.cts_offset = off;
        }
    }
    if it.next().is_some() {
        return Err(disagree());
    }
    Ok(())
}

/// Marks the 1-based sample numbers listed in `stss` as sync samples (§8.6.2).
fn apply_stss(stss: &Mp4Box<'_>, samples: &mut [Sample]) -> Result<(), Mp4Error> {
    let (_v, _f, mut r) = stss.full_box()?;
    let data = read_table(&mut r, 4)?;
    for e in data.chunks_exact(4) {
        let n = usize::try_from(be_u32(e)).unwrap_or(usize::MAX);
        let s = n
            .checked_sub(1)
            .and_then(|i| samples.get_mut(i))
            .ok_or_else(|| {
                stss.err(Mp4ErrorKind::Inconsistent(
                    "stss sample number out of range",
                ))
            })?;
        s.sync = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a full box with version 0 and flags 0.
    fn full(typ: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 12) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(body);
        v
    }

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn stbl(children: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = children.concat();
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"stbl");
        v.extend(body);
        v
    }

    fn run(stbl_bytes: &[u8], file_len: u64) -> Result<Vec<Sample>, Mp4ErrorKind> {
        let mut it = super::super::boxes::BoxIter::new(stbl_bytes, 0, "");
        let b = it.next().expect("one box").map_err(|e| e.kind)?;
        let t = SampleTableBoxes::from_stbl(&b).map_err(|e| e.kind)?;
        flatten(&t, file_len).map(|(s, _)| s).map_err(|e| e.kind)
    }

    /// Five samples of sizes 10..14 in two chunks (3 + 2), delta 100, ctts, stss {1, 4}.
    fn good() -> Vec<Vec<u8>> {
        vec![
            full(b"stsz", &words(&[0, 5, 10, 11, 12, 13, 14])),
            full(b"stsc", &words(&[2, 1, 3, 1, 2, 2, 1])),
            full(b"stco", &words(&[2, 1000, 2000])),
            full(b"stts", &words(&[1, 5, 100])),
            full(b"ctts", &words(&[2, 1, 200, 4, (-100i32) as u32])),
            full(b"stss", &words(&[2, 1, 4])),
        ]
    }

    #[test]
    fn flattens_tables() {
        let s = run(&stbl(&good()), 10_000).expect("valid tables");
        let offsets: Vec<u64> = s.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, vec![1000, 1010, 1021, 2000, 2013]);
        let dts: Vec<u64> = s.iter().map(|s| s.dts).collect();
        assert_eq!(dts, vec![0, 100, 200, 300, 400]);
        let cts: Vec<i32> = s.iter().map(|s| s.cts_offset).collect();
        assert_eq!(cts, vec![200, -100, -100, -100, -100]);
        let sync: Vec<bool> = s.iter().map(|s| s.sync).collect();
        assert_eq!(sync, vec![true, false, false, true, false]);
    }

    #[test]
    fn stz2_co64_and_no_stss() {
        let mut t = good();
        t[0] = full(b"stz2", &[0, 0, 0, 4, 0, 0, 0, 5, 0xab, 0xcd, 0xe0]);
        t[2] = full(b"co64", &[words(&[2, 0, 1000, 0, 2000])].concat());
        t.pop();
        let s = run(&stbl(&t), 10_000).expect("valid tables");
        let lens: Vec<u32> = s.iter().map(|s| s.len).collect();
        assert_eq!(lens, vec![0xa, 0xb, 0xc, 0xd, 0xe]);
        assert_eq!(s[3].offset, 2000);
        assert!(s.iter().all(|s| s.sync));
    }

    #[test]
    fn rejects_inconsistent_tables() {
        let cases: Vec<(usize, Vec<u8>)> = vec![
            (3, full(b"stts", &words(&[1, 4, 100]))),
            (3, full(b"stts", &words(&[1, 6, 100]))),
            (4, full(b"ctts", &words(&[1, 9, 1]))),
            (5, full(b"stss", &words(&[1, 6]))),
            (5, full(b"stss", &words(&[1, 0]))),
            (1, full(b"stsc", &words(&[1, 1, 3, 1]))),
            (1, full(b"stsc", &words(&[1, 2, 3, 1]))),
            (1, full(b"stsc", &words(&[2, 1, 3, 1, 5, 2, 1]))),
            (1, full(b"stsc", &words(&[2, 1, 3, 1, 1, 2, 1]))),
            (1, full(b"stsc", &words(&[1, 1, 4, 1]))),
            (2, full(b"stco", &words(&[1, 1000]))),
        ];
        for (i, (slot, replacement)) in cases.into_iter().enumerate() {
            let mut t = good();
            t[slot] = replacement;
            assert!(
                matches!(run(&stbl(&t), 10_000), Err(Mp4ErrorKind::Inconsistent(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn out_of_range_and_huge_counts() {
        assert_eq!(
            run(&stbl(&good()), 2020),
            Err(Mp4ErrorKind::SampleOutOfRange)
        );
        let mut t = good();
        t[0] = full(b"stsz", &words(&[1, u32::MAX]));
        assert_eq!(run(&stbl(&t), 10_000), Err(Mp4ErrorKind::SampleOutOfRange));
        for (slot, typ) in [(0, b"stsz"), (1, b"stsc"), (2, b"stco"), (3, b"stts")] {
            let mut t = good();
            let body = if slot == 0 {
                words(&[0, u32::MAX, 1])
            } else {
                words(&[u32::MAX, 1, 1, 1])
            };
            t[slot] = full(typ, &body);
            assert_eq!(
                run(&stbl(&t), 10_000),
                Err(Mp4ErrorKind::Truncated),
                "{slot}"
            );
        }
        let mut t = good();
        t.remove(1);
        assert_eq!(
            run(&stbl(&t), 10_000),
            Err(Mp4ErrorKind::MissingBox("stsc"))
        );
    }
}

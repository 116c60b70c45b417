//! Movie fragments (ISO/IEC 14496-12 §8.8): the samples of a fragmented file, appended to the
//! tracks its `moov` declared. `mvex`/`trex` (§8.8.3) give per-track defaults; each top-level
//! `moof` (§8.8.4) holds `traf`s (§8.8.6) of a `tfhd` (§8.8.7: base data offset,
//! default-base-is-moof, sample defaults), an optional `tfdt` (§8.8.12: the decode time of the
//! first sample) and `trun`s (§8.8.8: sample count, data offset, first-sample flags, and per
//! sample duration, size, flags and composition offset, signed in version 1). A sample is a
//! sync sample unless its flags set `sample_is_non_sync_sample` (§8.8.3.1).
//!
//! Every sample's offset is made absolute and checked against the file. The last fragment
//! of a file may be incomplete (a recorder that crashed mid-write, or a file still growing):
//! if its samples reach past the end of the file, that fragment is left out and the file plays
//! up to the fragment before. Any other malformation fails the parse. Work and memory are
//! linear in the input: a `trun`'s sample count is checked against its box bytes when it has
//! per-sample fields, and no file yields more fragment samples than it has bytes.
//!
//! Not read: `mfra`/`tfra` and `sidx` (an index of what is parsed here anyway), `sbgp`/`sgpd`
//! sample groups, `saiz`/`saio` auxiliary information (encryption), `subs`.

use super::boxes::{Mp4Box, Reader};
use super::error::{Mp4Error, Mp4ErrorKind};
use crate::media::track::Sample;

/// `tfhd` flags (§8.8.7.1).
const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `trun` flags (§8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
const TRUN_DURATION: u32 = 0x00_0100;
const TRUN_SIZE: u32 = 0x00_0200;
const TRUN_FLAGS: u32 = 0x00_0400;
const TRUN_CTS_OFFSET: u32 = 0x00_0800;

/// `sample_is_non_sync_sample` in the sample flags (§8.8.3.1).
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// Sample defaults of a track (`trex`, §8.8.3), overridden per fragment by `tfhd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SampleDefaults {
    description_index: u32,
    duration: u32,
    size: u32,
    flags: u32,
}

/// A track the fragments may add samples to.
#[derive(Debug)]
pub(crate) struct FragmentTarget<'a> {
    /// `track_ID` of the `trak`.
    pub(crate) track_id: u32,
    /// The track's samples (those of its `stbl` first).
    pub(crate) samples: &'a mut Vec<Sample>,
    /// Decode time of the next sample when a `traf` has no `tfdt`.
    pub(crate) next_dts: u64,
}

/// The top-level boxes of a fragmented file that this module reads.
#[derive(Debug)]
pub(crate) struct Fragments<'a> {
    /// `moov/mvex`, if present.
    pub(crate) mvex: Option<Mp4Box<'a>>,
    /// Every complete top-level `moof`, in file order.
    pub(crate) moofs: Vec<Mp4Box<'a>>,
}

/// Appends the samples of every movie fragment to its track. `ignored` lists the track IDs
/// of `trak`s that were skipped (their fragments are passed over).
pub(crate) fn apply_fragments(
    fragments: &Fragments<'_>,
    targets: &mut [FragmentTarget<'_>],
    ignored: &[u32],
    file_len: u64,
) -> Result<(), Mp4Error> {
    if fragments.moofs.is_empty() {
        return Ok(());
    }
    let Some(mvex) = &fragments.mvex else {
        let first = fragments.moofs.first();
        return Err(first.map_or_else(
            || Mp4Error::new(0, "moov", Mp4ErrorKind::MissingBox("mvex")),
            |m| m.err(Mp4ErrorKind::MissingBox("moov/mvex")),
        ));
    };
    let defaults = read_trex(mvex)?;
    // A real sample costs at least four bytes of the file (a trun entry of its own, or data:
    // an H.264 sample is a 4-byte length and a NAL unit, an AAC frame more than 4 bytes).
    // Capping the count at a quarter of the file's length keeps a few bytes of trun from
    // declaring billions of defaulted tiny samples: the index stays within 8x the file.
    let mut budget = file_len / 4;
    let last = fragments.moofs.len() - 1;
    for (i, moof) in fragments.moofs.iter().enumerate() {
        let mut moof = moof.clone();
        moof.path = format!("moof[{i}]");
        let saved: Vec<(usize, u64)> = targets
            .iter()
            .map(|t| (t.samples.len(), t.next_dts))
            .collect();
        let budget_before = budget;
        match read_moof(&moof, &defaults, targets, ignored, file_len, &mut budget) {
            Ok(()) => {}
            Err(e) if i == last && e.kind == Mp4ErrorKind::SampleOutOfRange => {
                // The last fragment's data runs past the end of the file: it is still being
                // written, or the writer stopped mid-fragment. Play up to the one before.
                tracing::debug!(error = %e, "ignoring an incomplete last movie fragment");
                for (t, (len, next)) in targets.iter_mut().zip(saved) {
                    t.samples.truncate(len);
                    t.next_dts = next;
                }
                budget = budget_before;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The `trex` boxes of `mvex`, by track ID.
fn read_trex(mvex: &Mp4Box<'_>) -> Result<Vec<(u32, SampleDefaults)>, Mp4Error> {
    let mut out: Vec<(u32, SampleDefaults)> = Vec::new();
    for b in mvex.children() {
        let b = b?;
        if b.typ != *b"trex" {
            continue;
        }
        // §8.8.3.2: track_ID, then the four defaults.
        let (_v, _f, mut r) = b.full_box()?;
        let track_id = r.u32()?;
        let d = SampleDefaults {
            description_index: r.u32()?,
            duration: r.u32()?,
            size: r.u32()?,
            flags: r.u32()?,
        };
        if out.iter().any(|(id, _)| *id == track_id) {
            return Err(b.err(Mp4ErrorKind::Inconsistent("two trex boxes for one track")));
        }
        out.push((track_id, d));
    }
    Ok(out)
}

/// The fields of a `tfhd` (§8.8.7.2).
struct TrackFragmentHeader {
    track_id: u32,
    base_data_offset: Option<u64>,
    default_base_is_moof: bool,
    defaults: SampleDefaults,
}

fn read_tfhd(
    tfhd: &Mp4Box<'_>,
    trex: &[(u32, SampleDefaults)],
) -> Result<TrackFragmentHeader, Mp4Error> {
    let (_v, flags, mut r) = tfhd.full_box()?;
    let track_id = r.u32()?;
    let mut defaults = trex
        .iter()
        .find(|(id, _)| *id == track_id)
        .map(|(_, d)| *d)
        .unwrap_or_default();
    let base_data_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        defaults.description_index = r.u32()?;
    }
    if flags & TFHD_DEFAULT_DURATION != 0 {
        defaults.duration = r.u32()?;
    }
    if flags & TFHD_DEFAULT_SIZE != 0 {
        defaults.size = r.u32()?;
    }
    if flags & TFHD_DEFAULT_FLAGS != 0 {
        defaults.flags = r.u32()?;
    }
    Ok(TrackFragmentHeader {
        track_id,
        base_data_offset,
        default_base_is_moof: flags & TFHD_DEFAULT_BASE_IS_MOOF != 0,
        defaults,
    })
}

/// Reads one `moof`, appending its samples to the targets.
fn read_moof(
    moof: &Mp4Box<'_>,
    trex: &[(u32, SampleDefaults)],
    targets: &mut [FragmentTarget<'_>],
    ignored: &[u32],
    file_len: u64,
    budget: &mut u64,
) -> Result<(), Mp4Error> {
    // §8.8.7.1: with neither base-data-offset-present nor default-base-is-moof, the first
    // traf's base is the moof's first byte and each later one's is the end of the data of
    // the traf before it.
    let mut previous_end = moof.offset;
    let mut traf_index = 0usize;
    for traf in moof.children() {
        let mut traf = traf?;
        if traf.typ != *b"traf" {
            continue;
        }
        traf.path = format!("{}/traf[{traf_index}]", moof.path);
        traf_index += 1;
        let tfhd = read_tfhd(&traf.require(b"tfhd", "tfhd")?, trex)?;
        let Some(target) = targets.iter_mut().find(|t| t.track_id == tfhd.track_id) else {
            if ignored.contains(&tfhd.track_id) {
                continue;
            }
            return Err(traf.err(Mp4ErrorKind::Inconsistent("traf names a track moov lacks")));
        };
        if !trex.iter().any(|(id, _)| *id == tfhd.track_id) {
            return Err(traf.err(Mp4ErrorKind::MissingBox("trex for the track")));
        }
        if tfhd.defaults.description_index > 1 {
            return Err(traf.err(Mp4ErrorKind::Unsupported(
                "multiple sample descriptions".to_owned(),
            )));
        }
        let base = match tfhd.base_data_offset {
            Some(b) => b,
            None if tfhd.default_base_is_moof => moof.offset,
            None => previous_end,
        };
        let mut dts = match traf.child(b"tfdt")? {
            Some(tfdt) => read_tfdt(&tfdt)?,
            None => target.next_dts,
        };
        if target.samples.last().is_some_and(|s| dts < s.dts) {
            return Err(traf.err(Mp4ErrorKind::Inconsistent(
                "tfdt before the track's previous sample",
            )));
        }
        // §8.8.8.3: a trun without a data offset continues where the previous run's data
        // ended, the first one at the base data offset.
        let mut cursor = base;
        for trun in traf.children() {
            let trun = trun?;
            if trun.typ != *b"trun" {
                continue;
            }
            let run = RunContext {
                base,
                defaults: tfhd.defaults,
                file_len,
            };
            (cursor, dts) = read_trun(&trun, &run, cursor, dts, target.samples, budget)?;
        }
        target.next_dts = dts;
        previous_end = cursor;
    }
    Ok(())
}

/// `tfdt` (§8.8.12): baseMediaDecodeTime, 32-bit in version 0 and 64-bit in version 1.
fn read_tfdt(tfdt: &Mp4Box<'_>) -> Result<u64, Mp4Error> {
    let (version, _f, mut r) = tfdt.full_box()?;
    match version {
        0 => Ok(u64::from(r.u32()?)),
        1 => r.u64(),
        v => Err(r.err(Mp4ErrorKind::Unsupported(format!("tfdt version {v}")))),
    }
}

/// What a `trun` needs from its `traf`.
struct RunContext {
    base: u64,
    defaults: SampleDefaults,
    file_len: u64,
}

/// Reads a `trun` (§8.8.8.2), pushing its samples; returns where its data ends and the
/// decode time after its last sample.
fn read_trun(
    trun: &Mp4Box<'_>,
    run: &RunContext,
    cursor: u64,
    mut dts: u64,
    samples: &mut Vec<Sample>,
    budget: &mut u64,
) -> Result<(u64, u64), Mp4Error> {
    let (_version, flags, mut r) = trun.full_box()?;
    let count = r.u32()?;
    let mut offset = if flags & TRUN_DATA_OFFSET != 0 {
        // data_offset is signed, relative to the base data offset.
        let rel = i64::from(r.i32()?);
        run.base
            .checked_add_signed(rel)
            .ok_or_else(|| trun.err(Mp4ErrorKind::SampleOutOfRange))?
    } else {
        cursor
    };
    let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        Some(r.u32()?)
    } else {
        None
    };
    let fields = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS_OFFSET]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let table_at = r.abs();
    let entries = r.table(u64::from(count), fields * 4)?;
    if u64::from(count) > *budget {
        return Err(trun.err(Mp4ErrorKind::SampleOutOfRange));
    }
    *budget -= u64::from(count);
    let mut er = Reader::new(entries, table_at, &trun.path);
    // Bounded: the count is within the budget (a quarter of the file's length).
    samples.reserve(usize::try_from(count).unwrap_or(0));
    for k in 0..count {
        let duration = if flags & TRUN_DURATION != 0 {
            er.u32()?
        } else {
            run.defaults.duration
        };
        let len = if flags & TRUN_SIZE != 0 {
            er.u32()?
        } else {
            run.defaults.size
        };
        let sample_flags = if flags & TRUN_FLAGS != 0 {
            er.u32()?
        } else {
            match first_flags {
                Some(f) if k == 0 => f,
                _ => run.defaults.flags,
            }
        };
        // Version 1 offsets are signed; version 0 ones are unsigned in the specification but
        // written negative by some muxers (as with `ctts`): both versions are read as i32.
        let cts_offset = if flags & TRUN_CTS_OFFSET != 0 {
            er.i32()?
        } else {
            0
        };
        let end = offset
            .checked_add(u64::from(len))
            .filter(|&end| end <= run.file_len)
            .ok_or_else(|| trun.err(Mp4ErrorKind::SampleOutOfRange))?;
        samples.push(Sample {
            offset,
            len,
            dts,
            cts_offset,
            sync: sample_flags & SAMPLE_IS_NON_SYNC == 0,
        });
        offset = end;
        dts = dts
            .checked_add(u64::from(duration))
            .ok_or_else(|| trun.err(Mp4ErrorKind::Invalid("decode time overflow")))?;
    }
    Ok((offset, dts))
}

#[cfg(test)]
mod tests;

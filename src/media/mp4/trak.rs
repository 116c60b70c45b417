//! One `trak` (ISO/IEC 14496-12 §8.3.1) into a [`Track`]: `tkhd` track ID (§8.3.2), `mdhd`
//! timescale (§8.4.2), `hdlr` handler (§8.4.3), the first `stsd` sample entry (§8.5.2),
//! the sample table (§8.5–§8.7, see `stbl`) and the simple `edts`/`elst` edit offset (§8.6.6).

use super::avcc::parse_avc_entry;
use super::boxes::{fourcc_str, Mp4Box};
use super::dops::parse_opus_entry;
use super::error::{Mp4Error, Mp4ErrorKind};
use super::esds::parse_mp4a_entry;
use super::hvcc::parse_hevc_entry;
use super::stbl::{flatten, SampleTableBoxes};
use crate::media::track::{Codec, Track, TrackKind};

/// The result of reading one `trak`: a supported track, or why it is skipped.
#[derive(Debug)]
pub(crate) enum TrakOutcome {
    /// A supported track; its samples may still be empty (a fragmented file's `moov` holds
    /// none: the movie fragments add them, see `fragments`).
    Track {
        /// The track, with the samples of its `stbl`.
        track: Track,
        /// Decode time after the last `stbl` sample, where fragments continue.
        end_dts: u64,
    },
    /// An unsupported track: its `track_ID` (fragments of it are ignored) and the reason
    /// (for `MediaIndex::skipped`).
    Skipped(u32, String),
}

/// Reads a `trak`. Track-local [`Mp4ErrorKind::Unsupported`] problems skip the track; every
/// other error (malformed or inconsistent data) fails the whole parse.
pub(crate) fn parse_trak(
    trak: &Mp4Box<'_>,
    movie_timescale: u32,
    file_len: u64,
) -> Result<TrakOutcome, Mp4Error> {
    let track_id = read_tkhd(&trak.require(b"tkhd", "tkhd")?)?;
    match parse_trak_body(trak, track_id, movie_timescale, file_len) {
        Err(Mp4Error {
            kind: Mp4ErrorKind::Unsupported(what),
            ..
        }) => Ok(TrakOutcome::Skipped(
            track_id,
            format!("track {track_id}: unsupported {what}"),
        )),
        other => other,
    }
}

fn parse_trak_body(
    trak: &Mp4Box<'_>,
    track_id: u32,
    movie_timescale: u32,
    file_len: u64,
) -> Result<TrakOutcome, Mp4Error> {
    let mdia = trak.require(b"mdia", "mdia")?;
    let timescale = read_mdhd(&mdia.require(b"mdhd", "mdhd")?)?;
    let handler = read_hdlr(&mdia.require(b"hdlr", "hdlr")?)?;
    let kind = match &handler {
        b"vide" => TrackKind::Video,
        b"soun" => TrackKind::Audio,
        other => {
            return Ok(TrakOutcome::Skipped(
                track_id,
                format!(
                    "track {track_id}: unsupported handler {}",
                    fourcc_str(*other)
                ),
            ))
        }
    };
    let stbl = mdia.require(b"minf", "minf")?.require(b"stbl", "stbl")?;
    let codec = read_stsd(&stbl.require(b"stsd", "stsd")?, kind)?;
    let (samples, end_dts) = flatten(&SampleTableBoxes::from_stbl(&stbl)?, file_len)?;
    let edit_offset = match trak.child(b"edts")? {
        Some(edts) => match edts.child(b"elst")? {
            Some(elst) => read_elst(&elst, movie_timescale, timescale)?,
            None => 0,
        },
        None => 0,
    };
    Ok(TrakOutcome::Track {
        track: Track {
            track_id,
            kind,
            codec,
            timescale,
            edit_offset,
            samples,
        },
        end_dts,
    })
}

/// `tkhd` (§8.3.2): version 0 has 32-bit creation/modification times before `track_ID`,
/// version 1 has 64-bit ones.
fn read_tkhd(b: &Mp4Box<'_>) -> Result<u32, Mp4Error> {
    let (version, _flags, mut r) = b.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    r.u32()
}

/// Reads the timescale of a `mvhd` (§8.2.2) or `mdhd` (§8.4.2), which share the leading
/// layout: times (32- or 64-bit by version), then the 32-bit timescale. Zero is rejected.
pub(crate) fn read_timescale(b: &Mp4Box<'_>) -> Result<u32, Mp4Error> {
    let (version, _flags, mut r) = b.full_box()?;
    match version {
        0 => r.skip(8)?,
        1 => r.skip(16)?,
        v => {
            return Err(r.err(Mp4ErrorKind::Unsupported(format!(
                "{} version {v}",
                fourcc_str(b.typ)
            ))))
        }
    }
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(b.err(Mp4ErrorKind::ZeroTimescale));
    }
    Ok(timescale)
}

fn read_mdhd(b: &Mp4Box<'_>) -> Result<u32, Mp4Error> {
    read_timescale(b)
}

/// `hdlr` (§8.4.3): pre_defined, then handler_type.
fn read_hdlr(b: &Mp4Box<'_>) -> Result<[u8; 4], Mp4Error> {
    let (_v, _f, mut r) = b.full_box()?;
    r.skip(4)?;
    r.array()
}

/// `stsd` (§8.5.2): uses the first sample entry; its type must match the handler.
fn read_stsd(stsd: &Mp4Box<'_>, kind: TrackKind) -> Result<Codec, Mp4Error> {
    let (_v, _f, mut r) = stsd.full_box()?;
    let count = r.u32()?;
    if count == 0 {
        return Err(stsd.err(Mp4ErrorKind::MissingBox("sample entry")));
    }
    let entry = super::boxes::BoxIter::new(r.rest(), r.abs(), &stsd.path)
        .next()
        .ok_or_else(|| r.err(Mp4ErrorKind::Truncated))??;
    match (kind, &entry.typ) {
        (TrackKind::Video, b"avc1" | b"avc3") => Ok(Codec::H264(parse_avc_entry(&entry)?)),
        (TrackKind::Video, b"hvc1" | b"hev1") => Ok(Codec::H265(parse_hevc_entry(&entry)?)),
        (TrackKind::Audio, b"mp4a") => parse_mp4a_entry(&entry),
        (TrackKind::Audio, b"Opus") => Ok(Codec::Opus(parse_opus_entry(&entry)?)),
        (_, other) => Err(entry.err(Mp4ErrorKind::Unsupported(format!(
            "codec {}",
            fourcc_str(*other)
        )))),
    }
}

/// The simple edit offset from `elst` (§8.6.6): the media time of the first non-empty edit,
/// minus the duration of a leading empty edit (`media_time == -1`, in the movie timescale,
/// converted to the media timescale). Later edits are ignored.
fn read_elst(
    elst: &Mp4Box<'_>,
    movie_timescale: u32,
    media_timescale: u32,
) -> Result<i64, Mp4Error> {
    let (version, _flags, mut r) = elst.full_box()?;
    let entry_size = match version {
        0 => 12,
        1 => 20,
        v => return Err(r.err(Mp4ErrorKind::Unsupported(format!("elst version {v}")))),
    };
    let count = r.u32()?;
    let data = r.table(u64::from(count), entry_size)?;
    let mut er = super::boxes::Reader::new(data, r.abs(), &elst.path);
    let mut empty_ticks: i64 = 0;
    for i in 0..count {
        let (duration, media_time) = if version == 1 {
            (er.u64()?, er.i64()?)
        } else {
            (u64::from(er.u32()?), i64::from(er.i32()?))
        };
        er.skip(4)?; // media_rate_integer, media_rate_fraction
        if media_time == -1 {
            if i == 0 {
                // Movie timescale -> media timescale; u128 cannot overflow, clamp to i64.
                let ticks = u128::from(duration) * u128::from(media_timescale)
                    / u128::from(movie_timescale.max(1));
                empty_ticks = i64::try_from(ticks).unwrap_or(i64::MAX);
            }
            continue;
        }
        if media_time < 0 {
            return Err(elst.err(Mp4ErrorKind::Invalid("negative elst media_time")));
        }
        return Ok(media_time.saturating_sub(empty_ticks));
    }
    Ok(empty_ticks.saturating_neg())
}

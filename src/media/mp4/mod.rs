//! ISO-BMFF (MP4/MOV) reader over a byte slice: turns a file held in memory into a
//! [`MediaIndex`] of H.264, AAC and Opus tracks whose samples are bounds-checked ranges of it.
//!
//! Implements from ISO/IEC 14496-12: §4.2 box structure (`boxes`), §4.3 `ftyp`, §8.1.1 `mdat`
//! (anywhere), §8.2.1/§8.2.2 `moov`/`mvhd`, §8.3 `trak`/`tkhd`, §8.4 `mdia`/`mdhd`/`hdlr`/`minf`,
//! §8.5 `stbl`/`stsd`, §8.6.1 `stts`/`ctts`, §8.6.2 `stss`, §8.6.5–§8.6.6 `edts`/`elst`,
//! §8.7.3–§8.7.5 `stsz`/`stz2`/`stsc`/`stco`/`co64` (`trak`, `stbl`); ISO/IEC 14496-15
//! §5.3.3.1 `avcC` (`avcc`); ISO/IEC 14496-1 §7.2.6 `esds` descriptors and ISO/IEC 14496-3
//! §1.6.2.1 AudioSpecificConfig (`esds`); the `Opus` sample entry and `dOps` of "Encapsulation
//! of Opus in ISO Base Media File Format" §4.3 (`dops`); §8.8 movie fragments (`mvex`/`trex`, top-level
//! `moof`/`traf`/`tfhd`/`tfdt`/`trun`, see `fragments`): their samples follow the `stbl` ones
//! of the same track, so a fragmented file (a recording, even one still being written) is
//! indexed like any other; an incomplete last fragment is left out.
//! Malformed input yields an [`Mp4Error`]; nothing here panics on hostile bytes.

mod avcc;
mod boxes;
mod dops;
mod error;
mod esds;
mod fragments;
mod hvcc;
mod stbl;
mod summary;
mod trak;

#[cfg(test)]
mod tests;

pub(crate) use avcc::parse_avc_decoder_config;
pub use error::{Mp4Error, Mp4ErrorKind};
pub(crate) use esds::parse_audio_specific_config;
pub(crate) use hvcc::parse_hevc_decoder_config;
pub use summary::{summarize, TrackSummary};

use boxes::{BoxIter, Mp4Box};
use fragments::{apply_fragments, FragmentTarget, Fragments};
use trak::{parse_trak, read_timescale, TrakOutcome};

use crate::media::track::{MediaIndex, TrackKind};

/// Box types accepted as the first box of a file (ISO/IEC 14496-12 §4.3, §8.1, §8.16, plus
/// QuickTime's `wide` and `pnot`).
const TOP_LEVEL_TYPES: [&[u8; 4]; 12] = [
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid", b"meta",
    b"sidx", b"pnot",
];

/// Parses an MP4/MOV file held in memory (a mapping or static bytes) into its index.
pub fn parse_mp4(bytes: &[u8]) -> Result<MediaIndex, Mp4Error> {
    let first_type = bytes.get(4..8).and_then(|t| t.first_chunk::<4>());
    if !first_type.is_some_and(|t| TOP_LEVEL_TYPES.contains(&t)) {
        return Err(Mp4Error::new(0, "", Mp4ErrorKind::NotMp4));
    }
    let file_len = bytes.len() as u64;
    let mut moov: Option<Mp4Box<'_>> = None;
    let mut moofs = Vec::new();
    let mut tail_error = None;
    for b in BoxIter::new(bytes, 0, "") {
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                tail_error = Some(e);
                break;
            }
        };
        if b.typ == *b"moov" {
            if moov.is_some() {
                return Err(b.err(Mp4ErrorKind::Inconsistent("more than one moov box")));
            }
            moov = Some(b);
        } else if b.typ == *b"moof" {
            moofs.push(b);
        }
    }
    let Some(moov) = moov else {
        return Err(
            tail_error.unwrap_or_else(|| Mp4Error::new(0, "", Mp4ErrorKind::MissingBox("moov")))
        );
    };
    let mvex = moov.child(b"mvex")?;
    if let Some(e) = tail_error {
        // A fragmented file ends in an incomplete box when it is still being written or its
        // writer stopped mid-fragment: index what is complete. Other files must be whole.
        let incomplete = matches!(e.kind, Mp4ErrorKind::BoxTooLarge | Mp4ErrorKind::Truncated);
        if !(incomplete && mvex.is_some()) {
            return Err(e);
        }
        tracing::debug!(error = %e, "fragmented mp4 ends in an incomplete box");
    }
    let movie_timescale = read_timescale(&moov.require(b"mvhd", "mvhd")?)?;

    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    let mut skipped_ids = Vec::new();
    let mut trak_index = 0usize;
    for b in moov.children() {
        let mut b = b?;
        if b.typ != *b"trak" {
            continue;
        }
        b.path = format!("moov/trak[{trak_index}]");
        trak_index += 1;
        match parse_trak(&b, movie_timescale, file_len)? {
            TrakOutcome::Track { track, end_dts } => tracks.push((track, end_dts)),
            TrakOutcome::Skipped(track_id, reason) => {
                tracing::debug!(%reason, "skipping mp4 track");
                skipped_ids.push(track_id);
                skipped.push(reason);
            }
        }
    }
    let mut targets: Vec<FragmentTarget<'_>> = tracks
        .iter_mut()
        .map(|(t, end_dts)| FragmentTarget {
            track_id: t.track_id,
            samples: &mut t.samples,
            next_dts: *end_dts,
        })
        .collect();
    apply_fragments(
        &Fragments { mvex, moofs },
        &mut targets,
        &skipped_ids,
        file_len,
    )?;
    drop(targets);
    let mut tracks: Vec<_> = tracks
        .into_iter()
        .filter_map(|(t, _)| {
            if t.samples.is_empty() {
                skipped.push(format!("track {}: no samples", t.track_id));
                None
            } else {
                Some(t)
            }
        })
        .collect();
    if tracks.is_empty() {
        return Err(moov.err(Mp4ErrorKind::NoPlayableTrack));
    }
    // Video first, then audio; the sort is stable so file order holds otherwise.
    tracks.sort_by_key(|t| t.kind != TrackKind::Video);
    Ok(MediaIndex { tracks, skipped })
}

/// Fuzz entry point for the `hvcC` parser (ISO/IEC 14496-15 §8.3.3.1): any bytes as the
/// record; must never panic.
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_hvcc(data: &[u8]) {
    hvcc::fuzz_hvcc(data);
}

/// Fuzz entry point: parses and summarizes `data`, ignoring the outcome (must never panic).
#[cfg(any(test, fuzzing))]
pub fn fuzz_parse_mp4(data: &[u8]) {
    if let Ok(index) = parse_mp4(data) {
        for s in summarize(&index) {
            let _ = s.to_string();
        }
        let _ = index.duration();
    }
}

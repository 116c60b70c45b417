//! What a viewer needs from HLS playlists (RFC 8216, draft-pantos-hls-rfc8216bis for
//! LL-HLS), parsed with the `m3u8-rs` crate: the multivariant playlist's first variant, and a
//! media playlist's segments, parts and server control. `m3u8-rs` 6 predates LL-HLS: its
//! parser attaches tags it does not know (`EXT-X-PART`, `EXT-X-SERVER-CONTROL`, …) to the
//! next segment and drops those after the last segment URI, so [`parse_media`] appends a
//! placeholder segment to collect the parts of the segment in progress, and reads the
//! LL-HLS tags' attribute lists (RFC 8216 §4.2) itself.

use m3u8_rs::{ExtTag, Playlist};

/// The placeholder URI that collects the tags after the last real segment.
const TRAILING: &str = "shardcast-bench-trailing-tags";

/// Why a playlist could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlaylistError {
    /// `m3u8-rs` refused it.
    #[error("unparseable playlist: {0}")]
    Syntax(String),
    /// A multivariant playlist without a variant stream.
    #[error("multivariant playlist lists no variant")]
    NoVariant,
    /// A media playlist with neither segments nor parts.
    #[error("media playlist lists no segment")]
    Empty,
}

/// One Partial Segment (draft-pantos-hls-rfc8216bis §4.4.4.9 `EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    /// `URI`.
    pub(crate) uri: String,
    /// `DURATION`, seconds.
    pub(crate) duration_secs: f64,
    /// `INDEPENDENT=YES`: starts with an independent frame.
    pub(crate) independent: bool,
}

/// One complete Media Segment and the parts it was published in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    /// Its URI.
    pub(crate) uri: String,
    /// `EXTINF` duration, seconds.
    pub(crate) duration_secs: f64,
    /// Its `EXT-X-PART`s (empty without LL-HLS, or once they left the playlist).
    pub(crate) parts: Vec<Part>,
}

/// A media playlist as a viewer uses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION`, seconds.
    pub(crate) target_duration_secs: f64,
    /// `EXT-X-MEDIA-SEQUENCE`: the MSN of `segments[0]`.
    pub(crate) media_sequence: u64,
    /// `EXT-X-ENDLIST`: no segment will be added (VOD, or an ended event).
    pub(crate) end_list: bool,
    /// The `EXT-X-MAP` URI (the fMP4 init segment), if any.
    pub(crate) init_uri: Option<String>,
    /// Complete segments, in order.
    pub(crate) segments: Vec<Segment>,
    /// Parts of the segment in progress (MSN `media_sequence + segments.len()`).
    pub(crate) partial: Vec<Part>,
    /// `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES` (rfc8216bis §4.4.3.8).
    pub(crate) can_block_reload: bool,
    /// `PART-HOLD-BACK`, seconds.
    pub(crate) part_hold_back_secs: Option<f64>,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds (rfc8216bis §4.4.3.7).
    pub(crate) part_target_secs: Option<f64>,
}

impl MediaPlaylist {
    /// Whether this is a low-latency playlist a viewer follows part by part: blocking
    /// reloads and parts (the two conditions the viewer's brief names).
    pub(crate) fn is_low_latency(&self) -> bool {
        self.can_block_reload && self.part_target_secs.is_some() && !self.end_list
    }

    /// MSN of the segment in progress (one past the last complete one).
    pub(crate) fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Part `part` of segment `msn`, if the playlist lists it.
    pub(crate) fn part(&self, msn: u64, part: u32) -> Option<&Part> {
        let parts = if msn == self.next_msn() {
            &self.partial
        } else {
            &self.segment(msn)?.parts
        };
        parts.get(part as usize)
    }

    /// Segment `msn`, if the playlist lists it as complete.
    pub(crate) fn segment(&self, msn: u64) -> Option<&Segment> {
        let i = msn.checked_sub(self.media_sequence)?;
        self.segments.get(usize::try_from(i).ok()?)
    }
}

/// The media playlist URI of a playlist that may be multivariant: the first variant's URI
/// (not an I-frame one), or `None` when the text already is a media playlist.
pub(crate) fn media_uri_of(text: &[u8]) -> Result<Option<String>, PlaylistError> {
    match m3u8_rs::parse_playlist_res(text) {
        Ok(Playlist::MasterPlaylist(m)) => m
            .variants
            .into_iter()
            .find(|v| !v.is_i_frame)
            .map(|v| Some(v.uri))
            .ok_or(PlaylistError::NoVariant),
        Ok(Playlist::MediaPlaylist(_)) => Ok(None),
        Err(e) => Err(PlaylistError::Syntax(
            format!("{e:?}").chars().take(200).collect(),
        )),
    }
}

/// Parses a media playlist (see the module doc for the placeholder segment).
pub(crate) fn parse_media(text: &[u8]) -> Result<MediaPlaylist, PlaylistError> {
    let mut padded = Vec::with_capacity(text.len() + 64);
    padded.extend_from_slice(text);
    padded.extend_from_slice(b"\n#EXTINF:0,\n");
    padded.extend_from_slice(TRAILING.as_bytes());
    padded.push(b'\n');
    let mut pl = m3u8_rs::parse_media_playlist_res(&padded)
        .map_err(|e| PlaylistError::Syntax(format!("{e:?}").chars().take(200).collect()))?;
    let mut out = MediaPlaylist {
        target_duration_secs: pl.target_duration as f64,
        media_sequence: pl.media_sequence,
        end_list: pl.end_list,
        init_uri: pl
            .segments
            .iter()
            .find_map(|s| s.map.as_ref().map(|m| m.uri.clone())),
        segments: Vec::with_capacity(pl.segments.len()),
        partial: Vec::new(),
        can_block_reload: false,
        part_hold_back_secs: None,
        part_target_secs: None,
    };
    let tags = pl
        .segments
        .iter()
        .flat_map(|s| s.unknown_tags.iter())
        .chain(pl.unknown_tags.iter());
    for t in tags {
        match t.tag.as_str() {
            "X-SERVER-CONTROL" => {
                let attrs = attributes(t);
                out.can_block_reload = attr(&attrs, "CAN-BLOCK-RELOAD") == Some("YES");
                out.part_hold_back_secs =
                    attr(&attrs, "PART-HOLD-BACK").and_then(|v| v.parse().ok());
            }
            "X-PART-INF" => {
                out.part_target_secs =
                    attr(&attributes(t), "PART-TARGET").and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
    let trailing = match pl.segments.pop() {
        Some(s) if s.uri == TRAILING => s,
        _ => return Err(PlaylistError::Syntax("placeholder segment missing".into())),
    };
    let parts_of = |tags: &[ExtTag]| -> Vec<Part> {
        tags.iter()
            .filter(|t| t.tag == "X-PART")
            .filter_map(|t| {
                let a = attributes(t);
                Some(Part {
                    uri: attr(&a, "URI")?.to_owned(),
                    duration_secs: attr(&a, "DURATION")?.parse().ok()?,
                    independent: attr(&a, "INDEPENDENT") == Some("YES"),
                })
            })
            .collect()
    };
    out.partial = parts_of(&trailing.unknown_tags);
    for s in &pl.segments {
        out.segments.push(Segment {
            uri: s.uri.clone(),
            duration_secs: f64::from(s.duration),
            parts: parts_of(&s.unknown_tags),
        });
    }
    if out.segments.is_empty() && out.partial.is_empty() {
        return Err(PlaylistError::Empty);
    }
    Ok(out)
}

/// An attribute list (RFC 8216 §4.2): `NAME=VALUE` pairs separated by commas; a quoted
/// string may hold commas. Quotes are removed.
fn attributes(tag: &ExtTag) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = tag.rest.as_deref().unwrap_or("").trim();
    while let Some((name, after)) = rest.split_once('=') {
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.push((name.trim(), value));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

fn attr<'a>(attrs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The LL-HLS example of draft-pantos-hls-rfc8216bis Appendix B.9 (shortened): complete
    /// segments with parts, the segment in progress, a preload hint and a rendition report.
    const LL: &str = "#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:6
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.33334
#EXT-X-MEDIA-SEQUENCE:266
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:4.00008,
fileSequence266.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart267.1.mp4\"
#EXTINF:0.66668,
fileSequence267.mp4
#EXT-X-PART:DURATION=0.33334,URI=\"filePart268.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33334,URI=\"filePart268.1.mp4\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"filePart268.2.mp4\"
#EXT-X-RENDITION-REPORT:URI=\"../1M/waitForMSN.php\",LAST-MSN=268,LAST-PART=1
";

    #[test]
    fn ll_hls_parts_of_complete_and_partial_segments_are_found() {
        let p = parse_media(LL.as_bytes()).unwrap();
        assert!(p.is_low_latency());
        assert_eq!(p.part_hold_back_secs, Some(1.0));
        assert_eq!(p.part_target_secs, Some(0.33334));
        assert_eq!(p.init_uri.as_deref(), Some("init.mp4"));
        assert_eq!(p.media_sequence, 266);
        assert_eq!(p.segments.len(), 2);
        assert!(p.segments[0].parts.is_empty());
        assert_eq!(p.segments[1].parts.len(), 2);
        assert_eq!(p.next_msn(), 268);
        assert_eq!(p.partial.len(), 2, "the tags after the last URI are kept");
        assert_eq!(p.part(268, 1).unwrap().uri, "filePart268.1.mp4");
        assert!(p.part(267, 0).unwrap().independent);
        assert!(!p.part(267, 1).unwrap().independent);
        assert!(p.part(268, 2).is_none());
        assert!(p.part(265, 0).is_none());
        assert_eq!(p.segment(267).unwrap().uri, "fileSequence267.mp4");
    }

    /// What ffmpeg's HLS muxer writes (`-hls_segment_type fmp4`, VOD).
    #[test]
    fn a_plain_vod_playlist_is_not_low_latency() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nseg0.m4s\n#EXTINF:1.500000,\nseg1.m4s\n#EXT-X-ENDLIST\n";
        let p = parse_media(text.as_bytes()).unwrap();
        assert!(!p.is_low_latency() && p.end_list);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].duration_secs, 1.5);
        assert!(p.partial.is_empty());
        assert_eq!(media_uri_of(text.as_bytes()).unwrap(), None);
    }

    #[test]
    fn the_multivariant_playlist_names_its_first_variant() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=2200000,CODECS=\"avc1.64001f,mp4a.40.2\"\nmedia.m3u8?v=1\n";
        assert_eq!(
            media_uri_of(text.as_bytes()).unwrap().as_deref(),
            Some("media.m3u8?v=1")
        );
        assert!(media_uri_of(b"not a playlist").is_err());
        assert_eq!(
            parse_media(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n").unwrap_err(),
            PlaylistError::Empty
        );
    }

    #[test]
    fn attribute_lists_keep_commas_inside_quotes() {
        let t = ExtTag {
            tag: "X-PART".into(),
            rest: Some("DURATION=0.5,URI=\"a,b.mp4\",INDEPENDENT=YES".into()),
        };
        assert_eq!(
            attributes(&t),
            [
                ("DURATION", "0.5"),
                ("URI", "a,b.mp4"),
                ("INDEPENDENT", "YES")
            ]
        );
    }
}

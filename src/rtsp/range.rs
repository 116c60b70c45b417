//! The `Range` header in Normal Play Time (RFC 2326 §12.29, NPT syntax §3.6).
//!
//! Accepted: `npt=<start>-[<end>]` where each time is `now`, `npt-sec`
//! (`1*DIGIT [ "." *DIGIT ]`) or `npt-hhmmss` (`H:MM:SS[.frac]`, minutes and
//! seconds 0–59), with optional whitespace around the pieces; a `;time=...`
//! suffix (§12.29) is ignored. The unit name is matched case-insensitively.
//!
//! Choices:
//! - `npt=-x` is grammatical (§3.6 `"-" npt-time`) but gives no start; as most
//!   servers do, it is read as `0-x`.
//! - An end before the start is an error; an end equal to the start is kept.
//! - `smpte`, `clock` and any other unit are [`RangeError::UnsupportedUnit`];
//!   §12.29 says a recipient that does not understand the format should answer
//!   501 Not Implemented, which [`RangeError::status`] returns. Every other
//!   error maps to 457 Invalid Range (§11.3.5).
//! - The grammar has no sign, exponent, `inf` or `nan`; values too large to be
//!   finite are rejected.
//!
//! [`vod_play_window`] turns a PLAY's Range into where a stored presentation starts and
//! stops; [`check_rate`] checks the `Scale` and `Speed` headers PLAY answers with `1`.

use crate::rtsp::msg::StatusCode;
use crate::shard::{PlayEnd, PlayRate};

/// One end of an NPT range (§3.6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NptTime {
    /// `now`: the live point.
    Now,
    /// Seconds from the start of the presentation; finite and non-negative.
    Seconds(f64),
}

/// A parsed `npt=` range; `end: None` means "to the end".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NptRange {
    /// Where to start.
    pub start: NptTime,
    /// Where to stop, if given.
    pub end: Option<NptTime>,
}

/// Why a Range header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A unit other than `npt` (e.g. `smpte`, `clock`); → 501 per §12.29.
    #[error("unsupported range unit {0:?}")]
    UnsupportedUnit(String),
    /// Not `unit=range` or not valid NPT syntax (§3.6); → 457.
    #[error("malformed npt range")]
    Malformed,
    /// A time too large to represent; → 457.
    #[error("npt time out of range")]
    OutOfRange,
    /// The end precedes the start; → 457.
    #[error("range end precedes start")]
    Reversed,
    /// A PLAY range that contains nothing: its end is not after its start, or is `now`
    /// on stored media; → 457.
    #[error("range is empty")]
    Empty,
    /// A PLAY range starting after the end of the media; → 457.
    #[error("range starts after the end of the media")]
    PastEnd,
}

impl RangeError {
    /// The status to answer with: 501 for an unknown unit (§12.29), else 457 (§11.3.5).
    pub fn status(&self) -> StatusCode {
        match self {
            RangeError::UnsupportedUnit(_) => StatusCode::NotImplemented,
            RangeError::Malformed
            | RangeError::OutOfRange
            | RangeError::Reversed
            | RangeError::Empty
            | RangeError::PastEnd => StatusCode::InvalidRange,
        }
    }
}

/// Parses `npt=5-`, `npt=5.2-10`, `npt=-10` (as `0-10`), `npt=now-`, `npt=0:01:02.5-`, ignoring a `;time=` suffix; see the module notes.
pub fn parse_range(value: &str) -> Result<NptRange, RangeError> {
    let range = parse_range_any_order(value)?;
    if let (NptTime::Seconds(s), Some(NptTime::Seconds(e))) = (range.start, range.end) {
        if e < s {
            return Err(RangeError::Reversed);
        }
    }
    Ok(range)
}

/// [`parse_range`] without the order check: a range played backwards runs from a later
/// start to an earlier end (RFC 7826 §18.46).
fn parse_range_any_order(value: &str) -> Result<NptRange, RangeError> {
    let value = value.split(';').next().unwrap_or_default();
    let (unit, spec) = value.split_once('=').ok_or(RangeError::Malformed)?;
    let unit = unit.trim();
    if !unit.eq_ignore_ascii_case("npt") {
        return Err(if !unit.is_empty() && unit.bytes().all(is_unit_char) {
            let mut unit = unit.to_owned();
            unit.truncate(32);
            RangeError::UnsupportedUnit(unit)
        } else {
            RangeError::Malformed
        });
    }
    // §3.6: npt-range = ( npt-time "-" [ npt-time ] ) | ( "-" npt-time ).
    // npt-time never contains '-', so the first '-' is the separator.
    let (start, end) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.is_empty(), end.is_empty()) {
        (true, true) => return Err(RangeError::Malformed),
        (true, false) => NptRange {
            start: NptTime::Seconds(0.0),
            end: Some(parse_npt_time(end)?),
        },
        (false, true) => NptRange {
            start: parse_npt_time(start)?,
            end: None,
        },
        (false, false) => NptRange {
            start: parse_npt_time(start)?,
            end: Some(parse_npt_time(end)?),
        },
    };
    Ok(range)
}

/// Where a PLAY of a stored presentation starts and stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayWindow {
    /// Seek target in seconds; `None` resumes where paused (no Range, or `now`).
    pub start: Option<f64>,
    /// Where to stop.
    pub end: PlayEnd,
}

/// Reads a PLAY's `Range` header for stored media of `duration_secs` (RFC 2326 §12.29,
/// §10.5): no header resumes and keeps the previous end; a start past the duration, an end
/// not after the start and an end of `now` are refused (457, §11); an end past the duration
/// is clamped to it.
pub fn vod_play_window(range: Option<&str>, duration_secs: f64) -> Result<PlayWindow, RangeError> {
    play_window(range, duration_secs, false)
}

/// Why a `Scale` or `Speed` header was refused: 400 Bad Request (RFC 2326 §11; the value is
/// malformed, so no 45x code fits: 456 is for a valid header the resource cannot act on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Not a number in the header's grammar (§12.34, §12.35).
    #[error("not a decimal number")]
    Malformed,
    /// `Speed` zero: RFC 7826 §18.50 declares it invalid (and its grammar has no sign).
    #[error("speed must be positive")]
    NotPositive,
}

/// Which rate header [`check_rate`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateHeader {
    /// `Scale` (RFC 2326 §12.34): `[ "-" ] 1*DIGIT [ "." *DIGIT ]`; negative plays backwards.
    Scale,
    /// `Speed` (RFC 2326 §12.35): `1*DIGIT [ "." *DIGIT ]`, positive (RFC 7826 §18.50).
    Speed,
}

/// Checks a `Scale` or `Speed` value and returns it; [`choose_rate`] then picks the rate
/// actually served.
pub fn check_rate(header: RateHeader, value: &str) -> Result<f64, RateError> {
    let value = value.trim();
    let (negative, digits) = match (header, value.strip_prefix('-')) {
        (RateHeader::Scale, Some(rest)) => (true, rest),
        _ => (false, value),
    };
    let v = decimal(digits).map_err(|_| RateError::Malformed)?;
    if header == RateHeader::Speed && v <= 0.0 {
        return Err(RateError::NotPositive);
    }
    Ok(if negative { -v } else { v })
}

/// The largest |Scale| served: 32× plays a 2 s GOP as 16 keyframes a second, about what a
/// decoder that sees only keyframes shows; a faster request is answered with this one.
pub const MAX_SCALE: f64 = 32.0;
/// The smallest |Scale| served (slow motion); a slower request is answered with this one.
pub const MIN_SCALE: f64 = 1.0 / 16.0;
/// The largest `Speed` served: delivery faster than real time is a burst to the viewer, so
/// it is bounded well below what a shard could send.
pub const MAX_SPEED: f64 = 4.0;
/// The smallest `Speed` served.
pub const MIN_SPEED: f64 = 1.0 / 16.0;

/// Chooses the rate a PLAY plays at from its `Scale` and `Speed` values (already checked by
/// [`check_rate`]) — RFC 2326 §12.34: "the response MUST contain the actual scale value
/// chosen by the server", §12.35 likewise. Trick play needs stored media with a video track
/// (`can_trick`): live streams and audio-only files play at scale 1. Both headers at once:
/// the scale wins and the speed is 1 (each alone is served). Out-of-range values are clamped
/// to the served range ([`MIN_SCALE`]..[`MAX_SCALE`], [`MIN_SPEED`]..[`MAX_SPEED`]); a scale
/// of 0 (no progress at all) plays at 1.
pub fn choose_rate(scale: Option<f64>, speed: Option<f64>, can_trick: bool) -> PlayRate {
    let scale = match scale {
        Some(s) if can_trick && s != 0.0 && s.is_finite() => {
            s.signum() * s.abs().clamp(MIN_SCALE, MAX_SCALE)
        }
        _ => 1.0,
    };
    let speed = match speed {
        Some(v) if can_trick && scale == 1.0 && v.is_finite() => v.clamp(MIN_SPEED, MAX_SPEED),
        _ => 1.0,
    };
    PlayRate { scale, speed }
}

/// Formats a rate for the `Scale`/`Speed` answer: up to four decimals, no trailing zeros
/// (`2`, `-4`, `0.5`, `0.0625`).
pub fn format_rate(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Reads a PLAY's `Range` for stored media played backwards (a negative `Scale`, RFC 2326
/// §12.34: "a negative value indicates reverse direction"): the start is where rewinding
/// begins, an end (which must lie before the start, else 457) is the lowest media time
/// played; no end plays back to 0 ([`PlayEnd::Media`]). No `Range` resumes from the
/// position and rewinds to 0.
pub fn vod_reverse_window(
    range: Option<&str>,
    duration_secs: f64,
) -> Result<PlayWindow, RangeError> {
    play_window(range, duration_secs, true)
}

/// [`vod_play_window`] (`reverse` false) and [`vod_reverse_window`] (true): the start is
/// read alike; the end must lie after the start forward (clamped to the duration), before
/// it backwards (the floor).
fn play_window(
    range: Option<&str>,
    duration_secs: f64,
    reverse: bool,
) -> Result<PlayWindow, RangeError> {
    let Some(value) = range else {
        return Ok(PlayWindow {
            start: None,
            end: if reverse {
                PlayEnd::Media
            } else {
                PlayEnd::Keep
            },
        });
    };
    let r = if reverse {
        parse_range_any_order(value)?
    } else {
        parse_range(value)?
    };
    let start = match r.start {
        NptTime::Now => None,
        NptTime::Seconds(s) if s <= duration_secs => Some(s),
        NptTime::Seconds(_) => return Err(RangeError::PastEnd),
    };
    let end = match r.end {
        None => PlayEnd::Media,
        Some(NptTime::Now) => return Err(RangeError::Empty),
        Some(NptTime::Seconds(e)) if reverse && start.is_some_and(|s| e >= s) => {
            return Err(RangeError::Empty)
        }
        Some(NptTime::Seconds(e)) if reverse => PlayEnd::At(e),
        Some(NptTime::Seconds(e)) if start.is_some_and(|s| e <= s) => {
            return Err(RangeError::Empty)
        }
        Some(NptTime::Seconds(e)) if e >= duration_secs => PlayEnd::Media,
        Some(NptTime::Seconds(e)) => PlayEnd::At(e),
    };
    Ok(PlayWindow { start, end })
}

/// Formats a range with millisecond precision: `npt=5.000-10.000` or `npt=5.000-`.
/// Negative or non-finite inputs are written as 0.
pub fn format_npt_range(start_secs: f64, end_secs: Option<f64>) -> String {
    let clean = |s: f64| if s.is_finite() && s > 0.0 { s } else { 0.0 };
    match end_secs {
        Some(end) => format!("npt={:.3}-{:.3}", clean(start_secs), clean(end)),
        None => format!("npt={:.3}-", clean(start_secs)),
    }
}

fn is_unit_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits `1*DIGIT [ "." *DIGIT ]` and returns its value.
fn decimal(s: &str) -> Result<f64, RangeError> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !all_digits(int) || !(frac.is_empty() || all_digits(frac)) {
        return Err(RangeError::Malformed);
    }
    let text = if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    };
    let v: f64 = text.parse().map_err(|_| RangeError::Malformed)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(RangeError::OutOfRange)
    }
}

/// §3.6 `npt-time = "now" | npt-sec | npt-hhmmss`.
fn parse_npt_time(s: &str) -> Result<NptTime, RangeError> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(NptTime::Now);
    }
    let mut parts = s.split(':');
    let (Some(first), second, third, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RangeError::Malformed);
    };
    let secs = match (second, third) {
        (None, None) => decimal(first)?,
        (Some(mm), Some(ss)) => {
            // npt-hh = 1*DIGIT; npt-mm = 1*2DIGIT (0-59); npt-ss = 1*2DIGIT (0-59) [ "." *DIGIT ].
            if !all_digits(first) || !all_digits(mm) || mm.len() > 2 {
                return Err(RangeError::Malformed);
            }
            let hh = decimal(first)?;
            let mm = decimal(mm)?;
            let ss_int = ss.split('.').next().unwrap_or_default();
            if ss_int.len() > 2 {
                return Err(RangeError::Malformed);
            }
            let ss = decimal(ss)?;
            if mm >= 60.0 || ss >= 60.0 {
                return Err(RangeError::Malformed);
            }
            hh * 3600.0 + mm * 60.0 + ss
        }
        _ => return Err(RangeError::Malformed),
    };
    if secs.is_finite() {
        Ok(NptTime::Seconds(secs))
    } else {
        Err(RangeError::OutOfRange)
    }
}

/// Fuzz entry point: runs [`parse_range`] on arbitrary bytes and checks its invariants.
#[cfg(any(test, fuzzing))]
pub fn fuzz_range(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match parse_range(&s) {
        Ok(r) => {
            let secs = |t: NptTime| match t {
                NptTime::Now => None,
                NptTime::Seconds(v) => {
                    assert!(v.is_finite() && v >= 0.0);
                    Some(v)
                }
            };
            let start = secs(r.start);
            let end = r.end.and_then(secs);
            if let (Some(s), Some(e)) = (start, end) {
                assert!(e >= s);
            }
            if let Some(s) = start {
                let back = parse_range(&format_npt_range(s, end)).map(|b| b.start);
                match back {
                    Ok(NptTime::Seconds(b)) => assert!((b - s).abs() <= 1e-3 + s * 1e-12),
                    other => panic!("round trip of {s} gave {other:?}"),
                }
            }
        }
        Err(e) => {
            let _ = e.status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(start: f64, end: Option<f64>) -> NptRange {
        NptRange {
            start: NptTime::Seconds(start),
            end: end.map(NptTime::Seconds),
        }
    }

    #[test]
    fn client_forms() {
        // ffmpeg, retina, VLC.
        assert_eq!(parse_range("npt=0.000-"), Ok(secs(0.0, None)));
        // GStreamer, VLC after seek.
        assert_eq!(parse_range("npt=0-"), Ok(secs(0.0, None)));
        assert_eq!(parse_range("npt=5-"), Ok(secs(5.0, None)));
        assert_eq!(parse_range("npt=5.2-10"), Ok(secs(5.2, Some(10.0))));
        assert_eq!(parse_range("npt=5.-10."), Ok(secs(5.0, Some(10.0))));
        assert_eq!(parse_range("npt=-10"), Ok(secs(0.0, Some(10.0))));
        assert_eq!(
            parse_range("npt=now-"),
            Ok(NptRange {
                start: NptTime::Now,
                end: None
            })
        );
        assert_eq!(parse_range("npt=0:01:02.5-"), Ok(secs(62.5, None)));
        assert_eq!(
            parse_range("npt=1:00:00-1:30:00.25"),
            Ok(secs(3600.0, Some(5400.25)))
        );
        assert_eq!(
            parse_range("npt=5-10;time=19970123T143720Z"),
            Ok(secs(5.0, Some(10.0)))
        );
        assert_eq!(parse_range(" NPT = 5 - 7 "), Ok(secs(5.0, Some(7.0))));
        assert_eq!(parse_range("npt=3-3"), Ok(secs(3.0, Some(3.0))));
    }

    #[test]
    fn rejected() {
        use RangeError as E;
        for (value, want) in [
            ("smpte=0:10:20-", E::UnsupportedUnit("smpte".into())),
            ("smpte-25=10:07:00-", E::UnsupportedUnit("smpte-25".into())),
            (
                "clock=19961108T143720.25Z-",
                E::UnsupportedUnit("clock".into()),
            ),
            ("", E::Malformed),
            ("npt", E::Malformed),
            ("npt=", E::Malformed),
            ("npt=-", E::Malformed),
            ("npt=5", E::Malformed),
            ("npt=-5-10", E::Malformed),
            ("npt=nan-", E::Malformed),
            ("npt=inf-", E::Malformed),
            ("npt=1e3-", E::Malformed),
            ("npt=+5-", E::Malformed),
            ("npt=.5-", E::Malformed),
            ("npt=5..1-", E::Malformed),
            ("npt=0:60:00-", E::Malformed),
            ("npt=0:00:60-", E::Malformed),
            ("npt=0:001:00-", E::Malformed),
            ("npt=1:2-", E::Malformed),
            ("npt=1:2:3:4-", E::Malformed),
            ("npt=10-5", E::Reversed),
            ("=5-", E::Malformed),
        ] {
            assert_eq!(parse_range(value), Err(want), "{value:?}");
        }
        let huge = format!("npt={}-", "9".repeat(400));
        assert_eq!(parse_range(&huge), Err(E::OutOfRange));
        let huge_h = format!("npt={}:00:00-", "9".repeat(306));
        assert_eq!(parse_range(&huge_h), Err(E::OutOfRange));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            RangeError::UnsupportedUnit("smpte".into()).status(),
            StatusCode::NotImplemented
        );
        for e in [
            RangeError::Malformed,
            RangeError::OutOfRange,
            RangeError::Reversed,
        ] {
            assert_eq!(e.status(), StatusCode::InvalidRange);
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_npt_range(5.0, Some(10.0)), "npt=5.000-10.000");
        assert_eq!(format_npt_range(0.0, None), "npt=0.000-");
        assert_eq!(format_npt_range(1.23456, None), "npt=1.235-");
        assert_eq!(format_npt_range(f64::NAN, Some(-1.0)), "npt=0.000-0.000");
        assert_eq!(
            parse_range(&format_npt_range(62.5, Some(70.0))),
            Ok(secs(62.5, Some(70.0)))
        );
    }

    /// RFC 2326 §12.29/§10.5 for stored media of 10 s: the end is kept, clamped or refused.
    #[test]
    fn play_windows() {
        let w = |v: Option<&str>| vod_play_window(v, 10.0);
        let ok = |start: Option<f64>, end: PlayEnd| Ok(PlayWindow { start, end });
        // No Range: resume and keep the previous end (§10.5).
        assert_eq!(w(None), ok(None, PlayEnd::Keep));
        // openRTSP -d 10 on a longer file; the acceptance's `npt=0-3`.
        assert_eq!(w(Some("npt=0.000-3.000")), ok(Some(0.0), PlayEnd::At(3.0)));
        assert_eq!(w(Some("npt=0-3")), ok(Some(0.0), PlayEnd::At(3.0)));
        // No end: to the end of the media, replacing any previous end.
        assert_eq!(w(Some("npt=2-")), ok(Some(2.0), PlayEnd::Media));
        // No start: from 0.
        assert_eq!(w(Some("npt=-4")), ok(Some(0.0), PlayEnd::At(4.0)));
        // `now` on stored media resumes; an end sets where the resumed play stops.
        assert_eq!(w(Some("npt=now-")), ok(None, PlayEnd::Media));
        assert_eq!(w(Some("npt=now-7")), ok(None, PlayEnd::At(7.0)));
        // An end at or past the duration is the end of the media.
        assert_eq!(w(Some("npt=1-10")), ok(Some(1.0), PlayEnd::Media));
        assert_eq!(w(Some("npt=1-60.011")), ok(Some(1.0), PlayEnd::Media));
        assert_eq!(w(Some("npt=10-")), ok(Some(10.0), PlayEnd::Media));
        for (value, want) in [
            ("npt=3-3", RangeError::Empty),
            ("npt=0-0", RangeError::Empty),
            ("npt=-0", RangeError::Empty),
            ("npt=2-now", RangeError::Empty),
            ("npt=10-10", RangeError::Empty),
            ("npt=5-4", RangeError::Reversed),
            ("npt=10.5-", RangeError::PastEnd),
            ("npt=11-12", RangeError::PastEnd),
            (
                "smpte=0:00:01-",
                RangeError::UnsupportedUnit("smpte".into()),
            ),
        ] {
            let got = w(Some(value));
            assert_eq!(got, Err(want), "{value:?}");
        }
        assert_eq!(RangeError::Empty.status(), StatusCode::InvalidRange);
        assert_eq!(RangeError::PastEnd.status(), StatusCode::InvalidRange);
    }

    /// RFC 2326 §12.34 Scale `[ "-" ] 1*DIGIT [ "." *DIGIT ]`, §12.35 Speed without a sign
    /// and positive (RFC 7826 §18.50).
    #[test]
    fn scale_and_speed_values() {
        use RateHeader::{Scale, Speed};
        assert_eq!(check_rate(Scale, "1"), Ok(1.0));
        assert_eq!(check_rate(Scale, " -1000 "), Ok(-1000.0));
        assert_eq!(check_rate(Scale, "-3.5"), Ok(-3.5));
        assert_eq!(check_rate(Scale, "0.5"), Ok(0.5));
        assert_eq!(check_rate(Scale, "2."), Ok(2.0));
        assert_eq!(check_rate(Speed, "2.5"), Ok(2.5));
        assert_eq!(check_rate(Speed, "1"), Ok(1.0));
        for (h, v) in [
            (Scale, ""),
            (Scale, "fast"),
            (Scale, "--1"),
            (Scale, "+2"),
            (Scale, "1e3"),
            (Scale, "nan"),
            (Scale, ".5"),
            (Scale, "1,5"),
            (Speed, "-1"),
            (Speed, "x"),
            (Speed, "1.0-2.0"),
        ] {
            assert_eq!(check_rate(h, v), Err(RateError::Malformed), "{h:?} {v:?}");
        }
        assert_eq!(check_rate(Speed, "0"), Err(RateError::NotPositive));
        assert_eq!(check_rate(Speed, "0.000"), Err(RateError::NotPositive));
    }

    /// The rate served (§12.34 "the actual scale value chosen by the server"): trick play
    /// only where it can be (stored media with video), clamped, Scale winning over Speed.
    #[test]
    fn the_rate_chosen_and_how_it_is_answered() {
        let r = |scale, speed, can| {
            let r = choose_rate(scale, speed, can);
            (r.scale, r.speed)
        };
        assert_eq!(r(Some(2.0), None, true), (2.0, 1.0));
        assert_eq!(r(Some(-4.0), None, true), (-4.0, 1.0));
        assert_eq!(r(Some(-1000.0), None, true), (-MAX_SCALE, 1.0));
        assert_eq!(r(Some(0.001), None, true), (MIN_SCALE, 1.0));
        assert_eq!(r(Some(0.0), None, true), (1.0, 1.0));
        assert_eq!(r(Some(2.0), None, false), (1.0, 1.0), "live or audio only");
        assert_eq!(r(None, Some(2.0), true), (1.0, 2.0));
        assert_eq!(r(None, Some(100.0), true), (1.0, MAX_SPEED));
        assert_eq!(r(Some(2.0), Some(2.0), true), (2.0, 1.0), "scale wins");
        assert_eq!(r(None, Some(2.0), false), (1.0, 1.0));
        assert_eq!(format_rate(2.0), "2");
        assert_eq!(format_rate(-4.0), "-4");
        assert_eq!(format_rate(0.5), "0.5");
        assert_eq!(format_rate(MIN_SCALE), "0.0625");
        assert_eq!(format_rate(1.0), "1");
    }

    /// Backwards (negative Scale): the range's end lies before its start and is the floor.
    #[test]
    fn reverse_windows() {
        let w = |v: Option<&str>| vod_reverse_window(v, 10.0);
        assert_eq!(
            w(None),
            Ok(PlayWindow {
                start: None,
                end: PlayEnd::Media
            })
        );
        assert_eq!(
            w(Some("npt=8-")),
            Ok(PlayWindow {
                start: Some(8.0),
                end: PlayEnd::Media
            })
        );
        assert_eq!(
            w(Some("npt=8-3")),
            Ok(PlayWindow {
                start: Some(8.0),
                end: PlayEnd::At(3.0)
            })
        );
        assert_eq!(w(Some("npt=3-8")), Err(RangeError::Empty));
        assert_eq!(w(Some("npt=11-")), Err(RangeError::PastEnd));
    }

    /// Range-header vocabulary the property strings together.
    const PIECES: &[&str] = &[
        "npt", "=", "-", ":", ".", "now", "0", "5", "59", "60", "9999999", ";time=", " ", "smpte",
        "e",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Any string of Range vocabulary, and any bytes, keep [`fuzz_range`]'s
        /// invariants.
        #[test]
        fn fuzz_smoke(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..12),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            fuzz_range(pieces.concat().as_bytes());
            fuzz_range(&raw);
        }
    }
}

//! RTSP 2.0 (RFC 7826) header writers. The decisions (what is served, refused, where a
//! stream starts) are the same table for both versions; a request's version (RFC 7826 §4.1:
//! a request is answered in its own version) only picks how the answer is written:
//!
//! - `Media-Properties` (§18.29) on DESCRIBE, SETUP and PLAY: a file is
//!   `Random-Access, Immutable, Unlimited` (seekable anywhere, never changes, kept); a live
//!   channel or ingested stream `No-Seeking, Time-Progressing, Time-Duration=0.0` (the §18.29
//!   form of a live stream that keeps nothing to seek into).
//! - `Accept-Ranges: npt` (§18.5) on SETUP: the one range format served.
//! - `Seek-Style: RAP` (§18.47) on PLAY: a seek starts at the random access point (keyframe)
//!   at or before the asked position.
//! - `Supported: play.basic, play.scale, play.speed` (§11.1, §18.51) on OPTIONS.
//! - `RTP-Info` in the 2.0 form (§18.45): `url="…" ssrc=XXXXXXXX:seq=N;rtptime=T`.
//! - `Pipelined-Requests` (§18.33): requests of one pipeline on one connection without a
//!   `Session` header join the session its first SETUP created.
//! - `PLAY_NOTIFY` (§13.5) with `Notify-Reason: end-of-stream` (§18.32) when a file ends.

use std::time::SystemTime;

use super::{Caller, ConnId, Refusal, SessionCore, SessionState};
use crate::ids::SERVER_NAME;
use crate::rtsp::msg::{Method, Request, Response, Version};
use crate::shard::SessionId;
use crate::wire::rtp::Ssrc;

/// The option tags (RFC 7826 §22.7 registry) this server supports in 2.0: the basic play
/// feature set (§11.1) and trick play (`Scale` §18.46, `Speed` §18.50).
pub const SUPPORTED_TAGS: &str = "play.basic, play.scale, play.speed";

/// `Media-Properties` (RFC 7826 §18.29) of a stored file or a live stream.
pub fn media_properties(live: bool) -> &'static str {
    if live {
        "No-Seeking, Time-Progressing, Time-Duration=0.0"
    } else {
        "Random-Access, Immutable, Unlimited"
    }
}

/// Whether every tag of a 2.0 `Require` header (§18.43) is one we support.
pub(super) fn supports_all(require: &str) -> bool {
    require
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|t| {
            SUPPORTED_TAGS
                .split(", ")
                .any(|ours| ours.eq_ignore_ascii_case(t))
        })
}

/// Adds the 2.0 headers of a successful answer to `method` (`live`: what the media is,
/// when the answer concerns one).
pub(super) fn decorate(method: Method, live: Option<bool>, response: &mut Response) {
    response.version = Version::V2_0;
    if method == Method::Options {
        response.headers.insert("Supported", SUPPORTED_TAGS);
    }
    let Some(live) = live else {
        return;
    };
    if matches!(method, Method::Describe | Method::Setup | Method::Play) {
        response
            .headers
            .insert("Media-Properties", media_properties(live));
    }
    if method == Method::Setup {
        response.headers.insert("Accept-Ranges", "npt");
    }
    if method == Method::Play && !live {
        response.headers.insert("Seek-Style", "RAP");
    }
}

/// One `RTP-Info` entry in the 2.0 form (RFC 7826 §18.45): the URL quoted, the SSRC in hex.
pub(super) fn rtp_info_entry(url: &str, ssrc: Ssrc, seq: u16, rtptime: Option<u32>) -> String {
    match rtptime {
        Some(t) => format!("url=\"{url}\" ssrc={ssrc:08X}:seq={seq};rtptime={t}"),
        None => format!("url=\"{url}\" ssrc={ssrc:08X}:seq={seq}"),
    }
}

/// Why a `Pipelined-Requests` header (RFC 7826 §18.33) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Pipelined-Requests {0:?} (a 32-bit decimal)")]
pub struct BadPipeline(pub String);

/// `Pipelined-Requests = "Pipelined-Requests" HCOLON startup-id` (RFC 7826 §18.33 and
/// §20.2.3 write `startup-id = 1*8DIGIT`); GStreamer 1.22 sends a random 32-bit number, up
/// to 10 digits, so any decimal that fits 32 bits is taken. Anything else is 400.
pub(super) fn parse_pipeline(value: &str) -> Result<u32, BadPipeline> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        let mut echo: String = v.chars().take(32).collect();
        echo.retain(|c| !c.is_control());
        return Err(BadPipeline(echo));
    }
    v.parse().map_err(|_| BadPipeline(v.to_owned()))
}

/// Where a 2.0 session's `PLAY_NOTIFY` goes and what it says (set by its last PLAY).
#[derive(Debug, Clone)]
pub(super) struct NotifyTarget {
    /// The connection the PLAY came on (RFC 7826 §13.5: sent on the session's connection).
    pub conn: ConnId,
    /// The aggregate URL (`Content-Base`), the Request-URI of the notification.
    pub base: String,
    /// `?token=…` of tokenized control URLs.
    pub token_suffix: String,
    /// The play range's start and end, normal play time.
    pub range: (f64, f64),
}

/// A `PLAY_NOTIFY` end-of-stream request (RFC 7826 §13.5, §13.5.1): `CSeq` from the
/// server's own sequence on the connection, `Notify-Reason: end-of-stream` (§18.32),
/// `Session`, the `Range` played and, per track, `RTP-Info` with the last packet's `seq`.
pub(super) fn play_notify(
    target: &NotifyTarget,
    cseq: u32,
    id: SessionId,
    tracks: &[(usize, Ssrc, u16)],
    wall: SystemTime,
) -> Vec<u8> {
    let rtp_info: Vec<String> = tracks
        .iter()
        .map(|&(index, ssrc, seq)| {
            let url = format!("{}trackID={index}{}", target.base, target.token_suffix);
            rtp_info_entry(&url, ssrc, seq, None)
        })
        .collect();
    let mut out = format!(
        "PLAY_NOTIFY {} RTSP/2.0\r\nCSeq: {cseq}\r\nNotify-Reason: end-of-stream\r\n\
         Session: {id:016X}\r\nRange: {}\r\n",
        target.base,
        crate::rtsp::range::format_npt_range(target.range.0, Some(target.range.1)),
    );
    if !rtp_info.is_empty() {
        out.push_str("RTP-Info: ");
        out.push_str(&rtp_info.join(","));
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Server: {SERVER_NAME}\r\nDate: {}\r\n\r\n",
        httpdate::fmt_http_date(wall)
    ));
    // No part can split a line: the URL is ours (the stream name percent-encoded) and a
    // token in it passed `is_token_syntax` at SETUP.
    out.into_bytes()
}

impl SessionCore {
    /// RFC 7826 §18.33: a 2.0 request with `Pipelined-Requests` and no `Session`, whose
    /// pipeline's first SETUP created a session that still exists: the request as if it
    /// named that session. `Ok(None)`: answer the request as it is.
    pub(super) fn pipeline_session(
        &self,
        req: &Request,
        caller: &Caller,
    ) -> Result<Option<Request>, Refusal> {
        if req.version != Version::V2_0 {
            return Ok(None);
        }
        let Some(value) = req.header("Pipelined-Requests") else {
            return Ok(None);
        };
        let pipeline = parse_pipeline(value).map_err(Refusal::Pipeline)?;
        if req.header("Session").is_some() {
            return Ok(None);
        }
        let Some(&id) = self.pipelines.get(&(caller.conn, pipeline)) else {
            return Ok(None);
        };
        if !self.sessions.contains_key(&id) {
            return Ok(None);
        }
        let mut named = req.clone();
        named.headers.insert("Session", format!("{id:016X}"));
        Ok(Some(named))
    }

    /// After a 2.0 SETUP created session `id`: its pipeline (if the request named one)
    /// leads to it from now on. Entries of ended sessions are dropped first.
    pub(super) fn remember_pipeline(&mut self, req: &Request, caller: &Caller, id: SessionId) {
        if req.version != Version::V2_0 || req.header("Session").is_some() {
            return;
        }
        let Some(Ok(pipeline)) = req.header("Pipelined-Requests").map(parse_pipeline) else {
            return;
        };
        let sessions = &self.sessions;
        self.pipelines.retain(|_, s| sessions.contains_key(s));
        self.pipelines.insert((caller.conn, pipeline), id);
    }

    /// A shard reached the end of a stored stream of session `id` (the `tracks` as
    /// (track index, last sequence number sent)): for a session played in RTSP 2.0, the
    /// `PLAY_NOTIFY` end-of-stream request (RFC 7826 §13.5) and the connection to write it
    /// to. 1.0 sessions get nothing (RFC 2326 has no such notification; RTCP BYE says it).
    pub fn end_of_stream(
        &mut self,
        id: SessionId,
        tracks: &[(usize, u16)],
        wall: SystemTime,
    ) -> Option<(ConnId, Vec<u8>)> {
        let rec = self.sessions.get(&id)?;
        let target = rec.notify.clone()?;
        if rec.state != SessionState::Playing {
            return None;
        }
        let with_ssrc: Vec<(usize, Ssrc, u16)> = tracks
            .iter()
            .filter_map(|&(index, seq)| {
                let t = rec.tracks.iter().find(|t| t.track_index == index)?;
                Some((index, t.ssrc, seq))
            })
            .collect();
        let cseq = self.notify_cseq.entry(target.conn).or_insert(0);
        *cseq = cseq.wrapping_add(1);
        let cseq = *cseq;
        Some((
            target.conn,
            play_notify(&target, cseq, id, &with_ssrc, wall),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtsp::msg::StatusCode;

    #[test]
    fn pipeline_ids() {
        assert_eq!(parse_pipeline(" 42 "), Ok(42));
        assert_eq!(
            parse_pipeline("937076692"),
            Ok(937_076_692),
            "GStreamer 1.22's form"
        );
        assert_eq!(parse_pipeline("4294967295"), Ok(u32::MAX));
        for bad in ["", "4294967296", "12345678901", "-1", "1a", "1 2", "\u{7f}"] {
            assert!(parse_pipeline(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_by_method() {
        let mut r = Response::new(StatusCode::Ok);
        decorate(Method::Setup, Some(false), &mut r);
        assert_eq!(r.version, Version::V2_0);
        assert_eq!(
            r.headers.get("Media-Properties"),
            Some("Random-Access, Immutable, Unlimited")
        );
        assert_eq!(r.headers.get("Accept-Ranges"), Some("npt"));
        assert_eq!(r.headers.get("Seek-Style"), None);
        let mut r = Response::new(StatusCode::Ok);
        decorate(Method::Play, Some(true), &mut r);
        assert_eq!(r.headers.get("Seek-Style"), None, "live has no seeking");
        assert_eq!(
            r.headers.get("Media-Properties"),
            Some("No-Seeking, Time-Progressing, Time-Duration=0.0")
        );
        let mut r = Response::new(StatusCode::Ok);
        decorate(Method::Options, None, &mut r);
        assert_eq!(r.headers.get("Supported"), Some(SUPPORTED_TAGS));
        assert!(supports_all("play.basic, PLAY.SCALE"));
        assert!(!supports_all("play.basic, setup.rtp.rtcp.mux"));
    }

    #[test]
    fn notify_form() {
        let target = NotifyTarget {
            conn: 1,
            base: "rtsp://127.0.0.1:8554/a.mp4/".into(),
            token_suffix: String::new(),
            range: (0.0, 2.5),
        };
        let text = String::from_utf8(play_notify(
            &target,
            3,
            0xAB,
            &[(0, Ssrc(0x1234), 7)],
            SystemTime::UNIX_EPOCH,
        ))
        .unwrap();
        assert!(text.starts_with(
            "PLAY_NOTIFY rtsp://127.0.0.1:8554/a.mp4/ RTSP/2.0\r\nCSeq: 3\r\n\
             Notify-Reason: end-of-stream\r\nSession: 00000000000000AB\r\nRange: npt=0.000-2.500\r\n\
             RTP-Info: url=\"rtsp://127.0.0.1:8554/a.mp4/trackID=0\" ssrc=00001234:seq=7\r\n"
        ));
        assert!(text.ends_with("\r\n\r\n"));
    }
}

//! The control state as the HTTP side sees it: [`ControlApi`] for [`Control`].
//!
//! Everything answers at once from the control thread's own state (the hub, the session
//! table, the catalog). Catalog entries are derived from each file's index once and cached
//! by the file's length and modification time, so listing a large library does not re-map
//! and re-index every file on each request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ingest::IngestSnapshot;
use super::Control;
use crate::http::whep::WhepCreated;
use crate::http::{
    ControlApi, HttpAccess, IngestInfo, MetricsSnapshot, PlayError, PlayGrant, PlayRequest,
    ShardTotals, SourceInfo, StreamInfo, TrackInfo,
};
use crate::ids::SessionHandle;
use crate::ingest::DropReason;
use crate::live_log::LogState;
use crate::media::track::{Codec, TrackKind};
use crate::media::MediaFile;
use crate::rtsp::session::{encode_name, WhepAudio, WhepOffer, WhepRefusal};
use crate::stats::hub::{IngestRate, SessionView, StatsView};
use crate::token::unix_secs;

/// How long an ended session's connection stays open so the shard's RTCP BYE (which on an
/// interleaved connection travels on that very connection) can go out first.
const BYE_GRACE: Duration = Duration::from_millis(250);

/// File identity a catalog entry was derived from: length and modification time.
type Stamp = (u64, Option<SystemTime>);

/// Catalog entries by stream name.
#[derive(Debug, Default)]
pub(super) struct CatalogCache {
    entries: RefCell<HashMap<String, (Stamp, StreamInfo)>>,
}

/// The static part of a catalog entry (URL, viewers and token flag are filled per request).
fn describe_media(media: &MediaFile, live: bool) -> StreamInfo {
    let tracks: Vec<TrackInfo> = media
        .index
        .tracks
        .iter()
        .map(|t| {
            let (width, height, sample_rate_hz, channels) = match &t.codec {
                Codec::H264(h) => (Some(h.width), Some(h.height), None, None),
                Codec::H265(h) => (Some(h.width), Some(h.height), None, None),
                Codec::Aac(a) => (None, None, Some(a.sample_rate_hz), Some(a.channels)),
                Codec::Opus(o) => (None, None, Some(48_000), Some(o.channels)),
                // A transport stream's streams pass through; the catalog names it MPEG-TS.
                Codec::Mp2t(_) => (None, None, None, None),
                Codec::Vp8(v) | Codec::Vp9(v) => (Some(v.width), Some(v.height), None, None),
                Codec::MpegAudio(m) => (
                    None,
                    None,
                    (m.sample_rate_hz > 0).then_some(m.sample_rate_hz),
                    (m.channels > 0).then_some(m.channels),
                ),
                Codec::G711(g) => (None, None, Some(g.sample_rate_hz), Some(g.channels)),
            };
            TrackInfo {
                kind: match t.kind {
                    TrackKind::Video => "video",
                    TrackKind::Audio => "audio",
                },
                codec: t.codec.name(),
                width,
                height,
                frame_rate: t.frame_rate(),
                sample_rate_hz,
                channels,
            }
        })
        .collect();
    let video = tracks.iter().find(|t| t.kind == "video");
    let audio = tracks.iter().find(|t| t.kind == "audio");
    StreamInfo {
        name: media.name.clone(),
        url: String::new(),
        hls_url: None,
        whep_url: None,
        webrtc_unavailable: crate::rtsp::session::SessionCore::whep_unplayable(media),
        live,
        duration_secs: (!live).then(|| media.duration().as_secs_f64()),
        codecs: tracks.iter().map(|t| t.codec).collect(),
        width: video.and_then(|v| v.width),
        height: video.and_then(|v| v.height),
        frame_rate: video.and_then(|v| v.frame_rate),
        sample_rate_hz: audio.and_then(|a| a.sample_rate_hz),
        channels: audio.and_then(|a| a.channels),
        bitrate_bps: media.bitrate_bps(),
        viewers: 0,
        token_required: false,
        tracks,
        unsupported: media.index.skipped.clone(),
        hls_playable: media.index.tracks.iter().all(|t| t.codec.fmp4_carries()),
        source: None,
    }
}

/// A published stream's state as the API names it.
fn state_name(state: LogState) -> &'static str {
    match state {
        LogState::Online => "online",
        LogState::Waiting => "waiting",
        LogState::Ended => "offline",
    }
}

/// Who feeds an ingested stream, from its snapshot taken at `now`.
fn source_info(s: &IngestSnapshot, now: Instant) -> SourceInfo {
    SourceInfo {
        protocol: s.protocol.as_str(),
        state: state_name(s.state),
        peer: s.peer.to_string(),
        since_secs: now.saturating_duration_since(s.since).as_secs_f64(),
    }
}

/// The API's view of an ingested stream: its snapshot at `now`, the hub's rates, its viewers.
fn ingest_info(s: &IngestSnapshot, rate: IngestRate, viewers: usize, now: Instant) -> IngestInfo {
    IngestInfo {
        name: s.path.clone(),
        source: source_info(s, now),
        codecs: s.codecs.clone(),
        bitrate_bps: rate.bitrate_bps,
        frames_per_sec: rate.frames_per_sec,
        frames: s.frames,
        bytes: s.bytes,
        keyframes: s.keyframes,
        since_keyframe_secs: s.since_keyframe.map(|d| d.as_secs_f64()),
        packets: s.packets,
        lost: s.lost,
        jitter_ms: s.jitter_ms,
        dropped: DropReason::ALL
            .iter()
            .zip(s.dropped)
            .map(|(r, n)| (r.as_str(), n))
            .collect(),
        reader_skips: s.reader_skips,
        viewers,
    }
}

impl Control {
    /// `host:port` for RTSP URLs handed out: the configured `public-address`, else our
    /// address, or the HTTP request's host name with our port when we listen on a wildcard.
    fn rtsp_authority(&self, host: Option<&str>) -> String {
        if let Some(public) = &self.core.borrow().config().public_address {
            return public.clone();
        }
        match host {
            Some(h) if self.local_addr.ip().is_unspecified() => {
                format!("{h}:{}", self.local_addr.port())
            }
            _ => self.local_addr.to_string(),
        }
    }

    /// `http://host:port` of HLS URLs handed out, when HLS is on: the host of the configured
    /// `public-address` (HLS keeps its own port), else the HTTP request's host name when we
    /// listen on a wildcard, else our HLS address.
    fn hls_origin(&self, host: Option<&str>) -> Option<String> {
        let hls = self.hls_addr?;
        if let Some(public) = &self.core.borrow().config().public_address {
            let name = crate::http::server::host_name(public).unwrap_or(public);
            return Some(format!("http://{name}:{}", hls.port()));
        }
        Some(match host {
            Some(h) if hls.ip().is_unspecified() => format!("http://{h}:{}", hls.port()),
            _ => format!("http://{hls}"),
        })
    }

    /// `http://host:port` of the API (and WHEP) URLs handed out: the host of the configured
    /// `public-address` with the HTTP port, else the HTTP request's host name when we listen
    /// on a wildcard, else our HTTP address.
    fn http_origin(&self, host: Option<&str>) -> Option<String> {
        let http = self.http_addr?;
        if let Some(public) = &self.core.borrow().config().public_address {
            let name = crate::http::server::host_name(public).unwrap_or(public);
            return Some(format!("http://{name}:{}", http.port()));
        }
        Some(match host {
            Some(h) if http.ip().is_unspecified() => format!("http://{h}:{}", http.port()),
            _ => format!("http://{http}"),
        })
    }

    /// The catalog entry of a library stream, from the cache when its file is unchanged.
    fn library_entry(&self, name: &str) -> Option<StreamInfo> {
        let library = self.core.borrow().library().clone();
        let stamp = library.file_stamp(name)?;
        if let Some((cached, info)) = self.catalog.entries.borrow().get(name) {
            if *cached == stamp {
                return Some(info.clone());
            }
        }
        let segments: Vec<String> = name.split('/').map(str::to_owned).collect();
        let (media, used) = match library.resolve(&segments) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(stream = name, "left out of the catalog: {e}");
                return None;
            }
        };
        if used != segments.len() {
            return None;
        }
        let info = describe_media(&media, false);
        self.catalog
            .entries
            .borrow_mut()
            .insert(name.to_owned(), (stamp, info.clone()));
        Some(info)
    }

    /// Fills the per-request fields of a catalog entry.
    fn finish_entry(&self, mut info: StreamInfo, host: Option<&str>) -> StreamInfo {
        info.url = format!(
            "rtsp://{}/{}",
            self.rtsp_authority(host),
            encode_name(&info.name)
        );
        // HLS serves files, live channels and published or pulled streams (their logs) whose
        // codecs its fragmented MP4 carries (`Codec::fmp4_carries`: not H.265, MPEG-TS,
        // VP8/VP9, MPEG audio or G.711, docs/design/reach.md): no URL to offer otherwise.
        let hls_codecs = info.hls_playable;
        info.hls_url = self
            .hls_origin(host)
            .filter(|_| hls_codecs)
            .map(|o| format!("{o}/hls/{}/index.m3u8", encode_name(&info.name)));
        // WHEP on the API port, for streams WebRTC can carry.
        if !self.core.borrow().webrtc_enabled() {
            info.webrtc_unavailable = Some("WebRTC is off on this server (--webrtc-listen)".into());
        }
        info.whep_url = match (&info.webrtc_unavailable, self.http_origin(host)) {
            (None, Some(o)) => Some(format!("{o}/whep/{}", encode_name(&info.name))),
            _ => None,
        };
        info.viewers = self.hub.borrow().viewers_of(&info.name);
        info.token_required = self.core.borrow().tokens().required;
        info
    }

    /// The catalog entries of published streams (online or waiting for their publisher),
    /// by name: tracks from the log's facade, bitrate from the hub, the source's state.
    fn published_entries(&self, now: Instant) -> Vec<StreamInfo> {
        let mut snapshots = self.ingest.borrow().snapshot(now);
        snapshots.sort_by(|a, b| a.path.cmp(&b.path));
        let core = self.core.borrow();
        let hub = self.hub.borrow();
        snapshots
            .iter()
            .filter(|s| s.state != LogState::Ended)
            .filter_map(|s| {
                let log = core.logs().get(&s.path)?;
                let mut info = describe_media(&log.media, true);
                info.bitrate_bps = hub.ingest_rate(&s.path).bitrate_bps.round() as u64;
                info.source = Some(source_info(s, now));
                Some(info)
            })
            .collect()
    }

    /// Publishers sending now (the hub's count is as old as its last tick).
    fn online_publishers(&self, now: Instant) -> usize {
        self.ingest
            .borrow()
            .snapshot(now)
            .iter()
            .filter(|s| s.state == LogState::Online)
            .count()
    }

    /// The canonical name of a stream that exists now (catalog file, live channel or
    /// published stream).
    fn existing_stream(&self, name: &str) -> Option<String> {
        let core = self.core.borrow();
        if core.channels().contains_key(name) || core.logs().contains_key(name) {
            return Some(name.to_owned());
        }
        drop(core);
        self.library_entry(name).map(|i| i.name)
    }
}

impl ControlApi for Control {
    fn catalog(&self, host: Option<&str>) -> Vec<StreamInfo> {
        let (names, channels) = {
            let core = self.core.borrow();
            let channels: Vec<_> = core.channels().values().cloned().collect();
            (core.library().list(), channels)
        };
        let published = self.published_entries(Instant::now());
        let mut out: Vec<StreamInfo> = names
            .iter()
            .filter(|n| !channels.iter().any(|c| c.media.name == **n))
            .filter(|n| !published.iter().any(|p| p.name == **n))
            .filter_map(|n| self.library_entry(n))
            .collect();
        // Forget files that left the folder.
        self.catalog
            .entries
            .borrow_mut()
            .retain(|name, _| names.contains(name));
        let mut channels = channels;
        channels.sort_by(|a, b| a.media.name.cmp(&b.media.name));
        out.extend(channels.iter().map(|c| describe_media(&c.media, true)));
        out.extend(published);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.into_iter()
            .map(|i| self.finish_entry(i, host))
            .collect()
    }

    fn stream(&self, name: &str, host: Option<&str>) -> Option<StreamInfo> {
        let channel = self.core.borrow().channels().get(name).cloned();
        let published = || {
            self.published_entries(Instant::now())
                .into_iter()
                .find(|p| p.name == name)
        };
        let info = match channel {
            Some(c) => describe_media(&c.media, true),
            None => match published() {
                Some(p) => p,
                None => self.library_entry(name)?,
            },
        };
        Some(self.finish_entry(info, host))
    }

    fn ingest(&self) -> Vec<IngestInfo> {
        let now = Instant::now();
        let mut snapshots = self.ingest.borrow().snapshot(now);
        snapshots.sort_by(|a, b| a.path.cmp(&b.path));
        let hub = self.hub.borrow();
        snapshots
            .iter()
            .map(|s| ingest_info(s, hub.ingest_rate(&s.path), hub.viewers_of(&s.path), now))
            .collect()
    }

    fn sessions(&self) -> Vec<SessionView> {
        self.hub.borrow().sessions()
    }

    fn session(&self, handle: SessionHandle) -> Option<SessionView> {
        self.hub.borrow().session(handle)
    }

    fn end_session(&self, handle: SessionHandle) -> bool {
        let Some(id) = self.hub.borrow().session_of_handle(handle) else {
            return false;
        };
        let Some((effects, origin)) = self.core.borrow_mut().end_by_admin(id) else {
            return false;
        };
        self.apply(effects);
        self.hub.borrow_mut().sessions_ended_by_api += 1;
        if let Some(origin) = self.conns.borrow().get(&origin).cloned() {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(BYE_GRACE).await;
                origin.close();
            });
        }
        true
    }

    fn stats(&self, history: usize) -> StatsView {
        let now = Instant::now();
        let mut view = self.hub.borrow().stats(now);
        let extra = view.history.len().saturating_sub(history);
        view.history.drain(..extra);
        view.publishers = self.online_publishers(now);
        view
    }

    fn issue_play_url(
        &self,
        req: &PlayRequest,
        host: Option<&str>,
    ) -> Result<PlayGrant, PlayError> {
        let lifetime = crate::http::api::lifetime(req)?;
        let name = self
            .existing_stream(&req.stream)
            .ok_or_else(|| PlayError::UnknownStream(req.stream.clone()))?;
        let expires_unix = unix_secs(SystemTime::now()) + lifetime.as_secs();
        // The grant offers what the catalog offers for the stream (no HLS URL for codecs HLS
        // does not carry, no WHEP URL for streams WebRTC cannot).
        let (hls_url, whep_url) = self
            .stream(&name, host)
            .map_or((None, None), |info| (info.hls_url, info.whep_url));
        let token = self
            .core
            .borrow()
            .tokens()
            .key
            .sign(&name, expires_unix, req.viewer_ip);
        Ok(PlayGrant {
            url: format!(
                "rtsp://{}/{}?token={token}",
                self.rtsp_authority(host),
                encode_name(&name)
            ),
            hls_url: hls_url.map(|u| format!("{u}?token={token}")),
            whep_url: whep_url.map(|u| format!("{u}?token={token}")),
            token,
            expires_unix,
        })
    }

    fn metrics(&self) -> MetricsSnapshot {
        let ingest = self.ingest();
        let hub = self.hub.borrow();
        let core = self.core.borrow();
        let mut stats = hub.stats(Instant::now());
        stats.history.clear();
        // The same instant as the ingest families, so the count and their `online` agree.
        stats.publishers = ingest
            .iter()
            .filter(|i| i.source.state == state_name(LogState::Online))
            .count();
        MetricsSnapshot {
            stats,
            shards: self
                .shards
                .iter()
                .map(|s| ShardTotals {
                    packets: s.counters.packets.load(Ordering::Relaxed),
                    bytes: s.counters.bytes.load(Ordering::Relaxed),
                    syscalls: s.counters.syscalls.load(Ordering::Relaxed),
                })
                .collect(),
            distributions: hub.distribution_totals(),
            auth_failures: core.auth_failures(),
            auth_throttled: core.auth_throttled(),
            token_refusals: core.tokens().refusals,
            sessions_ended_by_api: hub.sessions_ended_by_api,
            rtsp_refused: core.refused_by_status(),
            log_lines_suppressed: core.log_lines_suppressed(),
            ingest_unrouted: self.ingest.borrow().unrouted,
            whip_refused: self.whip.borrow().refused_total,
            ingest,
        }
    }

    fn access(&self) -> HttpAccess {
        self.http_access.borrow().clone()
    }

    fn whep_offer(
        &self,
        stream: &str,
        offer: &[u8],
        token: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> Result<WhepCreated, WhepRefusal> {
        let library = self.core.borrow().library().clone();
        let audio = |media: &Arc<MediaFile>| match (
            &self.renditions,
            super::renditions::source_stamp(media, &library),
        ) {
            (Some(renditions), Some(stamp)) => renditions.lookup(media, stamp),
            _ => WhepAudio::Unavailable,
        };
        let offer = WhepOffer {
            sdp: offer,
            token,
            peer,
        };
        let accepted = super::with_env(|env| {
            self.core
                .borrow_mut()
                .whep_offer(stream, &offer, audio, env)
        })?;
        self.apply(accepted.effects);
        let command = crate::shard::ShardCommand::StartWebRtc(accepted.start);
        if let Err(e) = self.shards[accepted.shard].send(command) {
            tracing::warn!("{e}: WHEP session refused");
            let effects = self.core.borrow_mut().whep_abort(accepted.id);
            self.apply(effects);
            return Err(WhepRefusal::ShardBusy(accepted.shard));
        }
        Ok(WhepCreated {
            answer: accepted.answer,
            key: accepted.key,
        })
    }

    fn whip_offer(
        &self,
        path: &str,
        offer: &[u8],
        key: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> Result<crate::http::whip::WhipCreated, crate::rtsp::session::WhipRefusal> {
        let offer = crate::rtsp::session::WhipOffer {
            sdp: offer,
            key,
            peer,
        };
        let accepted = super::with_env(|env| self.core.borrow_mut().whip_offer(path, &offer, env))?;
        let id = accepted.publisher.id;
        let started =
            self.whip
                .borrow_mut()
                .start(accepted.key.clone(), accepted.publisher, Instant::now());
        if let Err(e) = started {
            self.core.borrow_mut().whip_ended(id);
            return Err(crate::rtsp::session::WhipRefusal::BadOffer(format!(
                "a=fingerprint: {e}"
            )));
        }
        Ok(crate::http::whip::WhipCreated {
            answer: accepted.answer,
            key: accepted.key,
        })
    }

    fn whip_delete(&self, key: &str) -> bool {
        let Some(id) = self.core.borrow_mut().whip_delete(key) else {
            return false;
        };
        let now = Instant::now();
        self.whip
            .borrow_mut()
            .end(id, "ended by DELETE", &mut self.ingest.borrow_mut(), now);
        true
    }

    fn whep_delete(&self, key: &str) -> bool {
        let ended = self.core.borrow_mut().whep_delete(key, Instant::now());
        match ended {
            Some(effects) => {
                self.apply(effects);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_per_segment() {
        assert_eq!(encode_name("news/today"), "news/today");
        assert_eq!(encode_name("a b/c?d"), "a%20b/c%3Fd");
        assert_eq!(encode_name("été"), "%C3%A9t%C3%A9");
    }

    #[test]
    fn sample_is_described_from_its_index() {
        let media = MediaFile::from_static("sample", crate::media::library::SAMPLE_MP4).unwrap();
        let info = describe_media(&media, false);
        assert_eq!(info.codecs, vec!["H.264", "AAC"]);
        assert_eq!((info.width, info.height), (Some(640), Some(360)));
        assert_eq!(
            (info.sample_rate_hz, info.channels),
            (Some(48_000), Some(2))
        );
        assert!(info.duration_secs.is_some_and(|d| (d - 10.0).abs() < 0.2));
        assert!(info.frame_rate.is_some_and(|f| f > 1.0));
        assert!(info.bitrate_bps > 0);
        assert_eq!(describe_media(&media, true).duration_secs, None);
    }
}

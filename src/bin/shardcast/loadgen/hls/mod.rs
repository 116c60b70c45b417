//! `shardcast bench --protocol hls`: real HLS viewers over HTTP/1.1 that fetch playlists
//! and segments in real time (VOD, live, and LL-HLS with blocking reloads), against a
//! started shardcast, a server at `--url`, and nginx serving the same media cut by ffmpeg
//! ([`super::nginx`]), side by side in one run.
//!
//! Module split: [`http`] (URLs, request heads, response framing; sans-IO), [`playlist`]
//! (`m3u8-rs` plus the LL-HLS tags it lacks), [`playback`] (the stall model; sans-IO),
//! [`viewer`] (one viewer's walk; sans-IO), [`engine`] (the sockets: one thread, one epoll
//! set). This file runs one row and turns the viewers' counts into a [`RunResult`].

pub(crate) mod engine;
pub(crate) mod http;
pub(crate) mod options_probe;
pub(crate) mod playback;
pub(crate) mod playlist;
pub(crate) mod viewer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::nginx::{NginxHls, NginxSetup};
use super::server::{sample_process_tree, ProcSample, ServerLaunch, ServerProcess};
use super::stats::{new_histogram, Percentiles};
use super::{host, ConfigResult, LoadError, RunResult, ServerUsage};
use engine::{EngineConfig, Phase};
use http::Url;

/// Which server a row loads.
#[derive(Debug, Clone)]
pub(crate) enum HlsSource {
    /// A running server's multivariant playlist; its pid (with children) for CPU.
    Url {
        /// `http://…/index.m3u8`.
        url: String,
        /// Server pid.
        pid: Option<u32>,
    },
    /// shardcast started by the bench; the HLS URL comes from its `GET /api/v1/streams`
    /// (`hls_url` of the chosen stream).
    Shardcast {
        /// How to start it.
        launch: ServerLaunch,
        /// The stream name (`None`: the first).
        stream: Option<String>,
    },
    /// nginx serving the media cut by ffmpeg.
    Nginx(NginxSetup),
}

/// One row of an HLS bench.
#[derive(Debug, Clone)]
pub(crate) struct HlsRow {
    /// Row label (`shardcast`, `nginx`, `url`).
    pub(crate) label: String,
    /// What it loads.
    pub(crate) source: HlsSource,
}

/// Options of an HLS bench.
#[derive(Debug, Clone)]
pub(crate) struct HlsOptions {
    /// Rows, run in order (and interleaved across rounds).
    pub(crate) rows: Vec<HlsRow>,
    /// Viewers per run.
    pub(crate) viewers: u32,
    /// Steady playing time per run.
    pub(crate) duration: Duration,
    /// Viewer starts per second (`None`: 64 starting at a time).
    pub(crate) ramp_per_sec: Option<f64>,
    /// Runs per row, interleaved.
    pub(crate) rounds: u32,
    /// The server's pinned core (busy time including softirq), when pinned.
    pub(crate) server_core: Option<usize>,
    /// Viewers ignore LL-HLS parts (follow live playlists by segments).
    pub(crate) segments_only: bool,
}

/// The HLS figures of a run (the RTSP figures of [`RunResult`] stay zero).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HlsFigures {
    /// Which server: `shardcast`, `nginx` or `url`.
    pub(crate) server: String,
    /// How viewers followed the stream: `vod`, `low-latency`, `live`.
    pub(crate) mode: String,
    /// Time to first segment: multivariant request → first segment or part complete.
    pub(crate) ttfs: Percentiles,
    /// Stalls over all viewers.
    pub(crate) stalls: u64,
    /// Viewers that stalled at least once.
    pub(crate) stalled_viewers: u32,
    /// Total stalled time over all viewers, seconds.
    pub(crate) stall_secs: f64,
    /// Longest total stall of one viewer, ms.
    pub(crate) worst_viewer_stall_ms: f64,
    /// Media segments fetched.
    pub(crate) segments: u64,
    /// Parts fetched.
    pub(crate) parts: u64,
    /// Playlists fetched.
    pub(crate) playlists: u64,
    /// Of which blocking reloads.
    pub(crate) blocking_reloads: u64,
    /// Responses over the steady phase, per second.
    pub(crate) requests_per_sec: f64,
    /// Non-200 responses by status.
    pub(crate) http_errors: BTreeMap<u16, u64>,
    /// Connections that failed or were cut mid-response.
    pub(crate) transport_errors: u64,
    /// Viewers that gave up after repeated failures.
    pub(crate) viewers_gave_up: u32,
    /// Times a live viewer's next segment had left the window.
    pub(crate) fell_behind: u64,
    /// VOD loops.
    pub(crate) loops: u64,
    /// Connections opened.
    pub(crate) connections: u64,
    /// Megabytes (10⁶ bytes, heads and bodies) delivered over the steady phase.
    pub(crate) steady_mb: f64,
    /// Megabytes delivered over the whole run (start included).
    pub(crate) total_mb: f64,
    /// Server CPU (user + system, all its processes) per delivered MB over the steady
    /// phase, ms.
    pub(crate) server_cpu_ms_per_mb: Option<f64>,
    /// Busy time of the server's pinned core per delivered MB, softirq included (loopback's
    /// TCP receive path runs there), ms.
    pub(crate) core_ms_per_mb: Option<f64>,
    /// shardcast only: RTSP `OPTIONS` round trips on the control thread during the run
    /// (one every 100 ms), and how many failed.
    pub(crate) rtsp_options: Option<Percentiles>,
    /// Probes that got no 200 within 2 s.
    pub(crate) rtsp_options_failed: u64,
}

/// Runs every row `rounds` times, interleaved; `on_config` sees each row after its last
/// round.
pub(crate) fn run_hls_bench(
    opts: &HlsOptions,
    mut on_config: impl FnMut(&ConfigResult),
) -> Vec<ConfigResult> {
    let _ = host::raise_nofile_limit();
    let mut results: Vec<ConfigResult> = opts
        .rows
        .iter()
        .map(|r| ConfigResult {
            label: r.label.clone(),
            server_args: match &r.source {
                HlsSource::Shardcast { launch, .. } => launch.extra_args.clone(),
                _ => Vec::new(),
            },
            error: None,
            runs: Vec::new(),
            capacity: None,
        })
        .collect();
    for round in 1..=opts.rounds.max(1) {
        for (row, cfg) in opts.rows.iter().zip(&mut results) {
            if cfg.error.is_some() {
                continue;
            }
            match run_row(opts, row) {
                Ok(r) => cfg.runs.push(r),
                Err(e) => cfg.error = Some(e.to_string()),
            }
            if round == opts.rounds.max(1) {
                on_config(cfg);
            }
        }
    }
    results
}

/// A row's server, kept alive for its run (stopped on drop).
struct Started {
    /// shardcast's RTSP address, for the OPTIONS probe.
    rtsp: Option<std::net::SocketAddr>,
    _shardcast: Option<ServerProcess>,
    _nginx: Option<NginxHls>,
    /// The multivariant playlist's URL.
    url: String,
    /// The server's pid.
    pid: Option<u32>,
}

/// Starts a row's server and finds its HLS URL and pid.
fn start_source(source: &HlsSource) -> Result<Started, LoadError> {
    match source {
        HlsSource::Url { url, pid } => Ok(Started {
            rtsp: None,
            _shardcast: None,
            _nginx: None,
            url: url.clone(),
            pid: *pid,
        }),
        HlsSource::Nginx(setup) => {
            let n = NginxHls::start(setup)?;
            Ok(Started {
                url: n.url.clone(),
                pid: n.pid(),
                rtsp: None,
                _shardcast: None,
                _nginx: Some(n),
            })
        }
        HlsSource::Shardcast { launch, stream } => {
            let server = ServerProcess::spawn(launch)?;
            let http = server.http.ok_or_else(|| {
                LoadError::Protocol("the started server announced no HTTP address".into())
            })?;
            let url = hls_url_of(http, stream.as_deref())?;
            wait_for_live_window(&url)?;
            Ok(Started {
                url,
                pid: Some(server.pid()),
                rtsp: Some(server.addr),
                _shardcast: Some(server),
                _nginx: None,
            })
        }
    }
}

/// For a live stream, waits until its media playlist lists three complete segments, as the
/// nginx row waits for its packager: viewers then join a channel that has been running,
/// which is what they meet in service (a channel's first 2 s have parts but no segment).
/// A VOD playlist returns at once.
fn wait_for_live_window(multivariant: &str) -> Result<(), LoadError> {
    let Some((authority, path)) = multivariant
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Ok(());
    };
    let base = shardcast::http::client::HttpBase {
        authority: authority.to_owned(),
    };
    let media = format!("/{}", path.replace("index.m3u8", "media.m3u8"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = shardcast::http::client::get(&base, &media, None, Duration::from_secs(5))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .unwrap_or_default();
        if text.contains("#EXT-X-ENDLIST") || text.matches("#EXTINF").count() >= 3 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(LoadError::Protocol(format!(
                "{media} listed no three segments within 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `hls_url` of a stream in the server's `GET /api/v1/streams` (the first, or `name`).
fn hls_url_of(http: std::net::SocketAddr, name: Option<&str>) -> Result<String, LoadError> {
    let base = shardcast::http::client::HttpBase {
        authority: http.to_string(),
    };
    let reply =
        shardcast::http::client::get(&base, "/api/v1/streams", None, Duration::from_secs(5))
            .map_err(|e| LoadError::Protocol(format!("GET /api/v1/streams: {e}")))?;
    if reply.status != 200 {
        return Err(LoadError::Protocol(format!(
            "GET /api/v1/streams answered {}",
            reply.status
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| LoadError::Protocol(format!("/api/v1/streams: {e}")))?;
    hls_url_in(&v, name)
}

/// Picks the stream's `hls_url` from a `/api/v1/streams` document.
fn hls_url_in(v: &serde_json::Value, name: Option<&str>) -> Result<String, LoadError> {
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let stream = match name {
        Some(n) => streams.iter().find(|s| s["name"].as_str() == Some(n)),
        None => streams.first(),
    }
    .ok_or_else(|| {
        LoadError::Protocol(format!(
            "no stream {} in /api/v1/streams (has: {})",
            name.unwrap_or("at all"),
            streams
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    stream["hls_url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            LoadError::Protocol(
                "the server's /api/v1/streams has no hls_url: this build serves no HLS".into(),
            )
        })
}

/// Sums the CPU of a process and its children (nginx: master + workers).
fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|p| sample_process_tree(p).ok())
}

fn run_row(opts: &HlsOptions, row: &HlsRow) -> Result<RunResult, LoadError> {
    let started = start_source(&row.source)?;
    let pid = started.pid;
    let entry = Url::parse(&started.url).map_err(|e| LoadError::Refused(e.to_string()))?;
    let cfg = EngineConfig {
        entries: vec![entry],
        viewers: opts.viewers,
        ramp_per_sec: opts.ramp_per_sec,
        duration: opts.duration,
        start_budget: Duration::from_secs(30)
            + opts.ramp_per_sec.map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64(f64::from(opts.viewers) / r)
            }),
        segments_only: opts.segments_only,
    };
    let core = opts.server_core;
    let mut samples: Vec<(Option<ProcSample>, Option<u64>)> = Vec::with_capacity(2);
    let probe = started.rtsp.map(options_probe::OptionsProbe::start);
    let out = engine::run(&cfg, |phase| {
        let s = (
            sample(pid),
            core.and_then(|c| host::sample_core_busy_ns(c).ok()),
        );
        match phase {
            Phase::SteadyStart | Phase::SteadyEnd => samples.push(s),
        }
    })
    .map_err(|e| LoadError::io("running the HLS viewers", e))?;
    let probed = probe.map(options_probe::OptionsProbe::finish);
    let label = match &row.source {
        HlsSource::Url { .. } => "url",
        HlsSource::Shardcast { .. } => "shardcast",
        HlsSource::Nginx(_) => "nginx",
    };
    let mut result = summarize(label, &out, opts.viewers, &samples);
    if let (Some(h), Some((rtts, failed))) = (result.hls.as_mut(), probed) {
        h.rtsp_options = Some(Percentiles::of(&rtts));
        h.rtsp_options_failed = failed;
    }
    Ok(result)
}

/// Turns a run's viewers and server samples into the report's figures.
fn summarize(
    server: &str,
    out: &engine::EngineOutcome,
    viewers: u32,
    samples: &[(Option<ProcSample>, Option<u64>)],
) -> RunResult {
    let mut ttfs = new_histogram();
    let mut f = HlsFigures {
        server: server.to_owned(),
        connections: out.connections,
        ..HlsFigures::default()
    };
    let mut playing = 0u32;
    let mut body_bytes = 0u64;
    let mut first_error = None;
    let mut worst = Duration::ZERO;
    for v in &out.viewers {
        let s = v.stats();
        if let Some(t) = s.ttfs {
            ttfs.saturating_record((t.as_micros() as u64).max(1));
            if !v.stopped() {
                playing += 1;
            }
        }
        if f.mode.is_empty() || f.mode == "unknown" {
            f.mode = serde_json::to_value(v.mode())
                .ok()
                .and_then(|m| m.as_str().map(str::to_owned))
                .unwrap_or_default();
        }
        let (stalls, stalled) = v.playback().stalls_at(out.end);
        f.stalls += u64::from(stalls);
        if stalls > 0 {
            f.stalled_viewers += 1;
        }
        f.stall_secs += stalled.as_secs_f64();
        worst = worst.max(stalled);
        f.segments += s.segments;
        f.parts += s.parts;
        f.playlists += s.playlists;
        f.blocking_reloads += s.blocking_reloads;
        for (status, n) in &s.errors_by_status {
            *f.http_errors.entry(*status).or_default() += n;
        }
        f.transport_errors += s.transport_errors;
        f.fell_behind += s.fell_behind;
        f.loops += s.loops;
        if v.stopped() {
            f.viewers_gave_up += 1;
        }
        body_bytes += s.body_bytes;
        if first_error.is_none() {
            first_error.clone_from(&s.first_error);
        }
    }
    f.worst_viewer_stall_ms = worst.as_secs_f64() * 1e3;
    f.ttfs = Percentiles::of(&ttfs);
    f.steady_mb = out.steady_wire_bytes as f64 / 1e6;
    f.total_mb = out.wire_bytes as f64 / 1e6;
    f.requests_per_sec = if out.steady_secs > 0.0 {
        out.steady_responses as f64 / out.steady_secs
    } else {
        0.0
    };
    let server_usage = match samples {
        [(Some(a), ca), (Some(b), cb)] => {
            let cpu = b.cpu_ns.saturating_sub(a.cpu_ns);
            if f.steady_mb > 0.0 {
                f.server_cpu_ms_per_mb = Some(cpu as f64 / 1e6 / f.steady_mb);
                f.core_ms_per_mb = match (ca, cb) {
                    (Some(x), Some(y)) => Some(y.saturating_sub(*x) as f64 / 1e6 / f.steady_mb),
                    _ => None,
                };
            }
            Some(ServerUsage {
                cpu_secs: cpu as f64 / 1e9,
                cpu_ns_per_packet: 0.0,
                core_ns_per_packet: None,
                end: *b,
            })
        }
        _ => None,
    };
    let (slo_passed, slo_reason) = judge_hls(viewers, playing, &f);
    RunResult {
        viewers,
        playing,
        failed_handshakes: viewers - playing.min(viewers),
        first_error,
        start_secs: out.start_secs,
        steady_secs: out.steady_secs,
        bytes: body_bytes,
        mbit_per_viewer: if playing > 0 && out.steady_secs > 0.0 {
            out.steady_wire_bytes as f64 * 8.0 / out.steady_secs / 1e6 / f64::from(playing)
        } else {
            0.0
        },
        stalled_sessions: f.stalled_viewers,
        loops: f.loops,
        server: server_usage,
        slo_passed,
        slo_reason,
        hls: Some(f),
        ..RunResult::default()
    }
}

/// The HLS objective: every viewer got media and none stalled.
fn judge_hls(viewers: u32, playing: u32, f: &HlsFigures) -> (bool, String) {
    if playing < viewers {
        return (
            false,
            format!(
                "{} of {viewers} viewers got no media or gave up",
                viewers - playing
            ),
        );
    }
    if f.stalls > 0 {
        return (
            false,
            format!(
                "{} stalls in {} viewers ({:.1} s stalled)",
                f.stalls, f.stalled_viewers, f.stall_secs
            ),
        );
    }
    (
        true,
        format!(
            "no stalls, TTFS p99 {:.0} ms, {} HTTP errors",
            f.ttfs.p99_ms,
            f.http_errors.values().sum::<u64>()
        ),
    )
}

/// The media file a started shardcast should serve as `--media DIR` + stream name, so it
/// serves the same file nginx does: (`DIR`, the file name without its extension).
pub(crate) fn media_dir_and_name(file: &std::path::Path) -> Option<(PathBuf, String)> {
    let dir = file.parent()?.to_path_buf();
    // The catalog names a file by its path without the extension (`clip.mp4` is `clip`).
    let name = file.file_stem()?.to_str()?.to_owned();
    Some((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hls_url_comes_from_the_streams_api() {
        let v = serde_json::json!({"streams": [
            {"name": "a", "url": "rtsp://x/a", "hls_url": "http://127.0.0.1:8088/hls/a/index.m3u8"},
            {"name": "b", "url": "rtsp://x/b"}
        ]});
        assert_eq!(
            hls_url_in(&v, None).unwrap(),
            "http://127.0.0.1:8088/hls/a/index.m3u8"
        );
        let e = hls_url_in(&v, Some("b")).unwrap_err().to_string();
        assert!(e.contains("no hls_url"), "{e}");
        let e = hls_url_in(&v, Some("c")).unwrap_err().to_string();
        assert!(e.contains("has: a, b"), "{e}");
    }

    #[test]
    fn the_objective_fails_on_a_stall_or_a_viewer_without_media() {
        let f = HlsFigures::default();
        assert!(judge_hls(10, 10, &f).0);
        assert!(!judge_hls(10, 9, &f).0);
        let stalled = HlsFigures {
            stalls: 2,
            stalled_viewers: 1,
            ..HlsFigures::default()
        };
        let (ok, why) = judge_hls(10, 10, &stalled);
        assert!(!ok && why.starts_with("2 stalls in 1 viewers"), "{why}");
    }
}

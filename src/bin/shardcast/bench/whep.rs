//! `shardcast bench --protocol whep`: the command's side of [`crate::loadgen::whep`] —
//! options checked, media chosen, the table and the conclusion printed, the reports written.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// `--protocol whep`: per round, RTP/UDP viewers then WebRTC viewers of the same stream, each
/// phase on a freshly started server.
pub(super) fn whep_bench(
    args: &super::BenchArgs,
    viewers: u32,
    duration: Duration,
    exe: PathBuf,
    placement: crate::loadgen::Placement,
) -> Result<()> {
    use crate::loadgen::whep::{self, report as wr, WhepOptions, WhepReport};
    use crate::loadgen::{report, server};
    if args.url.is_some() {
        bail!("--protocol whep starts its own servers (no --url)");
    }
    if args.capacity || args.churn.is_some() {
        bail!("--protocol whep runs a fixed load: no --capacity or --churn");
    }
    if viewers == 0 || viewers > crate::loadgen::MAX_VIEWERS {
        bail!("viewers must be 1..={}", crate::loadgen::MAX_VIEWERS);
    }
    if duration.is_zero() || duration > crate::loadgen::MAX_DURATION {
        bail!("duration must be within (0, 600 s]");
    }
    if args
        .stream
        .as_deref()
        .is_some_and(|s| s == "all" || s.contains(','))
    {
        bail!("--protocol whep plays one stream: --stream NAME");
    }
    if args.rounds == 0 || args.rounds > crate::loadgen::MAX_ROUNDS {
        bail!("--rounds must be 1..={}", crate::loadgen::MAX_ROUNDS);
    }
    let sample_copy =
        std::env::temp_dir().join(format!("shardcast-bench-whep-{}.mp4", std::process::id()));
    let media_file = match &args.hls_media {
        Some(f) => f.clone(),
        None => {
            std::fs::write(&sample_copy, shardcast::media::library::SAMPLE_MP4)
                .with_context(|| format!("writing {}", sample_copy.display()))?;
            sample_copy.clone()
        }
    };
    // VOD of --hls-media: the server serves the file's folder, the viewers play the file.
    let (media, stream) = match (&args.hls_media, args.live) {
        (Some(file), false) => {
            let (dir, name) = crate::loadgen::hls::media_dir_and_name(file)
                .context("--hls-media needs a file name")?;
            (Some(dir), Some(args.stream.clone().unwrap_or(name)))
        }
        _ => (args.media.clone(), args.stream.clone()),
    };
    let opts = WhepOptions {
        launch: server::ServerLaunch {
            exe,
            shards: args.shards,
            media,
            extra_args: args.server_args.clone(),
            pin_cores: placement.server_cores.clone(),
            harness_core: placement.harness_core,
        },
        media_file,
        live: args.live,
        stream: stream.clone(),
        viewers,
        duration,
        ramp_per_sec: args.ramp,
        rounds: args.rounds,
        compare_rtp: true,
        max_loss_pct: args.slo_loss,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started_unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("{}", wr::markdown_header());
    let rounds = whep::run_whep_bench(&opts, |r| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", wr::markdown_rows(r));
        let _ = out.flush();
    });
    let _ = std::fs::remove_file(&sample_copy);
    let rounds = rounds?;
    let stream = match (args.live, &stream) {
        (true, _) => crate::loadgen::publish::CHANNEL_NAME.to_owned(),
        (false, Some(s)) => s.clone(),
        (false, None) => "the first announced".to_owned(),
    };
    let report = WhepReport {
        started_unix_secs,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::machine_line(
            &std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
            report::machine_cores(),
            Some(args.shards),
        ),
        cpu_model: wr::cpu_model(),
        placement,
        shards: args.shards,
        stream,
        live: args.live,
        viewers,
        duration_secs: duration.as_secs_f64(),
        rtp_receive: report::receive_sentence(whep::rtp_receive()),
        median_cpu_ratio: wr::median_ratio(&rounds),
        conclusion: wr::conclusion(&rounds, args.slo_loss),
        rounds,
    };
    let written = super::write_reports(&args.out, &report, &wr::html(&report))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nconclusion: {}", report.conclusion)?;
    writeln!(out, "{written}")?;
    Ok(())
}

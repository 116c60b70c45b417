//! The shell of pulled sources: one task per configured source (`[sources]`, `--source`)
//! runs the sans-IO [`Source`] policy (always on or on demand, backoff, one log line per
//! state change) and, while it says so, a [`pull_source`] whose tracks open the stream's live
//! log in ingest and whose frames are appended to it — the same log, numbering and viewers'
//! path as a publisher's. On-demand sources are started by the first request for them
//! ([`Control::demand_source`] holds a DESCRIBE or SETUP until the source is online).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::ingest::Protocol;
use super::Control;
use crate::config::SourceSpec;
use crate::ingest::pull::{
    pull_source, redacted, Backoff, PullEvent, Source, SourceAction, SourceEvent, SourceMode,
    SourcePolicy,
};
use crate::shard::SessionId;

/// How often a source task looks at its viewers and its pull.
const POLL: Duration = Duration::from_millis(200);
/// How long a request for an offline on-demand source waits for it.
pub(super) const DEMAND_WAIT: Duration = Duration::from_secs(12);

/// Runs source `path` until the control thread stops.
pub(super) async fn run(ctl: Rc<Control>, path: String, spec: SourceSpec) {
    let mut source = Source::new(
        &path,
        SourcePolicy {
            mode: spec.mode,
            backoff: Backoff::default(),
        },
    );
    // The source's publisher id in ingest (a new one per connection would end the log on
    // every reconnect; one id lets a returning source resume it).
    let id: SessionId = rand::random();
    let peer = SocketAddr::from(([0, 0, 0, 0], spec.url.port().unwrap_or(554)));
    let shown = redacted(&spec.url);
    let mut pull: Option<tokio::task::JoinHandle<String>> = None;
    let connected = Rc::new(Cell::new(false));
    let mut viewers = 0usize;
    loop {
        let now = Instant::now();
        let mut events = Vec::new();
        if matches!(spec.mode, SourceMode::OnDemand { .. }) {
            let wanted =
                ctl.core.borrow().viewers_of(&path) + usize::from(ctl.demanded(&path, now));
            while viewers < wanted {
                viewers += 1;
                events.push(SourceEvent::ViewerJoined);
            }
            while viewers > wanted {
                viewers -= 1;
                events.push(SourceEvent::ViewerLeft);
            }
        }
        if connected.replace(false) {
            events.push(SourceEvent::Connected);
        }
        if pull.as_ref().is_some_and(|p| p.is_finished()) {
            let reason = match pull.take() {
                Some(task) => task.await.unwrap_or_else(|e| format!("pull task: {e}")),
                None => String::new(),
            };
            ctl.ingest.borrow_mut().stop(id, &path, Instant::now());
            events.push(SourceEvent::Failed {
                reason,
                random: rand::random(),
            });
        }
        events.push(SourceEvent::Tick);
        for event in events {
            let step = source.handle(event, now);
            if let Some(line) = step.log {
                tracing::info!(source = %shown, "{line}");
            }
            match step.action {
                Some(SourceAction::Connect) => {
                    if let Some(old) = pull.take() {
                        old.abort();
                    }
                    pull = Some(tokio::task::spawn_local(pull_into_log(
                        ctl.clone(),
                        id,
                        path.clone(),
                        spec.clone(),
                        peer,
                        connected.clone(),
                    )));
                }
                Some(SourceAction::Disconnect) => {
                    if let Some(task) = pull.take() {
                        task.abort();
                    }
                    ctl.ingest.borrow_mut().stop(id, &path, Instant::now());
                }
                None => {}
            }
        }
        let wake = source.next_deadline(Instant::now()).map_or(POLL, |at| {
            at.saturating_duration_since(Instant::now()).min(POLL)
        });
        tokio::time::sleep(wake).await;
    }
}

/// One pull of `spec` into `path`'s log; returns why it ended (for the policy's log line).
async fn pull_into_log(
    ctl: Rc<Control>,
    id: SessionId,
    path: String,
    spec: SourceSpec,
    peer: SocketAddr,
    connected: Rc<Cell<bool>>,
) -> String {
    let result = pull_source(spec.url.clone(), spec.transport, |event| match event {
        PullEvent::Tracks(specs) => {
            let now = Instant::now();
            let opened = ctl.ingest.borrow_mut().open(
                id,
                &path,
                specs,
                Vec::new(),
                (Protocol::Pull, peer),
                now,
            );
            match opened {
                Ok(log) => {
                    ctl.core.borrow_mut().add_log(log);
                    connected.set(true);
                }
                Err(e) => tracing::warn!(stream = %path, "cannot ingest the source: {e}"),
            }
        }
        PullEvent::Frame(frame) => {
            ctl.ingest
                .borrow_mut()
                .frame(id, &path, &frame, Instant::now());
        }
        PullEvent::SenderReport { track, pts, ntp } => {
            ctl.ingest
                .borrow_mut()
                .sender_report(id, &path, (track, pts, ntp), Instant::now());
        }
        PullEvent::Skipped { stream, reason } => {
            tracing::info!(stream = %path, "source stream {stream} not pulled: {reason}");
        }
        PullEvent::Dropped { .. } => {}
    })
    .await;
    match result {
        Ok(()) => "the source ended the stream".to_owned(),
        Err(e) => e.to_string(),
    }
}

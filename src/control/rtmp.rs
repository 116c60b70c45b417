//! The RTMP shell: accepts publishers (OBS, hardware encoders, `ffmpeg -f flv`) on
//! `--rtmp-listen` and feeds their frames to ingest. The protocol is the sans-IO
//! [`RtmpConnection`] (`ingest::rtmp`); this module only reads, writes, authorizes through the
//! session core ([`SessionCore::authorize_rtmp`]: the same publish rules and
//! one-publisher-per-path as RTSP) and hands tracks and frames to [`super::ingest::Ingest`].
//! It runs on the control thread: one task per publisher connection.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ingest::Protocol;
use super::Control;
use crate::ingest::rtmp::{RtmpConnection, RtmpEvent};
use crate::live_log::LogTrackSpec;
#[cfg(doc)]
use crate::rtsp::session::SessionCore;
use crate::shard::SessionId;

/// A connection that sends nothing for this long (handshake, or a publish gone quiet) is
/// closed; a publishing one is also ended by the publisher timeout of ingest.
const IDLE: Duration = Duration::from_secs(30);

/// Accepts RTMP connections until the control thread stops.
pub(super) async fn serve(ctl: Rc<Control>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(connection(ctl.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!("rtmp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The stream a connection publishes.
struct Publishing {
    id: SessionId,
    path: String,
    /// The log is open (tracks announced).
    open: bool,
}

async fn connection(ctl: Rc<Control>, mut stream: TcpStream, peer: SocketAddr) {
    let mut conn = RtmpConnection::new();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut publishing: Option<Publishing> = None;
    let mut protocol_error = false;
    let why = loop {
        let n = match tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
            Err(_) => break "idle".to_owned(),
            Ok(Err(e)) => break format!("read: {e}"),
            Ok(Ok(0)) => break "closed by the publisher".to_owned(),
            Ok(Ok(n)) => n,
        };
        if let Err(e) = conn.receive(&buf[..n], &mut events) {
            protocol_error = true;
            break format!("protocol error: {e}");
        }
        match handle(&ctl, &mut conn, &mut events, &mut publishing, peer) {
            Ok(write) => {
                if !write.is_empty() && stream.write_all(&write).await.is_err() {
                    break "write failed".to_owned();
                }
            }
            Err((write, why)) => {
                let _ = stream.write_all(&write).await;
                break why;
            }
        }
    };
    if let Some(p) = publishing {
        if p.open {
            ctl.ingest.borrow_mut().stop(p.id, &p.path, Instant::now());
        }
        tracing::info!(%peer, stream = %p.path, "rtmp publisher ended: {why}");
    } else if protocol_error && ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
        // A peer that never published but broke the protocol (garbage after the handshake,
        // an absurd chunk) gets its one line, rate-limited per address as RTSP's are.
        tracing::info!(%peer, "rtmp connection ended: {why}");
    } else {
        tracing::debug!(%peer, "rtmp connection ended: {why}");
    }
}

/// Carries out a batch of events (accepting a publish may produce more). Returns the bytes
/// to write, or those and why the connection must close.
fn handle(
    ctl: &Control,
    conn: &mut RtmpConnection,
    events: &mut Vec<RtmpEvent>,
    publishing: &mut Option<Publishing>,
    peer: SocketAddr,
) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let mut write = Vec::new();
    while !events.is_empty() {
        let batch = std::mem::take(events);
        for event in batch {
            match event {
                RtmpEvent::Send(bytes) => write.extend_from_slice(&bytes),
                RtmpEvent::PublishRequested {
                    app,
                    key,
                    query,
                    request_id,
                } => {
                    let path = format!("{app}/{key}");
                    let verdict = if publishing.is_some() {
                        Err("one publish per connection".to_owned())
                    } else {
                        ctl.core.borrow().authorize_rtmp(&path, &query)
                    };
                    match verdict {
                        Ok(()) => {
                            *publishing = Some(Publishing {
                                id: rand::random(),
                                path,
                                open: false,
                            });
                            if let Err(e) = conn.accept_publish(request_id, events) {
                                return Err((write, format!("accept: {e}")));
                            }
                        }
                        Err(why) => {
                            tracing::info!(%peer, stream = %path, "rtmp publish refused: {why}");
                            let _ = conn.reject(request_id, &why, events);
                            for e in std::mem::take(events) {
                                if let RtmpEvent::Send(bytes) = e {
                                    write.extend_from_slice(&bytes);
                                }
                            }
                            return Err((write, why));
                        }
                    }
                }
                RtmpEvent::Tracks(tracks) => {
                    let Some(p) = publishing.as_mut() else {
                        continue;
                    };
                    let specs: Vec<LogTrackSpec> = tracks
                        .into_iter()
                        .map(|t| LogTrackSpec {
                            kind: t.kind,
                            codec: t.codec,
                        })
                        .collect();
                    let opened = ctl.ingest.borrow_mut().open(
                        p.id,
                        &p.path,
                        specs,
                        Vec::new(),
                        (Protocol::Rtmp, peer),
                        Instant::now(),
                    );
                    match opened {
                        Ok(log) => {
                            p.open = true;
                            ctl.core.borrow_mut().add_log(log);
                        }
                        Err(e) => return Err((write, format!("cannot ingest: {e}"))),
                    }
                }
                RtmpEvent::Frame(frame) => {
                    if let Some(p) = publishing.as_ref().filter(|p| p.open) {
                        ctl.ingest.borrow_mut().frame(
                            p.id,
                            &p.path,
                            &frame.as_frame(),
                            Instant::now(),
                        );
                    }
                }
                RtmpEvent::Closed { reason } => {
                    return Err((write, format!("publish closed ({reason:?})")));
                }
            }
        }
    }
    Ok(write)
}

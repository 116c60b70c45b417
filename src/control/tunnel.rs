//! The shell of RTSP over HTTP (`crate::rtsp::tunnel` decides): an HTTP request on the RTSP
//! port opens a tunnel's GET side, joins a POST to its GET, or is refused.
//!
//! The GET connection keeps its own connection id, sink and sessions; its requests come
//! from the paired POST over a bounded channel (the POST waits while the GET is behind, so
//! memory stays bounded), and its answers and interleaved `$` frames go out on its sink as
//! on any RTSP connection. A POST only decodes: it never writes unless it is refused.
//!
//! On the RTSPS port the same tunnel runs inside TLS (ffmpeg's `-rtsp_transport https`,
//! GStreamer's `rtspsh://`): both halves are read through their connection's TLS record
//! layer ([`read_some`]) and the GET's sink seals what it sends.

use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::connection::{
    end_tls, flush_sink, read_some, serve_requests, ReadSome, TlsInput, HEAD_TIMEOUT,
};
use super::Control;
use crate::rtsp::session::Caller;
use crate::rtsp::tunnel::{
    get_answer, opening, parse_http_head, refusal_answer, Base64Decoder, HttpHead, Opening, Refused,
};
use crate::shard::TcpSink;

/// Decoded chunks a POST may queue ahead of its GET (each about 3/4 of one read,
/// `connection::READ_CHUNK`).
const QUEUE_CHUNKS: usize = 8;

/// The request input of a tunnel GET connection, as the tunnel registry holds it.
pub(super) type TunnelInput = mpsc::Sender<Vec<u8>>;

/// Serves an HTTP request on the RTSP port; `buf` holds what was read so far (at least the
/// first line).
pub(super) async fn serve_http(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    mut buf: Vec<u8>,
    mut tls: Option<&mut TlsInput>,
) {
    let head = match read_head(ctl, stream, sink, caller, &mut buf, tls.as_deref_mut()).await {
        Some(Ok(head)) => head,
        Some(Err(refused)) => return refuse(ctl, stream, sink, caller, &refused, None).await,
        None => return,
    };
    let (head, consumed) = head;
    match opening(&head) {
        Err(refused) => refuse(ctl, stream, sink, caller, &refused, Some(&head)).await,
        Ok(Opening::Get(cookie)) => serve_get(ctl, stream, sink, caller, &cookie, tls).await,
        Ok(Opening::Post(cookie)) => {
            let body = buf.get(consumed..).unwrap_or_default().to_vec();
            serve_post(ctl, stream, sink, caller, &cookie, body, tls).await;
        }
    }
}

/// Reads until the HTTP head is complete, refused, or the client closes or stalls (then
/// `None`: the connection closes without an answer).
async fn read_head(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    buf: &mut Vec<u8>,
    mut tls: Option<&mut TlsInput>,
) -> Option<Result<(HttpHead, usize), Refused>> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        match parse_http_head(buf, &ctl.limits) {
            Ok(Some(head)) => return Some(Ok(head)),
            Ok(None) => {}
            Err(refused) => return Some(Err(refused)),
        }
        tokio::select! {
            ready = stream.readable() => {
                ready.ok()?;
                match read_some(stream, tls.as_deref_mut(), buf) {
                    ReadSome::Data | ReadSome::WouldBlock => {}
                    ReadSome::Closed => return None,
                    ReadSome::Tls(e) => {
                        tls_refused(ctl, stream, sink, caller, e).await;
                        return None;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// A TLS record the tunnel cannot accept: one log line (within the client's log budget) and
/// the alert RFC 8446 §6.2 names.
async fn tls_refused(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    e: crate::tls::RecordError,
) {
    let peer = caller.peer;
    if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
        tracing::warn!(%peer, "rtsps: closing connection: {e}");
    }
    end_tls(stream, sink, e.closure()).await;
}

/// Answers a refused HTTP request, logs it (one line, within the client's log budget) and
/// lets the connection close.
async fn refuse(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    refused: &Refused,
    head: Option<&HttpHead>,
) {
    let peer = caller.peer;
    if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
        let target = head.map_or("", |h| h.target.as_str());
        tracing::warn!(%peer, target, status = refused.status().0, "http request on the rtsp port refused: {refused}");
    }
    let _ = sink.write_message(&[&refusal_answer(refused)]);
    let _ = flush_sink(stream, sink).await;
}

/// The GET side: registered under its cookie, answered 200, then an RTSP connection whose
/// requests come from the POST. Closed by the idle timeout if no POST ever feeds it.
async fn serve_get(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    cookie: &str,
    tls: Option<&mut TlsInput>,
) {
    let (input, mut requests) = mpsc::channel(QUEUE_CHUNKS);
    let opened = ctl
        .tunnels
        .borrow_mut()
        .open_get(cookie, caller.peer.ip(), caller.conn, input);
    if let Err(refused) = opened {
        return refuse(ctl, stream, sink, caller, &refused, None).await;
    }
    tracing::debug!(peer = %caller.peer, cookie, "rtsp over http: tunnel opened");
    if sink.write_message(&[&get_answer()]).is_ok() {
        serve_requests(
            ctl,
            stream,
            sink,
            caller,
            Vec::new(),
            Some(&mut requests),
            tls,
        )
        .await;
    }
    ctl.tunnels.borrow_mut().close_get(cookie, caller.conn);
}

/// The POST side: paired with its GET, then its body decoded into the GET's requests
/// until it closes, idles past the session timeout, its GET ends, or it sends bytes that
/// are not base64 (answered 400).
async fn serve_post(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    cookie: &str,
    body: Vec<u8>,
    tls: Option<&mut TlsInput>,
) {
    let paired = ctl
        .tunnels
        .borrow_mut()
        .open_post(cookie, caller.peer.ip(), caller.conn);
    let paired = match paired {
        Ok(p) => p,
        Err(refused) => return refuse(ctl, stream, sink, caller, &refused, None).await,
    };
    let pumped = pump_post(ctl, stream, &paired.input, body, tls).await;
    ctl.tunnels.borrow_mut().close_post(cookie, caller.conn);
    match pumped {
        Ok(()) => {}
        Err(PostEnd::Refused(refused)) => refuse(ctl, stream, sink, caller, &refused, None).await,
        Err(PostEnd::Tls(e)) => tls_refused(ctl, stream, sink, caller, e).await,
    }
}

/// Why a POST ended early.
enum PostEnd {
    /// Its body is not base64 (answered 400).
    Refused(Refused),
    /// A TLS record that cannot be accepted (ended with its alert).
    Tls(crate::tls::RecordError),
}

async fn pump_post(
    ctl: &Control,
    stream: &TcpStream,
    input: &TunnelInput,
    body: Vec<u8>,
    mut tls: Option<&mut TlsInput>,
) -> Result<(), PostEnd> {
    let timeout = ctl.core.borrow().config().session_timeout;
    let mut decoder = Base64Decoder::default();
    let mut raw = body;
    let mut idle_deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !raw.is_empty() {
            let mut decoded = Vec::with_capacity(raw.len() / 4 * 3 + 3);
            decoder
                .feed(&raw, &mut decoded)
                .map_err(|e| PostEnd::Refused(e.into()))?;
            raw.clear();
            // Waits while the GET is behind; fails once the GET is gone.
            if !decoded.is_empty() && input.send(decoded).await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            ready = stream.readable() => {
                if ready.is_err() {
                    return Ok(());
                }
                match read_some(stream, tls.as_deref_mut(), &mut raw) {
                    ReadSome::Data => idle_deadline = tokio::time::Instant::now() + timeout,
                    ReadSome::WouldBlock => {}
                    ReadSome::Closed => return Ok(()),
                    ReadSome::Tls(e) => return Err(PostEnd::Tls(e)),
                }
            }
            _ = input.closed() => return Ok(()),
            _ = tokio::time::sleep_until(idle_deadline) => return Ok(()),
        }
    }
}

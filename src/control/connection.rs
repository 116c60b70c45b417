//! One RTSP connection: read, frame (pipelined requests and interleaved frames, RFC 2326
//! §10.12, §12.17), hand each request to the session core, write its answer, enforce the
//! idle and head timeouts.
//!
//! Writes always go through the connection's [`TcpSink`], shared with the shard that
//! streams interleaved RTP on it, so responses and `$` frames never interleave mid-message.
//!
//! A connection whose first request line is HTTP/1.x goes to `tunnel.rs` (RTSP over HTTP,
//! `crate::rtsp::tunnel`); a tunnel's GET side comes back here with its requests read from
//! its POST.
//!
//! An RTSPS connection ([`serve_tls`]) first completes its TLS 1.3 handshake (rustls, within
//! [`HEAD_TIMEOUT`]); then its sink seals everything written (responses and the shard's
//! frames) and the request reader opens records before parsing (`crate::tls::record`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{with_env, Control};
use crate::rtsp::msg::Response;
use crate::rtsp::parse::{parse_message, Parsed};
use crate::rtsp::session::{Answer, Caller, Refusal};
use crate::rtsp::tunnel::{classify, FirstLine};
use crate::shard::TcpSink;
use crate::tls::{Closure, Handshake, Opened, Opener, Step, TlsError};
use crate::wire::ntp::NtpTime;

/// Longest time a request may take to arrive once its first byte is in.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection until it closes, times out or is closed by the server.
pub(super) async fn serve(ctl: Rc<Control>, stream: TcpStream, peer: SocketAddr) {
    serve_with(ctl, stream, peer, None).await;
}

/// Serves one accepted RTSPS connection: the TLS handshake, then RTSP inside it.
pub(super) async fn serve_tls(
    ctl: Rc<Control>,
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) {
    serve_with(ctl, stream, peer, Some(config)).await;
}

/// The receive half of an RTSPS connection: records read but not yet opened, and the key.
pub(super) struct TlsInput {
    opener: Opener,
    raw: Vec<u8>,
}

/// Bytes one [`read_some`] takes from the socket at most (ciphertext on RTSPS).
pub(super) const READ_CHUNK: usize = 4096;

/// What one non-blocking read of a connection gave ([`read_some`]).
pub(super) enum ReadSome {
    /// Bytes were appended.
    Data,
    /// Nothing to read right now.
    WouldBlock,
    /// The client closed (TCP end, or TLS `close_notify`) or the socket failed.
    Closed,
    /// A TLS record that cannot be accepted: the connection ends with its alert.
    Tls(crate::tls::RecordError),
}

/// Reads what the socket has, through the TLS record layer on an RTSPS connection, and
/// appends the plaintext to `out`.
pub(super) fn read_some(
    stream: &TcpStream,
    tls: Option<&mut TlsInput>,
    out: &mut Vec<u8>,
) -> ReadSome {
    let Some(tls) = tls else {
        out.reserve(READ_CHUNK);
        return match stream.try_read_buf(out) {
            Ok(0) => ReadSome::Closed,
            Ok(_) => ReadSome::Data,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadSome::WouldBlock,
            Err(_) => ReadSome::Closed,
        };
    };
    tls.raw.reserve(READ_CHUNK);
    match stream.try_read_buf(&mut tls.raw) {
        Ok(0) => ReadSome::Closed,
        Ok(_) => match tls.opener.open(&mut tls.raw, out) {
            Ok(Opened::More) => ReadSome::Data,
            Ok(Opened::Closed) => ReadSome::Closed,
            Err(e) => ReadSome::Tls(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadSome::WouldBlock,
        Err(_) => ReadSome::Closed,
    }
}

/// Why a TLS handshake ended without a connection.
#[derive(Debug, thiserror::Error)]
enum HandshakeFailure {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("no handshake within {HEAD_TIMEOUT:?}")]
    Timeout,
    #[error("closed by the client")]
    Closed,
}

/// Runs the server side of the TLS handshake: rustls's messages go out on the sink as they
/// come (before it seals anything), and once the client's `Finished` is in, the sink gets
/// the send half; the receive half and the bytes after `Finished` are returned.
async fn handshake(
    stream: &TcpStream,
    sink: &TcpSink,
    config: Arc<rustls::ServerConfig>,
) -> Result<TlsInput, HandshakeFailure> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let mut hs = Handshake::new(config)?;
    let mut raw = Vec::with_capacity(4096);
    let mut out = Vec::new();
    loop {
        let step = hs.feed(&mut raw);
        hs.take_output(&mut out);
        if !out.is_empty() {
            let _ = sink.write_message(&[&out]);
            out.clear();
        }
        match step {
            Err(e) => {
                // The alert rustls wrote goes out before the close.
                let _ = flush_sink(stream, sink).await;
                return Err(e.into());
            }
            Ok(Step::Done) => {
                let (sealer, opener) = hs.finish()?;
                sink.set_tls(sealer);
                return Ok(TlsInput { opener, raw });
            }
            Ok(Step::Continue) => {}
        }
        raw.reserve(4096);
        tokio::select! {
            ready = stream.readable() => {
                ready.map_err(|_| HandshakeFailure::Closed)?;
                match stream.try_read_buf(&mut raw) {
                    Ok(0) => return Err(HandshakeFailure::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(HandshakeFailure::Closed),
                }
            }
            _ = stream.writable(), if sink.backlog_bytes() > 0 => {
                let _ = stream.try_io(Interest::WRITABLE, || sink.flush().map(drop));
            }
            _ = tokio::time::sleep_until(deadline) => return Err(HandshakeFailure::Timeout),
        }
    }
}

async fn serve_with(
    ctl: Rc<Control>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let _ = stream.set_nodelay(true);
    let sink = match socket2::SockRef::from(&stream)
        .try_clone()
        .and_then(|s| TcpSink::new(s.into()))
    {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(%peer, "connection setup: {e}");
            return;
        }
    };
    let mut buf = Vec::new();
    let mut input = None;
    if let Some(config) = tls {
        let opened = match handshake(&stream, &sink, config).await {
            Ok(mut tls) => match tls.opener.open(&mut tls.raw, &mut buf) {
                Ok(opened) => Ok((opened, tls)),
                Err(e) => {
                    end_tls(&stream, &sink, e.closure()).await;
                    Err(HandshakeFailure::Tls(e.into()))
                }
            },
            Err(e) => Err(e),
        };
        match opened {
            Ok((Opened::More, tls)) => input = Some(tls),
            Ok((Opened::Closed, _)) => {
                end_tls(&stream, &sink, Closure::Notify).await;
                return;
            }
            Err(e) => {
                if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
                    tracing::warn!(%peer, "rtsps: tls handshake failed: {e}");
                }
                sink.close();
                return;
            }
        }
    }
    let admitted = with_env(|env| ctl.core.borrow_mut().open_connection(peer, env));
    if let Err(response) = admitted {
        write_response(&sink, &response);
        let _ = flush_sink(&stream, &sink).await;
        end_tls(&stream, &sink, Closure::Notify).await;
        return;
    }
    let conn = ctl.next_conn.get();
    ctl.next_conn.set(conn + 1);
    ctl.conns.borrow_mut().insert(conn, sink.clone());
    let caller = Caller {
        conn,
        peer,
        local: stream.local_addr().unwrap_or(ctl.local_addr),
        secure: input.is_some(),
    };
    let ended = serve_requests(&ctl, &stream, &sink, &caller, buf, None, input.as_mut()).await;
    if let Ended::Http(buf) = ended {
        super::tunnel::serve_http(&ctl, &stream, &sink, &caller, buf, input.as_mut()).await;
    }
    let effects = ctl
        .core
        .borrow_mut()
        .close_connection(&caller, Instant::now());
    ctl.apply(effects);
    ctl.conns.borrow_mut().remove(&conn);
    // RTSPS: the stream ends with `close_notify` (unless a record error already ended it
    // with its alert), however the connection ended: the client closed, went idle, sent
    // something malformed or was refused.
    end_tls(&stream, &sink, Closure::Notify).await;
}

/// RTSPS: ends the TLS stream as `closure` says (`TcpSink::end_tls`, RFC 8446 §6) and
/// pushes the alert out, giving up after the flush's grace period. Nothing on plain TCP or
/// once the stream was ended.
pub(super) async fn end_tls(stream: &TcpStream, sink: &TcpSink, closure: Closure) {
    sink.end_tls(closure);
    let _ = flush_sink(stream, sink).await;
}

fn write_response(sink: &TcpSink, response: &Response) -> bool {
    let mut bytes = Vec::with_capacity(512);
    response.serialize(&mut bytes);
    sink.write_message(&[&bytes]).is_ok()
}

/// Writes an answer: held for its delay, then the effects around the response.
async fn write_answer(ctl: &Control, sink: &TcpSink, answer: Answer) -> bool {
    ctl.apply(answer.effects);
    if !answer.delay.is_zero() {
        // The authentication backoff slot: held without blocking anyone else.
        tokio::time::sleep(answer.delay).await;
    }
    if !write_response(sink, &answer.response) || answer.close {
        return false;
    }
    ctl.apply(answer.after_response);
    true
}

/// How [`serve_requests`] ended.
pub(super) enum Ended {
    /// The connection is done (closed, timed out, refused).
    Closed,
    /// The first request line is HTTP: these bytes (at least that line) are for the tunnel.
    Http(Vec<u8>),
}

/// Serves RTSP requests. With `tunnel` (a tunnel's GET side) they come from its POST over
/// that channel, and what the GET connection itself sends is read and dropped; without it
/// they are read from `stream`, whose first line may turn out to be HTTP ([`Ended::Http`]).
pub(super) async fn serve_requests(
    ctl: &Control,
    stream: &TcpStream,
    sink: &TcpSink,
    caller: &Caller,
    mut buf: Vec<u8>,
    mut tunnel: Option<&mut mpsc::Receiver<Vec<u8>>>,
    mut tls: Option<&mut TlsInput>,
) -> Ended {
    let peer = caller.peer;
    let mut rate = ctl.core.borrow().request_rate();
    let max_buffer = ctl.limits.max_head_bytes + ctl.limits.max_body_bytes + 8;
    buf.reserve(2048);
    let direct = tunnel.is_none();
    // The first line tells RTSP from an HTTP tunnel's GET or POST, inside TLS too (ffmpeg's
    // `-rtsp_transport https`, GStreamer's `rtspsh://`).
    let mut classifying = direct;
    let mut dropped = Vec::new();
    let timeout = ctl.core.borrow().config().session_timeout;
    let mut idle_deadline = tokio::time::Instant::now() + timeout;
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        if classifying {
            match classify(&buf, &ctl.limits) {
                None => {}
                Some(FirstLine::Rtsp) => classifying = false,
                Some(FirstLine::Http) => return Ended::Http(buf),
            }
        }
        // Handle every complete message already buffered (pipelining, RFC 2326 §12.17).
        let buffered = buf.len();
        if !classifying {
            loop {
                match parse_message(&buf, &ctl.limits) {
                    Ok(None) => break,
                    Ok(Some(Parsed::Interleaved {
                        channel,
                        payload_len,
                        consumed,
                    })) => {
                        if buf.len() < consumed {
                            break;
                        }
                        let payload = &buf[consumed - payload_len..consumed];
                        if ctl.ingest.borrow_mut().interleaved(
                            caller.conn,
                            channel,
                            payload,
                            Instant::now(),
                        ) {
                            buf.drain(..consumed);
                            continue;
                        }
                        let effects = ctl.core.borrow_mut().interleaved_frame(
                            caller.conn,
                            channel,
                            &buf[consumed - payload_len..consumed],
                            NtpTime::now(),
                            Instant::now(),
                        );
                        ctl.apply(effects);
                        buf.drain(..consumed);
                    }
                    Ok(Some(Parsed::Response { status, consumed })) => {
                        // RFC 7826 §8.2: the client's answer to our PLAY_NOTIFY (§13.5).
                        // Nothing depends on it: skipped, without a log line.
                        tracing::debug!(%peer, status, "client response skipped");
                        buf.drain(..consumed);
                    }
                    Ok(Some(Parsed::Request { request, consumed })) => {
                        buf.drain(..consumed);
                        let answer = if rate.allow(Instant::now()) {
                            ctl.handle(&request, caller).await
                        } else {
                            with_env(|env| {
                                ctl.core.borrow_mut().refuse(
                                    Some(&request),
                                    caller,
                                    Refusal::RequestRate,
                                    env,
                                )
                            })
                        };
                        if !write_answer(ctl, sink, answer).await {
                            return Ended::Closed;
                        }
                    }
                    Err(e) => {
                        // Framing is lost after a malformed message: answer, then close.
                        let answer = with_env(|env| {
                            ctl.core
                                .borrow_mut()
                                .refuse(None, caller, Refusal::Parse(e), env)
                        });
                        write_response(sink, &answer.response);
                        let _ = flush_sink(stream, sink).await;
                        return Ended::Closed;
                    }
                }
            }
        }
        if buf.len() > max_buffer || sink.is_closed() {
            return Ended::Closed;
        }
        // Something whole was taken from the front: what is left is a new message's start.
        // (An interleaved publisher or viewer streaming `$` frames has a partial frame
        // buffered after most reads; only the same message staying incomplete counts.)
        if buf.len() < buffered {
            partial_since = None;
        }
        let want_flush = sink.backlog_bytes() > 0;
        // A request must arrive whole within HEAD_TIMEOUT of its first byte, however slowly
        // it trickles: otherwise a client sending one byte a second (slowloris) would keep
        // its connection forever, since every byte resets the idle timer. The clock runs
        // from when the message now at the front started to be buffered.
        let partial_deadline = if buf.is_empty() {
            partial_since = None;
            None
        } else {
            let since = *partial_since.get_or_insert_with(tokio::time::Instant::now);
            Some(since + HEAD_TIMEOUT.min(timeout))
        };
        tokio::select! {
            ready = stream.readable() => {
                if ready.is_err() {
                    return Ended::Closed;
                }
                // A tunnel's GET carries nothing from the client: read and dropped.
                let read = if direct {
                    read_some(stream, tls.as_deref_mut(), &mut buf)
                } else {
                    dropped.clear();
                    read_some(stream, tls.as_deref_mut(), &mut dropped)
                };
                match read {
                    ReadSome::Data if direct => idle_deadline = tokio::time::Instant::now() + timeout,
                    ReadSome::Data | ReadSome::WouldBlock => {}
                    ReadSome::Closed => return Ended::Closed,
                    ReadSome::Tls(e) => {
                        if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
                            tracing::warn!(%peer, "rtsps: closing connection: {e}");
                        }
                        // RFC 8446 §6.2: the alert this error calls for.
                        end_tls(stream, sink, e.closure()).await;
                        return Ended::Closed;
                    }
                }
            }
            chunk = next_chunk(tunnel.as_deref_mut()) => match chunk {
                Some(chunk) => {
                    buf.extend_from_slice(&chunk);
                    idle_deadline = tokio::time::Instant::now() + timeout;
                }
                None => return Ended::Closed,
            },
            _ = stream.writable(), if want_flush => {
                let _ = stream.try_io(Interest::WRITABLE, || sink.flush().map(drop));
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
                    tracing::info!(%peer, "closing connection idle for {timeout:?}");
                }
                return Ended::Closed;
            }
            _ = async { tokio::time::sleep_until(partial_deadline.unwrap_or(idle_deadline)).await }, if partial_deadline.is_some() => {
                let answer = with_env(|env| {
                    ctl.core.borrow_mut().refuse(None, caller, Refusal::RequestTimeout, env)
                });
                write_response(sink, &answer.response);
                let _ = flush_sink(stream, sink).await;
                return Ended::Closed;
            }
        }
    }
}

/// The next chunk of a tunnel's requests; never resolves on a plain connection.
async fn next_chunk(tunnel: Option<&mut mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match tunnel {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Pushes out a connection's backlog, giving up after a short grace period.
pub(super) async fn flush_sink(stream: &TcpStream, sink: &TcpSink) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while sink.backlog_bytes() > 0 {
        tokio::select! {
            r = stream.writable() => r?,
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
        match stream.try_io(Interest::WRITABLE, || sink.flush()) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

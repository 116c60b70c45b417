//! One RTSP connection: read, frame (pipelined requests and interleaved frames, RFC 2326
//! §10.12, §12.17), hand each request to the session core, write its answer, enforce the
//! idle and head timeouts.
//!
//! Writes always go through the connection's [`TcpSink`], shared with the shard that
//! streams interleaved RTP on it, so responses and `$` frames never interleave mid-message.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{with_env, Control};
use crate::rtsp::msg::Response;
use crate::rtsp::parse::{parse_message, Parsed};
use crate::rtsp::session::{Answer, Caller, Refusal};
use crate::shard::TcpSink;
use crate::wire::ntp::NtpTime;

/// Longest time a request may take to arrive once its first byte is in.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection until it closes, times out or is closed by the server.
pub(super) async fn serve(ctl: Rc<Control>, stream: TcpStream, peer: SocketAddr) {
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
    let admitted = with_env(|env| ctl.core.borrow_mut().open_connection(peer, env));
    if let Err(response) = admitted {
        write_response(&sink, &response);
        let _ = flush_sink(&stream, &sink).await;
        return;
    }
    let conn = ctl.next_conn.get();
    ctl.next_conn.set(conn + 1);
    ctl.conns.borrow_mut().insert(conn, sink.clone());
    let caller = Caller {
        conn,
        peer,
        local: stream.local_addr().unwrap_or(ctl.local_addr),
    };
    serve_requests(&ctl, &stream, &sink, &caller).await;
    let effects = ctl
        .core
        .borrow_mut()
        .close_connection(&caller, Instant::now());
    ctl.apply(effects);
    ctl.conns.borrow_mut().remove(&conn);
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

async fn serve_requests(ctl: &Control, stream: &TcpStream, sink: &TcpSink, caller: &Caller) {
    let peer = caller.peer;
    let mut rate = ctl.core.borrow().request_rate();
    let max_buffer = ctl.limits.max_head_bytes + ctl.limits.max_body_bytes + 8;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let timeout = ctl.core.borrow().config().session_timeout;
    let mut idle_deadline = tokio::time::Instant::now() + timeout;
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        // Handle every complete message already buffered (pipelining, RFC 2326 §12.17).
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
                        return;
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
                    return;
                }
            }
        }
        if buf.len() > max_buffer || sink.is_closed() {
            return;
        }
        let want_flush = sink.backlog_bytes() > 0;
        // A request must arrive whole within HEAD_TIMEOUT of its first byte, however slowly
        // it trickles: otherwise a client sending one byte a second (slowloris) would keep
        // its connection forever, since every byte resets the idle timer.
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
                    return;
                }
                match stream.try_read_buf(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => idle_deadline = tokio::time::Instant::now() + timeout,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = stream.writable(), if want_flush => {
                let _ = stream.try_io(Interest::WRITABLE, || sink.flush().map(drop));
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if ctl.core.borrow_mut().may_log(peer.ip(), Instant::now()) {
                    tracing::info!(%peer, "closing connection idle for {timeout:?}");
                }
                return;
            }
            _ = async { tokio::time::sleep_until(partial_deadline.unwrap_or(idle_deadline)).await }, if partial_deadline.is_some() => {
                let answer = with_env(|env| {
                    ctl.core.borrow_mut().refuse(None, caller, Refusal::RequestTimeout, env)
                });
                write_response(sink, &answer.response);
                let _ = flush_sink(stream, sink).await;
                return;
            }
        }
    }
}

/// Pushes out a connection's backlog, giving up after a short grace period.
async fn flush_sink(stream: &TcpStream, sink: &TcpSink) -> std::io::Result<()> {
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

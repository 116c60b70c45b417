//! Accepting HTTP/1.1 connections on the control thread's runtime and routing requests.
//!
//! Each connection is one `tokio::task::spawn_local` task running hyper's HTTP/1 server
//! (RFC 9112), so handlers may hold the non-`Send` control state. Bounded everywhere:
//! connections in total and per address, header size and count, the time to send a request
//! head (also the keep-alive idle limit), body size and the time to send it. Hostile input
//! gets a 4xx from hyper or from us; nothing here panics on input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::rc::Rc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::{api, metrics, page, ControlApi};
use crate::config::ApiRead;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// Bounds on what one client can make the HTTP side hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open HTTP connections in total; further ones get 503 and are closed.
    pub max_connections: usize,
    /// Open HTTP connections from one address.
    pub max_connections_per_ip: usize,
    /// Time to send a whole request head; also how long a keep-alive connection may idle.
    pub header_read_timeout: Duration,
    /// Time to send a request body.
    pub body_timeout: Duration,
    /// Largest request body (only `POST /api/v1/play` reads one).
    pub max_body_bytes: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most header fields in a request.
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 32,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// Binds the HTTP listener (non-blocking, ready for [`serve`]).
pub fn bind(addr: SocketAddr) -> std::io::Result<StdTcpListener> {
    let listener = StdTcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Open connections, in total and per address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts one connection until dropped.
struct OpenGuard {
    open: Rc<RefCell<Open>>,
    ip: IpAddr,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut o = self.open.borrow_mut();
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                o.per_ip.remove(&self.ip);
            }
        }
    }
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Accepts HTTP connections until the task is dropped (the control thread's `LocalSet` ends).
/// Must run inside a `LocalSet`.
pub async fn serve(listener: StdTcpListener, api: Rc<dyn ControlApi>, limits: HttpLimits) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("http listener: {e}");
            return;
        }
    };
    let open = Rc::new(RefCell::new(Open::default()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) + limits.max_body_bytes);
    let builder = Rc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        {
            let mut o = open.borrow_mut();
            let from_ip = o.per_ip.get(&ip).copied().unwrap_or(0);
            if o.total >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
                drop(o);
                tracing::warn!(%peer, "http connection refused: too many open connections");
                let _ = stream.try_write(OVERLOADED);
                continue;
            }
            o.total += 1;
            *o.per_ip.entry(ip).or_insert(0) += 1;
        }
        let guard = OpenGuard {
            open: open.clone(),
            ip,
        };
        let api = api.clone();
        let builder = builder.clone();
        tokio::task::spawn_local(async move {
            let _guard = guard;
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(route(&*api, req, peer, &limits).await) }
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "http connection ended: {e}");
            }
        });
    }
}

/// A JSON error body `{"error": "..."}` with `status`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let body = serde_json::json!({ "error": message.into() });
    json_response(status, &body)
}

/// `value` as a JSON response.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(bytes) => response(status, "application/json", Bytes::from(bytes)),
        Err(e) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            Bytes::from(format!("{{\"error\":\"serializing: {e}\"}}")),
        ),
    }
}

/// A response with the headers every answer carries.
pub fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(crate::ids::SERVER_NAME),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading: public unless `api-read = "token"`.
    Read,
    /// Changing something: always the admin token.
    Admin,
}

/// SHA-256 both sides, then compare the digests in constant time: neither the content nor
/// the length of the configured token leaks through timing.
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// Checks the `Authorization: Bearer` header (RFC 6750 §2.1) against the admin token; the
/// error is the response to refuse with.
pub fn authorize(
    req_headers: &hyper::HeaderMap,
    access: &super::HttpAccess,
    need: Need,
) -> Result<(), Box<HttpResponse>> {
    if need == Need::Read && access.api_read == ApiRead::Public {
        return Ok(());
    }
    let Some(admin) = access.admin_token.as_deref() else {
        return Err(Box::new(json_error(
            StatusCode::FORBIDDEN,
            "no admin token is configured (admin-token or SHARDCAST_ADMIN_TOKEN), so changes through the API are disabled",
        )));
    };
    let given = req_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let (message, challenge) = match given {
        None => (
            "this call needs Authorization: Bearer <admin token>",
            "Bearer realm=\"shardcast\"",
        ),
        Some(token) if same_secret(token, admin) => return Ok(()),
        Some(_) => (
            "the bearer token is not the admin token",
            "Bearer realm=\"shardcast\", error=\"invalid_token\"",
        ),
    };
    let mut r = json_error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    Err(Box::new(r))
}

/// The host name of a `Host` header (RFC 9110 §7.2) without its port, if it is a plain
/// host name or address literal (anything else is ignored rather than echoed into URLs).
pub fn host_name(host: &str) -> Option<&str> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(name)
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Routes one request.
async fn route(
    api: &dyn ControlApi,
    req: Request<Incoming>,
    peer: SocketAddr,
    limits: &HttpLimits,
) -> HttpResponse {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let head = method == Method::HEAD;
    let mut resp = if path == "/"
        || path == "/dashboard"
        || path == "/publish"
        || path.starts_with("/assets/")
    {
        // The pages (the viewer at `/`, the dashboard at `/dashboard`) and their assets hold
        // no data (they fetch it from the API, which applies `api-read`), so they are public
        // even with `api-read = "token"`: a browser cannot send a bearer header when it
        // navigates.
        match page::find(&path) {
            None => json_error(StatusCode::NOT_FOUND, format!("no such page: {path}")),
            Some(_) if !(method == Method::GET || head) => method_not_allowed("GET, HEAD"),
            Some(asset) => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(host_name);
                page::serve(asset, host)
            }
        }
    } else if path == "/metrics" {
        if !(method == Method::GET || head) {
            method_not_allowed("GET, HEAD")
        } else {
            match authorize(req.headers(), &api.access(), Need::Read) {
                Err(r) => *r,
                Ok(()) => response(
                    StatusCode::OK,
                    metrics::CONTENT_TYPE,
                    Bytes::from(metrics::render(&api.metrics())),
                ),
            }
        }
    } else if let Some(rest) = path.strip_prefix("/whep/") {
        let rest = rest.to_owned();
        super::whep::handle(api, req, &rest, peer, limits).await
    } else if let Some(rest) = path.strip_prefix("/whip/") {
        let rest = rest.to_owned();
        super::whip::handle(api, req, &rest, peer, limits).await
    } else if let Some(rest) = path.strip_prefix("/api/v1/") {
        let rest = rest.to_owned();
        api::handle(api, req, &rest, limits).await
    } else {
        json_error(StatusCode::NOT_FOUND, format!("no such resource: {path}"))
    };
    if resp.status().is_client_error() && resp.status() != StatusCode::NOT_FOUND {
        tracing::info!(%peer, method = %method, path = %path, status = resp.status().as_u16(), "http request refused");
    } else {
        tracing::debug!(%peer, method = %method, path = %path, status = resp.status().as_u16(), "http");
    }
    if head {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpAccess;

    fn headers(auth: Option<&str>) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn bearer_checks() {
        let open = HttpAccess {
            admin_token: Some("0123456789abcdef".into()),
            api_read: ApiRead::Public,
        };
        assert!(authorize(&headers(None), &open, Need::Read).is_ok());
        let r = authorize(&headers(None), &open, Need::Admin).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = authorize(&headers(Some("Bearer nope")), &open, Need::Admin).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(authorize(
            &headers(Some("bearer 0123456789abcdef")),
            &open,
            Need::Admin
        )
        .is_ok());
        assert!(authorize(&headers(Some("Basic 0123456789abcdef")), &open, Need::Admin).is_err());
        let closed = HttpAccess {
            api_read: ApiRead::Token,
            ..open
        };
        assert!(authorize(&headers(None), &closed, Need::Read).is_err());
        let none = HttpAccess {
            admin_token: None,
            api_read: ApiRead::Public,
        };
        let r = authorize(&headers(Some("Bearer x")), &none, Need::Admin).unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("example.com:8080"), Some("example.com"));
        assert_eq!(host_name("example.com"), Some("example.com"));
        assert_eq!(host_name("10.0.0.1:80"), Some("10.0.0.1"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("evil.com/x"), None);
        assert_eq!(host_name("a\"b"), None);
        assert_eq!(host_name(""), None);
    }
}

//! RTSP 1.0 (RFC 2326) and 2.0 (RFC 7826) control plane.
//!
//! The message layer is sans-IO: [`parse`] frames and parses requests and
//! interleaved frames (RFC 2326 §4, §6, §10.12), [`msg`] holds the request and
//! response types and status codes (§6, §7, §11), [`transport`] and [`range`]
//! handle the Transport (§12.39) and Range (§3.6, §12.29) headers, and [`uri`]
//! confines request URIs (§3.2) to safe path segments. [`response`] is the client side
//! (responses and `$` frames as a client reads them), for the load generator and the tests. [`log_limit`] keeps one client from
//! flooding the log. [`mikey`] reads and writes the MIKEY (RFC 3830) messages that key SRTP
//! over RTSPS. [`tunnel`] is RTSP over HTTP (the `x-sessioncookie` tunnel) on the RTSP port.

pub mod admission;
pub mod auth;
pub mod log_limit;
pub mod mikey;
pub mod msg;
pub mod parse;
pub mod range;
pub mod response;
pub mod session;
pub mod transport;
pub mod tunnel;
pub mod uri;

//! RTSP 1.0 (RFC 2326) control plane.

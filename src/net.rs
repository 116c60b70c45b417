//! Batched UDP receive, the safe face of the syscall layer for receivers outside the server:
//! a `recvmmsg(2)` batch with the kernel's arrival time (`SO_TIMESTAMPNS`), each datagram's
//! source address and, with `UDP_GRO`, whole GSO trains. The shards drain RTCP with it; the
//! `shardcast bench` load generator (part of the binary, not of this library) receives RTP
//! with it.

pub use crate::sys::recv::{
    enable_rx_timestamps, enable_udp_gro, realtime_ns, Datagram, RecvBatch, GRO_SLOT_BYTES,
    RECV_SLOT_BYTES,
};

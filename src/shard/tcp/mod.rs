//! The shard's TCP writer: every byte of media a shard sends on a stream socket goes through
//! here (interleaved RTP/RTCP today; HLS bodies and other TCP media are to use it too).
//!
//! - [`sink`]: [`TcpSink`], the write side of one connection, shared with the control
//!   thread's responses; a bounded backlog; the cut-off rule; `TCP_NOTSENT_LOWAT` sizing.
//! - `batch`: a pass's frames gathered per connection and written with one `sendmsg`
//!   each, bodies straight from the mapping.

pub(crate) mod batch;
pub mod sink;

pub use sink::{interleaved_header, SinkError, TcpSink, Written, MAX_BACKLOG_BYTES};

//! The `shardcast` binary.
fn main() {}

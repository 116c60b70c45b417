//! Per-core data plane.

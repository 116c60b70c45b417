//! Syscall layer: the only module allowed `unsafe`.

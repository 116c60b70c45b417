//! Unit tests of the HLS core.

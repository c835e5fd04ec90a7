//! Integration test crate: the tests live in `tests/tests/*.rs`; this library is empty.

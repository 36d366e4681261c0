//! The fuzz targets' bodies, as plain functions (the `fuzz_targets/` binaries only call them), so a
//! crash found by the fuzzer replays with `cargo fuzz run TARGET ARTIFACT` and becomes a unit test
//! in the crate that owned the bug.
//!
//! Each body states its oracle: what must hold for every input, beyond "does not panic".

pub mod batch;
pub mod recovery;
pub mod request;
pub mod seeds;

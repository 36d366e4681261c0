#![no_main]
//! See `loglab_fuzz::recovery` for the input format and the oracle.
use libfuzzer_sys::fuzz_target;

thread_local! {
    static HARNESS: loglab_fuzz::recovery::Harness = loglab_fuzz::recovery::Harness::new();
}

fuzz_target!(init: loglab_fuzz::seeds::write_seeds_if_asked("recovery"), |data: &[u8]| HARNESS.with(|h| h.check(data)));

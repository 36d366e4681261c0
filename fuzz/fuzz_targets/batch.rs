#![no_main]
//! See `loglab_fuzz::batch` for the input format and the oracle.
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: loglab_fuzz::seeds::write_seeds_if_asked("batch"), |data: &[u8]| loglab_fuzz::batch::check(data));

#![no_main]
//! See `loglab_fuzz::request` for the input format and the oracle.
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static HARNESS: RefCell<loglab_fuzz::request::Harness> =
        RefCell::new(loglab_fuzz::request::Harness::new());
}

fuzz_target!(init: loglab_fuzz::seeds::write_seeds_if_asked("request"), |data: &[u8]| HARNESS.with(|h| h.borrow_mut().check(data)));

//! `perf --version` answers with the crate version (every Loglab binary does). Real world only:
//! perf's simulated build is a stub.
#![cfg(not(madsim))]

#[test]
fn perf_answers_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perf"))
        .arg("--version")
        .output()
        .expect("perf runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("perf {}", env!("CARGO_PKG_VERSION")));
}

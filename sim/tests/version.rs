//! `sim --version` (`cargo simulate --version`) answers with the crate version, in both builds.

#[test]
fn sim_answers_version() {
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
            .arg(flag)
            .output()
            .expect("sim runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), format!("sim {}", env!("CARGO_PKG_VERSION")));
    }
}

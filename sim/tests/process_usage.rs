//! `speed.process` in summary.json counts the simulator's own CPU time and memory, not what the
//! process did before an `exec` made it the simulator: `cargo simulate` is cargo until cargo
//! replaces itself with the simulator, and a process keeps its CPU time and peak RSS across
//! `exec`. Here a shell plays cargo's part: it burns CPU time and holds ~100 MB, then execs the
//! simulator. Alone in its test binary, so that this process's children are the shell and what
//! it ran (`cargo sim-test -p sim --test process_usage`).
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

/// User + system CPU seconds of this process's waited-for children (and theirs).
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_CHILDREN is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Seconds in a `times` field such as `0m0.410000s`.
fn times_field(f: &str) -> f64 {
    let (m, s) = f.trim_end_matches('s').split_once('m').expect("`times` prints NmN.NNs");
    m.parse::<f64>().expect("minutes") * 60.0 + s.parse::<f64>().expect("seconds")
}

#[test]
fn speed_process_leaves_out_what_ran_before_exec() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("process-usage");
    let _ = std::fs::remove_dir_all(&out);
    let before = children_cpu_s();
    // The shell holds a 100 MB string (its peak RSS ~200 MB), prints its own and its children's
    // CPU time (`times`), then becomes the simulator.
    let burn = r#"x=$(head -c 100000000 /dev/zero | tr '\0' a); times >&2; exec "$0" "$@""#;
    let run = Command::new("sh")
        .args(["-c", burn, env!("CARGO_BIN_EXE_sim")])
        .arg(root.join("scenarios/quickstart.json"))
        .args(["--seed", "1", "--out"])
        .arg(&out)
        .output()
        .expect("sh runs");
    let total_cpu_s = children_cpu_s() - before;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{run:?}");
    // `times`: the shell's own user and system time, then its children's.
    let mut lines = stderr.lines();
    let mut pair = |what: &str| -> f64 {
        let line = lines.next().unwrap_or_else(|| panic!("`times` printed {what}: {stderr}"));
        line.split_whitespace().map(times_field).sum()
    };
    let (shell_s, shell_children_s) = (pair("the shell's time"), pair("its children's"));
    assert!(shell_s >= 0.05, "the shell burned too little to tell ({shell_s} s): {stderr}");

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    let process = &summary["speed"]["process"];
    let cpu_s = process["cpu_s"].as_f64().expect("speed.process.cpu_s");
    let rss = process["peak_rss_bytes"].as_u64().expect("speed.process.peak_rss_bytes");
    // What the simulator itself used: everything the children used but the shell and its pipe.
    let simulator_s = total_cpu_s - shell_s - shell_children_s;
    assert!(cpu_s > 0.0, "{process}");
    assert!(
        cpu_s <= simulator_s + 0.05,
        "speed.process.cpu_s {cpu_s} counts the shell's {shell_s} s too (simulator alone \
         {simulator_s} s of {total_cpu_s} s)"
    );
    assert!(rss > 1 << 20, "{process}");
    assert!(rss < 100 << 20, "speed.process.peak_rss_bytes {rss} counts the shell's 100 MB");
}

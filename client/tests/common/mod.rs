//! Starts the real `broker` binary on an ephemeral 127.0.0.1 port (bounded wait, killed on drop).
//! The binary is `$LOGLAB_BROKER_BIN`, or `broker` next to this test's target dir (built by
//! `cargo test --workspace`, or `cargo build -p broker`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct BrokerProcess {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn broker_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LOGLAB_BROKER_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/<test> → target/<profile>/broker
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("broker");
    candidate.exists().then_some(candidate)
}

/// Starts a broker. A missing binary fails the test rather than skipping it: a skipped round
/// trip would let the suite pass without ever talking to the broker. `cargo test --workspace`
/// builds it; alone, run `cargo build -p broker` first or set LOGLAB_BROKER_BIN.
pub fn start_broker(overrides: &[&str]) -> BrokerProcess {
    let bin = broker_bin()
        .expect("no broker binary: run `cargo build -p broker` (or `cargo test --workspace`), or set LOGLAB_BROKER_BIN");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir.path());
    for o in overrides {
        cmd.arg("--override").arg(o);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn broker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                if let Some(tx) = tx.take() {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("broker did not report its listen address within 30 s");
        }
    };
    BrokerProcess { child, addr, _dir: dir }
}

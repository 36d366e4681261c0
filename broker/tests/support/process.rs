//! `broker serve` as a child process (real world only): started, its address read from the line
//! it prints, signalled, and waited for with a bound.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// A child's stdout, kept open: the broker prints when it stops, and a closed pipe would fail that.
pub type Stdout = std::io::Lines<BufReader<ChildStdout>>;

/// `broker serve --listen 127.0.0.1:0 --data-dir <data>`, stdout piped, stderr dropped; add
/// arguments and spawn with [`spawn_listening`].
pub fn serve(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    c
}

/// Reads stdout lines until one contains `marker`; returns the first word after it. Fails when
/// stdout ends first or no such line came within `within` (checked at each line).
pub fn word_after(lines: &mut Stdout, marker: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < within, "no line with {marker:?} within {within:?}");
        let line = lines.next().expect("broker output").expect("a line");
        if let Some(rest) = line.split(marker).nth(1) {
            return rest.split_whitespace().next().expect("a word").to_string();
        }
    }
}

/// Spawns `cmd` (stdout piped); returns the child, its stdout and the address it listens on.
pub fn spawn_listening(cmd: &mut Command, within: Duration) -> (Child, Stdout, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawns the broker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = word_after(&mut lines, "listening on ", within);
    (child, lines, addr)
}

/// Keeps reading `lines` on a thread of its own, so the child never blocks on a full pipe.
pub fn drain(lines: Stdout) {
    std::thread::spawn(move || for _ in lines {});
}

/// Sends SIGTERM to process `pid`.
pub fn sigterm(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill(2) with a pid this test spawned; no memory is shared.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {pid}: {}", std::io::Error::last_os_error());
}

/// The child's exit status, or `None` if it is still running after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then the exit status; fails if the child does not stop within `within`.
pub fn stop(child: &mut Child, within: Duration) -> ExitStatus {
    sigterm(child.id());
    wait_exit(child, within).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not stop within {within:?} of SIGTERM")
    })
}

/// Polls `f` until it answers `Some`; fails after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Free loopback ports: bound, then released (a small race we accept in a test).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    ls.iter().map(|l| l.local_addr().expect("bound").port()).collect()
}

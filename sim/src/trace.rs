//! The run's trace: every significant event with its virtual time, hashed into `trace_hash`.
//!
//! Each event is one canonical text line, `<time_ns> <kind> <detail>\n` (integers in decimal,
//! disk events as serde_json of the model's event, whose field order is fixed), and the hash is
//! FNV-1a 64 over the bytes of those lines in order. Text in, bytes out: portable across machines
//! and endianness, and the hashed input is exactly what `--trace` writes, so two runs that
//! diverge can be diffed line by line.

/// FNV-1a, 64 bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Fnv1a64(Self::OFFSET_BASIS)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats a hash the way `summary.json` shows it: 16 lowercase hex digits.
pub fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv1a64,
    events: u64,
    /// Kept only when asked (`--trace`, check-determinism): the hashed lines themselves.
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Self {
        Trace { hash: Fnv1a64::new(), events: 0, lines: keep_lines.then(Vec::new) }
    }

    /// Records one event. `kind` is one word; `detail` must not contain a newline (replaced).
    ///
    /// Hashes the line's pieces in place (FNV-1a over the pieces in order is FNV-1a over the
    /// line): no line is built unless it is kept (every sample traces hundreds of events).
    pub fn event(&mut self, time_ns: u64, kind: &str, detail: &str) {
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            let mut line = format!("{time_ns} {kind} {detail}");
            if line.contains('\n') {
                line = line.replace('\n', "\\n");
            }
            self.hash.update(line.as_bytes());
            self.hash.update(b"\n");
            lines.push(line);
            return;
        }
        self.hash.update(decimal(time_ns, &mut [0; 20]));
        self.hash.update(b" ");
        update_escaped(&mut self.hash, kind);
        self.hash.update(b" ");
        update_escaped(&mut self.hash, detail);
        self.hash.update(b"\n");
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

/// `n` in decimal, written into the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Hashes `s` with each newline as the two bytes `\n` (as a kept line has it).
fn update_escaped(hash: &mut Fnv1a64, s: &str) {
    let mut parts = s.split('\n');
    if let Some(first) = parts.next() {
        hash.update(first.as_bytes());
    }
    for part in parts {
        hash.update(b"\\n");
        hash.update(part.as_bytes());
    }
}

/// The first place two traces differ: (index, left line, right line), `None` if equal.
pub fn first_divergence<'a>(
    a: &'a [String],
    b: &'a [String],
) -> Option<(usize, Option<&'a str>, Option<&'a str>)> {
    let n = a.len().max(b.len());
    (0..n).find_map(|i| {
        let (x, y) = (a.get(i).map(String::as_str), b.get(i).map(String::as_str));
        (x != y).then_some((i, x, y))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        // Published FNV-1a 64 test vectors.
        let h = |s: &str| {
            let mut f = Fnv1a64::new();
            f.update(s.as_bytes());
            f.finish()
        };
        assert_eq!(h(""), 0xcbf29ce484222325);
        assert_eq!(h("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(h("foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn trace_hash_depends_on_order_and_content() {
        let mut a = Trace::new(true);
        a.event(1, "x", "one");
        a.event(2, "y", "two");
        let mut b = Trace::new(true);
        b.event(2, "y", "two");
        b.event(1, "x", "one");
        assert_ne!(a.hash(), b.hash());
        assert_eq!(first_divergence(a.lines().unwrap(), b.lines().unwrap()).map(|d| d.0), Some(0));
        let mut c = Trace::new(false);
        c.event(1, "x", "one");
        c.event(2, "y", "two");
        assert_eq!(a.hash(), c.hash());
        // Kept or not, a line hashes as its text: times of every width, escaped newlines.
        for (t, kind, detail) in
            [(0, "k", ""), (u64::MAX, "disk", "{\"a\":1}"), (907, "x", "a\nb\n")]
        {
            let (mut kept, mut hashed) = (Trace::new(true), Trace::new(false));
            kept.event(t, kind, detail);
            hashed.event(t, kind, detail);
            let mut f = Fnv1a64::new();
            f.update(format!("{t} {kind} {}\n", detail.replace('\n', "\\n")).as_bytes());
            assert_eq!(
                (kept.hash(), hashed.hash()),
                (f.finish(), f.finish()),
                "{t} {kind} {detail:?}"
            );
        }
        assert_eq!(hex(0xab), "00000000000000ab");
    }
}

/// A run's shared trace plus its virtual clock (time since the run started).
#[derive(Debug, Clone)]
pub struct Tracer {
    trace: std::sync::Arc<std::sync::Mutex<Trace>>,
    /// When the run started, read through madsim's held time handle (a run reads the clock once
    /// a record).
    epoch: disk_model::clock::Epoch,
    /// The wall clock (madsim's `SystemTime`: seeded, so replayed exactly) at `epoch`, in ms.
    epoch_wall_ms: i64,
}

impl Tracer {
    /// Starts the run's clock now (call inside the runtime).
    pub fn new(keep_lines: bool) -> Self {
        Tracer {
            trace: std::sync::Arc::new(std::sync::Mutex::new(Trace::new(keep_lines))),
            epoch: disk_model::clock::Epoch::now(),
            epoch_wall_ms: broker::now_ms(),
        }
    }

    pub fn epoch(&self) -> disk_model::clock::Epoch {
        self.epoch.clone()
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.now_ns()
    }

    /// The Kafka timestamp (wall-clock ms) of virtual time `t_ns`: the same clock the brokers
    /// and the client library read (`SystemTime`, madsim's under simulation), so time-based
    /// retention and `segment.ms` compare a record's timestamp with the broker's now.
    pub fn wall_ms_at(&self, t_ns: u64) -> i64 {
        self.epoch_wall_ms + (t_ns / 1_000_000) as i64
    }

    pub fn event(&self, kind: &str, detail: &str) {
        let now = self.now_ns();
        self.event_at(now, kind, detail);
    }

    pub fn event_at(&self, time_ns: u64, kind: &str, detail: &str) {
        self.trace.lock().unwrap_or_else(|p| p.into_inner()).event(time_ns, kind, detail);
    }

    /// Sleeps until `t_ns` of run time, precisely (no 1 ms floor).
    pub async fn sleep_until_ns(&self, t_ns: u64) {
        self.epoch.sleep_until_ns(t_ns).await
    }

    pub fn finish(&self) -> (u64, u64, Option<Vec<String>>) {
        let t = self.trace.lock().unwrap_or_else(|p| p.into_inner());
        (t.hash(), t.events(), t.lines().map(<[String]>::to_vec))
    }
}

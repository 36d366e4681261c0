//! Process-wide settings of the real-world binaries (`broker serve`, `perf`).
//!
//! [`keep_freed_heap`]: glibc's malloc gives the top of a thread's heap back to the kernel as
//! soon as 128 KiB of it are free (`M_TRIM_THRESHOLD`, and it moves the `mmap` threshold with
//! every large free). A produce path allocates and frees a batch's buffers per request on tokio
//! worker threads, each with its own arena, so the same memory went back and forth: every
//! reuse cost a page fault and a zeroed page (on a VM with free page reporting, a host fault
//! too). Measured on the build machine (2026-12-04, `validate --only 1b-1k-acks1-lz4`, two runs
//! each, alternated): 143-187 MB/s before, 199-307 MB/s with the heap kept; the broker's and
//! perf's CPU per byte both fell (perf ~6.8 -> ~4.1 ns, the broker ~3.5 -> ~2.4 ns). The JVM
//! keeps its heap the same way.

/// Freed heap memory up to this much per arena stays with the process.
pub const TRIM_THRESHOLD_BYTES: usize = 128 << 20;
/// Allocations from this size up are mapped on their own (glibc's dynamic threshold's ceiling
/// on 64-bit; fixing any malloc parameter stops the dynamic adjustment, so it is set too).
pub const MMAP_THRESHOLD_BYTES: usize = 32 << 20;

/// Keeps freed heap memory in the process (see the module doc). Returns whether the allocator
/// took the settings (false on a libc without `mallopt`).
pub fn keep_freed_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes plain integers and sets allocator parameters under the
        // allocator's own lock (the binaries call it before their runtime starts threads).
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES as i32) };
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as i32) };
        trim == 1 && mmap == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn thread_minor_faults() -> i64 {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
        u.ru_minflt
    }

    /// Batches allocated, filled and freed together again and again fault their pages in once,
    /// not on every round (with glibc's defaults, freeing them leaves more than 128 KiB free at
    /// the top of the heap, which goes back to the kernel: 256 faults a round here).
    #[test]
    fn reused_batch_buffers_fault_their_pages_in_once() {
        assert!(keep_freed_heap());
        let batch_bytes = 16 << 10;
        let batches = 64;
        let rounds = 100;
        let fill = |round: usize| {
            let mut held = Vec::with_capacity(batches);
            for _ in 0..batches {
                let mut v = vec![0u8; batch_bytes];
                for i in (0..batch_bytes).step_by(4096) {
                    v[i] = round as u8;
                }
                held.push(v);
            }
            std::hint::black_box(&held);
        };
        fill(0);
        let before = thread_minor_faults();
        for round in 1..=rounds {
            fill(round);
        }
        let faults = thread_minor_faults() - before;
        let pages_a_round = (batches * batch_bytes / 4096) as i64;
        assert!(faults < pages_a_round * 4, "{faults} minor faults in {rounds} rounds");
    }
}

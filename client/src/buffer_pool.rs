//! The producer's memory budget (`buffer.memory`), after Kafka's `BufferPool`.
//!
//! Buffers of exactly `batch.size` ("poolable") are kept on a free list and reused; other sizes
//! are allocated fresh and their bytes returned to the unpooled budget on release. When the budget
//! is used up, [`BufferPool::allocate`] waits up to `max.block.ms` (tokio time, so virtual time
//! under madsim) in FIFO order: while anyone waits, newcomers queue behind them, so a large
//! request is not starved by a stream of small ones. The pure part ([`BufferPool::try_allocate`],
//! [`BufferPool::deallocate`]) is synchronous and needs no runtime.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::sync::Notify;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PoolError {
    #[error("cannot allocate {size} bytes: buffer.memory is {total}")]
    LargerThanMemory { size: usize, total: usize },
    #[error("failed to allocate {size} bytes within max.block.ms ({max_block_ms} ms)")]
    Timeout { size: usize, max_block_ms: u64 },
    #[error("the buffer pool is closed")]
    Closed,
}

#[derive(Debug)]
struct State {
    free: VecDeque<BytesMut>,
    /// Budget not held by handed-out buffers nor by the free list.
    non_pooled_available: usize,
    /// FIFO of waiting allocations (tickets).
    waiters: VecDeque<u64>,
    next_ticket: u64,
    closed: bool,
}

impl State {
    fn available(&self, poolable: usize) -> usize {
        self.non_pooled_available + self.free.len() * poolable
    }
}

/// What to hand out, decided under the lock; any fresh allocation happens after it is released.
enum Grant {
    Pooled(BytesMut),
    Fresh(usize),
}

impl Grant {
    fn into_buffer(self) -> BytesMut {
        match self {
            Grant::Pooled(b) => b,
            Grant::Fresh(size) => BytesMut::with_capacity(size),
        }
    }
}

#[derive(Debug)]
pub struct BufferPool {
    total: usize,
    poolable: usize,
    state: Mutex<State>,
    notify: Notify,
}

impl BufferPool {
    /// `total` is `buffer.memory`, `poolable` is `batch.size`.
    pub fn new(total: usize, poolable: usize) -> Self {
        Self {
            total,
            poolable,
            state: Mutex::new(State {
                free: VecDeque::new(),
                non_pooled_available: total,
                waiters: VecDeque::new(),
                next_ticket: 0,
                closed: false,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn total_memory(&self) -> usize {
        self.total
    }

    pub fn poolable_size(&self) -> usize {
        self.poolable
    }

    /// Budget not handed out: unpooled bytes plus the free list.
    pub fn available_memory(&self) -> usize {
        self.lock().available(self.poolable)
    }

    /// Budget not handed out and not on the free list.
    pub fn unallocated_memory(&self) -> usize {
        self.lock().non_pooled_available
    }

    /// Buffers on the free list.
    pub fn pooled_buffers(&self) -> usize {
        self.lock().free.len()
    }

    /// Allocations waiting for memory (the accumulator treats > 0 as "exhausted": send now).
    pub fn queued(&self) -> usize {
        self.lock().waiters.len()
    }

    fn check(&self, size: usize, st: &State) -> Result<(), PoolError> {
        if st.closed {
            return Err(PoolError::Closed);
        }
        if size > self.total {
            return Err(PoolError::LargerThanMemory { size, total: self.total });
        }
        Ok(())
    }

    fn take(&self, size: usize, st: &mut State) -> Option<Grant> {
        if size == self.poolable {
            if let Some(mut b) = st.free.pop_front() {
                b.clear();
                return Some(Grant::Pooled(b));
            }
        }
        if st.available(self.poolable) < size {
            return None;
        }
        // Release pooled buffers into the unpooled budget until the request fits.
        while st.non_pooled_available < size {
            st.free.pop_back()?;
            st.non_pooled_available += self.poolable;
        }
        st.non_pooled_available -= size;
        Some(Grant::Fresh(size))
    }

    /// Allocates without waiting: `Ok(None)` when the budget (or someone queued first) says wait.
    pub fn try_allocate(&self, size: usize) -> Result<Option<BytesMut>, PoolError> {
        let grant = {
            let mut st = self.lock();
            self.check(size, &st)?;
            if !st.waiters.is_empty() {
                return Ok(None);
            }
            self.take(size, &mut st)
        };
        Ok(grant.map(Grant::into_buffer))
    }

    /// Allocates `size` bytes, waiting up to `max_block` for memory to be released.
    pub async fn allocate(&self, size: usize, max_block: Duration) -> Result<BytesMut, PoolError> {
        if let Some(b) = self.try_allocate(size)? {
            return Ok(b);
        }
        self.wait_allocate(size, max_block).await
    }

    /// The waiting half of [`allocate`](Self::allocate), for a caller whose
    /// [`try_allocate`](Self::try_allocate) found no memory: queues, and waits up to
    /// `max_block` for its turn and the memory.
    pub async fn wait_allocate(
        &self,
        size: usize,
        max_block: Duration,
    ) -> Result<BytesMut, PoolError> {
        let deadline = tokio::time::Instant::now() + max_block;
        let ticket = {
            let mut st = self.lock();
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.waiters.push_back(t);
            t
        };
        let guard = WaiterGuard { pool: self, ticket, done: false };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let grant = {
                let mut st = self.lock();
                self.check(size, &st)?;
                if st.waiters.front() == Some(&ticket) {
                    self.take(size, &mut st)
                } else {
                    None
                }
            };
            if let Some(grant) = grant {
                guard.finish();
                return Ok(grant.into_buffer());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(PoolError::Timeout {
                    size,
                    max_block_ms: max_block.as_millis() as u64,
                });
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    /// Returns a buffer obtained for an allocation of `size` bytes. A `batch.size` buffer goes back
    /// on the free list; any other returns its bytes to the unpooled budget.
    pub fn deallocate(&self, buffer: BytesMut, size: usize) {
        let wake = {
            let mut st = self.lock();
            if size == self.poolable && buffer.capacity() >= self.poolable {
                let mut b = buffer;
                b.clear();
                st.free.push_back(b);
            } else {
                st.non_pooled_available += size;
            }
            !st.waiters.is_empty()
        };
        if wake {
            self.notify.notify_waiters();
        }
    }

    /// Fails every waiting and future allocation.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

/// Removes a waiter's ticket however its wait ends (success, timeout, error, cancellation) and
/// lets the next waiter look at the budget.
struct WaiterGuard<'a> {
    pool: &'a BufferPool,
    ticket: u64,
    done: bool,
}

impl WaiterGuard<'_> {
    fn finish(mut self) {
        self.release();
        self.done = true;
    }

    fn release(&self) {
        let more = {
            let mut st = self.pool.lock();
            st.waiters.retain(|&t| t != self.ticket);
            !st.waiters.is_empty()
                && st.non_pooled_available + st.free.len() * self.pool.poolable > 0
        };
        if more {
            self.pool.notify.notify_waiters();
        }
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poolable_buffers_are_reused() {
        let pool = BufferPool::new(1000, 100);
        let a = pool.try_allocate(100).unwrap().unwrap();
        let b = pool.try_allocate(300).unwrap().unwrap();
        assert_eq!(pool.available_memory(), 600);
        let ptr = a.as_ptr();
        pool.deallocate(a, 100);
        pool.deallocate(b, 300);
        assert_eq!((pool.available_memory(), pool.pooled_buffers()), (1000, 1));
        let c = pool.try_allocate(100).unwrap().unwrap();
        assert_eq!(c.as_ptr(), ptr, "same buffer back");
        assert!(c.is_empty());
    }

    #[test]
    fn free_list_is_released_for_large_requests() {
        let pool = BufferPool::new(300, 100);
        let bufs: Vec<_> = (0..3).map(|_| pool.try_allocate(100).unwrap().unwrap()).collect();
        assert!(pool.try_allocate(1).unwrap().is_none());
        for b in bufs {
            pool.deallocate(b, 100);
        }
        assert_eq!(pool.pooled_buffers(), 3);
        let big = pool.try_allocate(250).unwrap().unwrap();
        assert_eq!(pool.pooled_buffers(), 0);
        assert_eq!(pool.available_memory(), 50);
        pool.deallocate(big, 250);
        assert_eq!(pool.available_memory(), 300);
        assert_eq!(
            pool.try_allocate(301),
            Err(PoolError::LargerThanMemory { size: 301, total: 300 })
        );
    }

    #[tokio::test]
    async fn allocate_waits_for_release_and_times_out() {
        let pool = std::sync::Arc::new(BufferPool::new(200, 100));
        let a = pool.allocate(100, Duration::from_millis(10)).await.unwrap();
        let b = pool.allocate(100, Duration::from_millis(10)).await.unwrap();
        assert!(matches!(
            pool.allocate(100, Duration::from_millis(20)).await,
            Err(PoolError::Timeout { size: 100, .. })
        ));
        assert_eq!(pool.queued(), 0, "timed-out waiter left the queue");
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            p2.allocate(150, Duration::from_secs(5)).await.map(|b| b.capacity())
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(pool.queued(), 1);
        // Queued first: a newcomer may not jump the queue.
        assert_eq!(pool.try_allocate(1).unwrap(), None);
        pool.deallocate(a, 100);
        pool.deallocate(b, 100);
        assert!(waiter.await.unwrap().unwrap() >= 150);
        assert_eq!(pool.available_memory(), 50);
    }
}

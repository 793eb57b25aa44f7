//! Waking a thread that sleeps in [`Transport::wait`](super::Transport::wait)
//! or [`Waker::wait`]: an eventfd plus a "sleeping" flag, so that waking a
//! thread that is not asleep costs no system call.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// Wakes a thread blocked in [`Transport::wait`](super::Transport::wait) or
/// [`Waker::wait`]. Producers call [`Waker::wake`] after handing the thread
/// work; it costs a syscall only when the thread is actually asleep.
///
/// # Protocol (no lost wake-ups)
///
/// The owning thread, when it finds nothing to do and wants to block:
///
/// 1. [`prepare_sleep`](Waker::prepare_sleep): sets `sleeping`;
/// 2. checks every input once more (its queues, its timers) and skips the
///    sleep if any has work;
/// 3. blocks in [`Transport::wait`](super::Transport::wait) or
///    [`Waker::wait`], which return when the eventfd is readable (or on
///    timeout, or spuriously);
/// 4. [`cancel_sleep`](Waker::cancel_sleep): clears `sleeping` and drains the
///    eventfd.
///
/// A producer first publishes its work (pushes to the queue), then calls
/// [`wake`](Waker::wake), which writes the eventfd if `sleeping` is set.
///
/// Why nothing is lost: `prepare_sleep` is a store of `sleeping` followed by a
/// `SeqCst` fence, then come the owner's loads of its queues; `wake` is the
/// producer's store to the queue, a `SeqCst` fence, then a load of `sleeping`.
/// Two `SeqCst` fences forbid both loads from missing both stores (the
/// store-buffering case): either the owner's re-check in step 2 sees the
/// work, or the producer sees `sleeping` and writes the eventfd, which stays
/// readable until step 4 drains it, so step 3 cannot block past it. A write
/// that lands after step 4's drain leaves the eventfd readable: the next sleep
/// returns at once, spuriously, which the owner tolerates.
///
/// `Send + Sync`: share it as an `Arc<Waker>` between the owner and producers.
/// Only the owner calls `prepare_sleep`, `cancel_sleep` and `wait`.
pub struct Waker {
    eventfd: EventFd,
    sleeping: AtomicBool,
    /// Tells wakers apart (a file descriptor number is reused once closed).
    id: u64,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("fd", &self.eventfd.as_raw_fd())
            .field("sleeping", &self.sleeping.load(Ordering::Relaxed))
            .finish()
    }
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        let eventfd = EventFd::from_value_and_flags(0, flags)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("eventfd: {e}")))?;
        Ok(Waker {
            eventfd,
            sleeping: AtomicBool::new(false),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Wakes the owning thread if it is asleep (or about to sleep). Call it
    /// after publishing the work the owner should see.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            // Fails only if the counter would overflow (EAGAIN), in which case
            // the eventfd is readable anyway.
            let _ = self.eventfd.write(1);
        }
    }

    /// Marks the owning thread as about to sleep. The thread must then check
    /// its inputs once more before it blocks, so that no wake-up is lost.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Marks the owning thread as awake, and consumes any wake-up written
    /// while it slept.
    pub fn cancel_sleep(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        // EAGAIN: nothing was written. Non-blocking, so never stuck here.
        let _ = self.eventfd.read();
    }

    /// Blocks until woken or `timeout` passes (for threads without a socket).
    /// May return early, spuriously.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        let timeout = PollTimeout::try_from(super::timeout_ms(timeout)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.eventfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("poll on waker: {e}"),
            )),
        }
    }

    /// The eventfd the transports wait on.
    pub(super) fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    pub(super) fn borrowed_fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[test]
    fn waker_is_send_and_sync() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<Waker>();
    }

    #[test]
    fn wait_returns_on_timeout() {
        let waker = Waker::new().unwrap();
        waker.prepare_sleep();
        waker.wait(Duration::from_millis(5)).unwrap();
        waker.wait(Duration::ZERO).unwrap();
        waker.cancel_sleep();
    }

    #[test]
    fn wake_ends_a_sleep_on_another_thread() {
        let waker = Arc::new(Waker::new().unwrap());
        let remote = Arc::clone(&waker);
        waker.prepare_sleep();
        let started = Instant::now();
        let producer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.wake();
        });
        waker.wait(DEADLINE).unwrap();
        waker.cancel_sleep();
        producer.join().unwrap();
        assert!(started.elapsed() < DEADLINE);
    }

    #[test]
    fn wake_between_recheck_and_block_is_not_lost() {
        let waker = Waker::new().unwrap();
        waker.prepare_sleep();
        waker.wake();
        let started = Instant::now();
        waker.wait(DEADLINE).unwrap();
        assert!(started.elapsed() < DEADLINE);
        waker.cancel_sleep();
        assert_eq!(waker.eventfd.read(), Err(Errno::EAGAIN), "drained");
    }

    #[test]
    fn wake_of_an_awake_thread_writes_nothing() {
        let waker = Waker::new().unwrap();
        waker.wake();
        assert_eq!(waker.eventfd.read(), Err(Errno::EAGAIN));
    }

    /// Many hand-offs from a producer racing the owner's sleeps: a lost
    /// wake-up would show as a sleep that runs its whole second while work
    /// is waiting.
    #[test]
    fn no_lost_wake_ups_under_races() {
        const ROUNDS: usize = 2000;
        let waker = Arc::new(Waker::new().unwrap());
        let pushed = Arc::new(AtomicUsize::new(0));
        let producer = {
            let waker = Arc::clone(&waker);
            let pushed = Arc::clone(&pushed);
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    pushed.fetch_add(1, Ordering::Release);
                    waker.wake();
                    std::thread::yield_now();
                }
            })
        };
        let started = Instant::now();
        let mut seen = 0;
        while seen < ROUNDS {
            assert!(started.elapsed() < DEADLINE, "stuck at {seen}");
            let now = pushed.load(Ordering::Acquire);
            if now > seen {
                seen = now;
                continue;
            }
            waker.prepare_sleep();
            if pushed.load(Ordering::Acquire) == seen {
                let before = Instant::now();
                waker.wait(Duration::from_secs(1)).unwrap();
                assert!(
                    before.elapsed() < Duration::from_millis(900)
                        || pushed.load(Ordering::Acquire) == seen,
                    "slept through a wake-up"
                );
            }
            waker.cancel_sleep();
        }
        producer.join().unwrap();
    }
}

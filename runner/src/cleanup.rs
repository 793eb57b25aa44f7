//! Cleaning up on Ctrl-C (and SIGTERM, SIGHUP).
//!
//! Whatever the runner sets up outside its own process (network namespaces,
//! veths, remote node processes) is registered here with a closure that
//! removes it. On an interrupt, every registered closure runs, newest first,
//! and the runner exits with status 130. On a normal exit or an error the
//! owners clean up themselves (on drop) and deregister.

use std::sync::{Mutex, Once, PoisonError};

type Cleanup = Box<dyn FnMut() + Send>;

static REGISTRY: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);
static INSTALL: Once = Once::new();

/// Keeps a cleanup registered; deregisters it when dropped (without running
/// it: the owner cleans up on its own path).
#[derive(Debug)]
#[must_use = "dropping the guard deregisters the cleanup at once"]
pub struct Registration {
    id: u64,
}

/// Registers `cleanup` to run if the runner is interrupted, and installs the
/// signal handler on first use.
pub fn register(cleanup: impl FnMut() + Send + 'static) -> Registration {
    INSTALL.call_once(|| {
        // If another handler is already installed (say, by a test harness),
        // the owners still clean up on drop; only Ctrl-C loses its hook.
        let _ = ctrlc::set_handler(|| {
            run_all();
            std::process::exit(130);
        });
    });
    let id = {
        let mut next = NEXT_ID.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, Box::new(cleanup)));
    Registration { id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGISTRY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

/// Runs every registered cleanup, newest first, and forgets them.
pub fn run_all() {
    let cleanups = std::mem::take(&mut *REGISTRY.lock().unwrap_or_else(PoisonError::into_inner));
    for (_, mut cleanup) in cleanups.into_iter().rev() {
        cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn registered_cleanups_run_once_and_dropped_ones_not_at_all() {
        let ran = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&ran);
        let kept = register(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let counter = Arc::clone(&ran);
        let dropped = register(move || {
            counter.fetch_add(10, Ordering::SeqCst);
        });
        drop(dropped);
        run_all();
        run_all();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        drop(kept);
    }
}

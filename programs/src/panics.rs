//! Turning a panic into a message that names where it happened.
//!
//! `node sim` turns a panicking seed into a failed report, and `node serve`
//! turns a panic while starting or running a node into an error event; both
//! want the message and its location as one string, not just a dead process.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, PanicHookInfo};
use std::sync::Once;

/// Records every panic's message and location for [`catch`]; also prints the
/// panic the usual way if `echo`. Installed once per process: later calls
/// change nothing.
pub fn install_hook(echo: bool) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = panic_message(info);
            PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(message));
            if echo {
                default_hook(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic on this thread into its message, with the
/// location where the hook (if installed) saw it, e.g. `"boom (at src/x.rs:3:5)"`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(panic::AssertUnwindSafe(f)).map_err(|payload| {
        PANIC_MESSAGE
            .with(|m| m.borrow_mut().take())
            .unwrap_or_else(|| payload_text(payload.as_ref()).to_string())
    })
}

thread_local! {
    /// The message and location of the last panic on this thread, recorded by
    /// the hook.
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = payload_text(info.payload());
    match info.location() {
        Some(location) => format!("{payload} (at {location})"),
        None => payload.to_string(),
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

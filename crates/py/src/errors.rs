//! Rust errors as Python exceptions, and long calls that release the GIL
//! and still hear Ctrl-C.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The error and its causes, `: `-separated (what the command line prints).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// Whether an I/O failure is the root of `e` (then `OSError`).
fn is_io(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<std::io::Error>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// `OSError` when a file could not be read or written, `ValueError` for
/// anything wrong with the input, with reelkit's whole message.
pub fn to_py(e: impl StdError + 'static) -> PyErr {
    let msg = chain(&e);
    if is_io(&e) {
        PyOSError::new_err(msg)
    } else {
        PyValueError::new_err(msg)
    }
}

/// Runs `f` on its own thread with the GIL released, polling for signals
/// every 50 ms: Ctrl-C sets `stop` (training checks it between epochs) and
/// raises `KeyboardInterrupt` at once; a call that cannot stop finishes in
/// the background and its result is dropped.
pub fn blocking<T: Send + 'static>(
    py: Python<'_>,
    stop: Option<Arc<AtomicBool>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    let (tx, rx) = channel();
    // `detach` wants a `Send` closure; a `Receiver` is not `Sync`.
    let rx = std::sync::Mutex::new(rx);
    std::thread::Builder::new()
        .name("reelkit-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("starting a worker thread: {e}")))?;
    loop {
        let next = py.detach(|| match rx.lock() {
            Ok(r) => r.recv_timeout(Duration::from_millis(50)),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        });
        match next {
            Ok(v) => return Ok(v),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    if let Some(s) = &stop {
                        s.store(true, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "reelkit failed inside the call (a bug: please report it with the input)",
                ))
            }
        }
    }
}

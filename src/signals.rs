//! SIGINT and SIGTERM: remove what this process staged, then exit.
//!
//! A signal's default action ends the process without running a single
//! destructor, so the temp file of an import interrupted by Ctrl-C (often
//! gigabytes) would stay in `tmp/` until the next gc. With
//! [`exit_on_interrupt`] installed (the `imgstore` command does it first
//! thing), a thread of its own waits for the signals, and on the first one:
//!
//! 1. waits for a commit in progress to finish ([`Critical`]: the window
//!    between the first rename into the tree and the index commit, or a gc
//!    batch's commit and its unlinks), so that an interrupted process
//!    leaves no orphan behind; a second signal stops the wait;
//! 2. stops new temp files from being created, removes every one this
//!    process created and still holds ([`Staged`]);
//! 3. ends the process with the conventional status, 128 + the signal
//!    (130 for SIGINT, 143 for SIGTERM).
//!
//! A temp file is registered *before* it is created, under a lock that the
//! signal thread takes exclusively before it removes them, so no file can
//! appear between the sweep and the exit. Intent files are not registered:
//! they must outlive the process when files they name are in the tree.
//! SIGKILL cannot be caught; what it leaves stays gc's job (DESIGN.md §3.7).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::nofollow::Dir;

/// Temp files this process created and has not yet removed or renamed:
/// each one's directory and name, by registration.
type Registry = HashMap<u64, (Arc<Dir>, OsString)>;
static STAGED: Mutex<Option<Registry>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Held shared while a temp file is registered and created; the signal
/// thread takes it exclusively, and keeps it until the process ends.
static CREATING: RwLock<()> = RwLock::new(());

/// Commits in progress, and whether a signal came.
struct Window {
    open: usize,
    interrupted: bool,
}
static WINDOWS: Mutex<Window> = Mutex::new(Window {
    open: 0,
    interrupted: false,
});
static CLOSED: Condvar = Condvar::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes SIGINT and SIGTERM remove the temp files this process is writing
/// and end it with status 130 or 143, once any commit in progress has
/// finished (a second signal does not wait). For programs: call it once,
/// early in `main`, before any store is opened. A library user that
/// handles signals itself should not call it.
///
/// On interruption one line goes to stderr: `error: interrupted by SIGINT`.
pub fn exit_on_interrupt() -> io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                interrupted(signal, &mut signals);
            }
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// What the signal thread does on the first signal; never returns.
fn interrupted(signal: i32, signals: &mut Signals) -> ! {
    let mut windows = lock(&WINDOWS);
    windows.interrupted = true;
    while windows.open > 0 {
        windows = CLOSED
            .wait_timeout(windows, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if signals.pending().next().is_some() {
            break;
        }
    }
    // Both held until the end: no commit starts, no temp file appears.
    let _creating = CREATING.write().unwrap_or_else(|e| e.into_inner());
    if let Some(staged) = lock(&STAGED).take() {
        for (dir, name) in staged.into_values() {
            let _ = dir.remove(&name);
        }
    }
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    let line = format!("error: interrupted by {name}\n");
    // SAFETY: write(2) of a buffer we own to stderr, then _exit(2): no
    // destructor or atexit handler runs while other threads still work.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(128 + signal);
    }
}

/// A temp file registered for removal on interruption; dropping it
/// unregisters the file (drop it after removing or renaming the file).
#[derive(Debug)]
pub(crate) struct Staged {
    key: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(staged) = lock(&STAGED).as_mut() {
            staged.remove(&self.key);
        }
    }
}

/// Registers the temp file `name` in `dir`, then runs `create` to create
/// it: a signal handled meanwhile finds it registered, and waits for the
/// creation to finish before it removes it. If `create` fails, nothing
/// stays registered.
pub(crate) fn create_staged<T>(
    dir: &Arc<Dir>,
    name: &OsString,
    create: impl FnOnce() -> io::Result<T>,
) -> io::Result<(Staged, T)> {
    let _creating = CREATING.read().unwrap_or_else(|e| e.into_inner());
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(&STAGED)
        .get_or_insert_with(HashMap::new)
        .insert(key, (Arc::clone(dir), name.clone()));
    let staged = Staged { key };
    let created = create()?;
    Ok((staged, created))
}

/// A window that an interruption waits for (see the module's step 1).
/// Windows do not nest: one opened after a signal came waits for the
/// process to end.
#[derive(Debug)]
pub(crate) struct Critical(());

impl Critical {
    pub fn enter() -> Critical {
        let mut windows = lock(&WINDOWS);
        while windows.interrupted {
            // The signal thread is ending the process.
            windows = CLOSED.wait(windows).unwrap_or_else(|e| e.into_inner());
        }
        windows.open += 1;
        Critical(())
    }
}

impl Drop for Critical {
    fn drop(&mut self) {
        let mut windows = lock(&WINDOWS);
        windows.open -= 1;
        drop(windows);
        CLOSED.notify_all();
    }
}

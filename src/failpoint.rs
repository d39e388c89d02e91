//! Crash injection for tests: when `IMGSTORE_FAILPOINT` names a point that
//! the code passes, the process kills itself with SIGKILL right there, as a
//! power cut or an OOM kill would. `IMGSTORE_FAILPOINT=name:N` fires on the
//! N-th pass (1-based). Without the variable a hit costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

pub(crate) fn hit(name: &str) {
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("IMGSTORE_FAILPOINT").ok()?;
        match spec.split_once(':') {
            Some((n, count)) => Some((n.to_string(), count.parse().unwrap_or(1))),
            None => Some((spec, 1)),
        }
    });
    if let Some((point, nth)) = target
        && point == name
        && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

//! Progress of long work (imports, downloads, uploads, renders), reported
//! through a trait of the crate's own, so that the library names no
//! terminal crate: the command line adapts it to progress bars, a library
//! user to whatever it likes.
//!
//! Work comes in tasks: one per file imported, blob downloaded or layer
//! unpacked. Several may run at once (a pull downloads several blobs in
//! parallel), so each gets a handle of its own.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

/// Receives progress reports. Implementations must be cheap: `advance` is
/// called for every chunk of bytes read.
pub trait Progress: Send + Sync {
    /// A task begins. `label` names it (a file, a URL, a digest); `total`
    /// is its size in bytes when known.
    fn begin(&self, label: &str, total: Option<u64>) -> Box<dyn ProgressTask>;
}

/// One task's progress, ended by dropping it or calling
/// [`finish`](ProgressTask::finish).
pub trait ProgressTask: Send {
    /// `bytes` more bytes were done.
    fn advance(&mut self, bytes: u64);
    /// The size became known (or changed: a download that starts over).
    fn set_total(&mut self, total: u64) {
        let _ = total;
    }
    /// The task is done.
    fn finish(self: Box<Self>) {}
}

/// One task's progress as the crate's workers share it: cheap to clone,
/// safe to advance from several threads (the members of an archive staged
/// in parallel), and nothing at all when no one asked for progress.
#[derive(Clone, Default)]
pub(crate) struct Counter(Option<Arc<Mutex<Box<dyn ProgressTask>>>>);

impl Counter {
    /// Begins a task on `progress`, if there is one to report to.
    pub fn begin(progress: Option<&dyn Progress>, label: &str, total: Option<u64>) -> Counter {
        Counter(progress.map(|p| Arc::new(Mutex::new(p.begin(label, total)))))
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(task) = &self.0 {
            task.lock()
                .unwrap_or_else(|p| p.into_inner())
                .advance(bytes);
        }
    }

    /// A reader that counts what passes through it.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            counter: self.clone(),
        }
    }
}

/// Reads through, advancing a [`Counter`].
pub(crate) struct CountingReader<R> {
    inner: R,
    counter: Counter,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.advance(n as u64);
        Ok(n)
    }
}

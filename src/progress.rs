//! Progress of long work (imports, downloads, uploads, renders), reported
//! through a trait of the crate's own, so that the library names no
//! terminal crate: the command line adapts it to progress bars, a library
//! user to whatever it likes.
//!
//! Work comes in tasks: one per file imported, blob downloaded or layer
//! unpacked. Several may run at once (a pull downloads several blobs in
//! parallel), so each gets a handle of its own.

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

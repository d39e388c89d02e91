//! Response bodies: nothing, a few bytes in memory (JSON, manifests), or a
//! range of a blob file read a chunk at a time on the blocking pool.
//!
//! A file body keeps at most two chunks: the one hyper is writing and the
//! next, read ahead while it does. So a pull costs a bounded few hundred
//! KiB of memory whatever the blob's size, and a blocking thread only while
//! a chunk is being read (a slow client holds no thread).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes read from a blob file at a time: 128 KiB keeps 16 clients
/// pulling several blobs each under 64 MB of server memory (43 MiB
/// peak measured, 69 MiB with 256 KiB) at the same throughput.
const CHUNK: u64 = 128 << 10;

pub(crate) enum Body {
    Empty,
    Bytes(Option<Bytes>),
    File(FileBody),
}

impl Body {
    pub(super) fn bytes(bytes: impl Into<Bytes>) -> Body {
        Body::Bytes(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::File(file) => file.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Bytes(bytes) => bytes.is_none(),
            Body::File(file) => file.unsent == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File(file) => SizeHint::with_exact(file.unsent),
        }
    }
}

/// `len` bytes of a file from `offset`.
pub(crate) struct FileBody {
    file: Arc<File>,
    /// Where the next read starts.
    next: u64,
    /// Bytes not yet asked of the file.
    unread: u64,
    /// Bytes not yet handed to hyper.
    unsent: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    pub(super) fn new(file: File, offset: u64, len: u64) -> FileBody {
        FileBody {
            file: Arc::new(file),
            next: offset,
            unread: len,
            unsent: len,
            pending: None,
        }
    }

    /// Starts reading the next chunk, unless one is being read.
    fn read_ahead(&mut self) {
        if self.pending.is_some() || self.unread == 0 {
            return;
        }
        let n = self.unread.min(CHUNK);
        let (file, offset) = (self.file.clone(), self.next);
        self.next += n;
        self.unread -= n;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n as usize];
            // A file shorter than it was when opened fails here (an
            // unexpected end), and the client sees a broken body.
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        }));
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        self.read_ahead();
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        let chunk = match read {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
        };
        self.unsent -= chunk.len() as u64;
        self.read_ahead();
        Poll::Ready(Some(Ok(chunk)))
    }
}

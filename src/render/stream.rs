//! The layers of a render as one stream of decompressed chunks, with the
//! hashing beside it.
//!
//! Three threads share the work: one reads each layer's blob file and
//! decompresses it (by its magic bytes, as everywhere in the store) into
//! chunks of [`CHUNK`] bytes; each chunk goes, shared and not copied, both
//! to a hashing thread (the diff_id of an OCI layer, the sha512 image ID of
//! an ACI) and to the applying thread, which parses the tar and writes the
//! files. The decompressor does not wait for the applier to finish a layer:
//! it goes on with the next one as soon as the channels have room, so layer
//! N+1 is decompressed and hashed while layer N is written. At most
//! [`IN_FLIGHT`] chunks wait in each channel and spent chunks are recycled,
//! so memory stays at a few MiB whatever the image size.
//!
//! A digest is only known at the end of a layer, when its files are on
//! disk already: a mismatch fails the render, and the caller removes what
//! it wrote.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use crate::compression::{Compression, read_full};
use crate::digest::{Algorithm, Digest};
use crate::progress::Counter;

/// Decompressed bytes per chunk.
pub(super) const CHUNK: usize = 1 << 20;
/// Chunks waiting in each channel.
const IN_FLIGHT: usize = 4;
/// Read buffer for the compressed bytes.
const READ_BUFFER: usize = 1 << 20;

/// One layer to stream: its file and the algorithm of the digest its
/// decompressed bytes must have.
pub(super) struct Input {
    pub path: PathBuf,
    pub algorithm: Algorithm,
}

/// A chunk of decompressed bytes, shared by the hasher and the applier;
/// its buffer goes back to the pool when both are done with it.
pub(super) type Chunk = Arc<Pooled>;

pub(super) struct Pooled {
    data: Vec<u8>,
    pool: Pool,
}

impl Pooled {
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if let Ok(mut spare) = self.pool.lock()
            && spare.len() < 2 * IN_FLIGHT + 4
        {
            spare.push(data);
        }
    }
}

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// What the applier receives, layer after layer.
pub(super) enum Event {
    Data(Chunk),
    /// The layer's bytes ended; the next event belongs to the next layer.
    End,
    /// The layer could not be read or decompressed; nothing follows.
    Failed(io::Error),
}

/// The receiving ends of a started pipeline.
pub(super) struct Streams {
    pub events: Receiver<Event>,
    /// The digest of each layer's decompressed bytes, in layer order.
    pub digests: Receiver<Digest>,
}

/// Starts the decompressing and hashing threads in `scope` for `inputs`,
/// in order; `progress` hears of every (compressed) byte read.
pub(super) fn start<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    inputs: Vec<Input>,
    progress: Counter,
) -> io::Result<Streams> {
    let (event_tx, events) = sync_channel::<Event>(IN_FLIGHT);
    let (hash_tx, hash_rx) = sync_channel::<Option<Chunk>>(IN_FLIGHT);
    let (digest_tx, digests) = channel::<Digest>();
    let algorithms: Vec<Algorithm> = inputs.iter().map(|i| i.algorithm).collect();
    std::thread::Builder::new()
        .name("render-hash".into())
        .spawn_scoped(scope, move || hash(algorithms, hash_rx, digest_tx))?;
    std::thread::Builder::new()
        .name("render-read".into())
        .spawn_scoped(scope, move || {
            decompress(inputs, event_tx, hash_tx, progress)
        })?;
    Ok(Streams { events, digests })
}

fn hash(algorithms: Vec<Algorithm>, chunks: Receiver<Option<Chunk>>, digests: Sender<Digest>) {
    for algorithm in algorithms {
        let mut hasher = algorithm.hasher();
        loop {
            match chunks.recv() {
                Ok(Some(chunk)) => hasher.update(chunk.bytes()),
                Ok(None) => break,
                Err(_) => return, // the reader stopped (a failure)
            }
        }
        if digests.send(hasher.finish()).is_err() {
            return;
        }
    }
}

fn decompress(
    inputs: Vec<Input>,
    events: SyncSender<Event>,
    hashes: SyncSender<Option<Chunk>>,
    progress: Counter,
) {
    let pool: Pool = Arc::default();
    if let Some(first) = inputs.first() {
        read_ahead(&first.path);
    }
    for (i, input) in inputs.iter().enumerate() {
        if let Some(next) = inputs.get(i + 1) {
            read_ahead(&next.path);
        }
        let mut reader = match open(input, &progress) {
            Ok(r) => r,
            Err(e) => {
                let _ = events.send(Event::Failed(e));
                return;
            }
        };
        loop {
            let mut buf = pool
                .lock()
                .ok()
                .and_then(|mut spare| spare.pop())
                .unwrap_or_default();
            buf.resize(CHUNK, 0);
            match read_full(&mut *reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    let chunk = Arc::new(Pooled {
                        data: buf,
                        pool: pool.clone(),
                    });
                    // The hasher first: it is the faster of the two, so
                    // the applier's channel is the one that fills.
                    if hashes.send(Some(chunk.clone())).is_err()
                        || events.send(Event::Data(chunk)).is_err()
                    {
                        return; // the applier gave up
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::Failed(e));
                    return;
                }
            }
        }
        if hashes.send(None).is_err() || events.send(Event::End).is_err() {
            return;
        }
    }
}

/// Asks the kernel to read a layer file into the page cache ahead of the
/// decompressor, so that a cold read overlaps decompressing instead of
/// stalling it (one thread does both). Only a hint: a failure is ignored.
fn read_ahead(path: &std::path::Path) {
    if let Ok(file) = File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
    }
}

/// Opens a layer file and wraps it in the decoder its magic bytes name.
fn open(input: &Input, progress: &Counter) -> io::Result<Box<dyn Read + Send>> {
    let file = progress.reader(File::open(&input.path)?);
    let mut file = BufReader::with_capacity(READ_BUFFER, file);
    let compression = {
        let head = io::BufRead::fill_buf(&mut file)?;
        Compression::sniff(&head[..head.len().min(8)])
    };
    compression.decoder(file)
}

/// Why a layer's bytes stopped short.
#[derive(Debug)]
pub(super) enum StreamError {
    /// The bytes ended inside a tar member or header.
    Truncated,
    /// The file could not be read or decompressed.
    Read(io::Error),
}

/// One layer's decompressed bytes, as the tar reader takes them.
pub(super) struct LayerStream<'a> {
    events: &'a Receiver<Event>,
    current: Option<Chunk>,
    pos: usize,
    ended: bool,
    /// Decompressed bytes consumed so far (for error offsets).
    pub offset: u64,
}

impl<'a> LayerStream<'a> {
    pub fn new(events: &'a Receiver<Event>) -> LayerStream<'a> {
        LayerStream {
            events,
            current: None,
            pos: 0,
            ended: false,
            offset: 0,
        }
    }

    /// The unread part of the current chunk, fetching the next one when
    /// it is used up; empty at the end of the layer.
    fn available(&mut self) -> Result<&[u8], StreamError> {
        loop {
            let unread = matches!(&self.current, Some(c) if self.pos < c.bytes().len());
            if unread {
                let chunk = self.current.as_ref().expect("checked above");
                return Ok(&chunk.bytes()[self.pos..]);
            }
            if self.ended {
                return Ok(&[]);
            }
            self.current = None;
            self.pos = 0;
            match self.events.recv() {
                Ok(Event::Data(chunk)) => self.current = Some(chunk),
                Ok(Event::End) => self.ended = true,
                Ok(Event::Failed(e)) => {
                    self.ended = true;
                    return Err(StreamError::Read(e));
                }
                // The reader thread is gone without a word: it panicked.
                Err(_) => {
                    self.ended = true;
                    return Err(StreamError::Read(io::Error::other(
                        "the decompressing thread stopped",
                    )));
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Fills `buf`; `Ok(false)` if the layer ended before its first byte
    /// (a tar that ends without its zero blocks), an error if it ended
    /// part way.
    pub fn read_block(&mut self, buf: &mut [u8]) -> Result<bool, StreamError> {
        let mut filled = 0;
        while filled < buf.len() {
            let avail = self.available()?;
            if avail.is_empty() {
                return if filled == 0 {
                    Ok(false)
                } else {
                    Err(StreamError::Truncated)
                };
            }
            let n = avail.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&avail[..n]);
            self.consume(n);
            filled += n;
        }
        Ok(true)
    }

    /// Hands the next `len` bytes to `sink` in the largest slices the
    /// chunks allow (no copy).
    pub fn feed(
        &mut self,
        mut len: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<Result<(), io::Error>, StreamError> {
        while len > 0 {
            let avail = self.available()?;
            if avail.is_empty() {
                return Err(StreamError::Truncated);
            }
            let n = avail.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            if let Err(e) = sink(&avail[..n]) {
                return Ok(Err(e));
            }
            self.consume(n);
            len -= n as u64;
        }
        Ok(Ok(()))
    }

    /// Skips `len` bytes.
    pub fn skip(&mut self, len: u64) -> Result<(), StreamError> {
        match self.feed(len, &mut |_| Ok(()))? {
            Ok(()) => Ok(()),
            Err(_) => unreachable!("the sink never fails"),
        }
    }

    /// Reads whatever follows the tar's end, to the end of the layer (it
    /// is part of the hashed bytes).
    pub fn drain(&mut self) -> Result<(), StreamError> {
        loop {
            let n = self.available()?.len();
            if n == 0 {
                return Ok(());
            }
            self.consume(n);
        }
    }
}

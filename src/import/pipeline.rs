//! The streaming pipeline every archive import runs on.
//!
//! One thread reads the file and decompresses it into 1 MiB chunks; the
//! importing thread takes each chunk, hands it whole to an optional sink
//! (hash and write the uncompressed stream, for ACI) and then serves it to
//! the archive parser. Decompression and hashing are the two costly stages,
//! so each gets a thread: a blob writer hashes any blob over 1 MiB on a
//! thread of its own (see `blobs::BlobWriter`). At most [`CHUNKS_IN_FLIGHT`]
//! chunks exist at once and they are recycled, so memory stays bounded
//! whatever the image size.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::Importer;
use crate::compression::{Compression, read_full};
use crate::error::{Error, IoContext};

const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Sees every decompressed chunk before the parser does.
pub type ChunkSink<'s> = &'s mut dyn FnMut(&[u8]) -> io::Result<()>;

/// The receiving end of the pipeline: a `Read` over the decompressed stream.
pub struct ChunkReader<'s> {
    chunks: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    sink: Option<ChunkSink<'s>>,
    /// Total decompressed bytes received.
    pub total: u64,
    /// The last bytes of the stream, to tell a tar that ends properly (in
    /// zero blocks) from one cut short at an entry boundary.
    tail: [u8; 1024],
    producer: Option<JoinHandle<()>>,
    done: bool,
}

/// Starts decompressing the input at `path` (or the download the importer
/// reads instead) on its own thread. The importer's progress counts the
/// compressed bytes read; `sink`, if given, sees every decompressed chunk,
/// whole and in order, before the parser does.
pub fn start<'s>(
    ctx: &Importer,
    path: &Path,
    sink: Option<ChunkSink<'s>>,
) -> Result<ChunkReader<'s>, Error> {
    let compression = Compression::sniff(&ctx.read_head(path, 8)?);
    let file = ctx.open(path)?;
    let progress = ctx.progress.clone();
    let (chunk_tx, chunk_rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
    let producer = std::thread::Builder::new()
        .name("decompress".into())
        .spawn(move || {
            let input = progress.reader(BufReader::with_capacity(CHUNK, file));
            let mut reader = match compression.decoder(input) {
                Ok(r) => r,
                Err(e) => {
                    let _ = chunk_tx.send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = recycle_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                buf.resize(CHUNK, 0);
                match read_full(&mut reader, &mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if chunk_tx.send(Ok(buf)).is_err() {
                            return; // the consumer gave up
                        }
                    }
                    Err(e) => {
                        let _ = chunk_tx.send(Err(e));
                        return;
                    }
                }
            }
        })
        .ctx("start decompression thread", path)?;
    Ok(ChunkReader {
        chunks: chunk_rx,
        recycle: recycle_tx,
        current: Vec::new(),
        pos: 0,
        sink,
        total: 0,
        tail: [0xff; 1024],
        producer: Some(producer),
        done: false,
    })
}

impl<'s> ChunkReader<'s> {
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let old = std::mem::take(&mut self.current);
        if old.capacity() > 0 {
            let _ = self.recycle.try_send(old);
        }
        match self.chunks.recv() {
            Ok(Ok(chunk)) => {
                if let Some(sink) = self.sink.as_mut() {
                    sink(&chunk)?;
                }
                self.total += chunk.len() as u64;
                self.remember_tail(&chunk);
                self.current = chunk;
                self.pos = 0;
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.done = true;
                Ok(false)
            }
        }
    }

    fn remember_tail(&mut self, chunk: &[u8]) {
        let keep = self.tail.len();
        if chunk.len() >= keep {
            self.tail.copy_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.copy_within(chunk.len().., 0);
            self.tail[keep - chunk.len()..].copy_from_slice(chunk);
        }
    }

    /// Reads (and sinks) whatever the parser left unread, to the end.
    pub fn drain(&mut self) -> io::Result<()> {
        while self.next_chunk()? {}
        Ok(())
    }

    /// Whether the stream ended in two zero blocks, as a complete tar does.
    pub fn ends_in_zero_blocks(&self) -> bool {
        self.total >= 1024 && self.tail.iter().all(|&b| b == 0)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ChunkReader<'_> {
    fn drop(&mut self) {
        // Let the producer see a closed channel and stop, then reap it.
        let (dead_tx, dead_rx) = sync_channel(0);
        drop(dead_tx);
        drop(std::mem::replace(&mut self.chunks, dead_rx));
        if let Some(h) = self.producer.take() {
            let _ = h.join();
        }
    }
}

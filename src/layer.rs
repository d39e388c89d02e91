//! Uncompressed digests of layers (their diff_ids).
//!
//! [`DiffHasher`] runs beside a blob write: the writer hands it each chunk
//! of the compressed bytes as they go to disk, and its own thread tells the
//! compression by the magic bytes and decompresses, while one more thread
//! hashes what comes out (decompressing and hashing cost about the same, so
//! on one thread each waits for the other). So checking a layer costs CPU,
//! not a second read of the layer. [`of_file`] does the
//! same for a layer that is already on disk.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::compression::{Compression, read_full};
use crate::digest::{Algorithm, Digest};
use crate::error::DecompressError;

/// Chunks in flight between the writer and the decompressing thread.
const IN_FLIGHT: usize = 4;

/// Decompresses and hashes a stream fed to it chunk by chunk, on its own
/// thread.
pub(super) struct DiffHasher {
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<Digest, DecompressError>>>,
}

impl DiffHasher {
    pub fn start(algorithm: Algorithm) -> DiffHasher {
        let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name("diff-id".into())
            .spawn(move || {
                let mut input = ChannelReader {
                    rx,
                    current: Vec::new(),
                    pos: 0,
                };
                let result = hash_decompressed(&mut input, algorithm);
                // Keep taking chunks until the writer is done, so that it
                // never blocks on a thread that has stopped reading.
                while input.rx.recv().is_ok() {}
                result
            });
        match thread {
            Ok(thread) => DiffHasher {
                tx: Some(tx),
                thread: Some(thread),
            },
            // No thread: finish() reports the failure.
            Err(_) => DiffHasher {
                tx: None,
                thread: None,
            },
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if let Some(tx) = &self.tx
            && tx.send(bytes.to_vec()).is_err()
        {
            self.tx = None;
        }
    }

    /// The digest of the decompressed stream, or why it could not be had
    /// (corrupt or truncated compressed data).
    pub fn finish(mut self) -> Result<Digest, DecompressError> {
        self.tx = None;
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(DecompressError::Thread)),
            None => Err(DecompressError::Thread),
        }
    }
}

impl Drop for DiffHasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The diff_id of a layer file on disk (for import, and for anything else
/// that decompresses a stored layer: unpacking, `fsck --layers`).
pub(crate) fn of_file(path: &Path, algorithm: Algorithm) -> Result<Digest, DecompressError> {
    let file = File::open(path)
        .map_err(|e| DecompressError::Read(format!("cannot open {}: {e}", path.display())))?;
    of_open_file(file, algorithm)
}

/// The diff_id of a layer file already open (read from where it stands).
pub(crate) fn of_open_file(file: File, algorithm: Algorithm) -> Result<Digest, DecompressError> {
    hash_decompressed(&mut BufReader::with_capacity(1 << 20, file), algorithm)
}

fn hash_decompressed(
    input: &mut (dyn Read + Send),
    algorithm: Algorithm,
) -> Result<Digest, DecompressError> {
    let mut head = Vec::with_capacity(8);
    input
        .take(8)
        .read_to_end(&mut head)
        .map_err(|e| DecompressError::Read(e.to_string()))?;
    let compression = Compression::sniff(&head);
    let mut decoder = compression
        .decoder(io::Cursor::new(head).chain(input))
        .map_err(|e| DecompressError::of(compression, &e))?;
    let fail = |e: io::Error| DecompressError::of(compression, &e);
    // Decompressing and hashing are each about as costly: the hashing gets
    // a thread of its own, fed through a few recycled buffers.
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(HASH_BUFFERS);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(HASH_BUFFERS);
        let hashing = std::thread::Builder::new()
            .name("diff-id-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = algorithm.hasher();
                for (buf, n) in full_rx {
                    hasher.update(&buf[..n]);
                    let _ = empty_tx.send(buf);
                }
                hasher.finish()
            });
        let Ok(hashing) = hashing else {
            // No thread: hash on this one.
            let mut hasher = algorithm.hasher();
            let mut buf = vec![0u8; HASH_BUFFER];
            loop {
                match read_full(&mut *decoder, &mut buf).map_err(fail)? {
                    0 => return Ok(hasher.finish()),
                    n => hasher.update(&buf[..n]),
                }
            }
        };
        let mut spare = HASH_BUFFERS;
        loop {
            let buf = if spare > 0 {
                spare -= 1;
                Some(vec![0u8; HASH_BUFFER])
            } else {
                empty_rx.recv().ok()
            };
            let Some(mut buf) = buf else {
                drop(full_tx);
                let _ = hashing.join();
                return Err(DecompressError::Thread);
            };
            let n = match read_full(&mut *decoder, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    drop(full_tx);
                    let _ = hashing.join();
                    return Err(fail(e));
                }
            };
            if n == 0 {
                drop(full_tx);
                return hashing.join().map_err(|_| DecompressError::Thread);
            }
            if full_tx.send((buf, n)).is_err() {
                let _ = hashing.join();
                return Err(DecompressError::Thread);
            }
        }
    })
}

/// Buffers of decompressed bytes between the decompressing and the hashing
/// thread, and their size: 1 MiB in flight at most.
const HASH_BUFFERS: usize = 4;
const HASH_BUFFER: usize = 256 << 10;

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn hashes_what_gzip_holds() {
        let plain = b"some layer bytes".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut h = DiffHasher::start(Algorithm::Sha256);
        for chunk in gz.chunks(100) {
            h.feed(chunk);
        }
        assert_eq!(h.finish().unwrap(), Digest::of(Algorithm::Sha256, &plain));

        let mut h = DiffHasher::start(Algorithm::Sha256);
        h.feed(&gz[..gz.len() / 2]);
        assert!(h.finish().is_err(), "a truncated stream must fail");
    }
}

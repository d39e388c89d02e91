//! Uncompressed digests of layers (their diff_ids).
//!
//! [`DiffHasher`] runs beside a blob write: the writer hands it each chunk
//! of the compressed bytes as they go to disk, and its own thread tells the
//! compression by the magic bytes, decompresses and hashes. So checking a
//! layer costs a core, not a second read of the layer. [`of_file`] does the
//! same for a layer that is already on disk.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::pipeline::Compression;
use crate::digest::{Algorithm, Digest};

/// Chunks in flight between the writer and the decompressing thread.
const IN_FLIGHT: usize = 8;

/// Decompresses and hashes a stream fed to it chunk by chunk, on its own
/// thread.
pub(super) struct DiffHasher {
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<Result<Digest, String>>>,
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
    pub fn finish(mut self) -> Result<Digest, String> {
        self.tx = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the decompressing thread panicked".into())),
            None => Err("cannot start a decompressing thread".into()),
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
pub(crate) fn of_file(path: &Path, algorithm: Algorithm) -> Result<Digest, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    hash_decompressed(&mut BufReader::with_capacity(1 << 20, file), algorithm)
}

fn hash_decompressed(
    input: &mut (dyn Read + Send),
    algorithm: Algorithm,
) -> Result<Digest, String> {
    let mut head = Vec::with_capacity(8);
    input
        .take(8)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let compression = Compression::sniff(&head);
    let mut decoder = compression
        .decoder(io::Cursor::new(head).chain(input))
        .map_err(|e| e.to_string())?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "its {} data cannot be decompressed (truncated or corrupt): {e}",
                    compression.name()
                ));
            }
        }
    }
    Ok(hasher.finish())
}

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

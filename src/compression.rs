//! Compression of archives and layers, told by magic bytes, never by a
//! file's name: gzip, zstd, xz and bzip2, multi-member streams included.
//! Import, export, fsck, pull and render all decompress through here.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::{Error, IoContext};

/// Buffer for reading compressed files.
const READ_BUFFER: usize = 1 << 20;

/// Compression of an archive, told by its magic bytes (never by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (also multi-member, as `pigz` writes).
    Gzip,
    /// Zstandard.
    Zstd,
    /// xz.
    Xz,
    /// bzip2 (also multi-stream, as `pbzip2` writes).
    Bzip2,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Compression {
    /// The compression the first bytes of a stream show.
    pub fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            _ => Compression::None,
        }
    }

    /// The compression's name: `none`, `gzip`, `zstd`, `xz`, `bzip2`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// Wraps a reader in the matching decoder. Multi-member streams (as
    /// `pigz` and `pbzip2` write) are read to their end.
    pub fn decoder<'a, R: Read + Send + 'a>(self, r: R) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        })
    }
}

/// Reads the first bytes of a file, for sniffing.
pub fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, Error> {
    let file = File::open(path).ctx("open", path)?;
    let mut head = Vec::with_capacity(n);
    file.take(n as u64)
        .read_to_end(&mut head)
        .ctx("read", path)?;
    Ok(head)
}

/// Opens a file and decompresses it as its magic bytes say, on the calling
/// thread (for sniffing the archive format and for small reads).
pub fn open_decompressed(path: &Path) -> Result<(Compression, Box<dyn Read + Send>), Error> {
    let compression = Compression::sniff(&read_head(path, 8)?);
    let file = File::open(path).ctx("open", path)?;
    let reader = compression
        .decoder(BufReader::with_capacity(READ_BUFFER, file))
        .ctx("start decompressing", path)?;
    Ok((compression, reader))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
/// Decoders hand out a few bytes at a time: whole chunks keep the stages
/// that take them (hashing, writing) from paying per call.
pub(crate) fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

//! Compression of archives and layers, told by magic bytes, never by a
//! file's name: gzip, zstd, xz and bzip2, multi-member streams included.
//! Import, export, fsck, pull and render all decompress through here.

use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::error::{DecompressError, Error, IoContext};
use crate::input::open_input;

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

    /// The compression whose magic bytes a whole input too short to hold
    /// them begins with (two bytes or more): what a stream cut inside its
    /// magic looks like.
    pub fn sniff_cut_magic(whole: &[u8]) -> Option<Compression> {
        const MAGICS: [(&[u8], Compression); 3] = [
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (b"BZh", Compression::Bzip2),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| {
                whole.len() >= 2 && whole.len() < magic.len() && magic.starts_with(whole)
            })
            .map(|(_, c)| *c)
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
    ///
    /// An error of the decoder carries a [`DecompressError`] (its
    /// [`get_ref`](io::Error::get_ref) downcasts to one) that names the
    /// compression and tells a truncated stream from a corrupt one; an
    /// error reading `r` itself comes through as it was.
    pub fn decoder<'a, R: Read + Send + 'a>(self, r: R) -> io::Result<Box<dyn Read + Send + 'a>> {
        if self == Compression::None {
            return Ok(Box::new(r));
        }
        let r = Source(r);
        let inner: Box<dyn Read + Send + 'a> = match self {
            Compression::None => unreachable!("returned above"),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| tag(self, e))?)
            }
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        };
        Ok(Box::new(Tagged {
            inner,
            compression: self,
        }))
    }
}

/// The compressed input under a decoder: its read errors are marked, so
/// that they are not taken for errors of the data.
struct Source<R>(R);

#[derive(Debug)]
struct SourceError(io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), SourceError(e)))
    }
}

/// A decoder whose errors say what they are.
struct Tagged<'a> {
    inner: Box<dyn Read + Send + 'a>,
    compression: Compression,
}

impl Read for Tagged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| tag(self.compression, e))
    }
}

/// A decoder's error as a [`DecompressError`] inside an `io::Error`; a read
/// error of the input unwrapped to what it was.
fn tag(compression: Compression, e: io::Error) -> io::Error {
    if e.get_ref().is_some_and(|i| i.is::<SourceError>()) {
        let inner = e.into_inner().expect("checked above");
        return inner.downcast::<SourceError>().expect("checked above").0;
    }
    if DecompressError::in_io(&e).is_some() {
        return e;
    }
    let kind = e.kind();
    io::Error::new(kind, DecompressError::of(compression, &e))
}

/// Reads the first bytes of a file, for sniffing. The file is opened as
/// an input: a FIFO or device node is refused, never waited on.
pub fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, Error> {
    let file = open_input(path)?;
    let mut head = Vec::with_capacity(n);
    file.take(n as u64)
        .read_to_end(&mut head)
        .ctx("read", path)?;
    Ok(head)
}

/// Opens a file (as an input: see [`read_head`]) and decompresses it as
/// its magic bytes say, on the calling thread (for sniffing the archive
/// format and for small reads).
pub fn open_decompressed(path: &Path) -> Result<(Compression, Box<dyn Read + Send>), Error> {
    let mut file = open_input(path)?;
    let mut head = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut head)
        .ctx("read", path)?;
    let compression = Compression::sniff(&head);
    let input = io::Cursor::new(head).chain(BufReader::with_capacity(READ_BUFFER, file));
    let reader = compression
        .decoder(input)
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn read_all(c: Compression, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        c.decoder(io::Cursor::new(bytes))?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decoder_errors_say_truncated_or_corrupt() {
        let data = b"some bytes to compress ".repeat(5000);
        let gz = gzip(&data);
        assert_eq!(read_all(Compression::Gzip, gz.clone()).unwrap(), data);
        for cut in [2, 10, gz.len() / 2, gz.len() - 1] {
            let e = read_all(Compression::Gzip, gz[..cut].to_vec()).unwrap_err();
            assert_eq!(
                DecompressError::in_io(&e),
                Some(&DecompressError::Truncated(Compression::Gzip)),
                "cut at {cut}: {e}"
            );
        }
        let mut bad = gz.clone();
        let at = bad.len() - 6;
        bad[at] ^= 0xff;
        let e = read_all(Compression::Gzip, bad).unwrap_err();
        assert!(
            matches!(
                DecompressError::in_io(&e),
                Some(DecompressError::Corrupt {
                    compression: Compression::Gzip,
                    ..
                })
            ),
            "{e}"
        );
    }

    #[test]
    fn read_errors_of_the_input_stay_what_they_are() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
        }
        let mut out = Vec::new();
        let e = Compression::Gzip
            .decoder(Failing)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        assert!(DecompressError::in_io(&e).is_none());
    }
}

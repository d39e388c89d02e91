//! The members of a layer tar, read from its stream.
//!
//! Headers are decoded with the `tar` crate (ustar, GNU and PAX fields,
//! base-256 numbers); its `unpack` is never used (it follows what earlier
//! members planted, tar-rs #129). The extended headers that change the next
//! member (PAX `x` records, GNU `L`/`K` long names) are applied here, so a
//! [`Member`] carries its final name, link target, size, owner, times and
//! xattrs. File data is handed on in place from the decompressed chunks,
//! never copied into a buffer of its own.
//!
//! As Go's `archive/tar` (which wrote most layers and which umoci and
//! containerd read them with), the size field of header-only members (links,
//! directories, devices, FIFOs) is ignored, and a legacy `\0` member whose
//! name ends in `/` is a directory. Sparse files and vendor types are
//! refused rather than written wrongly.

use std::io;

use super::stream::{LayerStream, StreamError};

const BLOCK: usize = 512;
/// The largest extended header (PAX records, a GNU long name) held in
/// memory.
const MAX_EXTENDED: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// A time as tar records it: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Time {
    pub secs: i64,
    pub nanos: u32,
}

/// One member, with its extended headers applied.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// The name as the archive gives it (not yet made safe).
    pub name: Vec<u8>,
    /// The link target of a symlink or hard link.
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Bytes of file data (0 for anything but a file).
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub device: (u32, u32),
    /// `SCHILY.xattr.*` records: name and value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why the archive could not be read.
#[derive(Debug)]
pub(super) enum TarError {
    Stream(StreamError),
    /// Not a valid header at this offset of the decompressed layer.
    BadHeader {
        offset: u64,
        reason: &'static str,
    },
    /// A member of a kind the render does not write.
    Unsupported {
        name: Vec<u8>,
        what: &'static str,
    },
}

impl From<StreamError> for TarError {
    fn from(e: StreamError) -> TarError {
        TarError::Stream(e)
    }
}

/// Reads members one after the other; [`TarReader::data`] hands on the
/// current file's bytes (whatever is not taken is skipped by the next
/// [`TarReader::next`]).
pub(super) struct TarReader<'s, 'a> {
    stream: &'s mut LayerStream<'a>,
    /// Data of the current member not yet taken.
    remaining: u64,
    /// Padding after it, up to the next block.
    padding: u64,
}

/// What the extended headers before a member say about it.
#[derive(Default)]
struct Extended {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Time>,
    atime: Option<Time>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

impl<'s, 'a> TarReader<'s, 'a> {
    pub fn new(stream: &'s mut LayerStream<'a>) -> TarReader<'s, 'a> {
        TarReader {
            stream,
            remaining: 0,
            padding: 0,
        }
    }

    /// The next member; `None` at the end of the archive (two zero blocks,
    /// or the end of the bytes at a member boundary: the layer's digest
    /// tells a cut archive from a whole one).
    pub fn next(&mut self) -> Result<Option<Member>, TarError> {
        self.stream.skip(self.remaining)?;
        self.remaining = 0;
        // A tar whose bytes end right after its last member's data, without
        // the padding and zero blocks (umoci 0.4 writes such layers), has
        // lost nothing: Go's reader takes it, and the layer's digest still
        // vouches for every byte.
        match self.stream.skip(std::mem::take(&mut self.padding)) {
            Err(StreamError::Truncated) => return Ok(None),
            other => other?,
        }
        let mut ext = Extended::default();
        loop {
            let offset = self.stream.offset;
            let mut block = [0u8; BLOCK];
            if !self.stream.read_block(&mut block)? {
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                let mut second = [0u8; BLOCK];
                if self.stream.read_block(&mut second)? && second.iter().any(|&b| b != 0) {
                    return Err(TarError::BadHeader {
                        offset,
                        reason: "a single zero block before more data",
                    });
                }
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            check_checksum(header, offset)?;
            let bad = |reason| TarError::BadHeader { offset, reason };
            let old = header.as_old();
            // The raw type flag: the `tar` crate reads a legacy `\0` as `0`.
            let flag = old.linkflag[0];
            let header_size = number(
                &old.size,
                header.entry_size(),
                offset,
                "its size is not a number",
            )?;
            match flag {
                b'x' | b'g' | b'L' | b'K' => {
                    if header_size > MAX_EXTENDED {
                        return Err(bad("an extended header larger than 1 MiB"));
                    }
                    let mut bytes = vec![0u8; header_size as usize];
                    if !bytes.is_empty() && !self.stream.read_block(&mut bytes)? {
                        return Err(TarError::Stream(StreamError::Truncated));
                    }
                    self.stream.skip(padding(header_size))?;
                    match flag {
                        b'x' => ext.apply_pax(&bytes, offset)?,
                        b'L' => ext.name = Some(until_nul(bytes)),
                        b'K' => ext.link = Some(until_nul(bytes)),
                        _ => {} // global PAX records: nothing a render uses
                    }
                    continue;
                }
                _ => {}
            }
            let name = match ext.name.take() {
                Some(name) => name,
                None => header.path_bytes().into_owned(),
            };
            let kind = match flag {
                b'0' | b'7' => Kind::File,
                b'\0' if name.ends_with(b"/") => Kind::Dir,
                b'\0' => Kind::File,
                b'1' => Kind::Hardlink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'S' => {
                    return Err(TarError::Unsupported {
                        name,
                        what: "a GNU sparse file",
                    });
                }
                _ => {
                    return Err(TarError::Unsupported {
                        name,
                        what: "a member of an unknown type",
                    });
                }
            };
            if ext.sparse {
                return Err(TarError::Unsupported {
                    name,
                    what: "a PAX sparse file",
                });
            }
            let link = match ext.link.take() {
                Some(link) => link,
                None => header
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            };
            let data_size = if kind == Kind::File {
                ext.size.unwrap_or(header_size)
            } else {
                0
            };
            let device = match (kind, header.as_ustar(), header.as_gnu()) {
                (Kind::CharDevice | Kind::BlockDevice, Some(u), _) => (
                    device_number(&u.dev_major, u.device_major(), offset)?,
                    device_number(&u.dev_minor, u.device_minor(), offset)?,
                ),
                (Kind::CharDevice | Kind::BlockDevice, None, Some(g)) => (
                    device_number(&g.dev_major, g.device_major(), offset)?,
                    device_number(&g.dev_minor, g.device_minor(), offset)?,
                ),
                _ => (0, 0),
            };
            let mtime = match ext.mtime {
                Some(t) => t,
                None => seconds(number(
                    &old.mtime,
                    header.mtime(),
                    offset,
                    "its mtime is not a number",
                )?),
            };
            let gnu_atime = header
                .as_gnu()
                .and_then(|g| g.atime().ok())
                .filter(|&t| t != 0)
                .map(seconds);
            let member = Member {
                name,
                link,
                kind,
                size: data_size,
                mode: number(
                    &old.mode,
                    header.mode().map(u64::from),
                    offset,
                    "its mode is not a number",
                )? as u32,
                uid: match ext.uid {
                    Some(u) => u,
                    None => number(&old.uid, header.uid(), offset, "its uid is not a number")?,
                },
                gid: match ext.gid {
                    Some(g) => g,
                    None => number(&old.gid, header.gid(), offset, "its gid is not a number")?,
                },
                mtime,
                atime: ext.atime.or(gnu_atime),
                device,
                xattrs: std::mem::take(&mut ext.xattrs),
            };
            // Only a file has data after its header (as Go reads it).
            self.remaining = data_size;
            self.padding = padding(data_size);
            return Ok(Some(member));
        }
    }

    /// Hands the current file's bytes to `sink`; the outer error is the
    /// stream's, the inner one the sink's.
    pub fn data(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<io::Result<()>, TarError> {
        let len = self.remaining;
        self.remaining = 0;
        Ok(self.stream.feed(len, sink)?)
    }
}

/// A numeric header field: what the `tar` crate made of it, or 0 for a
/// field left blank (NULs or spaces), as Go's reader takes it.
fn number(
    field: &[u8],
    parsed: io::Result<u64>,
    offset: u64,
    reason: &'static str,
) -> Result<u64, TarError> {
    match parsed {
        Ok(n) => Ok(n),
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(_) => Err(TarError::BadHeader { offset, reason }),
    }
}

fn device_number(field: &[u8], parsed: io::Result<u32>, offset: u64) -> Result<u32, TarError> {
    let n = number(
        field,
        parsed.map(u64::from),
        offset,
        "its device number is not a number",
    )?;
    u32::try_from(n).map_err(|_| TarError::BadHeader {
        offset,
        reason: "a device number out of range",
    })
}

/// A header time in whole seconds (one past the year 292 billion is
/// clamped, as the kernel clamps to what the filesystem can store).
fn seconds(secs: u64) -> Time {
    Time {
        secs: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn until_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// The header checksum: the sum of its bytes with the checksum field read
/// as spaces (unsigned, or signed as some old tars computed it).
fn check_checksum(header: &tar::Header, offset: u64) -> Result<(), TarError> {
    let bytes = header.as_bytes();
    let field = 148..156;
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, &b) in bytes.iter().enumerate() {
        let b = if field.contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    match header.cksum() {
        Ok(sum) if sum == unsigned || sum as i32 == signed => Ok(()),
        _ => Err(TarError::BadHeader {
            offset,
            reason: "its checksum is wrong (not a tar archive, or a corrupt one)",
        }),
    }
}

impl Extended {
    fn apply_pax(&mut self, bytes: &[u8], offset: u64) -> Result<(), TarError> {
        let bad = |reason| TarError::BadHeader { offset, reason };
        for record in tar::PaxExtensions::new(bytes) {
            let record = record.map_err(|_| bad("a malformed PAX record"))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(bad("a PAX number that is not one"))
            };
            match key {
                b"path" => self.name = Some(value.to_vec()),
                b"linkpath" => self.link = Some(value.to_vec()),
                b"size" => self.size = Some(number()?),
                b"uid" => self.uid = Some(number()?),
                b"gid" => self.gid = Some(number()?),
                b"mtime" => {
                    self.mtime =
                        Some(parse_time(value).ok_or(bad("a PAX mtime that is not a time"))?)
                }
                b"atime" => self.atime = parse_time(value),
                _ if key.starts_with(b"SCHILY.xattr.") => {
                    let name = &key[b"SCHILY.xattr.".len()..];
                    self.xattrs.push((name.to_vec(), value.to_vec()));
                }
                _ if key.starts_with(b"GNU.sparse.") => self.sparse = true,
                _ => {}
            }
        }
        Ok(())
    }
}

/// A PAX time: decimal seconds, maybe negative, maybe with a fraction.
pub(super) fn parse_time(value: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut digits: String = fraction.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    Some(if !negative {
        Time { secs, nanos }
    } else if nanos == 0 {
        Time {
            secs: -secs,
            nanos: 0,
        }
    } else {
        Time {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::stream::{self, Input};
    use super::*;
    use crate::digest::Algorithm;

    /// The members of a tar, read through the real pipeline.
    fn members(tar: &[u8]) -> Result<Vec<Member>, String> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(tar).unwrap();
        std::thread::scope(|scope| {
            let inputs = vec![Input {
                path: file.path().to_path_buf(),
                algorithm: Algorithm::Sha256,
            }];
            let streams = stream::start(scope, inputs, Default::default()).unwrap();
            let mut layer = LayerStream::new(&streams.events);
            let mut reader = TarReader::new(&mut layer);
            let mut out = Vec::new();
            loop {
                match reader.next() {
                    Ok(Some(m)) => {
                        let mut data = Vec::new();
                        reader
                            .data(&mut |b| {
                                data.extend_from_slice(b);
                                Ok(())
                            })
                            .map_err(|e| format!("{e:?}"))?
                            .unwrap();
                        assert_eq!(data.len() as u64, m.size);
                        out.push(m);
                    }
                    Ok(None) => return Ok(out),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        })
    }

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    #[test]
    fn reads_what_go_and_gnu_tar_write() {
        let mut b = tar::Builder::new(Vec::new());
        // A header straight from new_ustar(): uid, gid and mtime blank.
        b.append(&header("blank", tar::EntryType::Regular, 3), &b"abc"[..])
            .unwrap();
        let long = format!("dir/{}", "n".repeat(200));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o600);
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
        b.append_pax_extensions([
            ("path", &b"pax/name"[..]),
            ("mtime", b"1.5"),
            ("SCHILY.xattr.user.a", b"v"),
        ])
        .unwrap();
        b.append(&header("ignored", tar::EntryType::Regular, 0), &[][..])
            .unwrap();
        let mut dir = header("placeholder", tar::EntryType::new(0), 0);
        // set_path drops a trailing slash: write the name field directly.
        let field = &mut dir.as_old_mut().name;
        field.fill(0);
        field[..14].copy_from_slice(b"old-style-dir/");
        dir.as_old_mut().linkflag[0] = 0;
        dir.set_cksum();
        b.append(&dir, &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let m = members(&tar).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].name.as_slice(), m[0].uid, m[0].mtime.secs),
            (&b"blank"[..], 0, 0)
        );
        assert_eq!(m[1].name, long.as_bytes());
        assert_eq!(m[2].name, b"pax/name");
        assert_eq!(
            m[2].mtime,
            Time {
                secs: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(m[2].xattrs, vec![(b"user.a".to_vec(), b"v".to_vec())]);
        assert_eq!(
            m[3].kind,
            Kind::Dir,
            "{:?}",
            String::from_utf8_lossy(&m[3].name)
        );

        // Cut after the last member's data: no padding, no zero blocks.
        let cut = 512 + 3;
        assert_eq!(members(&tar[..cut]).unwrap().len(), 1);
        // Cut inside the data: truncated.
        let err = members(&tar[..512 + 2]).unwrap_err();
        assert!(err.contains("Truncated"), "{err}");
        // Cut inside a header.
        let err = members(&tar[..100]).unwrap_err();
        assert!(err.contains("Truncated"), "{err}");
    }

    #[test]
    fn refuses_what_is_not_a_tar() {
        let mut tar = tar::Builder::new(Vec::new());
        tar.append(&header("a", tar::EntryType::Regular, 1), &b"a"[..])
            .unwrap();
        let mut bytes = tar.into_inner().unwrap();
        bytes[0] ^= 1; // the checksum no longer matches
        let err = members(&bytes).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        let mut lone_zero = vec![0u8; 512];
        lone_zero.extend_from_slice(header("b", tar::EntryType::Regular, 0).as_bytes());
        let err = members(&lone_zero).unwrap_err();
        assert!(err.contains("single zero block"), "{err}");
        let mut sparse = tar::Builder::new(Vec::new());
        sparse
            .append(&header("s", tar::EntryType::GNUSparse, 0), &[][..])
            .unwrap();
        let err = members(&sparse.into_inner().unwrap()).unwrap_err();
        assert!(err.contains("sparse"), "{err}");
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_time(b"1700000000"),
            Some(Time {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(
            parse_time(b"1700000000.5"),
            Some(Time {
                secs: 1_700_000_000,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            parse_time(b"-1.25"),
            Some(Time {
                secs: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(parse_time(b"x"), None);
        assert_eq!(parse_time(b"1.x"), None);
        assert_eq!(parse_time(b""), None);
    }

    #[test]
    fn padding_to_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }
}

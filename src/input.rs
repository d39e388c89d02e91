//! Opening the files an import is given, so that opening one can never
//! block and only what can be read to an end is read.
//!
//! A FIFO blocks `open(2)` until a writer comes (forever, while the import
//! holds the store lock), a socket cannot be opened at all, and a device
//! node may never end (`/dev/zero`) or act on being opened. So every input
//! file — an archive, a layout directory's `oci-layout`, `index.json` and
//! blobs, whatever `--format` says — is opened by [`open_regular`]: `stat`
//! first (a special file is refused without being opened), then `open`
//! with `O_NONBLOCK` (which returns at once even if the file was swapped
//! for a FIFO meanwhile), `fstat` of what was opened, and only then is
//! `O_NONBLOCK` cleared for ordinary blocking reads.

use std::fs::{self, File, FileType};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{ArchiveErrorKind, Error};

/// Why an input file was not opened.
#[derive(Debug)]
pub(crate) enum OpenRefused {
    /// It is not a regular file: what it is (`a named pipe (FIFO)`…).
    NotRegular(&'static str),
    /// The system call failed (not found, no permission…).
    Io(io::Error),
}

impl OpenRefused {
    /// The error of the input `input` whose file `name` (at `path`) was
    /// refused: a special file is an [`ArchiveErrorKind::NotRegular`], a
    /// failed call an I/O error naming the path.
    pub(crate) fn into_error(self, input: &Path, name: impl Into<String>, path: &Path) -> Error {
        match self {
            OpenRefused::NotRegular(found) => Error::archive(
                input,
                ArchiveErrorKind::NotRegular {
                    name: name.into(),
                    expected: "regular file",
                    found,
                },
            ),
            OpenRefused::Io(e) => Error::io("open", path, e),
        }
    }
}

/// Opens a file that is an input of its own (an archive, or a file of the
/// store's), refused by its path.
pub(crate) fn open_input(path: &Path) -> Result<File, Error> {
    open_regular(path).map_err(|e| e.into_error(path, "the input", path))
}

/// Opens `path` for reading if it is a regular file (after following
/// symbolic links), without ever blocking in `open`.
pub(crate) fn open_regular(path: &Path) -> Result<File, OpenRefused> {
    let meta = fs::metadata(path).map_err(OpenRefused::Io)?;
    if !meta.is_file() {
        return Err(OpenRefused::NotRegular(describe(meta.file_type())));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // What open(2) says of a socket, or of a FIFO swapped in.
            Some(libc::ENXIO) => OpenRefused::NotRegular("a socket or a special file"),
            _ => OpenRefused::Io(e),
        })?;
    let meta = file.metadata().map_err(OpenRefused::Io)?;
    if !meta.is_file() {
        return Err(OpenRefused::NotRegular(describe(meta.file_type())));
    }
    clear_nonblocking(&file).map_err(OpenRefused::Io)?;
    Ok(file)
}

/// What a file that is not a regular file is, for messages.
pub(crate) fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

fn clear_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_special_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            open_regular(&fifo),
            Err(OpenRefused::NotRegular("a named pipe (FIFO)"))
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/zero")),
            Err(OpenRefused::NotRegular("a character device"))
        ));
        assert!(matches!(
            open_regular(dir.path()),
            Err(OpenRefused::NotRegular("a directory"))
        ));
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let f = open_regular(&file).unwrap();
        // SAFETY: as in clear_nonblocking.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "left non-blocking");
        assert!(matches!(
            open_regular(&dir.path().join("missing")),
            Err(OpenRefused::Io(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }
}

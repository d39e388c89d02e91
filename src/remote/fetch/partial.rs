//! A download's bytes on their way in: the partial file in
//! `tmp/partial/`, which the importer reads while it grows and a later
//! fetch of the same URL resumes from.
//!
//! Each URL has three files there, named by the sha256 of the URL (without
//! credentials), e.g. `tmp/partial/3f9a…c2.part`:
//! - `<h>.part`: the body's bytes so far;
//! - `<h>.meta`: the sidecar, JSON `{"url", "validator", "total"}`: the
//!   ETag or Last-Modified the bytes belong to (what `If-Range` sends on a
//!   resume) and the whole body's size, when known. It is written (to a
//!   temp name, then renamed) before the first byte of a body, and removed
//!   before the bytes are thrown away, so it never vouches for bytes of
//!   another body;
//! - `<h>.lock`: the per-URL lock (`flock`), held for a whole fetch, so
//!   that concurrent fetches of one URL take turns and the later ones find
//!   the row the first one committed.
//!
//! A partial whose sidecar is missing, unreadable, of another URL or says
//! less than the file holds is treated as absent: it is emptied and the
//! download starts over, never refused. gc removes these files once older
//! than its grace period; a fetch touches what it resumes from, and the
//! files it writes stay young while it writes them.
//!
//! [`Growing`] is the state the download (through [`PartialSink`]) and the
//! importer (through [`Attempt`]) share: how many bytes of which body are
//! in the file, and how the download ended. Each time the body starts over
//! its generation moves on, and an import reading the old one fails at its
//! next read, so no import ever mixes the bytes of two bodies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext};
use crate::import::{Arriving, RemoteFacts};
use crate::remote::http::DownloadSink;

/// The sidecar's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    url: String,
    validator: String,
    total: Option<u64>,
}

/// The files of one URL's partial download.
#[derive(Debug, Clone)]
pub(super) struct PartialFiles {
    url: String,
    part: PathBuf,
    meta: PathBuf,
    lock: PathBuf,
}

impl PartialFiles {
    /// The files for `url` in `dir` (`tmp/partial`).
    pub fn new(dir: &Path, url: &str) -> PartialFiles {
        let stem = hex::encode(Sha256::digest(url.as_bytes()));
        PartialFiles {
            url: url.to_string(),
            part: dir.join(format!("{stem}.part")),
            meta: dir.join(format!("{stem}.meta")),
            lock: dir.join(format!("{stem}.lock")),
        }
    }

    /// The partial file.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Takes the URL's lock, waiting for another fetch of it to finish.
    pub fn lock(&self) -> Result<UrlLock, Error> {
        UrlLock::acquire(&self.lock)
    }

    /// Opens the partial file to write the download into, with what it
    /// holds of an earlier, interrupted download that may be resumed.
    /// Anything doubtful is emptied.
    pub fn open(&self) -> Result<Held, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.part)
            .ctx("open", &self.part)?;
        // gc leaves young files alone: what is resumed from is young now.
        let _ = file.set_modified(SystemTime::now());
        let len = file.metadata().ctx("read", &self.part)?.len();
        if len > 0
            && let Some(sidecar) = self.read_sidecar()
            && sidecar.total.is_none_or(|t| len <= t)
        {
            return Ok(Held {
                file,
                len,
                complete: sidecar.total == Some(len),
                validator: Some(sidecar.validator),
            });
        }
        self.forget()?;
        file.set_len(0).ctx("truncate", &self.part)?;
        Ok(Held {
            file,
            len: 0,
            validator: None,
            complete: false,
        })
    }

    /// The sidecar, if it is there, readable and of this URL.
    fn read_sidecar(&self) -> Option<Sidecar> {
        let mut bytes = Vec::new();
        File::open(&self.meta)
            .ok()?
            .take(64 << 10)
            .read_to_end(&mut bytes)
            .ok()?;
        let sidecar: Sidecar = serde_json::from_slice(&bytes).ok()?;
        (sidecar.url == self.url && !sidecar.validator.is_empty()).then_some(sidecar)
    }

    /// Records that the bytes about to be written belong to the body with
    /// this validator (`None`: to a body that cannot be resumed).
    fn write_sidecar(&self, validator: Option<&str>, total: Option<u64>) -> Result<(), Error> {
        let Some(validator) = validator else {
            return self.forget();
        };
        let sidecar = Sidecar {
            url: self.url.clone(),
            validator: validator.to_string(),
            total,
        };
        if self.read_sidecar().as_ref() == Some(&sidecar) {
            return Ok(());
        }
        let tmp = self.meta.with_extension("meta.tmp");
        let bytes = serde_json::to_vec(&sidecar)
            .map_err(|e| Error::Internal(format!("cannot serialize a sidecar: {e}")))?;
        fs::write(&tmp, bytes).ctx("write", &tmp)?;
        fs::rename(&tmp, &self.meta).ctx("rename into place", &self.meta)
    }

    /// Removes the sidecar: the bytes held vouch for nothing any more.
    fn forget(&self) -> Result<(), Error> {
        remove_file(&self.meta)
    }

    /// Whether the files left behind are worth resuming from: bytes with
    /// a validator.
    pub fn resumable(&self) -> bool {
        fs::metadata(&self.part).is_ok_and(|m| m.len() > 0) && self.read_sidecar().is_some()
    }

    /// Removes the partial file and its sidecar (the lock goes with
    /// [`UrlLock::release`]).
    pub fn remove(&self) -> Result<(), Error> {
        self.forget()?;
        remove_file(&self.part)
    }
}

/// A partial file as a fetch finds it.
pub(super) struct Held {
    pub file: File,
    /// Bytes of an earlier download in it (0: start afresh).
    pub len: u64,
    /// The ETag or Last-Modified those bytes belong to.
    pub validator: Option<String>,
    /// They are the whole body (a fetch was killed after its download).
    pub complete: bool,
}

/// The per-URL lock: an exclusive `flock` on `<h>.lock`.
#[derive(Debug)]
pub(super) struct UrlLock {
    file: File,
    path: PathBuf,
}

impl UrlLock {
    fn acquire(path: &Path) -> Result<UrlLock, Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        // A bounded number of turns: each one lost means another process
        // removed or replaced the file while this one waited for it.
        for _ in 0..64 {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
            {
                Ok(f) => f,
                // Another fetch removed the emptied directory: make it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(dir).ctx("create directory", dir)?;
                    continue;
                }
                Err(e) => return Err(Error::io("open lock file", path, e)),
            };
            flock_exclusive(&file).map_err(|e| Error::io("lock", path, e))?;
            // The holder before removes the file when it is done (and gc
            // may remove an old one): a lock on a file no longer at the
            // path locks nothing anyone else can see. Try again.
            let held = file.metadata().ctx("read", path)?;
            match fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    let _ = file.set_modified(SystemTime::now());
                    return Ok(UrlLock {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                _ => continue,
            }
        }
        Err(Error::Internal(format!(
            "the lock file {} kept changing while waiting for it",
            path.display()
        )))
    }

    /// Removes the lock file, then lets go of the lock: a fetch waiting on
    /// the old file sees it gone and takes a new one.
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

fn flock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// How a download ended, as the importer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    Running,
    /// The whole body is in the file.
    Complete(RemoteFacts),
    /// `304`: the body was not sent.
    NotModified,
    Failed,
    /// The importer gave up (the body is not an archive): stop.
    Cancelled,
}

#[derive(Debug)]
struct State {
    /// Moves on each time the body starts over.
    generation: u64,
    /// Bytes of this generation's body in the file.
    len: u64,
    /// A body has begun (its first byte may come next).
    started: bool,
    end: End,
}

/// What the download and the importer share.
pub(super) struct Growing {
    file: File,
    /// The partial file, for messages.
    path: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
}

impl Growing {
    /// A download into `file`, which holds `held` bytes to resume from.
    pub fn new(file: File, path: PathBuf, held: u64) -> Arc<Growing> {
        Arc::new(Growing {
            file,
            path,
            state: Mutex::new(State {
                generation: 0,
                len: held,
                started: false,
                end: End::Running,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a body begins or the download ends without one; true
    /// if a body began.
    pub fn wait_for_body(&self) -> bool {
        let mut st = self.lock();
        while !st.started && st.end == End::Running {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.started
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub fn end(&self) -> End {
        self.lock().end.clone()
    }

    /// Records how the download ended (unless the importer cancelled it).
    pub fn finish(&self, end: End) {
        let mut st = self.lock();
        if st.end == End::Running {
            st.end = end;
        }
        self.changed.notify_all();
    }

    /// Stops the download at its next write.
    pub fn cancel(&self) {
        self.finish(End::Cancelled);
    }

    /// A whole body already in `file` (from a download a fetch was killed
    /// after), found current: for the importer to read.
    pub fn whole(file: File, path: PathBuf, len: u64, facts: RemoteFacts) -> Arc<Growing> {
        let growing = Growing::new(file, path, len);
        {
            let mut st = growing.lock();
            st.started = true;
            st.end = End::Complete(facts);
        }
        growing
    }

    /// A view for one import attempt, reading the body as it is now.
    pub fn attempt(self: &Arc<Growing>) -> Arc<Attempt> {
        Arc::new(Attempt {
            generation: self.generation(),
            growing: Arc::clone(self),
        })
    }
}

/// The download's side: writes the body into the partial file.
pub(super) struct PartialSink<'a> {
    growing: &'a Growing,
    files: &'a PartialFiles,
    len: u64,
}

impl<'a> PartialSink<'a> {
    pub fn new(growing: &'a Growing, files: &'a PartialFiles, held: u64) -> PartialSink<'a> {
        PartialSink {
            growing,
            files,
            len: held,
        }
    }
}

fn to_io(e: Error) -> io::Error {
    io::Error::other(e)
}

impl DownloadSink for PartialSink<'_> {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.growing.lock().end == End::Cancelled {
            return Err(io::Error::other("the import stopped the download"));
        }
        let path = &self.growing.path;
        self.growing
            .file
            .write_all_at(bytes, self.len)
            .map_err(|e| to_io(Error::io("write", path, e)))?;
        self.len += bytes.len() as u64;
        let mut st = self.growing.lock();
        st.len = self.len;
        self.growing.changed.notify_all();
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        {
            // First the readers learn that the bytes are void, then they go.
            let mut st = self.growing.lock();
            st.generation += 1;
            st.len = 0;
            self.growing.changed.notify_all();
        }
        self.files.forget().map_err(to_io)?;
        self.growing
            .file
            .set_len(0)
            .map_err(|e| to_io(Error::io("truncate", &self.growing.path, e)))?;
        self.len = 0;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn begin(&mut self, validator: Option<&str>, total: Option<u64>) -> io::Result<()> {
        if self.len == 0 {
            // A body from its first byte: whatever the file held goes, before
            // the sidecar vouches for what comes.
            self.growing
                .file
                .set_len(0)
                .map_err(|e| to_io(Error::io("truncate", &self.growing.path, e)))?;
        }
        self.files.write_sidecar(validator, total).map_err(to_io)?;
        let mut st = self.growing.lock();
        st.started = true;
        self.growing.changed.notify_all();
        Ok(())
    }
}

/// The importer's side: one import attempt's view of the body, which
/// fails once the body starts over.
pub(super) struct Attempt {
    growing: Arc<Growing>,
    generation: u64,
}

impl Attempt {
    /// The generation of the body this attempt reads.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn stale() -> io::Error {
        io::Error::other("the download started over")
    }
}

impl Arriving for Attempt {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let g = &self.growing;
        let mut st = g.lock();
        let available = loop {
            if st.generation != self.generation {
                return Err(Attempt::stale());
            }
            if pos < st.len {
                break st.len - pos;
            }
            match &st.end {
                End::Complete(_) => return Ok(0),
                End::Running => st = g.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                End::NotModified | End::Failed | End::Cancelled => {
                    return Err(io::Error::other("the download failed"));
                }
            }
        };
        drop(st);
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = g.file.read_at(&mut buf[..want], pos)?;
        // The bytes are this body's only if it has not started over while
        // they were read (it moves the generation on before truncating).
        if g.lock().generation != self.generation {
            return Err(Attempt::stale());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was read", g.path.display()),
            ));
        }
        Ok(n)
    }

    fn remote(&self) -> Option<RemoteFacts> {
        let st = self.growing.lock();
        match &st.end {
            End::Complete(facts) if st.generation == self.generation => Some(facts.clone()),
            _ => None,
        }
    }
}

/// Removes a file; one already gone is not an error.
fn remove_file(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PartialFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = PartialFiles::new(dir.path(), "http://example.com/x.aci");
        (dir, files)
    }

    #[test]
    fn a_partial_without_a_sidecar_is_emptied() {
        let (_dir, files) = setup();
        fs::write(&files.part, b"some bytes").unwrap();
        let held = files.open().unwrap();
        assert_eq!((held.len, held.validator), (0, None));
        assert_eq!(fs::metadata(&files.part).unwrap().len(), 0);
    }

    #[test]
    fn a_partial_with_its_sidecar_is_resumed_and_bad_ones_are_not() {
        let (_dir, files) = setup();
        fs::write(&files.part, b"0123456789").unwrap();
        files.write_sidecar(Some("\"v1\""), Some(20)).unwrap();
        let held = files.open().unwrap();
        assert_eq!((held.len, held.validator.as_deref()), (10, Some("\"v1\"")));
        assert!(!held.complete);
        assert!(files.resumable());
        files.write_sidecar(Some("\"v1\""), Some(10)).unwrap();
        assert!(files.open().unwrap().complete);

        // More bytes than the body has: damaged.
        files.write_sidecar(Some("\"v1\""), Some(5)).unwrap();
        assert_eq!(files.open().unwrap().len, 0);

        // A sidecar of another URL, or garbage.
        fs::write(&files.part, b"0123456789").unwrap();
        let other = PartialFiles::new(files.part.parent().unwrap(), "http://example.com/y");
        fs::write(
            &files.meta,
            serde_json::to_vec(&Sidecar {
                url: other.url.clone(),
                validator: "\"v1\"".into(),
                total: None,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(files.open().unwrap().len, 0);
        fs::write(&files.part, b"0123456789").unwrap();
        fs::write(&files.meta, b"{not json").unwrap();
        assert_eq!(files.open().unwrap().len, 0);
        assert!(!files.meta.exists());
    }

    #[test]
    fn readers_wait_for_bytes_and_fail_when_the_body_starts_over() {
        let (_dir, files) = setup();
        let held = files.open().unwrap();
        let growing = Growing::new(held.file, files.part.clone(), held.len);
        let first = growing.attempt();
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut sink = PartialSink::new(&growing, &files, 0);
                sink.begin(Some("\"a\""), Some(6)).unwrap();
                sink.append(b"abc").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
                sink.restart().unwrap();
                sink.begin(Some("\"b\""), Some(3)).unwrap();
                sink.append(b"xyz").unwrap();
                growing.finish(End::Complete(RemoteFacts {
                    url: "u".into(),
                    etag: None,
                    max_age: None,
                }));
            });
            assert!(growing.wait_for_body());
            let mut buf = [0u8; 16];
            // The first attempt sees "abc", then the restart.
            let mut seen = Vec::new();
            let err = loop {
                match first.read_at(&mut buf, seen.len() as u64) {
                    Ok(0) => panic!("the first body never ended"),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                    Err(e) => break e,
                }
            };
            assert!(b"abc".starts_with(&seen), "{seen:?}");
            assert!(err.to_string().contains("started over"), "{err}");
            assert!(first.remote().is_none());
            writer.join().unwrap();
        });
        let second = growing.attempt();
        let mut all = Vec::new();
        ArrivingReaderForTest(&*second, 0)
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"xyz");
        assert!(second.remote().is_some());
    }

    struct ArrivingReaderForTest<'a>(&'a dyn Arriving, u64);

    impl Read for ArrivingReaderForTest<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read_at(buf, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn the_lock_is_exclusive_and_survives_the_file_being_replaced() {
        let (_dir, files) = setup();
        let first = files.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let files = files.clone();
            std::thread::spawn(move || {
                let lock = files.lock().unwrap();
                tx.send(()).unwrap();
                lock.release();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "the second fetch did not wait");
        first.release();
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }
}

//! Physical-limit probe for imports (issue 5, DESIGN.md §6).
//!
//! An import has to read its archive, maybe decompress it, hash what it
//! stores and write it durably. This tool times each of those stages *alone*
//! on real files, so that `benches/compare.sh` can compose, per scenario, the
//! stages the work needs and compute the two-core bound
//! `max(longest stage, sum of stages / 2)`.
//!
//! ```text
//! cargo run --release --example stages -- --dir /mnt/bench/tmp \
//!     --stages read,gunzip,sha512-u,write-u --drop-caches image.aci
//! ```
//!
//! Stages, each timed on its own:
//!
//! | stage      | what is timed                                                     |
//! |------------|-------------------------------------------------------------------|
//! | `read`     | stream the file through a 1 MiB buffer that is thrown away        |
//! | `gunzip`   | decompress the (in-memory) file with flate2's `MultiGzDecoder`     |
//! | `sha256`   | SHA-256 of the file's bytes, fed in 1 MiB chunks                   |
//! | `sha512`   | SHA-512 of the file's bytes                                        |
//! | `sha256-u` | SHA-256 of the decompressed bytes                                  |
//! | `sha512-u` | SHA-512 of the decompressed bytes                                  |
//! | `write`    | write the file's bytes to a temp file in `--dir`, fsync, rename, fsync the directory |
//! | `write-u`  | the same for the decompressed bytes                                |
//! | `copy`     | `read` and `write` at once: one thread reads the file (cold with `--drop-caches`) while another writes what it read, then fsync, rename, fsync the directory |
//!
//! `copy` is not a stage but a check of the disk: an import that stores
//! what it reads must do both, and if the device cannot overlap reads with
//! writes, `copy` is a bound that the two-core formula does not see. It is
//! left out of the `bound` line.
//!
//! Only `read` touches the input file while timed: the other stages work on
//! a copy held in memory (loaded, and decompressed when needed, outside the
//! timed region), so each figure is one stage and nothing else. Files that are
//! not gzip are skipped for `gunzip` and the `-u` stages (so a whole
//! `blobs/sha256/` directory can be given and only the layers count).
//!
//! Output is one `key=value` line per stage and file, then one `total` line
//! per stage summed over the files, then a `bound` line for the stages of
//! this run; MB is 10^6 bytes:
//!
//! ```text
//! stage=read file=big.aci bytes=176160768 secs=0.412345 mbps=427.2
//! total stage=read files=1 bytes=176160768 secs=0.412345 mbps=427.2
//! bound cores=2 longest=… sum=… secs=…
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use sha2::Digest as _;

/// Chunk size for reads, hashing and writes, as a streaming import would use.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Stage {
    Read,
    Gunzip,
    Sha256,
    Sha512,
    #[value(name = "sha256-u")]
    Sha256U,
    #[value(name = "sha512-u")]
    Sha512U,
    Write,
    #[value(name = "write-u")]
    WriteU,
    Copy,
}

impl Stage {
    const ALL: [Stage; 9] = [
        Stage::Read,
        Stage::Gunzip,
        Stage::Sha256,
        Stage::Sha512,
        Stage::Sha256U,
        Stage::Sha512U,
        Stage::Write,
        Stage::WriteU,
        Stage::Copy,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Gunzip => "gunzip",
            Stage::Sha256 => "sha256",
            Stage::Sha512 => "sha512",
            Stage::Sha256U => "sha256-u",
            Stage::Sha512U => "sha512-u",
            Stage::Write => "write",
            Stage::WriteU => "write-u",
            Stage::Copy => "copy",
        }
    }

    /// Whether the stage works on decompressed bytes (or produces them).
    fn needs_gzip(self) -> bool {
        matches!(
            self,
            Stage::Gunzip | Stage::Sha256U | Stage::Sha512U | Stage::WriteU
        )
    }
}

/// Time each stage of an import alone on real files.
#[derive(Debug, Parser)]
#[command(name = "stages")]
struct Args {
    /// Directory for the durable-write stages; put it on the filesystem under test.
    #[arg(long, default_value = ".")]
    dir: PathBuf,

    /// Comma-separated stages to time (default: all; gzip stages only on gzip files).
    #[arg(long, value_enum, value_delimiter = ',')]
    stages: Vec<Stage>,

    /// `sync` and drop the page cache before reading each file (needs root;
    /// a refusal is reported once on stderr and the run goes on warm).
    #[arg(long)]
    drop_caches: bool,

    /// Cores to spread the stages over in the `bound` line.
    #[arg(long, default_value_t = 2)]
    cores: u32,

    /// Print only the `total` and `bound` lines.
    #[arg(long, short)]
    quiet: bool,

    /// Input files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Total {
    files: u64,
    bytes: u64,
    secs: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut stages = if args.stages.is_empty() {
        Stage::ALL.to_vec()
    } else {
        args.stages.clone()
    };
    stages.sort();
    stages.dedup();
    if args.cores == 0 {
        bail!("--cores must be at least 1");
    }
    if stages
        .iter()
        .any(|s| matches!(s, Stage::Write | Stage::WriteU | Stage::Copy))
    {
        fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    }

    let mut totals = [Total::default(); Stage::ALL.len()];
    let mut cache_warned = false;
    for file in &args.files {
        let mut report = |stage: Stage, bytes: u64, secs: f64| {
            let t = &mut totals[stage as usize];
            t.files += 1;
            t.bytes += bytes;
            t.secs += secs;
            if !args.quiet {
                println!(
                    "stage={} file={} bytes={bytes} secs={secs:.6} mbps={:.1}",
                    stage.name(),
                    file.display(),
                    mbps(bytes, secs)
                );
            }
        };

        if args.drop_caches {
            drop_caches(&mut cache_warned);
        }
        if stages.contains(&Stage::Read) {
            let (bytes, secs) = time_read(file)?;
            report(Stage::Read, bytes, secs);
        }
        if stages.contains(&Stage::Copy) {
            if args.drop_caches {
                drop_caches(&mut cache_warned);
            }
            let (bytes, secs) = time_copy(file, &args.dir)?;
            report(Stage::Copy, bytes, secs);
        }
        if stages
            .iter()
            .all(|s| matches!(s, Stage::Read | Stage::Copy))
        {
            continue;
        }

        // Everything below works from memory; loading is not timed.
        let raw = fs::read(file).with_context(|| format!("read {}", file.display()))?;
        let is_gzip = raw.starts_with(&[0x1f, 0x8b]);
        let mut unzipped: Option<Vec<u8>> = None;
        if is_gzip && stages.iter().any(|s| s.needs_gzip() && *s != Stage::Gunzip) {
            unzipped =
                Some(gunzip_to_vec(&raw).with_context(|| format!("gunzip {}", file.display()))?);
        }

        for &stage in &stages {
            if stage.needs_gzip() && !is_gzip {
                if !args.quiet {
                    println!(
                        "stage={} file={} skip=not-gzip",
                        stage.name(),
                        file.display()
                    );
                }
                continue;
            }
            let u = unzipped.as_deref().unwrap_or(&[]);
            let (bytes, secs) = match stage {
                Stage::Read | Stage::Copy => continue,
                Stage::Gunzip => {
                    time_gunzip(&raw).with_context(|| format!("gunzip {}", file.display()))?
                }
                Stage::Sha256 => time_hash(sha2::Sha256::new(), &raw),
                Stage::Sha512 => time_hash(sha2::Sha512::new(), &raw),
                Stage::Sha256U => time_hash(sha2::Sha256::new(), u),
                Stage::Sha512U => time_hash(sha2::Sha512::new(), u),
                Stage::Write => time_write(&args.dir, &raw)?,
                Stage::WriteU => time_write(&args.dir, u)?,
            };
            report(stage, bytes, secs);
        }
    }

    let mut longest: f64 = 0.0;
    let mut sum = 0.0;
    for stage in Stage::ALL {
        let t = totals[stage as usize];
        if t.files == 0 {
            continue;
        }
        println!(
            "total stage={} files={} bytes={} secs={:.6} mbps={:.1}",
            stage.name(),
            t.files,
            t.bytes,
            t.secs,
            mbps(t.bytes, t.secs)
        );
        if stage == Stage::Copy {
            continue; // a check of the disk, not a stage of the work
        }
        longest = longest.max(t.secs);
        sum += t.secs;
    }
    println!(
        "bound cores={} longest={longest:.6} sum={sum:.6} secs={:.6}",
        args.cores,
        longest.max(sum / f64::from(args.cores))
    );
    Ok(())
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

/// `sync`, then ask the kernel to drop clean page-cache pages, dentries and inodes.
fn drop_caches(warned: &mut bool) {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let result = OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .and_then(|mut f| f.write_all(b"3\n"));
    if let Err(e) = result
        && !*warned
    {
        eprintln!("# warning: cannot drop the page cache ({e}); reads may be warm");
        *warned = true;
    }
}

/// Streams the file through a reused buffer: the cost of getting the bytes
/// off the disk and out of the kernel, and nothing else.
fn time_read(path: &Path) -> Result<(u64, f64)> {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut bytes = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

/// Decompresses into a reused buffer; returns the decompressed size.
fn time_gunzip(raw: &[u8]) -> Result<(u64, f64)> {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut dec = flate2::bufread::MultiGzDecoder::new(raw);
    let mut bytes = 0u64;
    loop {
        match dec.read(&mut buf)? {
            0 => break,
            n => bytes += n as u64,
        }
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

fn gunzip_to_vec(raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(3));
    flate2::bufread::MultiGzDecoder::new(raw).read_to_end(&mut out)?;
    Ok(out)
}

fn time_hash<D: sha2::Digest>(mut hasher: D, bytes: &[u8]) -> (u64, f64) {
    let start = Instant::now();
    for chunk in bytes.chunks(CHUNK) {
        hasher.update(chunk);
    }
    let digest = hasher.finalize();
    let secs = start.elapsed().as_secs_f64();
    // Use the digest so the work cannot be optimised away.
    std::hint::black_box(&digest);
    (bytes.len() as u64, secs)
}

/// Writes `bytes` durably the way the blob tree does: temp file, fsync,
/// rename, fsync of the directory. The file is removed afterwards, untimed.
fn time_write(dir: &Path, bytes: &[u8]) -> Result<(u64, f64)> {
    write_durably(dir, |file, temp| {
        for chunk in bytes.chunks(CHUNK) {
            file.write_all(chunk)
                .with_context(|| format!("write {}", temp.display()))?;
        }
        Ok(bytes.len() as u64)
    })
}

/// Reads `path` on a thread of its own while this one writes what comes,
/// durably: the disk doing both at once.
fn time_copy(path: &Path, dir: &Path) -> Result<(u64, f64)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let input = path.to_path_buf();
    let reader = std::thread::spawn(move || -> Result<()> {
        let mut file = File::open(&input).with_context(|| format!("open {}", input.display()))?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = file
                .read(&mut buf)
                .with_context(|| format!("read {}", input.display()))?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            if tx.send(buf).is_err() {
                return Ok(()); // the writer failed and says why
            }
        }
    });
    let written = write_durably(dir, |file, temp| {
        let mut bytes = 0;
        for buf in rx {
            file.write_all(&buf)
                .with_context(|| format!("write {}", temp.display()))?;
            bytes += buf.len() as u64;
        }
        Ok(bytes)
    });
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
    written
}

/// Times `fill` writing a temp file in `dir`, then fsync, rename and fsync
/// of the directory; removes the file afterwards (untimed).
fn write_durably(
    dir: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<u64>,
) -> Result<(u64, f64)> {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(".stages-{pid}-{nanos:08x}.tmp"));
    let dest = dir.join(format!("stages-{pid}-{nanos:08x}"));

    let start = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_context(|| format!("create {}", temp.display()))?;
    let bytes = fill(&mut file, &temp)?;
    file.sync_all()
        .with_context(|| format!("fsync {}", temp.display()))?;
    drop(file);
    fs::rename(&temp, &dest).with_context(|| format!("rename to {}", dest.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))?;
    let secs = start.elapsed().as_secs_f64();

    fs::remove_file(&dest).with_context(|| format!("remove {}", dest.display()))?;
    Ok((bytes, secs))
}

//! Command-line arguments and their dispatch to [`imgstore::Store`]. No
//! storage logic lives here: each command turns flags into one library
//! call and formats the answer.

mod duration;
pub(crate) mod output;
mod progress;
mod prompt;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use imgstore::{
    ArchiveFormat, DEFAULT_JOBS, FetchOptions, FsckOptions, GcOptions, ImportOptions, Label,
    LoginOptions, Platform, PullOptions, PushOptions, RenderOptions, ServeOptions, Server, Store,
};

use output::Printer;

/// A content-addressable store for container images (appc ACI, OCI, docker).
#[derive(Parser, Debug)]
#[command(name = "imgstore", version, about, max_term_width = 100)]
pub struct Args {
    /// Store directory [default: $IMGSTORE_DIR, else ~/.local/share/imgstore]
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Machine-readable output (JSON on stdout)
    #[arg(long, global = true)]
    json: bool,
    /// Print keys in full in tables
    #[arg(long, global = true)]
    full: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import ACIs, OCI layouts (directories or archives) and docker archives, plain or gzip/zstd/xz/bzip2; prints each image key
    Import {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Flag the images as the latest of their names
        #[arg(long)]
        latest: bool,
        /// Archive format [default: told by the contents]
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Decompress each layer while importing and check its diff_id
        #[arg(long)]
        verify_layers: bool,
        /// Accept an OCI layout whose referenced blobs are missing
        #[arg(long)]
        allow_missing: bool,
        /// Name for images the input leaves unnamed (an OCI layout whose ref.name is only a tag,
        /// as umoci and `skopeo copy … oci:DIR:TAG` write); a name the input gives wins
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Download archives over HTTP(S) and import them (any format import reads), with rkt's cache
    /// rules; prints each image key
    ///
    /// A URL whose last download is still fresh (Cache-Control: max-age) is not asked again while
    /// its image is in the store; after that it is asked with If-None-Match, and a 304 transfers
    /// nothing. A download that breaks is resumed, within the run and by the next fetch of the URL.
    /// Credentials in the URL (https://user:secret@host/...) go to that host only, as Basic
    /// authorization. HTTPS trusts the system's roots plus SSL_CERT_FILE and SSL_CERT_DIR.
    Fetch {
        #[arg(required = true, value_name = "URL")]
        urls: Vec<String>,
        /// Ask the server even within max-age, and without If-None-Match: always download
        #[arg(long)]
        no_cache: bool,
        /// Flag the images as the latest of their names
        #[arg(long)]
        latest: bool,
        /// Archive format [default: told by the contents]
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Decompress each layer while importing and check its diff_id
        #[arg(long)]
        verify_layers: bool,
    },
    /// List images
    Images {
        /// Only images of this name
        #[arg(long)]
        name: Option<String>,
        /// Only images with this label (repeatable)
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<Label>,
        #[arg(long, value_enum, default_value_t = SortArg::Name)]
        sort: SortArg,
    },
    /// Print the key of the best image of a name (flagged latest, else newest)
    Latest {
        name: String,
        #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
        labels: Vec<Label>,
    },
    /// Print the full key an IMAGE (tag, key prefix or name[:version][,k=v]) leads to
    Resolve { image: String },
    /// Write a blob's bytes to stdout, verified against its digest
    Cat { key: String },
    /// Print an image's manifest, byte for byte as imported
    Manifest { image: String },
    /// Show an image's metadata, labels, tags and blobs
    Inspect { image: String },
    /// Point NAME:TAG at an image
    Tag {
        image: String,
        #[arg(value_name = "NAME:TAG")]
        tag: String,
        /// Only if the tag now points at this key ("none": only if it does not exist)
        #[arg(long, value_name = "KEY")]
        expect: Option<String>,
    },
    /// Remove a tag
    Untag {
        #[arg(value_name = "NAME:TAG")]
        tag: String,
    },
    /// Remove images; their blobs become garbage for gc
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unreferenced blobs, orphan files and leftover temp files
    Gc {
        /// Report what would be freed without removing anything
        #[arg(long)]
        dry_run: bool,
        /// Leave orphan files younger than this (e.g. 30s, 10m, 1h, 2d)
        #[arg(long, default_value = "1h", value_parser = duration::parse)]
        grace: Duration,
        /// Fail at once if an import holds the store, instead of waiting
        #[arg(long)]
        no_wait: bool,
        /// Also walk the whole blob tree for orphans no intent records (files put there by hand);
        /// slow on a large store
        ///
        /// Without --full, gc finds the orphans that interrupted imports and gcs leave through the
        /// intent files they write in <store>/intents/, at a cost in proportion to the garbage.
        /// A store made by an older imgstore, or one an interrupted `fsck --repair` left, is
        /// walked once by its next gc.
        #[arg(long)]
        full: bool,
    },
    /// Remove images not used lately, keeping the newest N of each name
    Prune {
        /// Remove images not used for this long (e.g. 30d)
        #[arg(long, value_parser = duration::parse)]
        unused_for: Duration,
        /// Keep at least this many of the newest images of each name
        #[arg(long, default_value_t = 0)]
        keep: usize,
    },
    /// Verify the store: re-hash blobs, check the index against the tree and the counts
    Fsck {
        /// Fix what can be fixed: drop lost blobs (and images needing them), recount, remove orphans
        #[arg(long)]
        repair: bool,
        /// Also decompress layers and check their diff_ids
        #[arg(long)]
        layers: bool,
        /// Also re-walk every tree the store keeps against the fingerprint taken when it was
        /// rendered (paths, types, modes, owners, link targets, contents); --repair drops a
        /// changed one
        #[arg(long)]
        trees: bool,
    },
    /// Write images as an OCI image layout (directory, or FILE.tar)
    Export {
        #[arg(required = true)]
        images: Vec<String>,
        /// Destination: a directory, or a file ending in .tar
        #[arg(long, value_name = "DIR|FILE.tar")]
        oci: PathBuf,
    },
    /// Unpack an image's root filesystem into DIR, or into a tree the store keeps; prints the
    /// root filesystem's path
    ///
    /// An OCI image's layers are applied in order, with their whiteouts, into DIR; an appc
    /// image becomes DIR/manifest and DIR/rootfs/ (its dependencies first). Nothing outside
    /// DIR is ever written or followed. DIR is created (an existing DIR must be empty); on
    /// failure DIR is removed again.
    ///
    /// Without DIR the image is rendered into <store>/trees/<id>/, kept, and handed out again
    /// at once to the next `render` of the same image with the same options; a tree is handed
    /// out only once it is complete and on disk. See `imgstore trees`.
    Render {
        image: String,
        dir: Option<PathBuf>,
        /// The platform to render from a multi-platform image [default: this machine's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
        platform: Option<Platform>,
        /// Render as an ordinary user would (as `umoci unpack --rootless`): files owned by the
        /// caller, no device nodes, no setuid or setgid bits [default: when not root]
        #[arg(long)]
        rootless: bool,
    },
    /// List the trees the store keeps (rendered by `render IMAGE` without DIR)
    Trees,
    /// List remotes: where blobs were fetched from, with their cache facts
    Remotes,
    /// Disk use by images, shared blobs and garbage
    Du,
    /// Pull images from an OCI distribution registry; prints each image key
    ///
    /// REF is a docker reference, [HOST[:PORT]/]REPO[:TAG|@DIGEST] (busybox is
    /// docker.io/library/busybox:latest). The image is named HOST/REPO, its version label is
    /// the tag, and HOST/REPO:TAG is recorded as a tag. Credentials come from `imgstore login`
    /// and the auth files podman and docker keep.
    Pull {
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        /// The platform to pull from a multi-platform image [default: this machine's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
        platform: Option<Platform>,
        /// Keep a multi-platform image whole: its index and every platform
        #[arg(long, conflicts_with = "platform")]
        all_platforms: bool,
        /// Plain HTTP, for a registry that is not on loopback (loopback always is)
        #[arg(long)]
        plain_http: bool,
        /// Blobs downloaded at once, over all the references
        #[arg(long, default_value_t = DEFAULT_JOBS, value_parser = jobs)]
        jobs: usize,
        /// Decompress each layer as it arrives and check its diff_id
        #[arg(long)]
        verify_layers: bool,
    },
    /// Push an OCI image (or a multi-platform set) to a registry; prints its digest
    Push {
        image: String,
        #[arg(value_name = "REF")]
        reference: String,
        /// Plain HTTP, for a registry that is not on loopback (loopback always is)
        #[arg(long)]
        plain_http: bool,
        /// Blobs sent at once
        #[arg(long, default_value_t = DEFAULT_JOBS, value_parser = jobs)]
        jobs: usize,
        /// Upload each blob in PATCH chunks of this many bytes (at least the registry's OCI-Chunk-Min-Length) instead of one PUT
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        chunk_size: Option<u64>,
    },
    /// Check credentials against a registry, then keep them in the auth file podman and skopeo read
    Login {
        /// HOST[:PORT]; docker.io for Docker Hub
        registry: String,
        /// The user name [default: asked on the terminal]
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Read the password from stdin [default: asked on the terminal]
        #[arg(long)]
        password_stdin: bool,
        /// Plain HTTP, for a registry that is not on loopback (loopback always is)
        #[arg(long)]
        plain_http: bool,
    },
    /// Remove a registry's credentials from the auth file login writes
    Logout {
        /// HOST[:PORT]
        registry: String,
    },
    /// Serve the store's OCI images over the distribution API (pull, and push unless --read-only)
    ///
    /// Repositories are image names, tags the store's tags (NAME:TAG), else the version label of
    /// an OCI image of that name; ACIs are not served. Logs one line per request (IMGSTORE_LOG
    /// sets the level, info by default) and stops on SIGINT or SIGTERM, dropping uploads in
    /// flight.
    Serve {
        /// Address to listen on (IP:PORT, or localhost:PORT)
        #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Refuse every push and delete
        #[arg(long)]
        read_only: bool,
        /// Ask for Basic credentials, checked against this htpasswd file (bcrypt: htpasswd -B)
        #[arg(long, value_name = "FILE")]
        htpasswd: Option<PathBuf>,
        /// Serve HTTPS with this certificate chain (PEM)
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Drop upload sessions (and uploads no manifest named) idle this long
        #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = duration::parse)]
        upload_timeout: Duration,
    },
}

impl Args {
    /// The log filter when `IMGSTORE_LOG` is not set, if the command has
    /// one of its own: a server logs each request.
    pub fn default_log_filter(&self) -> Option<&'static str> {
        matches!(self.command, Command::Serve { .. }).then_some("imgstore=info")
    }

    /// Whether the command handles SIGINT and SIGTERM itself (a server
    /// drops its uploads and stops), instead of exiting at once.
    pub fn stops_on_signals(&self) -> bool {
        matches!(self.command, Command::Serve { .. })
    }
}

fn jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Aci,
    Oci,
    Docker,
}

impl From<FormatArg> for ArchiveFormat {
    fn from(f: FormatArg) -> ArchiveFormat {
        match f {
            FormatArg::Auto => ArchiveFormat::Auto,
            FormatArg::Aci => ArchiveFormat::Aci,
            FormatArg::Oci => ArchiveFormat::Oci,
            FormatArg::Docker => ArchiveFormat::Docker,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SortArg {
    Name,
    Imported,
    Used,
    Size,
}

/// `IP:PORT`, or a name that resolves (`localhost:5000`): its first address.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_label(s: &str) -> Result<Label, String> {
    Label::parse(s).map_err(|e| e.to_string())
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> Result<ExitCode> {
    let out = Printer::new(args.json, args.full);
    // Credentials are not the store's: login and logout leave it alone.
    match &args.command {
        Command::Login {
            registry,
            username,
            password_stdin,
            plain_http,
        } => {
            let username = match username {
                Some(u) => u.clone(),
                None => prompt::line("Username: ")?,
            };
            let password = if *password_stdin {
                prompt::stdin_password()?
            } else {
                prompt::password("Password: ")?
            };
            let file = Store::login(
                registry,
                &username,
                &password,
                &LoginOptions::new().plain_http(*plain_http),
            )?;
            out.line_or_json(
                &format!(
                    "logged in to {registry} (credentials in {})",
                    file.display()
                ),
                &serde_json::json!({ "registry": registry, "auth_file": file }),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Logout { registry } => {
            let file = Store::logout(registry)?;
            out.line_or_json(
                &format!("logged out of {registry} (removed from {})", file.display()),
                &serde_json::json!({ "registry": registry, "auth_file": file }),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let dir = args.store.clone().unwrap_or_else(Store::default_dir);
    // Commands that free space may spend the store's reserve to open it on
    // a full disk; the others may not.
    let store = match args.command {
        Command::Rm { .. } | Command::Gc { .. } | Command::Prune { .. } => {
            Store::open_for_cleanup(&dir)
        }
        _ => Store::open(&dir),
    }
    .with_context(|| format!("cannot open store {}", dir.display()))?;
    match args.command {
        Command::Import {
            paths,
            latest,
            format,
            verify_layers,
            allow_missing,
            name,
        } => {
            let mut options = ImportOptions::new()
                .latest(latest)
                .format(format.into())
                .verify_layers(verify_layers)
                .allow_missing(allow_missing);
            if let Some(name) = name {
                options = options.name(name);
            }
            options.progress = progress::Bars::on_terminal();
            let mut imported = Vec::new();
            for path in &paths {
                // Library errors name the file already.
                let images = store.import(path, &options)?;
                if !args.json {
                    for image in &images {
                        out.line(&image.key.to_string())?;
                    }
                }
                let unnamed = images.iter().filter(|i| i.name.is_empty()).count();
                if unnamed > 0 {
                    // Said, not failed: the images are there, found by key
                    // or tag, and `tag` can name them.
                    let _ = writeln!(
                        io::stderr(),
                        "warning: {}: {unnamed} of {} images imported without a name (the input gives {}); name them with `import --name NAME` (after `rm`: a re-import keeps the record) or with `tag`",
                        output::escape(&path.display().to_string()),
                        images.len(),
                        if images
                            .iter()
                            .any(|i| i.name.is_empty() && i.label("version").is_some())
                        {
                            "only a tag"
                        } else {
                            "none"
                        },
                    );
                }
                imported.extend(images);
            }
            if args.json {
                out.json(&imported)?;
            }
        }
        Command::Fetch {
            urls,
            no_cache,
            latest,
            format,
            verify_layers,
        } => {
            let mut options = FetchOptions::new()
                .no_cache(no_cache)
                .latest(latest)
                .format(format.into())
                .verify_layers(verify_layers);
            options.progress = progress::Bars::on_terminal();
            let mut fetched = Vec::new();
            for url in &urls {
                // Library errors name the URL already.
                let images = store.fetch(url, &options)?;
                if !args.json {
                    for image in &images {
                        out.line(&image.key.to_string())?;
                    }
                }
                fetched.extend(images);
            }
            if args.json {
                out.json(&fetched)?;
            }
        }
        Command::Images { name, labels, sort } => {
            let mut images = store.images(name.as_deref(), &labels)?;
            output::sort_images(&mut images, sort);
            out.images(&images)?;
        }
        Command::Latest { name, labels } => {
            let info = store.latest(&name, &labels)?;
            out.key_or_json(&info.key, &info)?;
        }
        Command::Resolve { image } => {
            let key = store.resolve(&image)?;
            out.key_or_json(&key, &serde_json::json!({ "key": key }))?;
        }
        Command::Cat { key } => {
            let digest = store.resolve_blob(&key)?;
            let mut reader = store.open_blob(&digest)?;
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            io::copy(&mut reader, &mut lock)
                .map_err(read_error)
                .with_context(|| format!("cannot read blob {digest}"))?;
            lock.flush()?;
        }
        Command::Manifest { image } => {
            let key = store.resolve(&image)?;
            let bytes = store.manifest(&key)?;
            io::stdout().write_all(&bytes)?;
        }
        Command::Inspect { image } => {
            let key = store.resolve(&image)?;
            out.inspect(&store.inspect(&key)?)?;
        }
        Command::Tag { image, tag, expect } => {
            let key = store.resolve(&image)?;
            let expect_key = match expect.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(k) => Some(Some(store.resolve_key(k)?)),
            };
            store.tag(&key, &tag, expect_key.as_ref().map(Option::as_ref))?;
            out.key_or_json(&key, &serde_json::json!({ "tag": tag, "key": key }))?;
        }
        Command::Untag { tag } => {
            store.untag(&tag)?;
            if args.json {
                out.json(&serde_json::json!({ "untagged": tag }))?;
            }
        }
        Command::Rm { images } => {
            let mut removed = Vec::new();
            for image in &images {
                let key = store.resolve(image)?;
                store.remove(&key)?;
                if !args.json {
                    out.line(&key.to_string())?;
                }
                removed.push(key);
            }
            if args.json {
                out.json(&serde_json::json!({ "removed": removed }))?;
            }
        }
        Command::Gc {
            dry_run,
            grace,
            no_wait,
            full,
        } => {
            let report = store.gc(&GcOptions::new()
                .dry_run(dry_run)
                .grace(grace)
                .wait(!no_wait)
                .full(full))?;
            out.gc(&report)?;
        }
        Command::Prune { unused_for, keep } => {
            let trees = store.prune_trees(unused_for)?;
            let removed = store.prune(unused_for, keep)?;
            if args.json {
                out.json(&removed)?;
            } else {
                for image in &removed {
                    out.line(&image.key.to_string())?;
                }
                for tree in &trees {
                    out.line(&tree.path.display().to_string())?;
                }
            }
        }
        Command::Fsck {
            repair,
            layers,
            trees,
        } => {
            let report = store.fsck(
                &FsckOptions::new()
                    .repair(repair)
                    .layers(layers)
                    .trees(trees),
            )?;
            if args.json {
                out.json(&report)?;
            } else {
                // Names and paths in the report come from outside.
                for line in report.to_string().trim_end().lines() {
                    out.line(&output::escape(line))?;
                }
            }
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Export { images, oci } => {
            let keys = images
                .iter()
                .map(|i| store.resolve(i))
                .collect::<Result<Vec<_>, _>>()?;
            store.export(&keys, &oci)?;
            if args.json {
                out.json(&serde_json::json!({ "exported": keys, "to": oci }))?;
            }
        }
        Command::Render {
            image,
            dir,
            platform,
            rootless,
        } => {
            let key = store.resolve(&image)?;
            let mut options = RenderOptions {
                platform,
                ..RenderOptions::default()
            };
            options.rootless |= rootless;
            options.progress = progress::Bars::on_terminal();
            match dir {
                Some(dir) => {
                    let report = store.render(&key, &dir, &options)?;
                    for warning in &report.warnings {
                        eprintln!("warning: {warning}");
                    }
                    if args.json {
                        out.json(&report)?;
                    } else {
                        out.line(&report.rootfs.display().to_string())?;
                    }
                }
                None => {
                    let kept = store.render_tree(&key, &options)?;
                    for warning in kept.report.iter().flat_map(|r| &r.warnings) {
                        eprintln!("warning: {warning}");
                    }
                    if args.json {
                        out.json(&kept)?;
                    } else {
                        out.line(&kept.tree.rootfs.display().to_string())?;
                    }
                }
            }
        }
        Command::Trees => out.trees(&store.trees()?)?,
        Command::Remotes => out.remotes(&store.remotes()?)?,
        Command::Du => out.du(&store.du()?)?,
        Command::Pull {
            references,
            platform,
            all_platforms,
            plain_http,
            jobs,
            verify_layers,
        } => {
            let mut options = PullOptions::new()
                .all_platforms(all_platforms)
                .plain_http(plain_http)
                .jobs(jobs)
                .verify_layers(verify_layers);
            if let Some(platform) = platform {
                options = options.platform(platform);
            }
            options.progress = progress::Bars::on_terminal();
            let pulled = store.pull(&references, &options)?;
            if args.json {
                out.json(&pulled)?;
            } else {
                for p in &pulled {
                    out.line(&p.image.key.to_string())?;
                }
            }
        }
        Command::Push {
            image,
            reference,
            plain_http,
            jobs,
            chunk_size,
        } => {
            let key = store.resolve(&image)?;
            let mut options = PushOptions::new().plain_http(plain_http).jobs(jobs);
            if let Some(bytes) = chunk_size {
                options = options.chunk_size(bytes);
            }
            options.progress = progress::Bars::on_terminal();
            let pushed = store.push(&key, &reference, &options)?;
            out.key_or_json(&pushed.key, &pushed)?;
        }
        Command::Login { .. } | Command::Logout { .. } => unreachable!("handled above"),
        Command::Serve {
            listen,
            read_only,
            htpasswd,
            tls_cert,
            tls_key,
            upload_timeout,
        } => {
            let mut options = ServeOptions::new()
                .listen(listen)
                .read_only(read_only)
                .upload_timeout(upload_timeout);
            if let Some(htpasswd) = htpasswd {
                options = options.htpasswd(htpasswd);
            }
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                options = options.tls(cert, key);
            }
            let server = Server::bind(store, options)?;
            let addr = server.local_addr();
            out.line_or_json(&addr.to_string(), &serde_json::json!({ "listen": addr }))?;
            server.run()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Unwraps the library error (a digest mismatch) that a verified read
/// carries inside an io::Error.
fn read_error(e: io::Error) -> anyhow::Error {
    if e.get_ref().is_some_and(|i| i.is::<imgstore::Error>()) {
        let inner = e.into_inner().expect("checked above");
        return anyhow::Error::new(*inner.downcast::<imgstore::Error>().expect("checked above"));
    }
    anyhow::Error::new(e)
}

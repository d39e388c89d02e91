//! Human tables and `--json` output.
//!
//! Human output shows what the index holds, which came from archives
//! anyone could write: every string from there is [`escape`]d, so that a
//! name holding a newline or an escape sequence cannot break a table or
//! paint a fake line in a terminal, and a table cell is cut to
//! [`MAX_CELL`] characters, so that no cell sets an enormous width.
//! `--json` output is exact (JSON escapes what it must).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use imgstore::{Digest, DiskUsage, GcReport, ImageDetails, ImageInfo, Remote, TreeInfo};
use serde::Serialize;

use super::SortArg;

pub struct Printer {
    json: bool,
    full: bool,
}

impl Printer {
    pub fn new(json: bool, full: bool) -> Printer {
        Printer { json, full }
    }

    pub fn line(&self, s: &str) -> Result<()> {
        writeln!(io::stdout().lock(), "{s}")?;
        Ok(())
    }

    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }

    /// A full key on its own line, or the JSON value.
    pub fn key_or_json<T: Serialize>(&self, key: &Digest, value: &T) -> Result<()> {
        self.line_or_json(&key.to_string(), value)
    }

    /// A line for people, or the JSON value.
    pub fn line_or_json<T: Serialize>(&self, line: &str, value: &T) -> Result<()> {
        if self.json {
            self.json(value)
        } else {
            self.line(line)
        }
    }

    fn key(&self, key: &Digest) -> String {
        if self.full {
            key.to_string()
        } else {
            key.short()
        }
    }

    pub fn images(&self, images: &[ImageInfo]) -> Result<()> {
        if self.json {
            return self.json(images);
        }
        let rows: Vec<Vec<String>> = images
            .iter()
            .map(|i| {
                vec![
                    self.key(&i.key),
                    i.name.clone(),
                    i.label("version").unwrap_or("-").to_string(),
                    i.format.to_string(),
                    if i.latest { "yes" } else { "" }.to_string(),
                    time(&i.imported_at),
                    time(&i.last_used),
                    bytes(i.size),
                ]
            })
            .collect();
        table(
            &[
                "KEY", "NAME", "VERSION", "FORMAT", "LATEST", "IMPORTED", "USED", "SIZE",
            ],
            &rows,
        )
    }

    pub fn inspect(&self, d: &ImageDetails) -> Result<()> {
        if self.json {
            return self.json(d);
        }
        let i = &d.info;
        let mut out = io::stdout().lock();
        writeln!(out, "Key:       {}", i.key)?;
        writeln!(out, "Name:      {}", escape(&i.name))?;
        writeln!(out, "Format:    {}", i.format)?;
        writeln!(out, "Imported:  {}", time(&i.imported_at))?;
        writeln!(out, "Last used: {}", time(&i.last_used))?;
        writeln!(out, "Latest:    {}", if i.latest { "yes" } else { "no" })?;
        writeln!(out, "Size:      {} ({} bytes)", bytes(i.size), i.size)?;
        writeln!(out, "Manifest:  {}", i.manifest)?;
        writeln!(out, "Labels:")?;
        for l in &i.labels {
            writeln!(out, "  {}={}", escape(&l.name), escape(&l.value))?;
        }
        if !d.tags.is_empty() {
            writeln!(out, "Tags:")?;
            for t in &d.tags {
                writeln!(out, "  {}", escape(t))?;
            }
        }
        writeln!(out, "Blobs:")?;
        drop(out);
        let rows: Vec<Vec<String>> = d
            .blobs
            .iter()
            .map(|b| {
                vec![
                    format!("  {}", self.key(&b.digest)),
                    bytes(b.size),
                    b.refcount.to_string(),
                    b.media_type.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(&["  DIGEST", "SIZE", "REFS", "MEDIA TYPE"], &rows)
    }

    pub fn remotes(&self, remotes: &[Remote]) -> Result<()> {
        if self.json {
            return self.json(remotes);
        }
        let rows: Vec<Vec<String>> = remotes
            .iter()
            .map(|r| {
                vec![
                    r.url.clone(),
                    self.key(&r.blob),
                    r.image.as_ref().map_or_else(|| "-".into(), |k| self.key(k)),
                    r.etag.clone().unwrap_or_else(|| "-".into()),
                    r.max_age.map_or_else(|| "-".into(), |s| format!("{s}s")),
                    time(&r.downloaded_at),
                ]
            })
            .collect();
        table(
            &["URL", "BLOB", "IMAGE", "ETAG", "MAX-AGE", "DOWNLOADED"],
            &rows,
        )
    }

    pub fn trees(&self, trees: &[TreeInfo]) -> Result<()> {
        if self.json {
            return self.json(trees);
        }
        let rows: Vec<Vec<String>> = trees
            .iter()
            .map(|t| {
                let mut options = t.platform.clone().unwrap_or_else(|| "-".into());
                if t.rootless {
                    options.push_str(" rootless");
                }
                vec![
                    self.key(&t.image),
                    t.image_name.clone(),
                    options,
                    bytes(t.size),
                    time(&t.last_used),
                    t.rootfs.display().to_string(),
                ]
            })
            .collect();
        table(
            &["IMAGE", "NAME", "PLATFORM", "SIZE", "USED", "PATH"],
            &rows,
        )
    }

    pub fn gc(&self, r: &GcReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        let verb = if r.dry_run { "would free" } else { "freed" };
        let mut out = io::stdout().lock();
        writeln!(out, "blobs:      {} ({})", r.blobs, bytes(r.blob_bytes))?;
        writeln!(out, "orphans:    {} ({})", r.orphans, bytes(r.orphan_bytes))?;
        writeln!(
            out,
            "temp files: {} ({})",
            r.temp_files,
            bytes(r.temp_bytes)
        )?;
        if r.tree_dirs + r.tree_rows > 0 {
            writeln!(
                out,
                "trees:      {} left by renders cut short, {} records of trees gone",
                r.tree_dirs, r.tree_rows
            )?;
        }
        writeln!(out, "{verb} {} in total", bytes(r.bytes()))?;
        if r.full_sweep {
            writeln!(out, "(walked the whole blob tree for orphans)")?;
        }
        Ok(())
    }

    pub fn du(&self, d: &DiskUsage) -> Result<()> {
        if self.json {
            return self.json(d);
        }
        let rows = vec![
            vec!["images".into(), d.images.to_string(), "".into()],
            vec![
                "referenced blobs".into(),
                d.referenced_blobs.to_string(),
                bytes(d.referenced_bytes),
            ],
            vec![
                "  of which shared".into(),
                d.shared_blobs.to_string(),
                bytes(d.shared_bytes),
            ],
            vec![
                "garbage (gc frees)".into(),
                d.garbage_blobs.to_string(),
                bytes(d.garbage_bytes),
            ],
            vec![
                "kept trees".into(),
                d.trees.to_string(),
                bytes(d.tree_bytes),
            ],
            vec!["temp files".into(), "".into(), bytes(d.temp_bytes)],
            vec!["index".into(), "".into(), bytes(d.index_bytes)],
        ];
        table(&["WHAT", "COUNT", "SIZE"], &rows)
    }
}

pub fn sort_images(images: &mut [ImageInfo], by: SortArg) {
    match by {
        SortArg::Name => {
            images.sort_by(|a, b| a.name.cmp(&b.name).then(a.imported_at.cmp(&b.imported_at)))
        }
        SortArg::Imported => images.sort_by_key(|i| i.imported_at),
        SortArg::Used => images.sort_by_key(|i| i.last_used),
        SortArg::Size => images.sort_by_key(|i| i.size),
    }
}

/// The widest a table cell is shown; longer ones are cut, ending in `…`.
pub const MAX_CELL: usize = 200;

/// Prints rows under headers, columns padded to their widest cell. Cells
/// are escaped and cut to [`MAX_CELL`] characters; padding is counted, not
/// left to a format width (which has a ceiling and panics above it).
fn table(headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let rows: Vec<Vec<(String, usize)>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| fit(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, (_, width)) in widths.iter_mut().zip(row) {
            *w = (*w).max(*width);
        }
    }
    let mut out = io::stdout().lock();
    let print = |out: &mut io::StdoutLock, cells: &mut dyn Iterator<Item = (&str, usize)>| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width);
            line.extend(std::iter::repeat_n(' ', pad));
        }
        writeln!(out, "{}", line.trim_end())
    };
    print(
        &mut out,
        &mut headers.iter().map(|h| (*h, h.chars().count())),
    )?;
    for row in &rows {
        print(&mut out, &mut row.iter().map(|(c, w)| (c.as_str(), *w)))?;
    }
    Ok(())
}

/// A cell as shown, escaped and cut to [`MAX_CELL`], with its width in
/// characters.
fn fit(cell: &str) -> (String, usize) {
    let escaped = escape(cell);
    match escaped.char_indices().nth(MAX_CELL - 1) {
        Some((cut, _)) if escaped[cut..].chars().nth(1).is_some() => {
            (format!("{}…", &escaped[..cut]), MAX_CELL)
        }
        _ => {
            let width = escaped.chars().count();
            (escaped.into_owned(), width)
        }
    }
}

/// A string from outside made safe to print on a terminal: control
/// characters (newline, carriage return, tab, NUL, ESC, DEL, C1) and the
/// bidirectional overrides, which can make text read other than it is,
/// become escapes (`\n`, `\t`, `\0`, `\u{1b}`…). Anything else is
/// left as it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn time(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

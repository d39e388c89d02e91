//! Member names made relative to the root, and OCI whiteout names.
//!
//! A name is cleaned as if it were absolute (`filepath.Clean("/" + name)`,
//! as umoci and containerd do): `/etc/x`, `./etc/x`, `etc//x/` and
//! `../../etc/x` all become `etc/x`, since `..` at the top stays at the top.
//! This only shapes the name; where it leads, through symlinks, is for the
//! kernel to resolve inside the root ([`super::root`]).

use super::root::MAX_PATH;

/// Why a name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameProblem {
    Nul,
    TooLong,
}

/// `raw` as a path relative to the root: components joined by `/`, none
/// empty, `.` or `..`; `""` for the root itself.
pub(super) fn normalize(raw: &[u8]) -> Result<Vec<u8>, NameProblem> {
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    if raw.len() > MAX_PATH {
        return Err(NameProblem::TooLong);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join(&b'/'))
}

/// What a member's last component says, as the OCI layer spec reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout<'a> {
    /// An ordinary name.
    No,
    /// `.wh..wh..opq`: the directory hides what lower layers put in it.
    Opaque,
    /// `.wh.NAME`: NAME is removed from the lower layers.
    Remove(&'a [u8]),
    /// `.wh..wh.*` (aufs bookkeeping such as `.wh..wh.plnk`): not a
    /// whiteout, and not a file either; skipped, as docker and containerd do.
    Meta,
}

/// Classifies a last component; a whiteout of nothing, `.` or `..`
/// (`.wh.`, `.wh..`, `.wh...`) is malformed.
pub(super) fn whiteout(name: &[u8]) -> Result<Whiteout<'_>, ()> {
    let Some(rest) = name.strip_prefix(b".wh.") else {
        return Ok(Whiteout::No);
    };
    if rest == b".wh..opq" {
        return Ok(Whiteout::Opaque);
    }
    if rest.starts_with(b".wh.") {
        return Ok(Whiteout::Meta);
    }
    match rest {
        b"" | b"." | b".." => Err(()),
        _ => Ok(Whiteout::Remove(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn names_stay_inside() {
        assert_eq!(n("etc/passwd"), "etc/passwd");
        assert_eq!(n("/etc/passwd"), "etc/passwd");
        assert_eq!(n("./etc//passwd/"), "etc/passwd");
        assert_eq!(n("../../etc/passwd"), "etc/passwd");
        assert_eq!(n("/../.."), "");
        assert_eq!(n("a/b/../../../c"), "c");
        assert_eq!(n("dne/../.wh.etc"), ".wh.etc");
        assert_eq!(n("./"), "");
        assert_eq!(n("..."), "...");
        assert_eq!(normalize(b"a\0b"), Err(NameProblem::Nul));
        assert_eq!(
            normalize(&vec![b'a'; MAX_PATH + 1]),
            Err(NameProblem::TooLong)
        );
    }

    #[test]
    fn whiteouts() {
        assert_eq!(whiteout(b"file"), Ok(Whiteout::No));
        assert_eq!(whiteout(b".whatever"), Ok(Whiteout::No));
        assert_eq!(whiteout(b".wh.file"), Ok(Whiteout::Remove(b"file")));
        assert_eq!(whiteout(b".wh..hidden"), Ok(Whiteout::Remove(b".hidden")));
        assert_eq!(whiteout(b".wh..wh..opq"), Ok(Whiteout::Opaque));
        assert_eq!(whiteout(b".wh..wh.plnk"), Ok(Whiteout::Meta));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert_eq!(whiteout(bad), Err(()), "{bad:?}");
        }
    }
}

//! Byte ranges, both ways: a client's `Range` on a blob (RFC 9110 §14: one
//! range, `a-b`, `a-` or the suffix `-n`; several ranges are answered with
//! the whole blob, which the RFC allows), and the `Content-Range` of an
//! upload chunk (`start-end`, as the distribution spec writes it, or the
//! RFC's `bytes start-end/total`).

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// The whole blob: no range, or one this server does not cut.
    Whole,
    /// `len` bytes from `start`.
    Part { start: u64, len: u64 },
    /// A range the blob cannot satisfy: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header against a blob of `size` bytes.
pub(super) fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        // The last `n` bytes.
        return match number(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if size == 0 => Wanted::Unsatisfiable,
            Some(n) => {
                let len = n.min(size);
                Wanted::Part {
                    start: size - len,
                    len,
                }
            }
            None => Wanted::Whole,
        };
    }
    let Some(start) = number(first) else {
        return Wanted::Whole;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            // `5-3` is no valid range: ignored, as the RFC says.
            _ => return Wanted::Whole,
        }
    };
    if start >= size {
        return Wanted::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    Wanted::Part {
        start,
        len: end - start + 1,
    }
}

/// The first and last byte an upload chunk's `Content-Range` names; `None`
/// if it is not a range.
pub(super) fn content_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value
        .strip_prefix("bytes")
        .map_or(value, |v| v.trim_start_matches([' ', '=']));
    let range = value.split('/').next()?.trim();
    let (start, end) = range.split_once('-')?;
    let parse = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = (parse(start)?, parse(end)?);
    (end >= start).then_some((start, end))
}

/// The `Range` header of an upload session holding `size` bytes:
/// `0-<last byte>`, and `0-0` when empty, as distribution answers.
pub(super) fn session_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_as_the_rfc_says() {
        let part = |start, len| Wanted::Part { start, len };
        let cases = [
            (None, 10, Wanted::Whole),
            (Some("bytes=0-4"), 10, part(0, 5)),
            (Some("bytes=5-"), 10, part(5, 5)),
            (Some("bytes=5-100"), 10, part(5, 5)),
            (Some("bytes=9-9"), 10, part(9, 1)),
            (Some("bytes=-3"), 10, part(7, 3)),
            (Some("bytes=-30"), 10, part(0, 10)),
            (Some("bytes=10-"), 10, Wanted::Unsatisfiable),
            (Some("bytes=10-20"), 10, Wanted::Unsatisfiable),
            (Some("bytes=-0"), 10, Wanted::Unsatisfiable),
            (Some("bytes=0-"), 0, Wanted::Unsatisfiable),
            (Some("bytes=-1"), 0, Wanted::Unsatisfiable),
            (Some("bytes=5-3"), 10, Wanted::Whole),
            (Some("bytes=0-1,4-5"), 10, Wanted::Whole),
            (Some("items=0-1"), 10, Wanted::Whole),
            (Some("bytes=x-1"), 10, Wanted::Whole),
            (Some("bytes=+1-2"), 10, Wanted::Whole),
        ];
        for (header, size, expected) in cases {
            assert_eq!(wanted(header, size), expected, "{header:?} of {size}");
        }
    }

    #[test]
    fn reads_chunk_ranges_in_both_spellings() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("100-199"), Some((100, 199)));
        assert_eq!(content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(content_range("bytes=100-199/*"), Some((100, 199)));
        assert_eq!(content_range("5-4"), None);
        assert_eq!(content_range("-4"), None);
        assert_eq!(content_range("a-b"), None);
        assert_eq!(session_range(0), "0-0");
        assert_eq!(session_range(1), "0-0");
        assert_eq!(session_range(100), "0-99");
    }
}

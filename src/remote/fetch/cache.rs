//! rkt's freshness rule for a remote row: a download stays fresh for the
//! max-age its answer gave (`Cache-Control: max-age`; `no-cache` and
//! `no-store` count as 0, and no max-age at all means ask every time),
//! counted from the download time, which a `304` moves to now.

use chrono::{DateTime, Utc};

use crate::image::Remote;

/// Whether `remote` may be used without asking the server at `now`. A
/// download time in the future (the clock went back) is not trusted.
pub(super) fn is_fresh(remote: &Remote, now: DateTime<Utc>) -> bool {
    let Some(max_age) = remote.max_age.filter(|&s| s > 0) else {
        return false;
    };
    let Ok(age) = u128::try_from(
        now.signed_duration_since(remote.downloaded_at)
            .num_milliseconds(),
    ) else {
        return false;
    };
    age < u128::from(max_age) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use chrono::TimeDelta;

    fn remote(max_age: Option<u64>, downloaded_at: DateTime<Utc>) -> Remote {
        let key = Digest::of(Algorithm::Sha256, b"x");
        Remote {
            url: "http://example.com/x.aci".into(),
            etag: Some("\"e\"".into()),
            max_age,
            downloaded_at,
            blob: key.clone(),
            image: Some(key),
        }
    }

    #[test]
    fn fresh_within_max_age_only() {
        let now = Utc::now();
        let ago = |s| now - TimeDelta::seconds(s);
        assert!(is_fresh(&remote(Some(60), ago(59)), now));
        assert!(!is_fresh(&remote(Some(60), ago(60)), now));
        assert!(!is_fresh(&remote(Some(60), ago(3600)), now));
        // no-cache / no-store, or nothing said: always ask.
        assert!(!is_fresh(&remote(Some(0), now), now));
        assert!(!is_fresh(&remote(None, now), now));
        // A download "from the future": ask.
        assert!(!is_fresh(
            &remote(Some(60), now + TimeDelta::seconds(5)),
            now
        ));
        // Huge max-ages do not overflow.
        assert!(is_fresh(&remote(Some(u64::MAX), ago(1)), now));
    }
}

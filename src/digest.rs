//! Content digests: an algorithm and the lower-case hex of a hash.
//!
//! A digest is written `sha256:<64 hex>` (OCI form) or `sha512-<128 hex>`
//! (appc form) on input; storage and `--json` output always use the OCI form,
//! and always the full length. Nothing builds a path from a digest that has
//! not been through [`Digest::parse`], which admits only lower-case hex of
//! exactly the algorithm's length — so a digest can never smuggle `/` or `..`
//! into the blob tree.
//!
//! Short forms exist only for input (a [`KeyPrefix`], resolved against the
//! index) and for display ([`Digest::short`]).

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, as OCI images use.
    Sha256,
    /// SHA-512, as appc images use.
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in the order prefixes are resolved.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name in a digest: `sha256`, `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex form of a full digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The algorithm of a name, if the store supports it.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// A new running hash of this algorithm.
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            Algorithm::Sha256 => HashState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HashState::Sha512(sha2::Sha512::new()),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running hash of one algorithm, ending in a [`Digest`]. The hash
/// implementation behind it is not part of the API.
#[derive(Clone)]
pub struct Hasher(HashState);

#[derive(Clone)]
enum HashState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Hashes more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HashState::Sha256(h) => h.update(bytes),
            HashState::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of every byte hashed.
    pub fn finish(self) -> Digest {
        match self.0 {
            HashState::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            HashState::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.0 {
            HashState::Sha256(_) => Algorithm::Sha256,
            HashState::Sha512(_) => Algorithm::Sha512,
        };
        f.debug_struct("Hasher")
            .field("algorithm", &algorithm)
            .finish()
    }
}

/// Why a string is not a digest or a key prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    #[error("malformed digest {input:?}: {reason}")]
    /// Not of the form `algorithm:hex` with the right hex.
    Malformed {
        /// The input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    #[error("unsupported digest algorithm {algorithm:?} in {input:?} (expected sha256 or sha512)")]
    /// An algorithm other than sha256 and sha512.
    UnknownAlgorithm {
        /// The input.
        input: String,
        /// The algorithm it names.
        algorithm: String,
    },
    #[error("key prefix {input:?} is too short: give at least {min} hex digits")]
    /// A key prefix with too few hex digits to be taken for a key.
    TooShort {
        /// The input.
        input: String,
        /// The fewest hex digits accepted.
        min: usize,
    },
}

/// A full-length digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `alg:hex` or `alg-hex`; the hex must be lower case and full length.
    pub fn parse(input: &str) -> Result<Digest, DigestError> {
        let malformed = |reason| DigestError::Malformed {
            input: input.to_string(),
            reason,
        };
        let (alg, hex) = split_algorithm(input)
            .ok_or_else(|| malformed("expected <algorithm>:<hex>, as in sha256:… or sha512-…"))?;
        let algorithm = Algorithm::from_name(alg).ok_or_else(|| DigestError::UnknownAlgorithm {
            input: input.to_string(),
            algorithm: alg.to_string(),
        })?;
        if !hex.bytes().all(is_lower_hex) {
            return Err(malformed("the hash must be lower-case hex"));
        }
        if hex.len() != algorithm.hex_len() {
            return Err(malformed("the hash has the wrong length for its algorithm"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// Hashes a byte slice at once.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hash, in lower-case hex, full length.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The appc form, `sha512-<hex>`.
    pub fn appc(&self) -> String {
        format!("{}-{}", self.algorithm, self.hex)
    }

    /// The form for tables: algorithm and the first 12 hex digits.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm, &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A possibly shortened key given by a user: `sha512-ab12`, `sha256:ab12` or
/// bare `ab12…`, to be resolved against the index by a range scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix {
    /// `None` for a bare prefix, which may match any algorithm.
    algorithm: Option<Algorithm>,
    /// Lower-case hex, at most the algorithm's full length.
    hex: String,
}

/// Fewest hex digits accepted after an explicit algorithm.
pub const MIN_PREFIX_WITH_ALGORITHM: usize = 2;
/// Fewest hex digits accepted for a bare prefix (short bare words are more
/// likely names than keys).
pub const MIN_BARE_PREFIX: usize = 4;

impl KeyPrefix {
    /// Parses `sha512-ab12`, `sha256:ab12` or bare `ab12…` (at least
    /// [`MIN_PREFIX_WITH_ALGORITHM`] or [`MIN_BARE_PREFIX`] hex digits).
    pub fn parse(input: &str) -> Result<KeyPrefix, DigestError> {
        let malformed = |reason| DigestError::Malformed {
            input: input.to_string(),
            reason,
        };
        let (algorithm, hex, min) = match split_algorithm(input) {
            Some((alg, hex)) => {
                let algorithm =
                    Algorithm::from_name(alg).ok_or_else(|| DigestError::UnknownAlgorithm {
                        input: input.to_string(),
                        algorithm: alg.to_string(),
                    })?;
                (Some(algorithm), hex, MIN_PREFIX_WITH_ALGORITHM)
            }
            None => (None, input, MIN_BARE_PREFIX),
        };
        let hex = hex.to_ascii_lowercase();
        if !hex.bytes().all(is_lower_hex) {
            return Err(malformed("a key prefix is hex digits"));
        }
        let max = algorithm.map_or(Algorithm::Sha512.hex_len(), Algorithm::hex_len);
        if hex.len() > max {
            return Err(malformed("longer than a full digest"));
        }
        if hex.len() < min {
            return Err(DigestError::TooShort {
                input: input.to_string(),
                min,
            });
        }
        Ok(KeyPrefix { algorithm, hex })
    }

    /// The algorithm given, if any (a bare prefix may match any).
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// The hex digits given, in lower case.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether the input looks like a key at all (used to decide whether an
    /// IMAGE argument should be tried as a key before as a name).
    pub fn looks_like_key(input: &str) -> bool {
        match split_algorithm(input) {
            Some((alg, _)) => Algorithm::from_name(alg).is_some(),
            None => input.len() >= MIN_BARE_PREFIX && input.bytes().all(|b| b.is_ascii_hexdigit()),
        }
    }

    /// The algorithms this prefix may belong to.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        match self.algorithm {
            Some(a) => vec![a],
            None => Algorithm::ALL.to_vec(),
        }
    }

    /// The half-open range `[low, high)` of stored digest strings of the given
    /// algorithm that start with this prefix. Hex digits sort below `g`, so
    /// appending `g` gives the first string past every match.
    pub fn range(&self, algorithm: Algorithm) -> (String, String) {
        let low = format!("{algorithm}:{}", self.hex);
        let high = format!("{low}g");
        (low, high)
    }
}

impl From<&Digest> for KeyPrefix {
    /// The prefix that is the whole digest.
    fn from(digest: &Digest) -> KeyPrefix {
        KeyPrefix {
            algorithm: Some(digest.algorithm),
            hex: digest.hex.clone(),
        }
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algorithm {
            Some(a) => write!(f, "{a}:{}", self.hex),
            None => f.write_str(&self.hex),
        }
    }
}

fn split_algorithm(input: &str) -> Option<(&str, &str)> {
    // `sha256:` (OCI) and `sha512-` (appc). An algorithm name is letters and
    // digits only, so the first `:` or `-` ends it.
    let at = input.find([':', '-'])?;
    let (alg, rest) = input.split_at(at);
    if alg.is_empty() || !alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((alg, &rest[1..]))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_both_forms_to_one_digest() {
        let a = Digest::parse(&format!("sha256:{EMPTY256}")).unwrap();
        let b = Digest::parse(&format!("sha256-{EMPTY256}")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Digest::of(Algorithm::Sha256, b""));
        assert_eq!(a.to_string(), format!("sha256:{EMPTY256}"));
        assert_eq!(a.appc(), format!("sha256-{EMPTY256}"));
        assert_eq!(a.short(), "sha256:e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            &format!("sha256:{}", EMPTY256.to_uppercase()),
            &format!("sha256:{}", &EMPTY256[1..]),
            &format!("sha256:{EMPTY256}0"),
            "sha256:../../etc/passwd",
            &format!("md5:{EMPTY256}"),
            &format!("sha256:{EMPTY256}/x"),
            EMPTY256,
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn prefixes() {
        let p = KeyPrefix::parse("sha512-AB12").unwrap();
        assert_eq!(p.algorithm, Some(Algorithm::Sha512));
        assert_eq!(p.hex, "ab12");
        assert_eq!(
            p.range(Algorithm::Sha512),
            ("sha512:ab12".into(), "sha512:ab12g".into())
        );
        assert!(matches!(
            KeyPrefix::parse("sha512-a"),
            Err(DigestError::TooShort { min: 2, .. })
        ));
        assert!(matches!(
            KeyPrefix::parse("abc"),
            Err(DigestError::TooShort { min: 4, .. })
        ));
        assert!(matches!(
            KeyPrefix::parse("sha256:xyz1"),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            KeyPrefix::parse("foo:ab12"),
            Err(DigestError::UnknownAlgorithm { .. })
        ));
        assert_eq!(KeyPrefix::parse("abcd").unwrap().algorithm, None);
        assert!(KeyPrefix::looks_like_key("abcd12"));
        assert!(!KeyPrefix::looks_like_key("example.com/app"));
        assert!(!KeyPrefix::looks_like_key("busybox"));
    }
}

//! Strictness the JSON parser lacks: one value per key.
//!
//! RFC 8259 leaves an object with a key given twice to the reader, and
//! readers disagree (Go keeps the last value, some the first), so a
//! document with duplicate keys can mean two things to two tools: the
//! store refuses it. serde refuses a repeated field of a typed struct but
//! takes the last value for a map or an unknown field, so every document
//! from outside (OCI and docker JSON, appc manifests) is first walked here,
//! in one linear pass that names the key and where it is.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::image::quoted;

/// A key given twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// The key, quoted and shortened for a message.
    pub key: String,
    /// The object's place, as a JSON path: `$`, `$.config.Labels`,
    /// `$.manifests[0]`.
    pub path: String,
}

/// The first key given twice in an object of the document, if any. A
/// document that is not JSON at all gives `None`: the typed parse that
/// follows reports that.
pub(crate) fn duplicate_key(bytes: &[u8]) -> Option<DuplicateKey> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Check {
        at: &Place::Root,
        found: &found,
    };
    match seed.deserialize(&mut de) {
        Ok(()) => None,
        Err(_) => found.into_inner(),
    }
}

/// Where a value is, as a chain up to the root (no allocation until a
/// duplicate is found).
enum Place<'a> {
    Root,
    Key(&'a str, &'a Place<'a>),
    Index(usize, &'a Place<'a>),
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chain = Vec::new();
        let mut at = self;
        loop {
            match at {
                Place::Root => break,
                Place::Key(_, up) | Place::Index(_, up) => {
                    chain.push(at);
                    at = up;
                }
            }
        }
        f.write_str("$")?;
        for place in chain.into_iter().rev() {
            match place {
                Place::Key(k, _) if is_plain(k) => write!(f, ".{k}")?,
                Place::Key(k, _) => write!(f, "[{}]", quoted(k))?,
                Place::Index(i, _) => write!(f, "[{i}]")?,
                Place::Root => {}
            }
        }
        Ok(())
    }
}

fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Walks one value; the first duplicate found is put in `found` and the
/// walk stopped with an error.
#[derive(Clone, Copy)]
struct Check<'a> {
    at: &'a Place<'a>,
    found: &'a RefCell<Option<DuplicateKey>>,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let at = Place::Index(i, self.at);
            let seed = Check {
                at: &at,
                found: self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(DuplicateKey {
                    key: quoted(&key),
                    path: self.at.to_string(),
                });
                return Err(de::Error::custom("duplicate key"));
            }
            let at = Place::Key(&key, self.at);
            map.next_value_seed(Check {
                at: &at,
                found: self.found,
            })?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_given_twice_and_where() {
        assert_eq!(duplicate_key(br#"{"a":1,"b":[{"c":2}]}"#), None);
        assert_eq!(duplicate_key(b"not json"), None);
        let d = duplicate_key(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!((d.key.as_str(), d.path.as_str()), ("\"a\"", "$"));
        let d = duplicate_key(br#"{"m":[{"x":1},{"ann":{"k.v":"1","k.v":"2"}}]}"#).unwrap();
        assert_eq!((d.key.as_str(), d.path.as_str()), ("\"k.v\"", "$.m[1].ann"));
        let d = duplicate_key(br#"{"a b":{"z":1,"z":1}}"#).unwrap();
        assert_eq!(d.path, r#"$["a b"]"#);
        // The same key in two objects is no duplicate.
        assert_eq!(duplicate_key(br#"[{"a":1},{"a":1}]"#), None);
    }
}

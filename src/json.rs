//! Strictness the JSON parser lacks: one value per key, and bounded lists
//! where the store bounds what it records.
//!
//! RFC 8259 leaves an object with a key given twice to the reader, and
//! readers disagree (Go keeps the last value, some the first), so a
//! document with duplicate keys can mean two things to two tools: the
//! store refuses it. serde refuses a repeated field of a typed struct but
//! takes the last value for a map or an unknown field, so every document
//! from outside (OCI and docker JSON, appc manifests) is first walked here,
//! in one linear pass that names the key and where it is.
//!
//! The same pass counts the members of the lists the caller names (an
//! appc manifest's `labels`, a config's `config.Labels`), so that a list
//! over the store's limit is refused before a parse into values would
//! spend memory on every member of it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::image::quoted;

/// What is wrong with a document that parses as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// A key given twice in one object.
    DuplicateKey {
        /// The key, quoted and shortened for a message.
        key: String,
        /// The object's place, as a JSON path: `$`, `$.config.Labels`,
        /// `$.manifests[0]`.
        path: String,
    },
    /// A counted list (array or object) with more members than allowed.
    TooMany {
        /// The list's place, as a JSON path.
        path: String,
        /// Its members.
        count: usize,
        /// The most allowed.
        limit: usize,
    },
}

/// A list to count: the keys leading to it (array indexes skipped, so
/// `["dependencies", "labels"]` is every `$.dependencies[i].labels`) and
/// the most members it may have.
pub(crate) type Counted<'a> = (&'a [&'a str], usize);

/// The first flaw of the document: a key given twice in an object, or a
/// `counted` list that is too long. A document that is not JSON at all
/// gives `None`: the typed parse that follows reports that.
pub(crate) fn check(bytes: &[u8], counted: &[Counted]) -> Option<Flaw> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Check {
        at: &Place::Root,
        counted,
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

impl Place<'_> {
    /// Whether the keys leading here, indexes skipped, are `keys`.
    fn is(&self, keys: &[&str]) -> bool {
        let mut at = self;
        let mut rest = keys;
        loop {
            match at {
                Place::Root => return rest.is_empty(),
                Place::Index(_, up) => at = up,
                Place::Key(k, up) => match rest.split_last() {
                    Some((last, before)) if last == k => {
                        rest = before;
                        at = up;
                    }
                    _ => return false,
                },
            }
        }
    }

    /// The limit of a counted list here, if it is one.
    fn limit(&self, counted: &[Counted]) -> Option<usize> {
        counted
            .iter()
            .find(|(keys, _)| self.is(keys))
            .map(|(_, limit)| *limit)
    }
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
    counted: &'a [Counted<'a>],
    found: &'a RefCell<Option<Flaw>>,
}

impl Check<'_> {
    /// Records a list over its limit, counting the rest of its members
    /// without looking into them.
    fn too_many<E: de::Error>(
        &self,
        count: usize,
        limit: usize,
        mut rest: impl FnMut() -> Result<bool, E>,
    ) -> E {
        let mut count = count;
        loop {
            match rest() {
                Ok(true) => count += 1,
                Ok(false) => break,
                Err(e) => return e,
            }
        }
        *self.found.borrow_mut() = Some(Flaw::TooMany {
            path: self.at.to_string(),
            count,
            limit,
        });
        de::Error::custom("too many members")
    }
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
        let limit = self.at.limit(self.counted).unwrap_or(usize::MAX);
        let mut i = 0;
        loop {
            if i == limit {
                if seq.next_element::<de::IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                let rest = || Ok(seq.next_element::<de::IgnoredAny>()?.is_some());
                return Err(self.too_many(limit + 1, limit, rest));
            }
            let at = Place::Index(i, self.at);
            let seed = Check { at: &at, ..self };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let limit = self.at.limit(self.counted).unwrap_or(usize::MAX);
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(Flaw::DuplicateKey {
                    key: quoted(&key),
                    path: self.at.to_string(),
                });
                return Err(de::Error::custom("duplicate key"));
            }
            if seen.len() == limit {
                map.next_value::<de::IgnoredAny>()?;
                let rest = || match map.next_key::<de::IgnoredAny>()? {
                    Some(_) => map.next_value::<de::IgnoredAny>().map(|_| true),
                    None => Ok(false),
                };
                return Err(self.too_many(limit + 1, limit, rest));
            }
            let at = Place::Key(&key, self.at);
            map.next_value_seed(Check { at: &at, ..self })?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(key: &str, path: &str) -> Option<Flaw> {
        Some(Flaw::DuplicateKey {
            key: key.into(),
            path: path.into(),
        })
    }

    #[test]
    fn finds_the_key_given_twice_and_where() {
        assert_eq!(check(br#"{"a":1,"b":[{"c":2}]}"#, &[]), None);
        assert_eq!(check(b"not json", &[]), None);
        assert_eq!(check(br#"{"a":1,"a":2}"#, &[]), dup("\"a\"", "$"));
        assert_eq!(
            check(br#"{"m":[{"x":1},{"ann":{"k.v":"1","k.v":"2"}}]}"#, &[]),
            dup("\"k.v\"", "$.m[1].ann")
        );
        assert_eq!(
            check(br#"{"a b":{"z":1,"z":1}}"#, &[]),
            dup("\"z\"", r#"$["a b"]"#)
        );
        // The same key in two objects is no duplicate.
        assert_eq!(check(br#"[{"a":1},{"a":1}]"#, &[]), None);
    }

    #[test]
    fn counts_the_lists_it_is_told_to() {
        let rules: &[Counted] = &[(&["labels"], 2), (&["deps", "labels"], 1), (&["c", "L"], 2)];
        assert_eq!(check(br#"{"labels":[1,2],"other":[1,2,3]}"#, rules), None);
        let too_many = |path: &str, count, limit| {
            Some(Flaw::TooMany {
                path: path.into(),
                count,
                limit,
            })
        };
        assert_eq!(
            check(br#"{"labels":[1,2,{"x":[3]},4]}"#, rules),
            too_many("$.labels", 4, 2)
        );
        assert_eq!(
            check(br#"{"deps":[{"labels":[1]},{"labels":[1,2,3]}]}"#, rules),
            too_many("$.deps[1].labels", 3, 1)
        );
        assert_eq!(
            check(br#"{"c":{"L":{"a":"1","b":"2","c":"3"}}}"#, rules),
            too_many("$.c.L", 3, 2)
        );
        // Elsewhere the same key is not counted.
        assert_eq!(check(br#"{"x":{"labels":[1,2,3]}}"#, rules), None);
    }
}

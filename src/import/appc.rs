//! The appc image manifest: parsed and validated as the appc spec requires
//! (acKind, acVersion semver, AC identifiers, unique labels, known os/arch,
//! app user and group, dependencies). Errors name the offending field.

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::ArchiveErrorKind;
use crate::image::{self, Label};
use crate::json;

/// What the store keeps of a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AciManifest {
    pub name: String,
    pub labels: Vec<Label>,
    pub dependencies: Vec<Dependency>,
    /// Absolute paths; empty when absent (everything is kept).
    pub path_whitelist: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub image_name: String,
    pub image_id: Option<Digest>,
    pub labels: Vec<Label>,
    pub size: Option<u64>,
}

/// Operating systems and their architectures, from the appc spec.
const OS_ARCH: &[(&str, &[&str])] = &[
    (
        "linux",
        &[
            "amd64",
            "i386",
            "aarch64",
            "aarch64_be",
            "armv6l",
            "armv7l",
            "armv7b",
            "ppc64",
            "ppc64le",
            "s390x",
        ],
    ),
    ("freebsd", &["amd64", "i386", "arm"]),
    ("darwin", &["x86_64", "i386"]),
];

/// An AC identifier: lower-case alphanumeric words joined by `-._~/`.
pub(crate) fn is_ac_identifier(s: &str) -> bool {
    let mut prev_sep = true; // the first character may not be a separator
    for c in s.chars() {
        let sep = matches!(c, '-' | '.' | '_' | '~' | '/');
        if sep {
            if prev_sep {
                return false;
            }
        } else if !(c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return false;
        }
        prev_sep = sep;
    }
    !s.is_empty() && !prev_sep
}

type Invalid = ArchiveErrorKind;

/// A manifest field that breaks the spec.
fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    ArchiveErrorKind::Manifest {
        field: Some(field.into()),
        reason: reason.into(),
    }
}

/// A manifest that is not a document at all.
fn document(reason: String) -> Invalid {
    ArchiveErrorKind::Manifest {
        field: None,
        reason,
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<AciManifest, Invalid> {
    // As for OCI documents: a key given twice could mean two things; and
    // label lists over the limit are refused before they are parsed.
    const COUNTED: &[json::Counted] = &[
        (&["labels"], image::MAX_LABELS),
        (&["dependencies", "labels"], image::MAX_LABELS),
    ];
    if let Some(flaw) = json::check(bytes, COUNTED) {
        return Err(match flaw {
            json::Flaw::DuplicateKey { key, path } => ArchiveErrorKind::DuplicateKey {
                what: "manifest".into(),
                key,
                path,
            },
            json::Flaw::TooMany { path, count, limit } => ArchiveErrorKind::OverLimit {
                field: format!("manifest field {}", path.trim_start_matches("$.")),
                size: count,
                limit,
                unit: "labels",
            },
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| document(format!("is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| document("is not a JSON object".into()))?;

    let kind = string_field(obj, "acKind")?;
    if kind != "ImageManifest" {
        return Err(invalid(
            "acKind",
            format!("is {kind:?}, expected \"ImageManifest\""),
        ));
    }
    let version = string_field(obj, "acVersion")?;
    semver::Version::parse(version).map_err(|e| {
        invalid(
            "acVersion",
            format!("{version:?} is not a semantic version: {e}"),
        )
    })?;
    let name = string_field(obj, "name")?;
    image::check_len("manifest field name", name, image::MAX_NAME_BYTES)?;
    if !is_ac_identifier(name) {
        return Err(invalid(
            "name",
            format!(
                "{} is not an AC identifier (lower-case letters, digits and -._~/)",
                image::quoted(name)
            ),
        ));
    }

    let labels = match obj.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_labels(v, "labels")?,
    };
    check_os_arch(&labels)?;

    match obj.get("app") {
        None | Some(Value::Null) => {}
        Some(Value::Object(app)) => {
            for field in ["user", "group"] {
                match app.get(field) {
                    Some(Value::String(s)) if !s.is_empty() => {}
                    Some(Value::String(_)) => {
                        return Err(invalid(format!("app.{field}"), "is empty"));
                    }
                    Some(_) => return Err(invalid(format!("app.{field}"), "is not a string")),
                    None => {
                        return Err(invalid(
                            format!("app.{field}"),
                            "is missing (required when app is present)",
                        ));
                    }
                }
            }
            if let Some(exec) = app.get("exec")
                && !exec.is_null()
                && !exec
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(invalid("app.exec", "is not an array of strings"));
            }
        }
        Some(_) => return Err(invalid("app", "is not an object")),
    }

    let dependencies = match obj.get("dependencies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(deps)) => deps
            .iter()
            .enumerate()
            .map(|(i, d)| parse_dependency(i, d))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("dependencies", "is not an array")),
    };
    let path_whitelist = match obj.get("pathWhitelist") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(paths)) => paths
            .iter()
            .map(|p| p.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("pathWhitelist", "is not an array of strings"))?,
        Some(_) => return Err(invalid("pathWhitelist", "is not an array of strings")),
    };

    Ok(AciManifest {
        name: name.to_string(),
        labels,
        dependencies,
        path_whitelist,
    })
}

fn string_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Invalid> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(field, "is not a string")),
        None => Err(invalid(field, "is missing")),
    }
}

fn parse_labels(v: &Value, field: &str) -> Result<Vec<Label>, Invalid> {
    let arr = v
        .as_array()
        .ok_or_else(|| invalid(field, "is not an array"))?;
    // Refused before any is looked at: the cost of a refusal is the parse.
    image::check_count(
        &format!("manifest field {field}"),
        arr.len(),
        image::MAX_LABELS,
    )?;
    let mut labels: Vec<Label> = Vec::with_capacity(arr.len());
    let mut seen = std::collections::HashSet::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(&at, "is not an object"))?;
        let name = match obj.get("name") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(invalid(format!("{at}.name"), "is missing or not a string"));
            }
        };
        let value = match obj.get("value") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(invalid(format!("{at}.value"), "is missing or not a string"));
            }
        };
        let label = Label::new(name.as_str(), value.as_str());
        image::check_label(|| format!("manifest field {at}"), &label)?;
        if !is_ac_identifier(name) {
            return Err(invalid(
                format!("{at}.name"),
                format!("{} is not an AC identifier", image::quoted(name)),
            ));
        }
        if name == "name" {
            return Err(invalid(at, "may not be called \"name\" (a label)"));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid(field, format!("label {name:?} appears twice")));
        }
        labels.push(label);
    }
    labels.sort();
    Ok(labels)
}

fn check_os_arch(labels: &[Label]) -> Result<(), Invalid> {
    let get = |n: &str| {
        labels
            .iter()
            .find(|l| l.name == n)
            .map(|l| l.value.as_str())
    };
    let (os, arch) = (get("os"), get("arch"));
    let Some(os) = os else {
        if let Some(arch) = arch
            && !OS_ARCH.iter().any(|(_, archs)| archs.contains(&arch))
        {
            return Err(invalid(
                "labels",
                format!("arch {arch:?} is not a known architecture"),
            ));
        }
        return Ok(());
    };
    let archs = OS_ARCH
        .iter()
        .find(|(o, _)| *o == os)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            invalid(
                "labels",
                format!("os {os:?} is not supported (linux, freebsd or darwin)"),
            )
        })?;
    if let Some(arch) = arch
        && !archs.contains(&arch)
    {
        return Err(invalid(
            "labels",
            format!(
                "arch {arch:?} is not valid for os {os:?} (one of {})",
                archs.join(", ")
            ),
        ));
    }
    Ok(())
}

fn parse_dependency(i: usize, v: &Value) -> Result<Dependency, Invalid> {
    let at = format!("dependencies[{i}]");
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(&at, "is not an object"))?;
    let image_name = match obj.get("imageName") {
        Some(Value::String(s)) if is_ac_identifier(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(invalid(
                format!("{at}.imageName"),
                format!("{s:?} is not an AC identifier"),
            ));
        }
        _ => {
            return Err(invalid(
                format!("{at}.imageName"),
                "is missing or not a string",
            ));
        }
    };
    let image_id = match obj.get("imageID") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Digest::parse(s).map_err(|e| invalid(format!("{at}.imageID"), e.to_string()))?)
        }
        Some(_) => return Err(invalid(format!("{at}.imageID"), "is not a string")),
    };
    let labels = match obj.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_labels(v, &format!("{at}.labels"))?,
    };
    let size = match obj.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| invalid(format!("{at}.size"), "is not a non-negative integer"))?,
        ),
    };
    Ok(Dependency {
        image_name,
        image_id,
        labels,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> String {
        format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app"{extra}}}"#
        )
    }

    #[test]
    fn accepts_a_full_manifest() {
        let m = parse(manifest(
            r#","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
               "app":{"exec":["/bin/sh"],"user":"0","group":"0"},
               "dependencies":[{"imageName":"example.com/base","labels":[{"name":"version","value":"1"}],"size":10}]"#,
        ).as_bytes())
        .unwrap();
        assert_eq!(m.name, "example.com/app");
        assert_eq!(m.labels.len(), 3);
        assert_eq!(m.dependencies[0].image_name, "example.com/base");
        assert_eq!(m.dependencies[0].size, Some(10));
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (
                r#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"a"}"#,
                "acKind",
            ),
            (
                r#"{"acKind":"ImageManifest","acVersion":"x","name":"a"}"#,
                "acVersion",
            ),
            (
                r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name"}"#,
                "name",
            ),
            (
                r#"{"acKind":"ImageManifest","acVersion":"0.8.11"}"#,
                "name is missing",
            ),
            (
                &manifest(r#","labels":[{"name":"name","value":"x"}]"#),
                "\"name\"",
            ),
            (
                &manifest(r#","labels":[{"name":"a","value":"1"},{"name":"a","value":"2"}]"#),
                "twice",
            ),
            (
                &manifest(r#","labels":[{"name":"os","value":"plan9"}]"#),
                "os",
            ),
            (
                &manifest(
                    r#","labels":[{"name":"os","value":"darwin"},{"name":"arch","value":"amd64"}]"#,
                ),
                "arch",
            ),
            (&manifest(r#","app":{"user":"0"}"#), "app.group"),
            (
                &manifest(r#","dependencies":[{"labels":[]}]"#),
                "dependencies[0].imageName",
            ),
            (
                &manifest(r#","dependencies":[{"imageName":"a","imageID":"sha512-xyz"}]"#),
                "imageID",
            ),
            ("not json", "JSON"),
        ];
        for (input, needle) in cases {
            let err = parse(input.as_bytes()).unwrap_err();
            let err = err.to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn ac_identifiers() {
        for ok in ["a", "example.com/app", "a-b_c~d/e.f", "0abc"] {
            assert!(is_ac_identifier(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a//b", "a b", "a:b"] {
            assert!(!is_ac_identifier(bad), "{bad}");
        }
    }
}

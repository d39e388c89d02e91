//! Platforms (`OS/ARCH[/VARIANT]`, as the OCI image index names them) and
//! the choice of one manifest from a multi-platform image.

use std::fmt;

use serde::Serialize;

use super::error::RenderError;

/// An OCI platform: `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// In the OCI (Go) spelling: `amd64`, `arm64`, `arm`, `386`, …
    pub architecture: String,
    /// `v8`, `v7`, …; `None` accepts any variant.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `OS/ARCH[/VARIANT]`.
    ///
    /// ```
    /// let p = imgstore::Platform::parse("linux/arm64/v8")?;
    /// assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
    /// assert_eq!(p.to_string(), "linux/arm64/v8");
    /// # Ok::<(), imgstore::Error>(())
    /// ```
    pub fn parse(input: &str) -> Result<Platform, crate::Error> {
        let bad = |reason| RenderError::BadPlatform {
            input: input.to_string(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad("expected OS/ARCH or OS/ARCH/VARIANT").into());
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("a part is empty").into());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: normalize_arch(parts[1]).to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The platform this program runs on, in the OCI (Go) names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Whether an image for `os`/`architecture`/`variant` suits this
    /// platform: same OS and architecture, and the same variant when this
    /// platform names one (arm64's `v8` is its default).
    pub(super) fn accepts(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let default_variant = |arch: &str, v: Option<&str>| match (arch, v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        self.os == os
            && self.architecture == normalize_arch(architecture)
            && match &self.variant {
                None => true,
                Some(want) => {
                    default_variant(&self.architecture, Some(want))
                        == default_variant(&self.architecture, variant)
                }
            }
    }
}

/// The OCI name of an architecture some tools spell otherwise.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert!(p.accepts("linux", "amd64", None));
        assert!(p.accepts("linux", "amd64", Some("v3")));
        assert!(!p.accepts("linux", "arm64", None));
        assert!(!p.accepts("windows", "amd64", None));
        let arm = Platform::parse("linux/aarch64/v8").unwrap();
        assert_eq!(arm.architecture, "arm64");
        assert!(arm.accepts("linux", "arm64", None));
        assert!(arm.accepts("linux", "arm64", Some("v8")));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(v7.accepts("linux", "arm", Some("v7")));
        assert!(!v7.accepts("linux", "arm", Some("v6")));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
    }
}

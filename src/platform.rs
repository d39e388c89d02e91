//! Platforms (`linux/arm64/v8`) and choosing one image from an index.
//!
//! Names are normalised as containerd does before they are compared, so
//! the many spellings of one platform meet: `x86_64` is `amd64`, `aarch64`
//! is `arm64` (variant `v8` when none is given), `armhf` is `arm/v7`,
//! `armel` `arm/v6`, plain `arm` `arm/v7`, `macos` `darwin`.
//!
//! A wanted platform accepts, best first:
//! - the same OS and architecture with the same variant;
//! - for variants that form a ladder, the older ones the CPU also runs:
//!   `amd64/v3` takes `v2` and `v1`, `arm/v7` takes `v6` and `v5`,
//!   `arm64/v8.2` takes `v8.1` and `v8`, `arm64/v9.N` takes `v9.*` and
//!   then `v8.*` up to `v8.(N+5)`;
//! - `amd64` without a variant prefers the baseline but takes any amd64
//!   (the variant is ignored unless asked for), other architectures without
//!   a variant take any variant after an exact match;
//! - last, what the CPU runs in a compatibility mode: `386` for `amd64`,
//!   32-bit `arm` (v8 down to v5) for `arm64`.
//!
//! Ties go to the entry listed first. Attestation manifests (BuildKit's
//! provenance and SBOMs, listed as `unknown/unknown` with the annotation
//! `vnd.docker.reference.type: attestation-manifest`) are never chosen.

use std::fmt;

use crate::oci::{self, Descriptor, Kind};

/// The annotation BuildKit marks attestation manifests with.
pub(crate) const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub(crate) const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// Why a platform could not be parsed or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// Not `OS/ARCH[/VARIANT]`.
    #[error("invalid platform {input:?}: {reason}")]
    Malformed {
        /// The input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No image of an index runs on the platform.
    #[error("the index has no image for {wanted}; it has {}", list(available))]
    NoMatch {
        /// The platform wanted.
        wanted: String,
        /// The platforms the index has images for.
        available: Vec<String>,
    },
}

fn list(platforms: &[String]) -> String {
    if platforms.is_empty() {
        "none".into()
    } else {
        platforms.join(", ")
    }
}

/// An OCI platform, normalised (`linux/arm64/v8`): fields are private so
/// that every value is.
///
/// ```
/// let p = imgstore::Platform::parse("linux/aarch64")?;
/// assert_eq!((p.os(), p.architecture(), p.variant()), ("linux", "arm64", Some("v8")));
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// # Ok::<(), imgstore::PlatformError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// A platform from its parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let os = match os.as_str() {
            "macos" => "darwin".to_string(),
            _ => os,
        };
        let (architecture, variant) = normalise_arch(
            &architecture.to_ascii_lowercase(),
            variant
                .map(str::to_ascii_lowercase)
                .filter(|v| !v.is_empty()),
        );
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Parses `OS/ARCH[/VARIANT]`, as `--platform` takes it.
    pub fn parse(input: &str) -> Result<Platform, PlatformError> {
        let malformed = |reason| PlatformError::Malformed {
            input: input.to_string(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(malformed("expected OS/ARCH or OS/ARCH/VARIANT"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(malformed("a part is empty"));
            }
            if !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(malformed("parts are letters, digits, '_', '.' and '-'"));
            }
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }

    /// The platform this binary runs on.
    pub fn host() -> Platform {
        Platform::from_rust(
            std::env::consts::OS,
            std::env::consts::ARCH,
            cfg!(target_endian = "little"),
        )
    }

    /// Maps Rust's names for an OS and architecture to OCI's (Go's).
    pub(crate) fn from_rust(os: &str, arch: &str, little_endian: bool) -> Platform {
        let os = match os {
            "macos" => "darwin",
            other => other,
        };
        let (architecture, variant) = match arch {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if little_endian => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "powerpc" => ("ppc", None),
            "mips64" if little_endian => ("mips64le", None),
            "mips" if little_endian => ("mipsle", None),
            "loongarch64" => ("loong64", None),
            "wasm32" => ("wasm", None),
            other => (other, None),
        };
        Platform::new(os, architecture, variant)
    }

    /// The platform an index entry declares.
    pub(crate) fn of(platform: &oci::Platform) -> Platform {
        Platform::new(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
    }

    /// The operating system: `linux`, `windows`, `darwin`…
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The architecture, in the OCI (Go) spelling: `amd64`, `arm64`, `arm`…
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The variant: `v8`, `v7`…; arm64 and arm always have one.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// How well `candidate` serves a wanted `self`: `Some(rank)`, lower is
    /// better, `0` an exact match; `None` when it does not run here.
    pub fn rank(&self, candidate: &Platform) -> Option<u32> {
        if self.os != candidate.os {
            return None;
        }
        let (want, have) = (self.variant.as_deref(), candidate.variant.as_deref());
        if self.architecture == candidate.architecture {
            if want == have {
                return Some(0);
            }
            return match self.architecture.as_str() {
                "amd64" => amd64_rank(want, have),
                "arm" => arm_rank(want, have, 0),
                "arm64" => arm64_rank(want, have),
                // Without a variant asked for, any will do.
                _ if want.is_none() => Some(1),
                _ => None,
            };
        }
        const FALLBACK: u32 = 100;
        match (self.architecture.as_str(), candidate.architecture.as_str()) {
            ("amd64", "386") => Some(FALLBACK),
            // arm64 CPUs run 32-bit arm code (v8 is armv8 in AArch32).
            ("arm64", "arm") => arm_rank(Some("v8"), have, FALLBACK),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// containerd's spellings, mapped to one.
fn normalise_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let v = variant.as_deref();
    let (arch, variant): (&str, Option<&str>) = match arch {
        "i386" | "x86" | "386" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if v == Some("v1") { None } else { v }),
        "aarch64" | "arm64" => (
            "arm64",
            match v {
                None | Some("8" | "v8" | "v8.0") => Some("v8"),
                Some("9" | "9.0" | "v9.0") => Some("v9"),
                other => other,
            },
        ),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "arm" => (
            "arm",
            match v {
                None | Some("7") => Some("v7"),
                Some("5") => Some("v5"),
                Some("6") => Some("v6"),
                Some("8") => Some("v8"),
                other => other,
            },
        ),
        other => (other, v),
    };
    (arch.to_string(), variant.map(str::to_string))
}

/// `v3` → 3; no variant is the baseline, v1.
fn amd64_level(variant: Option<&str>) -> Option<u32> {
    match variant {
        None => Some(1),
        Some(v) => v
            .strip_prefix('v')?
            .parse()
            .ok()
            .filter(|n| (1..=4).contains(n)),
    }
}

fn amd64_rank(want: Option<&str>, have: Option<&str>) -> Option<u32> {
    let have = amd64_level(have)?;
    match want {
        // Ignore the variant unless asked, but prefer the lowest level.
        None => Some(have),
        Some(_) => {
            let want = amd64_level(want)?;
            (have <= want).then(|| want - have)
        }
    }
}

fn arm_level(variant: Option<&str>) -> Option<u32> {
    variant?
        .strip_prefix('v')?
        .parse()
        .ok()
        .filter(|n| (5..=8).contains(n))
}

fn arm_rank(want: Option<&str>, have: Option<&str>, offset: u32) -> Option<u32> {
    let (want, have) = (arm_level(want)?, arm_level(have)?);
    (have <= want).then(|| offset + want - have)
}

/// `v8` → (8, 0), `v8.2` → (8, 2), `v9` → (9, 0).
fn arm64_version(variant: Option<&str>) -> Option<(u32, u32)> {
    let v = variant.unwrap_or("v8").strip_prefix('v')?;
    let (major, minor) = match v.split_once('.') {
        Some((major, minor)) => (major.parse().ok()?, minor.parse().ok()?),
        None => (v.parse().ok()?, 0),
    };
    ((major == 8 && minor <= 9) || (major == 9 && minor <= 7)).then_some((major, minor))
}

fn arm64_rank(want: Option<&str>, have: Option<&str>) -> Option<u32> {
    let (want_major, want_minor) = arm64_version(want)?;
    let (have_major, have_minor) = arm64_version(have)?;
    match (want_major, have_major) {
        (8, 8) | (9, 9) => (have_minor <= want_minor).then(|| want_minor - have_minor),
        // v9.N includes the features of v8.(N+5).
        (9, 8) => {
            let top = (want_minor + 5).min(9);
            (have_minor <= top).then(|| want_minor + 1 + top - have_minor)
        }
        _ => None,
    }
}

/// Whether an index entry is an attestation (provenance, SBOM) rather than
/// an image.
pub(crate) fn is_attestation(descriptor: &Descriptor) -> bool {
    descriptor.annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST)
        || descriptor
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// The entries of an index that are images for some platform: manifests
/// (by media type, or with none given) that are not attestations.
pub(crate) fn image_entries(manifests: &[Descriptor]) -> impl Iterator<Item = &Descriptor> {
    manifests.iter().filter(|d| {
        (d.media_type.is_empty() || oci::kind_of(&d.media_type) == Some(Kind::Manifest))
            && !is_attestation(d)
    })
}

/// Chooses the entry of an index that serves `wanted` best (module docs).
pub(crate) fn select_manifest<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, PlatformError> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for descriptor in image_entries(manifests) {
        let Some(platform) = &descriptor.platform else {
            continue;
        };
        if let Some(rank) = wanted.rank(&Platform::of(platform))
            && best.is_none_or(|(best_rank, _)| rank < best_rank)
        {
            best = Some((rank, descriptor));
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| PlatformError::NoMatch {
        wanted: wanted.to_string(),
        available: image_entries(manifests)
            .filter_map(|d| d.platform.as_ref().map(|p| Platform::of(p).to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn entry(n: u8, platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: oci::OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 100 + u64::from(n),
            annotations: None,
            platform: platform.map(|(os, architecture, variant)| oci::Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    fn attestation(n: u8, of: &Descriptor) -> Descriptor {
        let mut d = entry(n, Some(("unknown", "unknown", None)));
        d.annotations = Some(BTreeMap::from([
            (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
            ("vnd.docker.reference.digest".to_string(), of.digest.clone()),
        ]));
        d
    }

    fn chosen(index: &[Descriptor], wanted: &str) -> Option<usize> {
        select_manifest(index, &p(wanted))
            .ok()
            .map(|d| index.iter().position(|x| std::ptr::eq(x, d)).unwrap())
    }

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm64/v8"),
            ("Linux/AArch64", "linux/arm64/v8"),
            ("linux/arm64/8", "linux/arm64/v8"),
            ("linux/arm64/v8.0", "linux/arm64/v8"),
            ("linux/arm64/9", "linux/arm64/v9"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("macos/arm64", "darwin/arm64/v8"),
            ("windows/amd64", "windows/amd64"),
            ("linux/riscv64", "linux/riscv64"),
            ("linux/ppc64le", "linux/ppc64le"),
        ];
        for (input, shown) in cases {
            assert_eq!(p(input).to_string(), shown, "{input}");
        }
        let arm = p("linux/arm/v6");
        assert_eq!(
            (arm.os(), arm.architecture(), arm.variant()),
            ("linux", "arm", Some("v6"))
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/amd 64",
            "linux//v7",
            "linux/amd64/",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(PlatformError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let e = Platform::parse("linux").unwrap_err().to_string();
        assert!(e.contains("\"linux\"") && e.contains("OS/ARCH"), "{e}");
    }

    #[test]
    fn host_names() {
        let cases = [
            (("linux", "x86_64", true), "linux/amd64"),
            (("linux", "aarch64", true), "linux/arm64/v8"),
            (("linux", "arm", true), "linux/arm/v7"),
            (("linux", "x86", true), "linux/386"),
            (("linux", "powerpc64", true), "linux/ppc64le"),
            (("linux", "powerpc64", false), "linux/ppc64"),
            (("linux", "s390x", false), "linux/s390x"),
            (("linux", "riscv64", true), "linux/riscv64"),
            (("linux", "loongarch64", true), "linux/loong64"),
            (("linux", "mips64", true), "linux/mips64le"),
            (("macos", "aarch64", true), "darwin/arm64/v8"),
            (("windows", "x86_64", true), "windows/amd64"),
        ];
        for ((os, arch, le), shown) in cases {
            assert_eq!(Platform::from_rust(os, arch, le).to_string(), shown);
        }
        let host = Platform::host();
        assert_eq!(
            host.os(),
            if cfg!(target_os = "macos") {
                "darwin"
            } else {
                std::env::consts::OS
            }
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), format!("{}/amd64", host.os()));
        }
    }

    #[test]
    fn exact_matches_win_and_ties_go_first() {
        let index = [
            entry(1, Some(("linux", "amd64", None))),
            entry(2, Some(("linux", "arm64", Some("v8")))),
            entry(3, Some(("linux", "arm", Some("v7")))),
            entry(4, Some(("linux", "arm", Some("v6")))),
            entry(5, Some(("linux", "amd64", None))),
            entry(6, Some(("windows", "amd64", None))),
            entry(7, Some(("linux", "s390x", None))),
        ];
        assert_eq!(chosen(&index, "linux/amd64"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64"), Some(1));
        assert_eq!(chosen(&index, "linux/aarch64/v8"), Some(1));
        assert_eq!(chosen(&index, "linux/arm"), Some(2));
        assert_eq!(chosen(&index, "linux/arm/v6"), Some(3));
        assert_eq!(chosen(&index, "linux/arm/v8"), Some(2));
        assert_eq!(chosen(&index, "linux/arm/v5"), None);
        assert_eq!(chosen(&index, "windows/amd64"), Some(5));
        assert_eq!(chosen(&index, "linux/s390x"), Some(6));
        assert_eq!(chosen(&index, "linux/ppc64le"), None);
        assert_eq!(chosen(&index, "darwin/amd64"), None);
    }

    #[test]
    fn arm64_without_variant_is_v8() {
        let index = [entry(1, Some(("linux", "arm64", None)))];
        assert_eq!(chosen(&index, "linux/arm64"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64/v8"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64/v8.2"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64/v9"), Some(0));
    }

    #[test]
    fn arm64_variant_ladder() {
        let index = [
            entry(1, Some(("linux", "arm64", Some("v8")))),
            entry(2, Some(("linux", "arm64", Some("v8.2")))),
            entry(3, Some(("linux", "arm64", Some("v9")))),
        ];
        assert_eq!(chosen(&index, "linux/arm64"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64/v8.1"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64/v8.4"), Some(1));
        assert_eq!(chosen(&index, "linux/arm64/v9"), Some(2));
        assert_eq!(chosen(&index, "linux/arm64/v9.1"), Some(2));
        // v9.0 runs up to v8.5, so it takes v8.2 over v8 when there is no v9.
        assert_eq!(chosen(&index[..2], "linux/arm64/v9"), Some(1));
        // A CPU asked for as v8 does not take v8.2 or v9 images.
        assert_eq!(chosen(&index[1..], "linux/arm64/v8"), None);
    }

    #[test]
    fn amd64_variants() {
        let index = [
            entry(1, Some(("linux", "amd64", Some("v3")))),
            entry(2, Some(("linux", "amd64", Some("v2")))),
            entry(3, Some(("linux", "amd64", None))),
        ];
        // Not asked: the baseline first, whatever the order.
        assert_eq!(chosen(&index, "linux/amd64"), Some(2));
        assert_eq!(chosen(&index, "linux/amd64/v3"), Some(0));
        assert_eq!(chosen(&index, "linux/amd64/v2"), Some(1));
        assert_eq!(chosen(&index, "linux/amd64/v4"), Some(0));
        // Only a v3 image: taken when nothing is asked, not when v2 is.
        assert_eq!(chosen(&index[..1], "linux/amd64"), Some(0));
        assert_eq!(chosen(&index[..1], "linux/amd64/v2"), None);
        // v1 is the baseline.
        let v1 = [entry(1, Some(("linux", "amd64", Some("v1"))))];
        assert_eq!(chosen(&v1, "linux/amd64"), Some(0));
    }

    #[test]
    fn compatibility_fallbacks_come_last() {
        let index = [
            entry(1, Some(("linux", "386", None))),
            entry(2, Some(("linux", "arm", Some("v7")))),
        ];
        assert_eq!(chosen(&index, "linux/amd64"), Some(0));
        assert_eq!(chosen(&index, "linux/arm64"), Some(1));
        let with_native = [
            index[0].clone(),
            index[1].clone(),
            entry(3, Some(("linux", "amd64", None))),
        ];
        assert_eq!(chosen(&with_native, "linux/amd64"), Some(2));
        // Never the other way round.
        let amd = [entry(1, Some(("linux", "amd64", None)))];
        assert_eq!(chosen(&amd, "linux/386"), None);
    }

    #[test]
    fn other_architectures_take_any_variant_when_none_is_asked() {
        let index = [
            entry(1, Some(("linux", "riscv64", Some("rva22")))),
            entry(2, Some(("linux", "riscv64", None))),
        ];
        assert_eq!(chosen(&index, "linux/riscv64"), Some(1));
        assert_eq!(chosen(&index[..1], "linux/riscv64"), Some(0));
        assert_eq!(chosen(&index, "linux/riscv64/rva22"), Some(0));
        assert_eq!(chosen(&index[1..], "linux/riscv64/rva22"), None);
    }

    #[test]
    fn skips_attestations_and_entries_without_platform() {
        let amd = entry(1, Some(("linux", "amd64", None)));
        let arm = entry(2, Some(("linux", "arm64", Some("v8"))));
        // BuildKit lists attestations after the images; put them first to
        // be sure they are skipped, not merely outranked.
        let mut annotated_only = entry(5, Some(("linux", "amd64", None)));
        annotated_only.annotations = attestation(5, &amd).annotations;
        let index = [
            attestation(3, &amd),
            annotated_only,
            attestation(4, &arm),
            entry(6, None),
            amd.clone(),
            arm.clone(),
        ];
        assert_eq!(chosen(&index, "linux/amd64"), Some(4));
        assert_eq!(chosen(&index, "linux/arm64"), Some(5));
        assert!(select_manifest(&index, &p("unknown/unknown")).is_err());
        let images: Vec<_> = image_entries(&index).map(|d| d.digest.clone()).collect();
        assert_eq!(
            images,
            [
                index[3].digest.clone(),
                amd.digest.clone(),
                arm.digest.clone()
            ]
        );
        assert!(is_attestation(&index[0]) && is_attestation(&index[1]) && !is_attestation(&amd));
    }

    #[test]
    fn skips_nested_indexes_and_non_manifests() {
        let mut nested = entry(1, Some(("linux", "amd64", None)));
        nested.media_type = oci::OCI_INDEX.into();
        let mut layer = entry(2, Some(("linux", "amd64", None)));
        layer.media_type = "application/vnd.oci.image.layer.v1.tar".into();
        let mut docker = entry(3, Some(("linux", "amd64", None)));
        docker.media_type = oci::DOCKER_MANIFEST.into();
        let mut untyped = entry(4, Some(("linux", "arm64", None)));
        untyped.media_type = String::new();
        let index = [nested, layer, docker, untyped];
        assert_eq!(chosen(&index, "linux/amd64"), Some(2));
        assert_eq!(chosen(&index, "linux/arm64"), Some(3));
    }

    #[test]
    fn no_match_lists_what_there_is() {
        let amd = entry(1, Some(("linux", "amd64", None)));
        let index = [
            amd.clone(),
            attestation(2, &amd),
            entry(3, Some(("linux", "arm", Some("v6")))),
        ];
        let e = select_manifest(&index, &p("linux/s390x")).unwrap_err();
        assert_eq!(
            e,
            PlatformError::NoMatch {
                wanted: "linux/s390x".into(),
                available: vec!["linux/amd64".into(), "linux/arm/v6".into()],
            }
        );
        assert_eq!(
            e.to_string(),
            "the index has no image for linux/s390x; it has linux/amd64, linux/arm/v6"
        );
        let e = select_manifest(&[], &p("linux/amd64"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("it has none"), "{e}");
    }
}

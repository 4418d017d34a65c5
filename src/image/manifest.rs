//! The JSON documents of an image: index (one manifest per platform), manifest (config + layers),
//! config (how to run it, and the digests of the unpacked layers).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What `Accept:` says we understand, most wanted first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

// ANCHOR: descriptor
/// A pointer to a blob: its media type, its size and its sha256. Everything in an image is found
/// through one of these, and every byte fetched is checked against `digest` before it is used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Debug, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// A manifest: the config blob and the layers, bottom first.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}
// ANCHOR_END: descriptor

// ANCHOR: config
/// The image config blob (`application/vnd.oci.image.config.v1+json`): the parts minictr uses.
#[derive(Debug, Deserialize)]
pub struct ConfigBlob {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: ImageConfig,
    pub rootfs: RootFs,
}

/// How the image wants to be run: the defaults `minictr run IMAGE` takes unless flags override them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    #[serde(rename = "Env", default, deserialize_with = "null_is_empty")]
    pub env: Vec<String>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `diff_ids`: the sha256 of each layer *uncompressed*, bottom first — checked while unpacking.
#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}
// ANCHOR_END: config

/// Docker writes `"Cmd": null`; treat it as empty.
fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// This machine's platform in OCI words (GOARCH names: x86_64 is amd64, aarch64 is arm64).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_string(),
        os: std::env::consts::OS.to_string(),
        variant: variant.map(str::to_string),
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

// ANCHOR: select_platform
/// Pick the manifest for `want` out of an index: same os and architecture, and the same variant when
/// both name one (arm64's `v8` is the default). Entries without a platform (attestations, …) never match.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor> {
    let matches = |p: &Platform| {
        p.os == want.os
            && p.architecture == want.architecture
            && match (&p.variant, &want.variant) {
                (Some(a), Some(b)) => a == b,
                (Some(a), None) => want.architecture == "arm64" && a == "v8",
                (None, _) => true,
            }
    };
    if let Some(d) = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(matches))
    {
        return Ok(d);
    }
    let offered: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    bail!(crate::error::hint(
        format!(
            "the image has no manifest for {want} (it offers: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ),
        "pull an image built for this machine's platform"
    ))
}
// ANCHOR_END: select_platform

/// Either an index or a manifest, told apart by the media type the registry sent (or, failing
/// that, by the document's own `mediaType` or shape).
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

pub fn parse_document(content_type: &str, body: &[u8]) -> Result<Document> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(rename = "schemaVersion", default)]
        schema_version: u32,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).context("the manifest is not valid JSON")?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let kind = [ct, probe.media_type.as_str()]
        .into_iter()
        .find(|t| [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].contains(t))
        .map(str::to_string);
    let is_index = match kind.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(_) => false,
        None if probe.schema_version == 1 => bail!(crate::error::hint(
            "the registry sent a Docker schema-1 manifest, which minictr does not read",
            "push the image again with a current tool (schema 2 or OCI)"
        )),
        None => probe.manifests.is_some(),
    };
    if is_index {
        Ok(Document::Index(
            serde_json::from_slice(body).context("the image index is malformed")?,
        ))
    } else {
        let m: Manifest = serde_json::from_slice(body).context("the manifest is malformed")?;
        if m.schema_version != 2 {
            bail!(
                "manifest schemaVersion {} is not supported",
                m.schema_version
            );
        }
        Ok(Document::Manifest(m))
    }
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        other => bail!(crate::error::hint(
            format!("layer media type {other:?} is not supported"),
            "minictr unpacks tar and tar+gzip layers; zstd layers are not supported yet"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn platform_selection() {
        let index = Index {
            manifests: vec![
                desc("linux", "arm", Some("v6"), 1),
                desc("linux", "arm", Some("v7"), 2),
                desc("linux", "arm64", Some("v8"), 3),
                desc("linux", "amd64", None, 4),
                desc("windows", "amd64", None, 5),
            ],
        };
        let p = |arch: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        };
        let pick = |want: Platform| select_platform(&index, &want).unwrap().digest.clone();
        assert!(pick(p("amd64", None)).starts_with("sha256:04"));
        assert!(pick(p("arm64", None)).starts_with("sha256:03"));
        assert!(pick(p("arm", Some("v7"))).starts_with("sha256:02"));
        let err = select_platform(&index, &p("s390x", None)).unwrap_err();
        assert!(err.to_string().contains("linux/arm/v6"), "{err}");
    }

    #[test]
    fn host_platform_is_oci_named() {
        let p = host_platform();
        assert_eq!(p.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn documents_by_media_type_or_shape() {
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document("", idx).unwrap(),
            Document::Index(_)
        ));
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(
            parse_document("application/json", m).unwrap(),
            Document::Manifest(_)
        ));
        assert!(parse_document("", br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        let cfg: ConfigBlob = serde_json::from_slice(
            br#"{"config":{"Env":["A=1"],"Cmd":null,"WorkingDir":"/w"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(cfg.config.env, vec!["A=1"]);
        assert!(cfg.config.cmd.is_empty());
        assert_eq!(cfg.config.working_dir.as_deref(), Some("/w"));
        assert!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd").is_err());
    }
}

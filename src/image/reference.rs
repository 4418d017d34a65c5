//! Image references: what `alpine`, `alpine:3.20` or `localhost:5000/busybox@sha256:…` mean.

use anyhow::{bail, Result};

/// Docker Hub's name in references, and the host its API really answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

// ANCHOR: reference
/// A fully qualified image reference: `registry/repository` plus a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io` …
    pub registry: String,
    /// `library/alpine`, `busybox`, `org/team/app` …
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`: pins the manifest; a tag given with it is only a label.
    pub digest: Option<String>,
}

/// Docker's normalisation (github.com/distribution/reference, `ParseNormalizedNamed`): the first
/// path component is a registry only if it contains a `.` or a `:` or is `localhost`; otherwise the
/// registry is Docker Hub, and a single-component name lives under `library/`.
pub fn parse(input: &str) -> Result<Reference> {
    let bad = |why: &str| {
        crate::error::hint(
            format!("invalid image reference {input:?}: {why}"),
            "write NAME[:TAG][@sha256:DIGEST], e.g. alpine, alpine:3.20, localhost:5000/busybox:latest",
        )
    };
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => {
            validate_digest(d).map_err(|_| bad("the digest must be sha256: and 64 hex digits"))?;
            (r, Some(d.to_string()))
        }
        None => (input, None),
    };
    // A ':' after the last '/' starts the tag (a ':' before it belongs to a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), path.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    // ANCHOR_END: reference
    // ANCHOR: reference_checks
    if registry.is_empty()
        || !registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        bail!(bad(
            "a registry is a host name or address with an optional :PORT"
        ));
    }
    if repository.is_empty() || !repository.split('/').all(valid_component) {
        bail!(bad(
            "a name is lowercase letters and digits, separated by '.', '_', '__' or '-'"
        ));
    }
    if repository.len() > 255 {
        bail!(bad("the name is longer than 255 characters"));
    }
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            bail!(bad("a tag is up to 128 letters, digits, '_', '.' and '-'"));
        }
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
        (None, Some(_)) => None,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}
// ANCHOR_END: reference_checks

/// `[a-z0-9]+` joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `sha256:` and 64 lowercase hex digits; the only algorithm minictr verifies. Digests become file
/// names in the store, so nothing else may pass.
pub fn validate_digest(d: &str) -> Result<&str> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => bail!("{d:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)"),
    }
}

impl Reference {
    /// The host the distribution API answers on (Docker Hub's is not docker.io itself).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The tag or digest to ask the registry for: the digest wins.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository` — the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Plain HTTP only for this machine's own registries and those named with --insecure-registry
    /// (Docker's rule: localhost and 127.0.0.0/8 are insecure by default).
    pub fn plain_http(&self, insecure: &[String]) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(&*self.registry, |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    &self.registry
                }
            });
        host == "localhost"
            || host.starts_with("127.")
            || host == "[::1]"
            || insecure.iter().any(|i| i == &self.registry || i == host)
    }
}

impl std::fmt::Display for Reference {
    /// The canonical form: `docker.io/library/alpine:3.20`, `…@sha256:…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_normalisation() {
        for (input, want) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            (
                "docker.io/library/alpine:3.20",
                "docker.io/library/alpine:3.20",
            ),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
            ),
            ("user/app", "docker.io/user/app:latest"),
            (
                "localhost:5000/busybox:latest",
                "localhost:5000/busybox:latest",
            ),
            ("localhost/busybox", "localhost/busybox:latest"),
            ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
            ("ghcr.io/org/app:1.0-rc.1", "ghcr.io/org/app:1.0-rc.1"),
        ] {
            assert_eq!(parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn digests_pin_and_tags_stay_labels() {
        let r = parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
        let r = parse(&format!("alpine:3.20@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.20"));
        assert_eq!(r.manifest_ref(), D);
    }

    #[test]
    fn registry_hosts_and_plain_http() {
        let r = parse("alpine").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert!(!r.plain_http(&[]));
        assert!(parse("localhost:5000/x").unwrap().plain_http(&[]));
        assert!(parse("127.0.0.1:5000/x").unwrap().plain_http(&[]));
        let r = parse("reg.lan:5000/x").unwrap();
        assert!(!r.plain_http(&[]));
        assert!(r.plain_http(&["reg.lan:5000".into()]));
        assert!(r.plain_http(&["reg.lan".into()]));
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "a//b",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "-alpine",
            "alpine/",
            "a..b",
            &format!("alpine@{}", D.to_uppercase()),
            "../../etc",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! A client for the OCI distribution API v2 — the HTTP protocol every registry speaks:
//! `GET /v2/<name>/manifests/<tag|digest>` and `GET /v2/<name>/blobs/<digest>`, with anonymous
//! bearer tokens the way Docker Hub hands them out.

use super::reference::Reference;
use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::time::Duration;

/// Manifests are small; a registry sending more is broken or hostile.
const MAX_MANIFEST: u64 = 4 << 20;

pub struct Registry {
    agent: ureq::Agent,
    base: String,
    repository: String,
    shown: String,
    token: Option<String>,
}

// ANCHOR: challenge
/// Parse `WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
/// scope="repository:library/alpine:pull"` into its key/value pairs (values may hold commas).
pub fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key, value));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}
// ANCHOR_END: challenge

impl Registry {
    pub fn new(reference: &Reference, insecure: &[String]) -> Registry {
        let scheme = if reference.plain_http(insecure) {
            "http"
        } else {
            "https"
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("minictr/", env!("CARGO_PKG_VERSION")))
            .build();
        Registry {
            agent,
            base: format!(
                "{scheme}://{}/v2/{}",
                reference.api_host(),
                reference.repository
            ),
            repository: reference.repository.clone(),
            shown: reference.registry.clone(),
            token: None,
        }
    }

    // ANCHOR: get
    /// GET with the token we hold; on 401 fetch an anonymous token from the realm the registry
    /// names and try once more.
    fn get(&mut self, url: &str, accept: Option<&str>) -> Result<ureq::Response> {
        for attempt in 0..2 {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if let Some(t) = &self.token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if attempt == 0 => {
                    let challenge = resp.header("WWW-Authenticate").unwrap_or("").to_string();
                    self.token = Some(self.fetch_token(&challenge)?);
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(self.status_error(code, resp, url));
                }
                Err(ureq::Error::Transport(t)) => {
                    bail!(crate::error::hint(
                        format!("cannot reach the registry {}: {t}", self.shown),
                        "check that it runs and the name is right; a registry without TLS needs --insecure-registry HOST"
                    ));
                }
            }
        }
        bail!(crate::error::hint(
            format!("the registry {} refused the anonymous token", self.shown),
            "minictr pulls public images only (no login yet)"
        ))
    }
    // ANCHOR_END: get

    // ANCHOR: fetch_token
    /// The token endpoint: `GET realm?service=…&scope=repository:NAME:pull` → `{"token": …}`.
    fn fetch_token(&self, challenge: &str) -> Result<String> {
        let Some((scheme, params)) = parse_challenge(challenge) else {
            bail!(
                "the registry {} answered 401 without a usable WWW-Authenticate header",
                self.shown
            );
        };
        if scheme != "bearer" {
            bail!(crate::error::hint(
                format!("the registry {} wants {scheme} authentication", self.shown),
                "minictr pulls public images with anonymous bearer tokens only (no login yet)"
            ));
        }
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let realm = param("realm").context("the bearer challenge names no realm")?;
        let scope = param("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        crate::explain!(
            super::CHAPTER,
            "401 → GET {realm}?service={}&scope={scope} — an anonymous bearer token",
            param("service").unwrap_or("")
        );
        let mut req = self.agent.get(realm).query("scope", &scope);
        if let Some(s) = param("service") {
            req = req.query("service", s);
        }
        let resp = req.call().map_err(|e| {
            crate::error::hint(
                format!("cannot get a token from {realm}: {e}"),
                "check the network; minictr pulls public images only",
            )
        })?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST)
            .read_to_end(&mut body)
            .with_context(|| format!("failed to read the token from {realm}"))?;
        let t: Token = serde_json::from_slice(&body)
            .with_context(|| format!("the token from {realm} is not JSON"))?;
        t.token
            .or(t.access_token)
            .with_context(|| format!("{realm} sent no token"))
    }
    // ANCHOR_END: fetch_token

    fn status_error(&self, code: u16, resp: ureq::Response, url: &str) -> anyhow::Error {
        let body = resp.into_string().unwrap_or_default();
        let detail: String = body
            .chars()
            .take(200)
            .collect::<String>()
            .replace('\n', " ");
        let not_found = code == 404
            || body.contains("MANIFEST_UNKNOWN")
            || body.contains("NAME_UNKNOWN")
            || (code == 401 && body.contains("insufficient_scope"));
        if not_found && url.contains("/manifests/") {
            return crate::error::hint(
                format!("image not found in {}: {} ({code})", self.shown, self.repository),
                "check the name and tag (`minictr pull alpine:3.20`); private images need a login, which minictr does not do",
            );
        }
        crate::error::hint(
            format!(
                "the registry {} answered {code} for {url}: {detail}",
                self.shown
            ),
            "try again later, or check the reference",
        )
    }

    // ANCHOR: manifest
    /// Fetch a manifest or index by tag or digest: (body, content type, its sha256 digest). A
    /// manifest asked for by digest must hash to it.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String, String)> {
        let url = format!("{}/manifests/{reference}", self.base);
        let resp = self.get(&url, Some(super::manifest::ACCEPT))?;
        let ct = resp.content_type().to_string();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("failed to read the manifest from {}", self.shown))?;
        if body.len() as u64 > MAX_MANIFEST {
            bail!("the manifest from {} is larger than 4 MiB", self.shown);
        }
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        if reference.starts_with("sha256:") && digest != reference {
            bail!(crate::error::hint(
                format!(
                    "the manifest {reference} from {} hashes to {digest}",
                    self.shown
                ),
                "the registry or something between is corrupting data; nothing was stored"
            ));
        }
        Ok((body, ct, digest))
    }
    // ANCHOR_END: manifest

    // ANCHOR: blob
    /// Stream a blob into `out`, hashing every byte on the way; fails unless the size and the sha256
    /// are the descriptor's. The caller writes `out` to a temporary file and renames it into the
    /// store only after this returns Ok.
    pub fn blob(
        &mut self,
        digest: &str,
        size: u64,
        out: &mut impl Write,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.get(&url, None)?;
        let mut reader = resp.into_reader().take(size + 1);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => bail!(crate::error::hint(
                    format!("the download of {digest} from {} broke off after {done} of {size} bytes: {e}", self.shown),
                    "check that the registry still runs and pull again; nothing half-downloaded is kept"
                )),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .context("failed to write the download to disk")?;
            done += n as u64;
            progress(done);
        }
        if done != size {
            bail!(crate::error::hint(
                format!(
                    "the blob {digest} from {} has {done} bytes, the manifest says {size}",
                    self.shown
                ),
                "the download broke off or the registry is corrupt: pull again; nothing was stored"
            ));
        }
        let got = format!("sha256:{:x}", hasher.finalize());
        if got != digest {
            bail!(crate::error::hint(
                format!("the blob {digest} from {} does not match its digest (its content hashes to {got})", self.shown),
                "the registry's copy is corrupt or was tampered with; nothing was stored"
            ));
        }
        Ok(())
    }
    // ANCHOR_END: blob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull,push".into()),
            ]
        );
        let (scheme, p) = parse_challenge(r#"Basic realm="x""#).unwrap();
        assert_eq!((scheme.as_str(), p.len()), ("basic", 1));
    }

    /// A tiny one-shot HTTP server on loopback serving `body` for any request.
    fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        });
        (addr, h)
    }

    #[test]
    fn blobs_are_verified_while_streaming() {
        let data = b"hello layer".to_vec();
        let good = format!("sha256:{:x}", Sha256::digest(&data));
        for (digest, size, ok) in [
            (good.clone(), data.len() as u64, true),
            (
                format!("sha256:{}", "0".repeat(64)),
                data.len() as u64,
                false,
            ),
            (good.clone(), data.len() as u64 + 1, false),
        ] {
            let (addr, h) = serve_once(data.clone());
            let r = super::super::reference::parse(&format!("{addr}/t/x:1")).unwrap();
            let mut reg = Registry::new(&r, &[]);
            let mut out = Vec::new();
            let res = reg.blob(&digest, size, &mut out, &|_| {});
            assert_eq!(res.is_ok(), ok, "{digest} {size}: {res:?}");
            h.join().unwrap();
        }
    }
}

//! The few Hugging Face hub API calls `manifest import` makes, at one commit: the repo's
//! metadata (`GET /api/models/{repo}/revision/{commit}`), the chosen files' sizes and hashes
//! (`POST /api/models/{repo}/paths-info/{commit}`, as `huggingface_hub`'s `get_paths_info`
//! sends it), and a small file's bytes (`/{repo}/resolve/{commit}/{path}`). The endpoint and
//! token are found as hf-hub finds them (`HF_ENDPOINT`, the token file under `HF_HOME`).
//!
//! Every answer is untrusted: it is read up to a limit, parsed into the fields used, and checked
//! (the commit it describes, digests as hex, sizes that agree).

use crate::error::CliError;
use anyhow::{Context, Result};
use candor_verify::formats::ByteSource;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::time::Duration;
use url::Url;

/// Repo metadata: a repo with many thousand files stays well under this.
const MAX_METADATA_BYTES: u64 = 16 << 20;
/// Files the hub keeps in git rather than LFS are small (the hub moves files over 10 MB to LFS).
pub const MAX_FETCHED_BYTES: u64 = 32 << 20;

pub struct HubApi {
    endpoint: Url,
    token: Option<String>,
    agent: ureq::Agent,
    pub repo: String,
    pub commit: String,
}

/// `GET /api/models/{repo}/revision/{commit}`, the fields used.
#[derive(Deserialize)]
pub struct RevisionInfo {
    /// The commit the answer describes.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
    #[serde(default, rename = "cardData")]
    pub card_data: Option<serde_json::Value>,
    /// Present for repos holding GGUF files.
    #[serde(default)]
    pub gguf: Option<serde_json::Value>,
    /// A transformers repo's config.json summary.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub struct Sibling {
    pub rfilename: String,
}

/// One entry of a paths-info answer.
#[derive(Deserialize)]
struct PathInfo {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: u64,
    /// The git blob id (SHA-1 over "blob {size}\0" and the bytes).
    oid: Option<String>,
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    /// sha256 of the file's content.
    oid: String,
    size: u64,
}

/// What the hub publishes about one file at the commit.
#[derive(Debug, Clone)]
pub enum Published {
    /// An LFS file: its sha256 and size.
    Lfs { size: u64, sha256: [u8; 32] },
    /// A file kept in git: only its git blob id.
    Git { size: u64, blob_sha1: [u8; 20] },
}

impl HubApi {
    pub fn from_env(repo: &str, commit: &str) -> Result<HubApi> {
        let raw = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let endpoint = Url::parse(raw.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| CliError::usage(format!("HF_ENDPOINT '{raw}' is not an http(s) URL")))?;
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(60))
            .build();
        Ok(HubApi {
            endpoint,
            token: hf_hub::Cache::from_env().token(),
            agent,
            repo: repo.to_string(),
            commit: commit.to_string(),
        })
    }

    /// The endpoint URL with `segments` appended, each percent-encoded as one path segment.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut u = self.endpoint.clone();
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        u
    }

    fn repo_parts(&self) -> (&str, &str) {
        self.repo.split_once('/').unwrap_or((&self.repo, ""))
    }

    fn request(&self, method: &str, url: &Url) -> ureq::Request {
        let r = self.agent.request_url(method, url);
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// The repo's metadata at the commit; the answer must describe that commit.
    pub fn revision(&self) -> Result<RevisionInfo> {
        let (owner, name) = self.repo_parts();
        let url = self.url(["api", "models", owner, name, "revision", &self.commit]);
        let body = self.read(self.request("GET", &url).call(), &url, MAX_METADATA_BYTES)?;
        let info: RevisionInfo = parse(&body, &url)?;
        if info.sha != self.commit {
            return Err(CliError::integrity(format!(
                "{url} describes commit '{}', not the commit asked for ({}); refusing an answer about other content",
                info.sha.chars().take(64).collect::<String>(),
                self.commit
            ))
            .into());
        }
        Ok(info)
    }

    /// Size and published hash of each of `paths` at the commit, in the order given.
    pub fn paths_info(&self, paths: &[String]) -> Result<Vec<Published>> {
        let (owner, name) = self.repo_parts();
        let url = self.url(["api", "models", owner, name, "paths-info", &self.commit]);
        let form: Vec<(&str, &str)> = paths.iter().map(|p| ("paths", p.as_str())).collect();
        let body = self.read(
            self.request("POST", &url).send_form(&form),
            &url,
            MAX_METADATA_BYTES,
        )?;
        let entries: Vec<PathInfo> = parse(&body, &url)?;
        paths
            .iter()
            .map(|p| {
                let e = entries
                    .iter()
                    .find(|e| &e.path == p && e.kind == "file")
                    .ok_or_else(|| malformed(&url, format!("it does not describe the file {p}")))?;
                published(e).map_err(|why| malformed(&url, format!("{p}: {why}")))
            })
            .collect()
    }

    /// The bytes of a small file at the commit, at most `limit`.
    pub fn fetch(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let url = self.resolve_url(path);
        self.read(self.request("GET", &url).call(), &url, limit)
    }

    /// The URL of `path` at the commit.
    fn resolve_url(&self, path: &str) -> Url {
        let (owner, name) = self.repo_parts();
        let segments = [owner, name, "resolve", &self.commit]
            .into_iter()
            .chain(path.split('/'));
        self.url(segments)
    }

    /// `len` bytes of `path` from `start`, by a Range request.
    fn fetch_range(&self, path: &str, start: u64, len: u64) -> Result<Vec<u8>> {
        let url = self.resolve_url(path);
        let end = start + len - 1;
        let answer = self
            .request("GET", &url)
            .set("Range", &format!("bytes={start}-{end}"))
            .call();
        let response = match answer {
            // A server that ignores Range answers 200 with the whole file.
            Ok(r) if r.status() == 206 || start == 0 => r,
            Ok(r) => {
                return Err(malformed(
                    &url,
                    format!("HTTP {} to a Range request", r.status()),
                ))
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("fetching {url}"))),
        };
        let mut body = Vec::new();
        response.into_reader().take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(malformed(
                &url,
                format!("{} bytes instead of {len}", body.len()),
            ));
        }
        Ok(body)
    }

    /// The body of a successful answer, refused beyond `limit` bytes.
    fn read(
        &self,
        answer: std::result::Result<ureq::Response, ureq::Error>,
        url: &Url,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                let why = match code {
                    401 | 403 => format!(
                        "the repo is private or gated: accept its terms on the hub and log in (`huggingface-cli login`), then retry{}",
                        if self.token.is_some() { " (a token was sent)" } else { "" }
                    ),
                    404 => format!(
                        "check that {} exists and has commit {}",
                        self.repo, self.commit
                    ),
                    _ => "the hub may be down; retry later".into(),
                };
                return Err(CliError::runtime(format!("{url} answered HTTP {code}: {why}")).into());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "could not reach {url} (set HF_ENDPOINT for a mirror)"
                )))
            }
        };
        let mut body = Vec::new();
        response
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("reading the answer of {url}"))?;
        if body.len() as u64 > limit {
            return Err(malformed(url, format!("it is larger than {limit} bytes")));
        }
        Ok(body)
    }
}

/// A file at the commit read in blocks by Range requests, up to a limit: enough of a GGUF to
/// read its header without downloading the weights.
pub struct RangedFile<'a> {
    api: &'a HubApi,
    path: String,
    size: u64,
    blocks: RefCell<BTreeMap<u64, Vec<u8>>>,
}

impl<'a> RangedFile<'a> {
    const BLOCK: u64 = 1 << 20;
    /// A GGUF header (vocabulary included) is far smaller.
    const MAX_BLOCKS: usize = 64;

    pub fn new(api: &'a HubApi, path: &str, size: u64) -> Self {
        RangedFile {
            api,
            path: path.to_string(),
            size,
            blocks: RefCell::new(BTreeMap::new()),
        }
    }
}

impl ByteSource for RangedFile<'_> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut pos = offset;
        let mut blocks = self.blocks.borrow_mut();
        while pos < end {
            let start = pos - pos % Self::BLOCK;
            if !blocks.contains_key(&start) {
                if blocks.len() >= Self::MAX_BLOCKS {
                    return Err(io::Error::other(
                        "the header is larger than candor reads over the network",
                    ));
                }
                let len = Self::BLOCK.min(self.size - start);
                let bytes = self
                    .api
                    .fetch_range(&self.path, start, len)
                    .map_err(|e| io::Error::other(format!("{e:#}")))?;
                blocks.insert(start, bytes);
            }
            let block = &blocks[&start];
            let from = (pos - start) as usize;
            let n = (block.len() - from).min((end - pos) as usize);
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&block[from..from + n]);
            pos += n as u64;
        }
        Ok(())
    }
}

fn malformed(url: &Url, why: String) -> anyhow::Error {
    CliError::runtime(format!("the hub's answer from {url} is not usable: {why}")).into()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], url: &Url) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| malformed(url, format!("not the JSON expected ({e})")))
}

/// An entry's published hash, with sizes that agree and digests that are hex.
fn published(e: &PathInfo) -> std::result::Result<Published, String> {
    match &e.lfs {
        Some(lfs) => {
            if lfs.size != e.size {
                return Err(format!(
                    "LFS size {} differs from file size {}",
                    lfs.size, e.size
                ));
            }
            let sha256 = candor_verify::manifest::parse_sha256(&lfs.oid)
                .ok_or_else(|| "the LFS oid is not a sha256".to_string())?;
            Ok(Published::Lfs {
                size: e.size,
                sha256,
            })
        }
        None => {
            let oid = e.oid.as_deref().unwrap_or_default();
            let mut blob_sha1 = [0u8; 20];
            let lower = oid.bytes().all(|b| !b.is_ascii_uppercase());
            if oid.len() != 40 || !lower || hex::decode_to_slice(oid, &mut blob_sha1).is_err() {
                return Err("neither an LFS sha256 nor a git blob id".into());
            }
            Ok(Published::Git {
                size: e.size,
                blob_sha1,
            })
        }
    }
}

/// The git blob id of `bytes`: SHA-1 over "blob {len}\0" and the bytes.
pub fn git_blob_sha1(bytes: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_is_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            hex::encode(git_blob_sha1(b"hello\n")),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn lfs_and_git_entries_are_checked() {
        let entry = |lfs: Option<(&str, u64)>, oid: Option<&str>| PathInfo {
            kind: "file".into(),
            path: "x".into(),
            size: 5,
            oid: oid.map(str::to_string),
            lfs: lfs.map(|(oid, size)| LfsInfo {
                oid: oid.into(),
                size,
            }),
        };
        let sha = "ab".repeat(32);
        assert!(matches!(
            published(&entry(Some((&sha, 5)), None)),
            Ok(Published::Lfs { size: 5, .. })
        ));
        assert!(published(&entry(Some((&sha, 6)), None)).is_err());
        assert!(published(&entry(Some(("abc", 5)), None)).is_err());
        assert!(matches!(
            published(&entry(None, Some(&"cd".repeat(20)))),
            Ok(Published::Git { size: 5, .. })
        ));
        assert!(published(&entry(None, Some(&"CD".repeat(20)))).is_err());
        assert!(published(&entry(None, None)).is_err());
    }
}

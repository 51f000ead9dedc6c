//! The verification cache: `(device, inode, size, mtime ns, ctime ns, manifest digest, path)` ->
//! the sha256 we computed for that file. An unchanged file is then re-checked with one `fstat`.
//! The cache is only ever a record of our own hashing: a corrupt or oversized cache file is
//! ignored (treated as empty), and it is replaced atomically (temporary file + rename).

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::files::FileIdentity;

pub const CACHE_FILE: &str = "verify-cache.json";
const MAX_CACHE_BYTES: u64 = 16 << 20;
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// key -> (sha256 hex, insertion counter)
    entries: BTreeMap<String, CacheEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    sha256: String,
    seq: u64,
}

#[derive(Debug)]
pub struct VerifyCache {
    path: PathBuf,
    data: CacheFile,
    dirty: bool,
}

fn key(id: &FileIdentity, manifest_digest: &[u8; 32], rel_path: &str) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}",
        id.dev,
        id.ino,
        id.size,
        id.mtime_ns,
        id.ctime_ns,
        hex::encode(manifest_digest),
        rel_path
    )
}

impl VerifyCache {
    /// Load the cache from `dir` (the candor home). Never fails: an absent, unreadable or corrupt
    /// cache is an empty one.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(CACHE_FILE);
        let data = read_json::<CacheFile>(&path, MAX_CACHE_BYTES)
            .filter(|c| c.version == 1)
            .unwrap_or_else(|| {
                tracing::debug!(
                    "verification cache {} absent or unreadable; starting empty",
                    path.display()
                );
                CacheFile {
                    version: 1,
                    entries: BTreeMap::new(),
                }
            });
        VerifyCache {
            path,
            data,
            dirty: false,
        }
    }

    /// The sha256 recorded for this exact file identity, manifest and path.
    pub fn lookup(
        &self,
        id: &FileIdentity,
        manifest_digest: &[u8; 32],
        rel_path: &str,
    ) -> Option<[u8; 32]> {
        let e = self.data.entries.get(&key(id, manifest_digest, rel_path))?;
        crate::manifest::parse_sha256(&e.sha256)
    }

    pub fn insert(
        &mut self,
        id: &FileIdentity,
        manifest_digest: &[u8; 32],
        rel_path: &str,
        sha256: &[u8; 32],
    ) {
        let seq = self.data.entries.values().map(|e| e.seq).max().unwrap_or(0) + 1;
        self.data.entries.insert(
            key(id, manifest_digest, rel_path),
            CacheEntry {
                sha256: hex::encode(sha256),
                seq,
            },
        );
        if self.data.entries.len() > MAX_ENTRIES {
            // Drop the oldest entries.
            let mut seqs: Vec<u64> = self.data.entries.values().map(|e| e.seq).collect();
            seqs.sort_unstable();
            let cut = seqs[self.data.entries.len() - MAX_ENTRIES];
            self.data.entries.retain(|_, e| e.seq >= cut);
        }
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.data.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.entries.is_empty()
    }

    /// Write the cache if it changed: to a temporary file in the same directory, then rename, so a
    /// crash never leaves a half-written cache.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        write_atomically(
            &self.path,
            &serde_json::to_vec(&self.data).map_err(std::io::Error::other)?,
        )?;
        self.dirty = false;
        Ok(())
    }
}

/// The JSON state file at `path` (the verification cache, the license acceptances), or None
/// when it is absent, not a regular file, over `max_bytes` or not a `T`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, max_bytes: u64) -> Option<T> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= max_bytes)
        .and_then(|_| std::fs::read(path).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(size: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: 2,
            size,
            mtime_ns: 3,
            ctime_ns: 4,
        }
    }

    #[test]
    fn roundtrip_and_key_parts() {
        let d = tempfile::tempdir().unwrap();
        let mut c = VerifyCache::load(d.path());
        assert!(c.is_empty());
        c.insert(&ident(10), &[1; 32], "a.gguf", &[9; 32]);
        c.save().unwrap();
        let c = VerifyCache::load(d.path());
        assert_eq!(c.lookup(&ident(10), &[1; 32], "a.gguf"), Some([9; 32]));
        assert_eq!(
            c.lookup(&ident(11), &[1; 32], "a.gguf"),
            None,
            "size is part of the key"
        );
        assert_eq!(
            c.lookup(&ident(10), &[2; 32], "a.gguf"),
            None,
            "manifest digest is part of the key"
        );
        assert_eq!(
            c.lookup(&ident(10), &[1; 32], "b.gguf"),
            None,
            "path is part of the key"
        );
        let mut other = ident(10);
        other.ctime_ns += 1;
        assert_eq!(
            c.lookup(&other, &[1; 32], "a.gguf"),
            None,
            "ctime is part of the key"
        );
    }

    #[test]
    fn corrupt_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(CACHE_FILE),
            b"{\"version\":1,\"entries\":{\"x\":",
        )
        .unwrap();
        let c = VerifyCache::load(d.path());
        assert!(c.is_empty());
        std::fs::write(
            d.path().join(CACHE_FILE),
            b"{\"version\":1,\"entries\":{\"k\":{\"sha256\":\"zz\",\"seq\":1}}}",
        )
        .unwrap();
        let c = VerifyCache::load(d.path());
        assert_eq!(c.lookup(&ident(1), &[0; 32], "k"), None);
    }

    #[test]
    fn no_temp_files_left() {
        let d = tempfile::tempdir().unwrap();
        let mut c = VerifyCache::load(d.path());
        c.insert(&ident(1), &[0; 32], "a", &[0; 32]);
        c.save().unwrap();
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CACHE_FILE)]);
    }
}

//! Stage 3: hash every opened file (in parallel, through the verification cache), make sure no
//! file changed while it was read, and compare each digest with the published one.

use std::fs::File;

use sha2::{Digest, Sha256};

use super::Check;
use crate::{
    cache::VerifyCache,
    error::{Error, Result},
    files::FileIdentity,
    hashing::{self, Progress},
    report::{FileStatus, Reason},
};

/// Hashes what the cache does not know; returns the bytes hashed.
pub(super) fn hash(c: &mut Check, progress: &dyn Progress) -> Result<u64> {
    let mdigest = c
        .manifest
        .map(|m| *m.digest())
        .unwrap_or_else(|| Sha256::digest(b"candor:unlisted").into());
    let mut cache = c.opts.cache_dir.as_deref().map(VerifyCache::load);
    let mut to_hash = Vec::new();
    for (i, s) in c.checked.iter_mut().enumerate() {
        if matches!(
            s.status,
            FileStatus::SizeMismatch | FileStatus::Missing | FileStatus::Unsafe
        ) {
            continue;
        }
        let Some(o) = &s.opened else { continue };
        if !c.opts.rehash {
            if let Some(hit) = cache
                .as_ref()
                .and_then(|cache| cache.lookup(&o.identity, &mdigest, &s.report_path))
            {
                s.actual = Some(hit);
                s.cached = true;
                continue;
            }
        }
        to_hash.push(i);
    }
    let jobs: Vec<(&str, &File)> = to_hash
        .iter()
        .map(|&i| {
            let s = &c.checked[i];
            (
                s.report_path.as_str(),
                &s.opened.as_ref().expect("opened").file,
            )
        })
        .collect();
    let results = hashing::sha256_files(
        &jobs,
        crate::filetypes::hashing_threads(c.opts.threads),
        progress,
    );
    let mut hashed_bytes = 0u64;
    for (&i, r) in to_hash.iter().zip(results) {
        let (digest, n) = r.map_err(|e| Error::io(c.root.join(&c.checked[i].disk_path), e))?;
        hashed_bytes += n;
        let s = &mut c.checked[i];
        s.actual = Some(digest);
        let o = s.opened.as_ref().expect("opened");
        // The file must not have changed while we read it.
        let now = o
            .file
            .metadata()
            .map_err(|e| Error::io(&o.opened_path, e))?;
        if FileIdentity::of(&now) != o.identity || n != o.identity.size {
            return Err(Error::FileChanged {
                path: o.opened_path.clone(),
                what: "modified while it was hashed",
            });
        }
        if let Some(cache) = cache.as_mut() {
            cache.insert(&o.identity, &mdigest, &s.report_path, &digest);
        }
    }
    if let Some(cache) = cache.as_mut() {
        if let Err(e) = cache.save() {
            c.warnings
                .push(format!("could not save the verification cache: {e}"));
        }
    }
    Ok(hashed_bytes)
}

/// Each digest against the manifest's, or for an unlisted file in the Hugging Face cache,
/// against its LFS blob name (which is its sha256).
pub(super) fn compare(c: &mut Check) {
    for i in 0..c.checked.len() {
        let s = &c.checked[i];
        let Some(actual) = s.actual else { continue };
        let expected = if let Some(e) = &s.entry {
            e.sha256_hex()
        } else if let Some(blob) = s.opened.as_ref().and_then(|o| o.hf_blob.as_ref()) {
            if blob.len() != 64 {
                continue;
            }
            blob.clone()
        } else {
            continue;
        };
        if expected != hex::encode(actual) {
            let path = s.report_path.clone();
            c.checked[i].status = FileStatus::HashMismatch;
            c.refuse(Reason::HashMismatch {
                path,
                expected,
                actual: hex::encode(actual),
            });
        }
    }
}

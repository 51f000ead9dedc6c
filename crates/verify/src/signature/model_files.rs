//! The model directory as the statement sees it: the signed files and byte ranges, the files on
//! disk (walked without following symlinks unless the signer allowed them), and each listed file
//! opened the same way.

use std::{
    collections::{BTreeSet, HashMap},
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

use super::{
    bundle::{Serialization, Statement},
    FileProblem, SignatureError, SignatureOptions, GIT_PATHS, MAX_WALK_DEPTH, MAX_WALK_ENTRIES,
};
use crate::{
    files::{self, FileIdentity, WalkError, WalkLimits},
    manifest::validate_rel_path,
};

/// A signed file and its signed byte ranges.
pub(super) struct Listed {
    pub path: String,
    /// (resource name, start, end, digest); `files` mode has one range with `end = u64::MAX`.
    pub ranges: Vec<(String, u64, u64, [u8; 32])>,
}

/// Split the resources into files and ranges, in listed order.
pub(super) fn listed_files(st: &Statement, bundle: &Path) -> Result<Vec<Listed>, SignatureError> {
    let malformed = |problem: String| SignatureError::Malformed {
        bundle: bundle.to_path_buf(),
        problem,
    };
    let mut out: Vec<Listed> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen = BTreeSet::new();
    for (name, d) in &st.resources {
        if !seen.insert(name.as_str()) {
            return Err(malformed(format!("resource '{name}' is listed twice")));
        }
        let (path, start, end) = match st.method {
            Serialization::Files => (name.as_str(), 0, u64::MAX),
            Serialization::Shards(_) => {
                let bad = || malformed(format!("shard resource '{name}' is not PATH:START:END"));
                let (rest, end) = name.rsplit_once(':').ok_or_else(bad)?;
                let (path, start) = rest.rsplit_once(':').ok_or_else(bad)?;
                let start: u64 = start.parse().map_err(|_| bad())?;
                let end: u64 = end.parse().map_err(|_| bad())?;
                if end <= start {
                    return Err(bad());
                }
                (path, start, end)
            }
        };
        validate_rel_path(path)
            .map_err(|why| malformed(format!("resource path '{path}': {why}")))?;
        let i = *index.entry(path.to_string()).or_insert_with(|| {
            out.push(Listed {
                path: path.to_string(),
                ranges: Vec::new(),
            });
            out.len() - 1
        });
        out[i].ranges.push((name.clone(), start, end, *d));
    }
    Ok(out)
}

/// `rel` is `ig` or lies under it.
fn is_ignored(rel: &str, ignores: &[String]) -> bool {
    ignores.iter().any(|ig| {
        rel == ig
            || (rel.len() > ig.len()
                && rel.starts_with(ig.as_str())
                && rel.as_bytes()[ig.len()] == b'/')
    })
}

fn normalize_ignore(p: &str) -> Option<String> {
    let mut s = p.trim();
    while let Some(r) = s.strip_prefix("./") {
        s = r;
    }
    let s = s.trim_end_matches('/');
    validate_rel_path(s).ok().map(|_| s.to_string())
}

/// Every non-ignored regular file under `root`, by relative path; symlinks (unless the signer
/// allowed them), special files and odd names go to `problems`.
fn walk(
    root: &Path,
    ignores: &[String],
    allow_symlinks: bool,
    problems: &mut Vec<FileProblem>,
) -> Result<Vec<String>, SignatureError> {
    let mut out = Vec::new();
    let limits = WalkLimits {
        entries: MAX_WALK_ENTRIES,
        depth: MAX_WALK_DEPTH,
    };
    files::walk(root, limits, |e| {
        let rel = e.rel.clone();
        if is_ignored(&rel, ignores) {
            return false;
        }
        let mut ft = e.file_type;
        if ft.is_symlink() {
            if !allow_symlinks {
                problems.push(FileProblem::Symlink { path: rel });
                return false;
            }
            match std::fs::metadata(&e.path) {
                Ok(m) => ft = m.file_type(),
                Err(_) => {
                    problems.push(FileProblem::NotRegular { path: rel });
                    return false;
                }
            }
        }
        if ft.is_file() {
            out.push(rel);
        } else if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
            problems.push(FileProblem::NotRegular { path: rel });
        }
        ft.is_dir()
    })
    .map_err(|e| match e {
        WalkError::TooManyEntries(n) => SignatureError::Unsupported {
            bundle: root.to_path_buf(),
            what: format!("the model directory holds more than {n} entries"),
        },
        WalkError::Io { path, source } => SignatureError::Io { path, source },
    })?;
    out.sort();
    Ok(out)
}

pub(super) enum Opened {
    File(File, FileIdentity),
    Problem(FileProblem),
}

/// Open `rel` under `root` without following symlinks unless allowed.
pub(super) fn open_listed(root: &Path, rel: &str, allow_symlinks: bool) -> io::Result<Opened> {
    let p = rel.to_string();
    if !allow_symlinks {
        let mut cur = root.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Opened::Problem(FileProblem::Missing { path: p })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Opened::Problem(FileProblem::Missing { path: p }))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let full = root.join(rel);
    if !allow_symlinks {
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Opened::Problem(FileProblem::Missing { path: p }))
            }
            Err(e) => return Err(e),
        }
    }
    let mut oo = OpenOptions::new();
    oo.read(true);
    let mut flags = libc::O_NONBLOCK;
    if !allow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    oo.custom_flags(flags);
    let file = match oo.open(&full) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Opened::Problem(FileProblem::Missing { path: p }))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Opened::Problem(FileProblem::Symlink { path: p }))
        }
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    if !m.is_file() {
        return Ok(Opened::Problem(FileProblem::NotRegular { path: p }));
    }
    Ok(Opened::File(file, FileIdentity::of(&m)))
}

/// The ranges `model_signing` cuts a file of `size` bytes into (none for an empty file).
pub(super) fn shard_layout(size: u64, shard: u64) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + shard).min(size);
        v.push((start, end));
        start = end;
    }
    v
}

/// What not to look at: the statement's and the caller's ignore paths, the git paths (unless
/// asked to include them) and the bundle itself when it lies in the model directory.
pub(super) fn ignores(
    st: &Statement,
    opts: &SignatureOptions,
    bundle_path: &Path,
    root: &Path,
) -> Vec<String> {
    let mut ignores: Vec<String> = st
        .ignore_paths
        .iter()
        .chain(opts.ignore_paths.iter())
        .filter_map(|p| normalize_ignore(p))
        .collect();
    if !opts.include_git_paths {
        ignores.extend(GIT_PATHS.iter().map(|s| s.to_string()));
    }
    if let Ok(b) = bundle_path.canonicalize() {
        if let Ok(rel) = b.strip_prefix(root) {
            if let Some(r) = rel.to_str().and_then(normalize_ignore) {
                ignores.push(r);
            }
        }
    }
    ignores
}

/// Files on disk the signature does not list: returned when unsigned files are allowed, else
/// recorded as problems. Walk problems about listed paths are left to the per-file checks.
pub(super) fn unsigned(
    root: &Path,
    st: &Statement,
    listed: &[Listed],
    ignores: &[String],
    opts: &SignatureOptions,
    problems: &mut Vec<FileProblem>,
) -> Result<Vec<String>, SignatureError> {
    let on_disk = walk(root, ignores, st.allow_symlinks, problems)?;
    let listed_set: BTreeSet<&str> = listed.iter().map(|l| l.path.as_str()).collect();
    let mut unsigned = Vec::new();
    for p in on_disk {
        if listed_set.contains(p.as_str()) {
            continue;
        }
        if opts.allow_unsigned_files {
            unsigned.push(p);
        } else if matches!(st.method, Serialization::Shards(_))
            && std::fs::metadata(root.join(&p)).is_ok_and(|m| m.len() == 0)
        {
            // `model_signing` cuts an empty file into no shards: nothing to sign or check.
        } else {
            problems.push(FileProblem::Unsigned { path: p });
        }
    }
    problems.retain(|p| !listed_set.contains(p.path()));
    Ok(unsigned)
}

//! Opening model files safely. A listed path must stay inside the model directory: symlinks are
//! refused (except the Hugging Face cache's `snapshots/<commit>/<file> -> ../../blobs/<sha256>`,
//! whose target must stay in that repo's `blobs/` and be named by the listed sha256), as are FIFOs,
//! devices and sockets. The final open uses `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot hang us) and
//! the handle is `fstat`ed, so what is hashed is what was checked. Directories are walked by the
//! one bounded [`walk`], which never follows a symlink unless its caller asks to.

use std::{
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt},
    path::{Component, Path, PathBuf},
};

use serde::Serialize;

use crate::{
    error::{Error, Result},
    manifest::{validate_rel_path, FileFormat, FileRole, PathProblem},
};

/// What identifies a file's content without reading it: if any of these change, the content may
/// have changed. ctime cannot be set by an unprivileged user, unlike mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    pub fn of(m: &Metadata) -> Self {
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// Why a file was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum UnsafeFile {
    #[error("is a symlink (to {target}); only Hugging Face cache snapshot links are followed")]
    Symlink { target: String },
    #[error("is a Hugging Face cache link whose target {target} is not in this repo's blobs/")]
    SymlinkOutsideCache { target: String },
    #[error("links to blob {blob}, which is not named by the listed sha256 {expected}")]
    BlobNameMismatch { blob: String, expected: String },
    #[error("a directory on its path ({component}) is a symlink")]
    SymlinkedDirectory { component: String },
    #[error("is not a regular file ({kind})")]
    NotRegular { kind: &'static str },
    #[error("was replaced while it was being opened")]
    Swapped,
    #[error("bad path: {why}")]
    BadPath { why: PathProblem },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("missing")]
    Missing,
    #[error("{0}")]
    Unsafe(UnsafeFile),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A file opened by [`open_in_dir`], not yet hashed.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub identity: FileIdentity,
    /// The path actually opened (the blob, for a Hugging Face cache link).
    pub opened_path: PathBuf,
    /// The blob name, when opened through a Hugging Face cache link.
    pub hf_blob: Option<String>,
    /// Files writable by other users, and similar.
    pub warnings: Vec<String>,
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "regular file"
    }
}

fn lstat(p: &Path) -> std::result::Result<Metadata, OpenError> {
    std::fs::symlink_metadata(p).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => OpenError::Missing,
        _ => OpenError::Io(e),
    })
}

/// Lexically resolve `base/target` (no filesystem access).
fn lexical_join(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Follow a Hugging Face cache snapshot link, or refuse it.
fn hf_blob_target(
    root: &Path,
    link: &Path,
    expected_sha256: Option<&str>,
) -> std::result::Result<(PathBuf, String), OpenError> {
    let target = std::fs::read_link(link)?;
    let shown = target.display().to_string();
    let unsafe_link = || {
        OpenError::Unsafe(UnsafeFile::Symlink {
            target: shown.clone(),
        })
    };
    // root = <repo>/snapshots/<commit>
    let snapshots = root.parent().ok_or_else(unsafe_link)?;
    if snapshots.file_name().is_none_or(|n| n != "snapshots") || target.is_absolute() {
        return Err(unsafe_link());
    }
    let blobs = snapshots.parent().ok_or_else(unsafe_link)?.join("blobs");
    let parent = link.parent().ok_or_else(unsafe_link)?;
    let resolved = lexical_join(parent, &target).ok_or_else(unsafe_link)?;
    let outside = || {
        OpenError::Unsafe(UnsafeFile::SymlinkOutsideCache {
            target: shown.clone(),
        })
    };
    if resolved.parent() != Some(blobs.as_path()) {
        return Err(outside());
    }
    let blob = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(outside)?
        .to_string();
    let hexname = |n: usize| blob.len() == n && blob.bytes().all(|b| b.is_ascii_hexdigit());
    match expected_sha256 {
        // Small (non-LFS) files are stored under their git blob SHA-1 (40 hex digits); their
        // content is still hashed and compared with the listed sha256.
        Some(exp) if blob != exp && !hexname(40) => {
            return Err(OpenError::Unsafe(UnsafeFile::BlobNameMismatch {
                blob,
                expected: exp.to_string(),
            }))
        }
        None if !(hexname(64) || hexname(40)) => return Err(outside()),
        _ => {}
    }
    Ok((resolved, blob))
}

/// An entry met by [`walk`].
pub struct WalkEntry {
    /// The path relative to the root, `/`-separated (non-UTF-8 bytes replaced).
    pub rel: String,
    /// Whether the name was valid UTF-8 (else `rel` is lossy).
    pub utf8: bool,
    /// The path on disk.
    pub path: PathBuf,
    /// The type as the directory lists it: a symlink is a symlink.
    pub file_type: std::fs::FileType,
}

/// How far a [`walk`] goes: entries in all, and directory levels below the root.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    pub entries: usize,
    pub depth: usize,
}

#[derive(Debug)]
pub enum WalkError {
    /// More than `WalkLimits::entries` entries.
    TooManyEntries(usize),
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

/// Visits every entry under `root`, depth first. `visit` returns whether to descend into the
/// entry: a directory, or a symlink to one where the caller's policy follows links; nothing is
/// followed otherwise. Levels below `limits.depth` are not entered; more than `limits.entries`
/// entries is an error, so a hostile tree cannot make the walk unbounded.
pub fn walk(
    root: &Path,
    limits: WalkLimits,
    mut visit: impl FnMut(&WalkEntry) -> bool,
) -> std::result::Result<(), WalkError> {
    let io_err = |path: &Path, source| WalkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, prefix, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            seen += 1;
            if seen > limits.entries {
                return Err(WalkError::TooManyEntries(limits.entries));
            }
            let name = entry.file_name();
            let lossy = name.to_string_lossy();
            let rel = if prefix.is_empty() {
                lossy.to_string()
            } else {
                format!("{prefix}/{lossy}")
            };
            let e = WalkEntry {
                utf8: name.to_str().is_some(),
                file_type: entry.file_type().map_err(|e| io_err(&entry.path(), e))?,
                path: entry.path(),
                rel,
            };
            if visit(&e) && depth < limits.depth {
                stack.push((e.path, e.rel, depth + 1));
            }
        }
    }
    Ok(())
}

/// Open `rel` (a validated manifest path) inside `root` (canonical) for reading.
pub fn open_in_dir(
    root: &Path,
    rel: &str,
    expected_sha256: Option<&str>,
) -> std::result::Result<OpenedFile, OpenError> {
    validate_rel_path(rel).map_err(|p| OpenError::Unsafe(UnsafeFile::BadPath { why: p }))?;
    let comps: Vec<&str> = rel.split('/').collect();
    let mut cur = root.to_path_buf();
    for c in &comps[..comps.len() - 1] {
        cur.push(c);
        let m = lstat(&cur)?;
        if m.file_type().is_symlink() {
            return Err(OpenError::Unsafe(UnsafeFile::SymlinkedDirectory {
                component: c.to_string(),
            }));
        }
        if !m.is_dir() {
            return Err(OpenError::Missing);
        }
    }
    cur.push(comps[comps.len() - 1]);
    let m = lstat(&cur)?;
    let (path, hf_blob, expect) = if m.file_type().is_symlink() {
        let (target, blob) = hf_blob_target(root, &cur, expected_sha256)?;
        let tm = lstat(&target)?;
        (target, Some(blob), tm)
    } else {
        (cur, None, m)
    };
    if !expect.file_type().is_file() {
        return Err(OpenError::Unsafe(UnsafeFile::NotRegular {
            kind: kind_of(&expect.file_type()),
        }));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => OpenError::Unsafe(UnsafeFile::Symlink {
                target: String::new(),
            }),
            _ if e.kind() == io::ErrorKind::NotFound => OpenError::Missing,
            _ => OpenError::Io(e),
        })?;
    let fm = file.metadata()?;
    if !fm.file_type().is_file() {
        return Err(OpenError::Unsafe(UnsafeFile::NotRegular {
            kind: kind_of(&fm.file_type()),
        }));
    }
    if fm.dev() != expect.dev() || fm.ino() != expect.ino() {
        return Err(OpenError::Unsafe(UnsafeFile::Swapped));
    }
    let mut warnings = Vec::new();
    if fm.mode() & 0o002 != 0 {
        warnings.push(format!(
            "{rel} is writable by other users; they could change it after verification"
        ));
    }
    Ok(OpenedFile {
        file,
        identity: FileIdentity::of(&fm),
        opened_path: path,
        hf_blob,
        warnings,
    })
}

/// A file that was opened safely and hashed. The handle is the one that was hashed: load from it
/// (map or read it), never from the path.
#[derive(Debug)]
pub struct VerifiedFile {
    pub(crate) rel_path: String,
    pub(crate) file: File,
    pub(crate) size: u64,
    pub(crate) sha256: [u8; 32],
    pub(crate) role: Option<FileRole>,
    pub(crate) format: Option<FileFormat>,
    pub(crate) identity: FileIdentity,
    pub(crate) opened_path: PathBuf,
}

impl VerifiedFile {
    /// The opened, hashed handle.
    pub fn file(&self) -> &File {
        &self.file
    }
    /// The path as listed in the manifest (relative to the model directory).
    pub fn rel_path(&self) -> &str {
        &self.rel_path
    }
    /// The path that was opened (for messages; do not reopen it).
    pub fn opened_path(&self) -> &Path {
        &self.opened_path
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
    /// The manifest role; `None` for an unlisted model's files.
    pub fn role(&self) -> Option<FileRole> {
        self.role
    }
    /// What the file is. For weights, the format their header showed when it was validated
    /// (GGUF or safetensors: the engine loads by it and never looks at the bytes again); for
    /// other files, the manifest's format or, unlisted, the one the name implies.
    pub fn format(&self) -> Option<FileFormat> {
        self.format
    }
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Re-`fstat` the handle and `lstat` the path: an error if the content may have changed since
    /// it was hashed (modified in place, truncated) or the path now names another file (replaced
    /// by a rename). Call it after mapping the file and before trusting what was mapped.
    pub fn check_unchanged(&self) -> Result<()> {
        let changed = |what| Error::FileChanged {
            path: self.opened_path.clone(),
            what,
        };
        match std::fs::symlink_metadata(&self.opened_path) {
            Ok(m) if m.dev() == self.identity.dev && m.ino() == self.identity.ino => {}
            Ok(_) => return Err(changed("replaced by another file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(changed("removed or renamed"))
            }
            Err(e) => return Err(Error::io(&self.opened_path, e)),
        }
        let now = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.opened_path, e))?;
        let id = FileIdentity::of(&now);
        if id.size != self.identity.size {
            return Err(changed("size changed"));
        }
        if id != self.identity {
            return Err(changed("modified in place"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn root() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().canonicalize().unwrap();
        (d, p)
    }

    #[test]
    fn walk_stays_within_its_limits_and_follows_no_link_by_itself() {
        let (_d, r) = root();
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::fs::write(r.join("a/b/c/deep.gguf"), b"x").unwrap();
        std::fs::write(r.join("top.gguf"), b"x").unwrap();
        symlink(r.join("a"), r.join("link")).unwrap();
        let mut seen = Vec::new();
        let limits = WalkLimits {
            entries: 100,
            depth: 2,
        };
        walk(&r, limits, |e| {
            seen.push(e.rel.clone());
            e.file_type.is_dir()
        })
        .unwrap();
        seen.sort();
        // `a/b/c` is listed but, two levels down, not entered; the link is listed, not followed.
        assert_eq!(seen, ["a", "a/b", "a/b/c", "link", "top.gguf"]);
        let few = WalkLimits {
            entries: 3,
            depth: 8,
        };
        let err = walk(&r, few, |e| e.file_type.is_dir()).unwrap_err();
        assert!(matches!(err, WalkError::TooManyEntries(3)), "{err:?}");
    }

    #[test]
    fn regular_file_opens() {
        let (_d, r) = root();
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/a.bin"), b"x").unwrap();
        let o = open_in_dir(&r, "sub/a.bin", None).unwrap();
        assert_eq!(o.identity.size, 1);
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn missing_file() {
        let (_d, r) = root();
        assert!(matches!(
            open_in_dir(&r, "nope", None),
            Err(OpenError::Missing)
        ));
    }

    // F1: a model file that is a symlink to something outside.
    #[test]
    fn symlink_refused() {
        let (_d, r) = root();
        symlink("/etc/passwd", r.join("m.gguf")).unwrap();
        assert!(matches!(
            open_in_dir(&r, "m.gguf", None),
            Err(OpenError::Unsafe(UnsafeFile::Symlink { .. }))
        ));
    }

    #[test]
    fn symlinked_directory_refused() {
        let (_d, r) = root();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("a"), b"x").unwrap();
        symlink(other.path(), r.join("sub")).unwrap();
        assert!(matches!(
            open_in_dir(&r, "sub/a", None),
            Err(OpenError::Unsafe(UnsafeFile::SymlinkedDirectory { .. }))
        ));
    }

    // F1: a FIFO must be refused without hanging.
    #[test]
    fn fifo_refused() {
        let (_d, r) = root();
        let status = std::process::Command::new("mkfifo")
            .arg(r.join("f"))
            .status();
        if !status.map(|s| s.success()).unwrap_or(false) {
            return;
        }
        assert!(matches!(
            open_in_dir(&r, "f", None),
            Err(OpenError::Unsafe(UnsafeFile::NotRegular { kind: "FIFO" }))
        ));
    }

    #[test]
    fn directory_refused() {
        let (_d, r) = root();
        std::fs::create_dir(r.join("d")).unwrap();
        assert!(matches!(
            open_in_dir(&r, "d", None),
            Err(OpenError::Unsafe(UnsafeFile::NotRegular {
                kind: "directory"
            }))
        ));
    }

    #[test]
    fn world_writable_warns() {
        let (_d, r) = root();
        std::fs::write(r.join("a"), b"x").unwrap();
        std::fs::set_permissions(r.join("a"), std::fs::Permissions::from_mode(0o666)).unwrap();
        let o = open_in_dir(&r, "a", None).unwrap();
        assert_eq!(o.warnings.len(), 1);
    }

    // F4: Hugging Face cache layout.
    #[test]
    fn hf_cache_links() {
        let (_d, base) = root();
        let sha = "ab".repeat(32);
        let repo = base.join("models--o--n");
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/c0ffee")).unwrap();
        std::fs::write(repo.join("blobs").join(&sha), b"data").unwrap();
        let snap = repo.join("snapshots/c0ffee");
        symlink(format!("../../blobs/{sha}"), snap.join("m.gguf")).unwrap();
        let o = open_in_dir(&snap, "m.gguf", Some(&sha)).unwrap();
        assert_eq!(o.hf_blob.as_deref(), Some(sha.as_str()));

        // blob named by another digest
        let other = "cd".repeat(32);
        assert!(matches!(
            open_in_dir(&snap, "m.gguf", Some(&other)),
            Err(OpenError::Unsafe(UnsafeFile::BlobNameMismatch { .. }))
        ));
        // a link that climbs out of the cache
        symlink("../../../outside", snap.join("x.gguf")).unwrap();
        assert!(matches!(
            open_in_dir(&snap, "x.gguf", None),
            Err(OpenError::Unsafe(UnsafeFile::SymlinkOutsideCache { .. }))
        ));
    }

    // F2: a file replaced by rename after verification.
    #[test]
    fn check_unchanged_detects_replace_and_modify() {
        let (_d, r) = root();
        std::fs::write(r.join("a"), b"one").unwrap();
        let o = open_in_dir(&r, "a", None).unwrap();
        let vf = VerifiedFile {
            rel_path: "a".into(),
            size: o.identity.size,
            sha256: [0; 32],
            role: None,
            format: None,
            identity: o.identity,
            opened_path: o.opened_path,
            file: o.file,
        };
        vf.check_unchanged().unwrap();
        std::fs::write(r.join("b"), b"two").unwrap();
        std::fs::rename(r.join("b"), r.join("a")).unwrap();
        assert!(matches!(
            vf.check_unchanged(),
            Err(Error::FileChanged {
                what: "replaced by another file",
                ..
            })
        ));
    }
}

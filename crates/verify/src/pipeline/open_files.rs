//! Stage 2: open every file through the one safe opener (no symlink escapes, FIFOs or devices)
//! and compare sizes before a byte is hashed.

use super::Check;
use crate::{
    error::{Error, Result},
    files::{open_in_dir, OpenError},
    report::{FileStatus, Reason},
};

pub(super) fn open(c: &mut Check) -> Result<()> {
    let refetch = c.refetch_fix();
    for i in 0..c.slots.len() {
        let s = &c.slots[i];
        let (path, disk_path) = (s.report_path.clone(), s.disk_path.clone());
        let expected_hex = s.entry.as_ref().map(|e| e.sha256_hex());
        let expected_size = s.entry.as_ref().map(|e| e.size);
        // A size only one source gave may be the manifest's error rather than the file's.
        let lone_size_source = s
            .entry
            .as_ref()
            .and_then(|e| e.size_sources.as_ref())
            .filter(|l| l.len() == 1)
            .map(|l| l[0].clone());
        match open_in_dir(&c.root, &disk_path, expected_hex.as_deref()) {
            Ok(o) => {
                c.warnings.extend(o.warnings.iter().cloned());
                if let Some(expected) = expected_size.filter(|&e| e != o.identity.size) {
                    c.slots[i].status = FileStatus::SizeMismatch;
                    let actual = o.identity.size;
                    let fix = match &lone_size_source {
                        Some(src) => format!(
                            "{refetch}; the manifest's size was seen in one source only ({src}), so if the file is the published one the manifest may be wrong: report it"
                        ),
                        None => refetch.clone(),
                    };
                    c.refuse(
                        Reason::SizeMismatch {
                            path,
                            expected,
                            actual,
                        },
                        fix,
                    );
                }
                c.slots[i].opened = Some(o);
            }
            Err(OpenError::Missing) => {
                c.slots[i].status = FileStatus::Missing;
                c.refuse(Reason::MissingFile { path }, refetch.clone());
            }
            Err(OpenError::Unsafe(problem)) => {
                c.slots[i].status = FileStatus::Unsafe;
                c.refuse(
                    Reason::UnsafeFile { path, problem },
                    "replace the link or special file with the regular file itself",
                );
            }
            Err(OpenError::Io(e)) => return Err(Error::io(c.root.join(&disk_path), e)),
        }
    }
    Ok(())
}

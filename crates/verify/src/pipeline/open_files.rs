//! Stage 2: open every file through the one safe opener (no symlink escapes, FIFOs or devices)
//! and compare sizes before a byte is hashed.

use super::Check;
use crate::{
    error::{Error, Result},
    files::{open_in_dir, OpenError},
    report::{FileStatus, Reason},
};

pub(super) fn open(c: &mut Check) -> Result<()> {
    for i in 0..c.checked.len() {
        let s = &c.checked[i];
        let (path, disk_path) = (s.report_path.clone(), s.disk_path.clone());
        let expected_hex = s.entry.as_ref().map(|e| e.sha256_hex());
        let expected_size = s.entry.as_ref().map(|e| e.size);
        match open_in_dir(&c.root, &disk_path, expected_hex.as_deref()) {
            Ok(o) => {
                c.warnings.extend(o.warnings.iter().cloned());
                if let Some(expected) = expected_size.filter(|&e| e != o.identity.size) {
                    c.checked[i].status = FileStatus::SizeMismatch;
                    let actual = o.identity.size;
                    c.refuse(Reason::SizeMismatch {
                        path,
                        expected,
                        actual,
                    });
                }
                c.checked[i].opened = Some(o);
            }
            Err(OpenError::Missing) => {
                c.checked[i].status = FileStatus::Missing;
                c.refuse(Reason::MissingFile { path });
            }
            Err(OpenError::Unsafe(problem)) => {
                c.checked[i].status = FileStatus::Unsafe;
                c.refuse(Reason::UnsafeFile { path, problem });
            }
            Err(OpenError::Io(e)) => return Err(Error::io(c.root.join(&disk_path), e)),
        }
    }
    Ok(())
}

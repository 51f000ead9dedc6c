//! The manifest text being parsed: turns byte spans into the line numbers errors name.

use std::{ops::Range, path::Path};

use toml::Spanned;

use super::{problems::ManifestProblem, rules::parse_sha256};
use crate::error::{Error, Result};

/// The manifest text being parsed, to turn byte spans into line numbers in errors.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err(&self, span: Option<Range<usize>>, problem: ManifestProblem) -> Error {
        Error::Manifest {
            path: self.path.to_path_buf(),
            line: span.map(|s| self.line(s.start)),
            problem,
        }
    }

    /// The line of the first `key =` in a table, for fields that carry no span of their own.
    pub(super) fn line_of_key(&self, table: &str, key: &str) -> Option<Range<usize>> {
        let mut in_table = false;
        let mut offset = 0;
        for l in self.text.split_inclusive('\n') {
            let t = l.trim();
            if t.starts_with('[') {
                in_table = t.trim_start_matches('[').trim_end_matches(']').trim() == table;
            } else if in_table {
                if let Some(rest) = t.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') {
                        return Some(offset..offset);
                    }
                }
            }
            offset += l.len();
        }
        None
    }

    /// A sha256 field's digest; an error at its line when it is not 64 lowercase hex digits.
    pub(super) fn digest(&self, field: &Spanned<String>) -> Result<[u8; 32]> {
        parse_sha256(field.get_ref()).ok_or_else(|| {
            self.err(
                Some(field.span()),
                ManifestProblem::BadDigest(field.get_ref().clone()),
            )
        })
    }
}

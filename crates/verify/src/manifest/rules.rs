//! Rules for single values in a manifest: digests, commit ids, relative paths and manifest ids.

use super::PathProblem;

/// `s` is exactly `len` lowercase hex digits (the only spelling manifests accept, so one value
/// has one text).
pub(super) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse 64 lowercase hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if !is_lower_hex(s, 64) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Check a manifest path: relative, POSIX, no `.`/`..`, no backslash or control characters.
pub fn validate_rel_path(p: &str) -> std::result::Result<(), PathProblem> {
    if p.is_empty() {
        return Err(PathProblem::Empty);
    }
    if p.len() > 1024 {
        return Err(PathProblem::TooLong);
    }
    if p.chars().any(char::is_control) {
        return Err(PathProblem::ControlChar);
    }
    if p.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let b = p.as_bytes();
    if p.starts_with('/') || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic()) {
        return Err(PathProblem::Absolute);
    }
    for c in p.split('/') {
        match c {
            "" => return Err(PathProblem::EmptyComponent),
            "." => return Err(PathProblem::Dot),
            ".." => return Err(PathProblem::DotDot),
            _ => {}
        }
    }
    Ok(())
}

/// A manifest id: it becomes a file name, so lowercase letters, digits, `.`, `_` and `-` only, not
/// starting with a dot.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

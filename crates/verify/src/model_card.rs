//! Model-card front matter: the YAML block between `---` lines at the top of README.md. Only the
//! provenance keys are read (`license`, `license_name`, `license_link`, `base_model`,
//! `base_model_relation`), with a small line-based reader for the flat subset of YAML cards use, so
//! no general YAML parser (anchors, aliases, recursion) runs on untrusted input.

use serde::Serialize;

/// At most this much of a README is read.
pub const MAX_CARD_BYTES: usize = 1 << 20;
/// The front matter itself is capped tighter.
pub const MAX_FRONT_MATTER_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CardInfo {
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
    pub base_model: Vec<String>,
    pub base_model_relation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("model card larger than {MAX_CARD_BYTES} bytes")]
    TooLarge,
    #[error("model card is not UTF-8")]
    NotUtf8,
    #[error("front matter is not closed by a '---' line within {MAX_FRONT_MATTER_BYTES} bytes")]
    Unterminated,
    #[error("front matter line {line}: key '{key}' appears twice")]
    DuplicateKey { line: usize, key: String },
    #[error("front matter line {line}: {message}")]
    Invalid { line: usize, message: String },
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    // A trailing comment on a plain scalar.
    let v = if !v.starts_with(['"', '\'']) {
        v.split(" #").next().unwrap_or(v).trim()
    } else {
        v
    };
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Parse the front matter of a README. A card without front matter yields empty info.
pub fn parse(bytes: &[u8]) -> Result<CardInfo, CardError> {
    if bytes.len() > MAX_CARD_BYTES {
        return Err(CardError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| CardError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok(CardInfo::default());
    }
    let mut info = CardInfo::default();
    let mut seen: Vec<String> = Vec::new();
    let mut list_key: Option<String> = None;
    let mut consumed = 0usize;
    let mut closed = false;
    for (i, line) in lines.enumerate() {
        let lineno = i + 2;
        consumed += line.len() + 1;
        if consumed > MAX_FRONT_MATTER_BYTES {
            return Err(CardError::Unterminated);
        }
        if line.trim_end() == "---" || line.trim_end() == "..." {
            closed = true;
            break;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        let trimmed = line.trim();
        if indented || trimmed.starts_with("- ") || trimmed == "-" {
            // A list item of the last key, or a continuation of another key's value.
            if let (Some(k), Some(item)) = (&list_key, trimmed.strip_prefix('-')) {
                if k == "base_model" {
                    let v = unquote(item);
                    if !v.is_empty() {
                        info.base_model.push(v);
                    }
                }
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Err(CardError::Invalid {
                line: lineno,
                message: "expected 'key: value'".into(),
            });
        };
        let key = unquote(key);
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(CardError::Invalid {
                line: lineno,
                message: "empty or invalid key".into(),
            });
        }
        let wanted = matches!(
            key.as_str(),
            "license" | "license_name" | "license_link" | "base_model" | "base_model_relation"
        );
        if wanted {
            if seen.contains(&key) {
                return Err(CardError::DuplicateKey { line: lineno, key });
            }
            seen.push(key.clone());
        }
        let value = value.trim();
        list_key = if value.is_empty() {
            Some(key.clone())
        } else {
            None
        };
        if value.is_empty() || !wanted {
            continue;
        }
        let scalar = || unquote(value);
        match key.as_str() {
            "license" => info.license = Some(scalar()),
            "license_name" => info.license_name = Some(scalar()),
            "license_link" => info.license_link = Some(scalar()),
            "base_model_relation" => info.base_model_relation = Some(scalar()),
            "base_model" => {
                if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                    info.base_model
                        .extend(inner.split(',').map(unquote).filter(|s| !s.is_empty()));
                } else {
                    info.base_model.push(scalar());
                }
            }
            _ => {}
        }
    }
    if !closed {
        return Err(CardError::Unterminated);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_upstream_card() {
        let card = b"---\nlicense: gemma\ntags:\n- gemma3\n- gguf-my-repo\nextra_gated_prompt: To access Gemma on Hugging Face, you\xe2\x80\x99re required to review and\n  agree to Google\xe2\x80\x99s usage license.\nbase_model: google/gemma-3-270m\n---\n\n# title\n";
        let i = parse(card).unwrap();
        assert_eq!(i.license.as_deref(), Some("gemma"));
        assert_eq!(i.base_model, vec!["google/gemma-3-270m"]);
    }

    #[test]
    fn lists_and_other_license() {
        let card = b"---\nlicense: other\nlicense_name: mrl\nlicense_link: \"https://mistral.ai/licenses/MRL-0.1.md\"\nbase_model:\n  - a/b\n  - 'c/d'\n---\n";
        let i = parse(card).unwrap();
        assert_eq!(i.license_name.as_deref(), Some("mrl"));
        assert_eq!(
            i.license_link.as_deref(),
            Some("https://mistral.ai/licenses/MRL-0.1.md")
        );
        assert_eq!(i.base_model, vec!["a/b", "c/d"]);
        let i = parse(b"---\nbase_model: [a/b, \"c/d\"]\n---\n").unwrap();
        assert_eq!(i.base_model, vec!["a/b", "c/d"]);
    }

    #[test]
    fn no_front_matter_is_empty() {
        assert_eq!(parse(b"# Hello\n").unwrap(), CardInfo::default());
    }

    #[test]
    fn strict_cases() {
        assert!(matches!(
            parse(b"---\nlicense: mit\nlicense: apache-2.0\n---\n"),
            Err(CardError::DuplicateKey { line: 3, .. })
        ));
        assert!(matches!(
            parse(b"---\nlicense: mit\n"),
            Err(CardError::Unterminated)
        ));
        assert!(matches!(
            parse(b"---\n\xff\n---\n"),
            Err(CardError::NotUtf8)
        ));
        assert!(matches!(
            parse(&vec![b'a'; MAX_CARD_BYTES + 1]),
            Err(CardError::TooLarge)
        ));
        let mut big = b"---\n".to_vec();
        big.extend(std::iter::repeat_n(b"x: y\n".as_slice(), 60_000).flatten());
        assert!(matches!(parse(&big), Err(CardError::Unterminated)));
    }
}

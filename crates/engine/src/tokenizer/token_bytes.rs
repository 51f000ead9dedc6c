//! The bytes each token stands for, as the grammar engine and log-probabilities need them.
//!
//! A token's vocabulary entry is not its text: byte-level BPE (GPT-2, Llama 3, SmolLM) spells
//! bytes as printable characters (`Ġ` for a space), SentencePiece writes `▁` for a space and
//! `<0x0A>` for a byte it has no piece for. Decoding a token alone through the tokenizer loses a
//! partial UTF-8 character, so the bytes are read from the vocabulary directly, as llama.cpp's
//! llguidance glue does from a GGUF vocabulary.

/// The first byte of a special (control) token's bytes, followed by its name. No text has it
/// (0xFF never occurs in UTF-8), so a grammar over text never matches a control token.
pub const SPECIAL: u8 = 0xFF;

/// Every token's bytes, indexed by id; ids the vocabulary skips are empty.
pub(super) fn vocabulary_bytes(inner: &tokenizers::Tokenizer) -> Vec<Vec<u8>> {
    let byte_level = inner
        .get_decoder()
        .and_then(|d| serde_json::to_string(d).ok())
        .is_some_and(|d| d.contains("\"ByteLevel\""));
    let unicode_to_byte = byte_level.then(unicode_to_byte);
    let added = inner.get_added_tokens_decoder();
    (0..inner.get_vocab_size(true) as u32)
        .map(|id| {
            if let Some(t) = added.get(&id) {
                return match t.special {
                    true => [&[SPECIAL], t.content.as_bytes()].concat(),
                    false => t.content.as_bytes().to_vec(),
                };
            }
            let Some(piece) = inner.id_to_token(id) else {
                return Vec::new();
            };
            match &unicode_to_byte {
                Some(map) => byte_level_bytes(&piece, map),
                None => sentencepiece_bytes(&piece),
            }
        })
        .collect()
}

/// GPT-2's table from the printable characters byte-level BPE writes back to bytes: the
/// printable bytes stand for themselves, the others for U+0100 onwards in order.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            (char::from_u32(c).expect("below U+0200"), b)
        })
        .collect()
}

/// A byte-level piece's bytes; a character outside the table (a hand-made vocabulary entry)
/// stands for its own UTF-8.
fn byte_level_bytes(piece: &str, map: &std::collections::HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(piece.len());
    for c in piece.chars() {
        match map.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// A SentencePiece piece's bytes: `<0xAB>` is that byte, `▁` a space.
fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
        if let (2, Ok(b)) = (hex.len(), u8::from_str_radix(hex, 16)) {
            return vec![b];
        }
    }
    piece.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_round_trips_every_byte() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
        assert_eq!(byte_level_bytes("ĠhellÃ©", &map), b" hell\xC3\xA9");
    }

    #[test]
    fn sentencepiece_pieces() {
        assert_eq!(sentencepiece_bytes("\u{2581}the"), b" the");
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
        assert_eq!(sentencepiece_bytes("<0xZZ>"), b"<0xZZ>");
    }
}

use super::build::*;
use super::*;

fn parse(b: &[u8]) -> Result<GgufHeader, GgufError> {
    GgufHeader::read(b)
}

fn good() -> GgufBuilder {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.license", "apache-2.0")
        .tensor("tok_embd.weight", &[64, 2], 0, 64 * 2 * 4)
        .tensor("blk.0.attn_q.weight", &[64, 4], 2, 2 * 4 * 18)
}

#[test]
fn valid_file_parses() {
    let h = parse(&good().build()).unwrap();
    assert_eq!(h.architecture(), Some("llama"));
    assert_eq!(h.license(), Some("apache-2.0"));
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.tensors[1].type_name, "Q4_0");
    assert_eq!(h.data_offset % 32, 0);
}

#[test]
fn base_model_helpers() {
    let h = parse(
        &GgufBuilder::new()
            .kv_raw("general.base_model.count", 4, 1u32.to_le_bytes().to_vec())
            .kv_str("general.base_model.0.name", "Gemma 3 270m")
            .kv_str("general.base_model.0.organization", "Google")
            .kv_str(
                "general.base_model.0.repo_url",
                "https://huggingface.co/google/gemma-3-270m",
            )
            .build(),
    )
    .unwrap();
    let b = h.base_models();
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].repo_url.as_deref(),
        Some("https://huggingface.co/google/gemma-3-270m")
    );
}

// G1
#[test]
fn g1_magic_and_versions() {
    assert_eq!(parse(b"GGUX\x03\0\0\0"), Err(GgufError::BadMagic));
    assert_eq!(parse(b"GG"), Err(GgufError::BadMagic));
    for v in [0u32, 1, 4] {
        let mut b = GgufBuilder::new();
        b.version = v;
        assert_eq!(parse(&b.build()), Err(GgufError::UnsupportedVersion(v)));
    }
    let mut b = GgufBuilder::new();
    b.version = 0x0300_0000;
    assert_eq!(parse(&b.build()), Err(GgufError::BigEndian));
}

// G2
#[test]
fn g2_huge_counts() {
    let mut b = GgufBuilder::new();
    b.tensor_count = Some(1 << 63);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::CountTooLarge { what: "tensor", .. })
    ));
    let mut b = GgufBuilder::new();
    b.kv_count = Some(1 << 63);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::CountTooLarge {
            what: "metadata entry",
            ..
        })
    ));
    let mut b = GgufBuilder::new();
    b.kv_count = Some(u64::MAX);
    b.tensor_count = Some(u64::MAX);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::CountTooLarge { .. })
    ));
}

// G3
#[test]
fn g3_string_lengths() {
    let mut v = u64::MAX.to_le_bytes().to_vec();
    v.extend(b"abc");
    let b = GgufBuilder::new().kv_raw("k", 8, v).build();
    assert!(matches!(parse(&b), Err(GgufError::StringTooLong { .. })));
    let mut v = 1000u64.to_le_bytes().to_vec();
    v.extend(b"abc");
    let b = GgufBuilder::new().kv_raw("k", 8, v).build();
    assert!(matches!(parse(&b), Err(GgufError::UnexpectedEof(_))));
    let mut v = (MAX_STRING + 1).to_le_bytes().to_vec();
    v.extend(b"abc");
    assert!(matches!(
        parse(&GgufBuilder::new().kv_raw("k", 8, v).build()),
        Err(GgufError::StringTooLong { .. })
    ));
}

// G4
#[test]
fn g4_arrays() {
    let mut v = 0u32.to_le_bytes().to_vec();
    v.extend((1u64 << 40).to_le_bytes());
    assert!(matches!(
        parse(&GgufBuilder::new().kv_raw("a", 9, v).build()),
        Err(GgufError::ArrayTooLong(_))
    ));
    let mut v = 4u32.to_le_bytes().to_vec();
    v.extend(1000u64.to_le_bytes());
    assert!(matches!(
        parse(&GgufBuilder::new().kv_raw("a", 9, v).build()),
        Err(GgufError::CountTooLarge { .. })
    ));
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    assert_eq!(
        parse(&GgufBuilder::new().kv_raw("a", 9, nested).build()),
        Err(GgufError::NestedArray)
    );
}

// Long arrays (tokenizer vocabularies) are validated element by element but not kept.
#[test]
fn long_arrays_validated_not_kept() {
    let n = KEEP_ARRAY + 1;
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend(n.to_le_bytes());
    for i in 0..n {
        v.extend(str_bytes(format!("t{i}").as_bytes()));
    }
    let h = parse(&GgufBuilder::new().kv_raw("tokens", 9, v.clone()).build()).unwrap();
    assert_eq!(
        h.get("tokens"),
        Some(&GgufValue::LongArray {
            elem_type: 8,
            len: n
        })
    );
    let at = v.len() - 1;
    v[at] = 0xff;
    assert_eq!(
        parse(&GgufBuilder::new().kv_raw("tokens", 9, v).build()),
        Err(GgufError::InvalidUtf8)
    );
    let mut b = 7u32.to_le_bytes().to_vec();
    b.extend(n.to_le_bytes());
    b.extend(std::iter::repeat_n(1u8, n as usize - 1));
    b.push(2);
    assert_eq!(
        parse(&GgufBuilder::new().kv_raw("flags", 9, b).build()),
        Err(GgufError::BadBool(2))
    );
}

// G5
#[test]
fn g5_value_types() {
    assert_eq!(
        parse(&GgufBuilder::new().kv_raw("k", 13, vec![0; 8]).build()),
        Err(GgufError::UnknownValueType(13))
    );
    assert_eq!(
        parse(
            &GgufBuilder::new()
                .kv_raw("k", 0xFFFF_FFFF, vec![0; 8])
                .build()
        ),
        Err(GgufError::UnknownValueType(0xFFFF_FFFF))
    );
    assert_eq!(
        parse(&GgufBuilder::new().kv_raw("k", 7, vec![2]).build()),
        Err(GgufError::BadBool(2))
    );
}

// G6
#[test]
fn g6_keys() {
    let dup = GgufBuilder::new().kv_u32("k", 1).kv_u32("k", 2).build();
    assert_eq!(parse(&dup), Err(GgufError::DuplicateKey("k".into())));
    assert_eq!(
        parse(&GgufBuilder::new().kv_u32("", 1).build()),
        Err(GgufError::BadKey(String::new()))
    );
    assert_eq!(
        parse(&GgufBuilder::new().kv_u32("k\0", 1).build()),
        Err(GgufError::BadKey("k\0".into()))
    );
    assert_eq!(
        parse(&GgufBuilder::new().kv_u32("a\nb", 1).build()),
        Err(GgufError::BadKey("a\nb".into()))
    );
    let bad_utf8 = GgufBuilder::new()
        .kv_raw("k", 8, str_bytes(b"\xff\xfe"))
        .build();
    assert_eq!(parse(&bad_utf8), Err(GgufError::InvalidUtf8));
}

// G7
#[test]
fn g7_alignment() {
    for a in [0u32, 3, 1 << 31] {
        let b = GgufBuilder::new().kv_u32("general.alignment", a).build();
        assert!(matches!(parse(&b), Err(GgufError::BadAlignment(_))), "{a}");
    }
    let b = GgufBuilder::new()
        .kv_raw("general.alignment", 5, 32i32.to_le_bytes().to_vec())
        .build();
    assert!(matches!(parse(&b), Err(GgufError::BadAlignment(_))));
    let mut ok = GgufBuilder::new().kv_u32("general.alignment", 64);
    ok.alignment = 64;
    let ok = ok.tensor("t", &[16], 0, 64);
    assert_eq!(parse(&ok.build()).unwrap().alignment, 64);
}

// G8
#[test]
fn g8_dims() {
    let mut b = GgufBuilder::new();
    b.tensors.push(("t".into(), vec![1; 5], 0, 0));
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::BadDimCount { n_dims: 5, .. })
    ));
    let mut bytes = GgufBuilder::new().tensor("t", &[1], 0, 4).build();
    // Patch n_dims to u32::MAX: it sits after magic, version, counts, name length and name.
    let at = 4 + 4 + 8 + 8 + 8 + 1;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse(&bytes),
        Err(GgufError::BadDimCount {
            n_dims: u32::MAX,
            ..
        })
    ));
    let mut b = GgufBuilder::new();
    b.tensors.push(("t".into(), vec![0, 4], 0, 0));
    assert!(matches!(parse(&b.build()), Err(GgufError::ZeroDim { .. })));
}

// G9
#[test]
fn g9_element_overflow() {
    for dims in [vec![1u64 << 40, 1 << 40], vec![i64::MAX as u64, 2]] {
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), dims, 0, 0));
        assert!(matches!(
            parse(&b.build()),
            Err(GgufError::ElementCountOverflow { .. })
        ));
    }
}

// G10, G11
#[test]
fn g10_g11_types() {
    let mut b = GgufBuilder::new();
    b.tensors.push(("t".into(), vec![100], 12, 0));
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::RowNotBlockAligned {
            ne0: 100,
            type_name: "Q4_K",
            block: 256,
            ..
        })
    ));
    for ty in [99u32, 4, 31] {
        let mut b = GgufBuilder::new();
        b.tensors.push(("t".into(), vec![256], ty, 0));
        assert!(
            matches!(parse(&b.build()), Err(GgufError::UnknownTensorType { .. })),
            "{ty}"
        );
    }
}

// G12
#[test]
fn g12_tensor_names() {
    let b = GgufBuilder::new()
        .tensor("t", &[8], 0, 32)
        .tensor("t", &[8], 0, 32);
    assert_eq!(
        parse(&b.build()),
        Err(GgufError::DuplicateTensor("t".into()))
    );
    let long = "x".repeat(64);
    let b = GgufBuilder::new().tensor(&long, &[8], 0, 32);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::BadTensorName(_))
    ));
}

// G13
#[test]
fn g13_offsets() {
    let mut b = good();
    b.tensors.swap(0, 1);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::OffsetNotContiguous { .. })
    ));
    let mut b = good();
    b.tensors[1].3 = 0; // overlaps the first
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::OffsetNotContiguous { .. })
    ));
    let mut b = good();
    b.tensors[1].3 += 4; // unaligned
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::MisalignedOffset { .. })
    ));
}

// G14
#[test]
fn g14_out_of_bounds() {
    let mut b = GgufBuilder::new().tensor("t", &[8], 0, 32);
    b.data.truncate(16);
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    // An offset near u64::MAX must not wrap around.
    let mut b = GgufBuilder::new();
    b.tensors.push(("t".into(), vec![8], 0, 0));
    b.tensors.push(("u".into(), vec![8], 0, u64::MAX - 31));
    b.data = vec![0; 32];
    assert!(matches!(
        parse(&b.build()),
        Err(GgufError::OffsetNotContiguous { .. } | GgufError::TensorOutOfBounds { .. })
    ));
    // The same with the first tensor at the wrapping offset (aligned, so only bounds stop it).
    let mut b = GgufBuilder::new();
    b.tensors
        .push(("t".into(), vec![8], 0, (u64::MAX - 50) / 32 * 32));
    assert!(parse(&b.build()).is_err());
}

// G15: truncated anywhere in the header.
#[test]
fn g15_truncation_never_panics() {
    let full = good().build();
    let header_len = good().header_bytes().len();
    for cut in 0..header_len {
        let r = parse(&full[..cut]);
        assert!(r.is_err(), "cut at {cut}");
    }
    // The last tensor's 144 bytes are followed by 16 bytes of padding.
    assert!(parse(&full[..full.len() - 16]).is_ok());
    assert!(matches!(
        parse(&full[..full.len() - 17]),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
}

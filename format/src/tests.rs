use super::*;

pub(crate) fn sample_metadata() -> Metadata {
    Metadata {
        format: "autark".into(),
        architecture: "llama".into(),
        config: ModelConfig {
            attn_qk_norm: false,
            embedding_scale: None,
            ffn_activation: None,
            post_norms: false,
            attention_scale: None,
            sliding_window_pattern: None,
            rope_theta_local: None,
            n_layers: 1,
            d_model: 32,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 16,
            ffn_dim: 64,
            vocab_size: 8,
            context_length: 64,
            rope_theta: 10000.0,
            rope_layout: crate::RopeLayout::Neox,
            rope_scaling: None,
            norm_eps: 1e-5,
            tied_embeddings: true,
            attn_qkv_bias: false,
            sliding_window: None,
            rope_freq_factors: None,
        },
        tokenizer: TokenizerMeta {
            hf_json: "{}".into(),
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            add_bos: false,
            chat_template: None,
            bos_token: None,
            eos_token: None,
        },
        provenance: None,
        conformance: None,
    }
}

/// A directory for one test, removed when the test ends (pass or fail).
fn tmpdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("autark-format-{tag}-")).tempdir().unwrap()
}

fn write_x(path: &Path) -> Vec<u8> {
    let specs = [TensorSpec::new("x", DType::F32, vec![2])];
    let mut w = Writer::create(path, &sample_metadata(), &specs).unwrap();
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_tensor("x", &data).unwrap();
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn example_bytes() {
    let d = tmpdir("example");
    let b = write_x(&d.path().join("x.autark"));
    let m = serde_json::to_vec(&sample_metadata()).unwrap().len();
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(&b[0..4], b"ATRK");
    assert_eq!(u16::from_le_bytes([b[4], b[5]]), 1);
    assert_eq!(u16::from_le_bytes([b[6], b[7]]), VERSION_MINOR);
    assert_eq!(u32_at(8), 128);
    assert_eq!(u32_at(12), 64);
    assert_eq!(u64_at(16), 128);
    assert_eq!(u64_at(24), m as u64);
    assert_eq!(u64_at(32), 128 + m as u64);
    assert_eq!(u64_at(40), 73);
    assert_eq!(u64_at(48), 1);
    let dofs = (201 + m).div_ceil(64) * 64;
    assert_eq!(u64_at(56), dofs as u64);
    assert_eq!(u64_at(64), 8);
    assert!(b[104..128].iter().all(|&x| x == 0));
    // The table entry.
    let e = 128 + m;
    assert_eq!(u32_at(e), 1);
    assert_eq!(b[e + 4], b'x');
    assert_eq!(u32_at(e + 5), 0); // f32
    assert_eq!(u32_at(e + 9), 0); // layout
    assert_eq!(u32_at(e + 13), 1); // n_dims
    assert_eq!(u64_at(e + 17), 2);
    assert_eq!(u64_at(e + 25), dofs as u64);
    assert_eq!(u64_at(e + 33), 8);
    let sha: [u8; 32] = Sha256::digest(&b[dofs..dofs + 8]).into();
    assert_eq!(&b[e + 41..e + 73], &sha);
    assert!(b[e + 73..dofs].iter().all(|&x| x == 0));
    assert_eq!(&b[dofs..], &[0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
    assert_eq!(b.len(), dofs + 8);
    let mut h = Sha256::new();
    h.update(&b[128..e + 73]);
    assert_eq!(&b[72..104], <[u8; 32]>::from(h.finalize()));
}

#[test]
fn round_trip_and_verify() {
    let d = tmpdir("rt");
    let p = d.path().join("m.autark");
    write_x(&p);
    let f = AutarkFile::open(&p).unwrap();
    assert_eq!(f.metadata(), &sample_metadata());
    let t = f.tensor("x").unwrap();
    assert_eq!(t.shape, vec![2]);
    assert_eq!(f.data(t), &[0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
    assert!(f.verify().is_empty());
}

#[test]
fn failed_write_keeps_existing_output() {
    let d = tmpdir("keep");
    let p = d.path().join("m.autark");
    std::fs::write(&p, b"precious").unwrap();
    {
        let specs = [TensorSpec::new("x", DType::F32, vec![2])];
        let mut w = Writer::create(&p, &sample_metadata(), &specs).unwrap();
        assert!(matches!(w.write_tensor("x", &[0u8; 4]), Err(FormatError::WriteSize { .. })));
        // dropped unfinished
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    let leftovers: Vec<_> =
        std::fs::read_dir(d.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "m.autark").collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
}

fn good_bytes() -> Vec<u8> {
    let d = tmpdir("good");
    write_x(&d.path().join("m.autark"))
}

/// Re-seals the header checksum so that a corruption reaches the deeper checks.
fn reseal(b: &mut [u8]) {
    let meta_len = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let table_len = u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
    let sha: [u8; 32] = Sha256::digest(&b[128..128 + meta_len + table_len]).into();
    b[72..104].copy_from_slice(&sha);
}

#[test]
fn hostile_headers_are_typed_errors() {
    let good = good_bytes();
    let m = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let e = 128 + m;
    type Corruption = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corruption)> = vec![
        ("empty", Box::new(|b| b.clear())),
        ("truncated header", Box::new(|b| b.truncate(100))),
        ("truncated data", Box::new(|b| b.truncate(b.len() - 1))),
        ("wrong magic", Box::new(|b| b[0] = b'G')),
        ("newer major", Box::new(|b| b[4] = 2)),
        ("metadata past end", Box::new(|b| b[24..32].copy_from_slice(&u64::MAX.to_le_bytes()))),
        ("bit flip in metadata", Box::new(move |b| b[130] ^= 0x20)),
        (
            "huge tensor count",
            Box::new(|b| {
                b[48..56].copy_from_slice(&(1u64 << 40).to_le_bytes());
            }),
        ),
        (
            "offset past end",
            Box::new(move |b| {
                b[e + 25..e + 33].copy_from_slice(&(1u64 << 50).to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "size mismatch",
            Box::new(move |b| {
                b[e + 33..e + 41].copy_from_slice(&4u64.to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "unknown dtype",
            Box::new(move |b| {
                b[e + 5..e + 9].copy_from_slice(&77u32.to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "huge dims",
            Box::new(move |b| {
                b[e + 17..e + 25].copy_from_slice(&u64::MAX.to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "misaligned offset",
            Box::new(move |b| {
                let o = u64::from_le_bytes(b[e + 25..e + 33].try_into().unwrap());
                b[e + 25..e + 33].copy_from_slice(&(o + 4).to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "zero-length name",
            Box::new(move |b| {
                b[e..e + 4].copy_from_slice(&0u32.to_le_bytes());
                reseal(b)
            }),
        ),
        (
            "name past table",
            Box::new(move |b| {
                b[e..e + 4].copy_from_slice(&200u32.to_le_bytes());
                reseal(b)
            }),
        ),
    ];
    for (what, f) in cases {
        let mut b = good.clone();
        f(&mut b);
        let r = parse(&b);
        assert!(r.is_err(), "{what}: accepted");
    }
}

#[test]
fn overlapping_tensors_are_refused() {
    let d = tmpdir("overlap");
    let p = d.path().join("m.autark");
    let specs = [TensorSpec::new("a", DType::F32, vec![32]), TensorSpec::new("b", DType::F32, vec![32])];
    let mut w = Writer::create(&p, &sample_metadata(), &specs).unwrap();
    w.write_tensor("a", &[0u8; 128]).unwrap();
    w.write_tensor("b", &[0u8; 128]).unwrap();
    w.finish().unwrap();
    let mut b = std::fs::read(&p).unwrap();
    let m = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let e0 = 128 + m;
    let e1 = e0 + 73;
    let off_a = b[e0 + 25..e0 + 33].to_vec();
    b[e1 + 25..e1 + 33].copy_from_slice(&off_a);
    reseal(&mut b);
    assert!(matches!(parse(&b), Err(FormatError::Overlap { .. })));
}

#[test]
fn corrupted_tensor_fails_verify() {
    let d = tmpdir("verify");
    let p = d.path().join("m.autark");
    let mut b = write_x(&p);
    let n = b.len();
    b[n - 1] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let f = AutarkFile::open(&p).unwrap();
    assert_eq!(f.verify(), vec!["x".to_string()]);
}

#[test]
fn interleaved_layout_round_trip_and_refusals() {
    use autark_kernels::TensorLayout;
    let d = tmpdir("layout");
    let p = d.path().join("m.autark");
    let spec = TensorSpec { layout: TensorLayout::Rows16, ..TensorSpec::new("w", DType::Q4_0, vec![16, 32]) };
    let mut w = Writer::create(&p, &sample_metadata(), std::slice::from_ref(&spec)).unwrap();
    w.write_tensor("w", &[7u8; 16 * 18]).unwrap();
    w.finish().unwrap();
    let f = AutarkFile::open(&p).unwrap();
    assert_eq!(f.tensors()[0].layout, TensorLayout::Rows16);
    assert_eq!(f.layout().version, (1, VERSION_MINOR));
    // The writer refuses a layout the dtype or shape cannot take.
    for bad in [
        TensorSpec { layout: TensorLayout::Rows16, ..TensorSpec::new("w", DType::Q4_0, vec![8, 32]) },
        TensorSpec { layout: TensorLayout::Rows16, ..TensorSpec::new("w", DType::F32, vec![16, 32]) },
        TensorSpec { layout: TensorLayout::Rows16, ..TensorSpec::new("w", DType::Q8_0, vec![32]) },
    ] {
        let r = Writer::create(&d.path().join("bad.autark"), &sample_metadata(), &[bad]);
        assert!(matches!(r, Err(FormatError::BadTensor { .. })));
    }
    // The reader refuses unknown layout codes and layout 1 on a tensor that cannot take it.
    let good = std::fs::read(&p).unwrap();
    let m = u64::from_le_bytes(good[24..32].try_into().unwrap()) as usize;
    let e = 128 + m;
    for (code, dtype) in [(2u32, 2u32), (u32::MAX, 2), (1, 0)] {
        let mut b = good.clone();
        b[e + 5..e + 9].copy_from_slice(&dtype.to_le_bytes());
        b[e + 9..e + 13].copy_from_slice(&code.to_le_bytes());
        reseal(&mut b);
        assert!(matches!(parse(&b), Err(FormatError::BadEntry { .. })), "layout {code} dtype {dtype} accepted");
    }
    // A rows16 q6_k tensor in a file older than 1.3 (its pieces in the retired order) is refused
    // by name; the same bytes under 1.3, and a rows16 q4_0 tensor under 1.2, are read.
    let spec =
        TensorSpec { layout: TensorLayout::Rows16, ..TensorSpec::new("blk.0.ffn_down", DType::Q6K, vec![16, 256]) };
    let mut w = Writer::create(&p, &sample_metadata(), std::slice::from_ref(&spec)).unwrap();
    w.write_tensor("blk.0.ffn_down", &[3u8; 16 * 210]).unwrap();
    w.finish().unwrap();
    let mut b = std::fs::read(&p).unwrap();
    assert!(parse(&b).is_ok());
    b[6..8].copy_from_slice(&2u16.to_le_bytes());
    let err = parse(&b).unwrap_err();
    assert!(matches!(&err, FormatError::RetiredLayout { name, minor: 2, .. } if name == "blk.0.ffn_down"), "{err}");
    assert!(err.to_string().contains("autark quantize"), "{err}");
    let mut old = good.clone();
    old[6..8].copy_from_slice(&2u16.to_le_bytes());
    assert!(parse(&old).is_ok());
}

/// The mapping carries the huge-page hint (`AutarkFile`'s docs): its `VmFlags` in
/// /proc/self/smaps include `hg`.
#[cfg(target_os = "linux")]
#[test]
fn mapping_is_advised_huge_pages() {
    if !Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        println!("SKIP: this kernel has no transparent huge pages");
        return;
    }
    let d = tmpdir("advise");
    let p = d.path().join("advised.autark");
    write_x(&p);
    let f = AutarkFile::open(&p).unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = p.to_str().unwrap();
    // Each mapping's block of lines ends with its `VmFlags`.
    let mut block = smaps.lines().skip_while(|l| !l.ends_with(name)).skip(1);
    let flags = block.find(|l| l.starts_with("VmFlags:"));
    let flags = flags.unwrap_or_else(|| panic!("no VmFlags after the mapping of {name}"));
    assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
    drop(f);
}

//! Synthetic models shared by the integration tests: a small Llama in a Hugging Face folder
//! (two bf16 safetensors shards written with the `safetensors` crate).
#![allow(dead_code)]

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

/// A fresh directory under the system's temporary folder (`autark-{tag}-…`), removed with
/// everything in it when dropped, also when the test fails. A model mapped from inside it stays
/// valid after the removal (the mapping keeps the file).
pub fn tmp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("autark-{tag}-")).tempdir().unwrap()
}

pub const D: usize = 64;
pub const FFN: usize = 96;
pub const HEADS: usize = 4;
pub const KV: usize = 2;
pub const HD: usize = 16;
pub const VOCAB: usize = 32;
pub const LAYERS: usize = 2;

/// HF tensor names and shapes of the synthetic Llama model.
pub fn hf_tensors() -> Vec<(String, Vec<usize>)> {
    hf_tensors_hd(HD)
}

/// `hf_tensors` with heads of `hd` values.
pub fn hf_tensors_hd(hd: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        ("model.embed_tokens.weight".to_string(), vec![VOCAB, D]),
        ("model.norm.weight".into(), vec![D]),
        ("lm_head.weight".into(), vec![VOCAB, D]),
    ];
    for l in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        v.push((p("input_layernorm.weight"), vec![D]));
        v.push((p("post_attention_layernorm.weight"), vec![D]));
        v.push((p("self_attn.q_proj.weight"), vec![HEADS * hd, D]));
        v.push((p("self_attn.k_proj.weight"), vec![KV * hd, D]));
        v.push((p("self_attn.v_proj.weight"), vec![KV * hd, D]));
        v.push((p("self_attn.o_proj.weight"), vec![D, HEADS * hd]));
        v.push((p("mlp.gate_proj.weight"), vec![FFN, D]));
        v.push((p("mlp.up_proj.weight"), vec![FFN, D]));
        v.push((p("mlp.down_proj.weight"), vec![D, FFN]));
    }
    v
}

pub fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        (0..VOCAB).map(|i| (format!("w{i}"), serde_json::json!(i))).collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    })
    .to_string()
}

/// Writes a Llama folder with bf16 weights in two shards plus the index.
pub fn write_hf(dir: &Path, arch: &str) {
    write_hf_hd(dir, arch, HD)
}

/// `write_hf` with heads of `hd` values (`head_dim` in config.json).
pub fn write_hf_hd(dir: &Path, arch: &str, hd: usize) {
    write_hf_weights(dir, arch, hd, 7, 0.2)
}

/// `write_hf_hd` with the weights of random stream `seed`, uniform in ±`scale`/2.
pub fn write_hf_weights(dir: &Path, arch: &str, hd: usize, seed: u32, scale: f32) {
    let config = serde_json::json!({
        "architectures": [arch], "hidden_size": D, "intermediate_size": FFN, "num_attention_heads": HEADS,
        "num_key_value_heads": KV, "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": false,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "head_dim": hd
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"bos_token": "w1", "eos_token": "w2", "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}"#).unwrap();
    let tensors = hf_tensors_hd(hd);
    let mut seed = seed;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let v = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * scale;
                    half::bf16::from_f32(v).to_bits().to_le_bytes()
                })
                .collect();
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in data.chunks(data.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView)> =
            part.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::BF16, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, &None, &dir.join(&file)).unwrap();
        for (n, _, _) in part {
            weight_map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

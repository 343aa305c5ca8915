//! Architecture dispatch and model mechanics on tiny random GGUF files written
//! here (no downloads): every supported architecture loads and runs, chunked
//! prefill and step-by-step decoding agree with one-shot prefill (KV cache,
//! sliding window), and broken or foreign files give one clear error.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;
use tolk::models::causal_lm::CausalLm;
use tolk::pipeline::summarize::llm::loader::{
    load_causal_lm, LoadOptions, Requantize, SUPPORTED_ARCHITECTURES,
};

const VOCAB: usize = 96;
const HIDDEN: usize = 64;
const FFN: usize = 128;
const LAYERS: usize = 3;

/// A quantized random matrix `(rows, cols)` (GGUF/candle layout: out × in).
fn matrix(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| {
            // Deterministic pseudo-random values in [-0.1, 0.1).
            let x = (i as u64 + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407));
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

fn vector(len: usize, value: f32) -> QTensor {
    QTensor::quantize(
        &Tensor::full(value, len, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap()
}

struct Spec {
    arch: &'static str,
    n_head: usize,
    n_kv: usize,
    head_dim: usize,
    qk_norm: bool,
    post_norms: bool,
    qkv_bias: bool,
    weight_type: GgmlDType,
    embed_type: GgmlDType,
}

fn write_model(path: &Path, spec: &Spec, extra: &[(&str, Value)]) {
    let a = spec.arch;
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{a}.embedding_length"), Value::U32(HIDDEN as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(FFN as u32)),
        (
            format!("{a}.attention.head_count"),
            Value::U32(spec.n_head as u32),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(spec.n_kv as u32),
        ),
        (
            format!("{a}.attention.key_length"),
            Value::U32(spec.head_dim as u32),
        ),
        (
            format!("{a}.attention.value_length"),
            Value::U32(spec.head_dim as u32),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        ),
        (format!("{a}.rope.freq_base"), Value::F32(10000.)),
        (
            format!("{a}.rope.dimension_count"),
            Value::U32(spec.head_dim as u32),
        ),
        (format!("{a}.context_length"), Value::U32(128)),
    ];
    for (k, v) in extra {
        meta.push((k.to_string(), v.clone()));
    }
    let q_dim = spec.n_head * spec.head_dim;
    let kv_dim = spec.n_kv * spec.head_dim;
    let wt = spec.weight_type;
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            matrix(VOCAB, HIDDEN, spec.embed_type, 1),
        ),
        ("output_norm.weight".into(), vector(HIDDEN, 1.0)),
    ];
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        let s = 100 * (l as u64 + 1);
        tensors.push((format!("{p}.attn_norm.weight"), vector(HIDDEN, 1.0)));
        tensors.push((
            format!("{p}.attn_q.weight"),
            matrix(q_dim, HIDDEN, wt, s + 1),
        ));
        tensors.push((
            format!("{p}.attn_k.weight"),
            matrix(kv_dim, HIDDEN, wt, s + 2),
        ));
        tensors.push((
            format!("{p}.attn_v.weight"),
            matrix(kv_dim, HIDDEN, wt, s + 3),
        ));
        tensors.push((
            format!("{p}.attn_output.weight"),
            matrix(HIDDEN, q_dim, wt, s + 4),
        ));
        tensors.push((format!("{p}.ffn_norm.weight"), vector(HIDDEN, 1.0)));
        tensors.push((
            format!("{p}.ffn_gate.weight"),
            matrix(FFN, HIDDEN, wt, s + 5),
        ));
        tensors.push((format!("{p}.ffn_up.weight"), matrix(FFN, HIDDEN, wt, s + 6)));
        tensors.push((
            format!("{p}.ffn_down.weight"),
            matrix(HIDDEN, FFN, wt, s + 7),
        ));
        if spec.qk_norm {
            tensors.push((
                format!("{p}.attn_q_norm.weight"),
                vector(spec.head_dim, 1.0),
            ));
            tensors.push((
                format!("{p}.attn_k_norm.weight"),
                vector(spec.head_dim, 1.0),
            ));
        }
        if spec.post_norms {
            tensors.push((
                format!("{p}.post_attention_norm.weight"),
                vector(HIDDEN, 1.0),
            ));
            tensors.push((format!("{p}.post_ffw_norm.weight"), vector(HIDDEN, 1.0)));
        }
        if spec.qkv_bias {
            tensors.push((format!("{p}.attn_q.bias"), vector(q_dim, 0.01)));
            tensors.push((format!("{p}.attn_k.bias"), vector(kv_dim, 0.01)));
            tensors.push((format!("{p}.attn_v.bias"), vector(kv_dim, 0.01)));
        }
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
}

const LLAMA: Spec = Spec {
    arch: "llama",
    n_head: 4,
    n_kv: 2,
    head_dim: 16,
    qk_norm: false,
    post_norms: false,
    qkv_bias: false,
    weight_type: GgmlDType::Q8_0,
    embed_type: GgmlDType::Q8_0,
};
const GEMMA3: Spec = Spec {
    arch: "gemma3",
    n_head: 4,
    n_kv: 1,
    head_dim: 32,
    qk_norm: true,
    post_norms: true,
    qkv_bias: false,
    weight_type: GgmlDType::Q8_0,
    embed_type: GgmlDType::Q8_0,
};
const QWEN2: Spec = Spec {
    arch: "qwen2",
    n_head: 4,
    n_kv: 2,
    head_dim: 16,
    qk_norm: false,
    post_norms: false,
    qkv_bias: true,
    weight_type: GgmlDType::Q8_0,
    embed_type: GgmlDType::Q8_0,
};
const QWEN3: Spec = Spec {
    arch: "qwen3",
    n_head: 4,
    n_kv: 2,
    head_dim: 16,
    qk_norm: true,
    post_norms: false,
    qkv_bias: false,
    weight_type: GgmlDType::Q8_0,
    embed_type: GgmlDType::Q8_0,
};

/// Gemma with a 4-token window so a 12-token prompt crosses it; every second layer local.
fn gemma_window() -> Vec<(&'static str, Value)> {
    vec![
        ("gemma3.attention.sliding_window", Value::U32(4)),
        ("gemma3.attention.sliding_window_type", Value::U32(2)),
    ]
}

fn load(path: &Path) -> Box<dyn CausalLm> {
    load_causal_lm(path, &Device::Cpu, LoadOptions::default())
        .unwrap()
        .model
}

fn logits(model: &mut dyn CausalLm, tokens: &[u32], pos: usize) -> Vec<f32> {
    model.forward(tokens, pos).unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const PROMPT: [u32; 12] = [5, 17, 33, 2, 91, 64, 8, 8, 40, 77, 12, 3];

#[test]
fn every_supported_architecture_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, extra) in [
        (&LLAMA, vec![]),
        (&GEMMA3, gemma_window()),
        (&QWEN2, vec![]),
        (&QWEN3, vec![]),
    ] {
        let path = dir.path().join(format!("{}.gguf", spec.arch));
        write_model(&path, spec, &extra);
        let loaded = load_causal_lm(&path, &Device::Cpu, LoadOptions::default()).unwrap();
        assert_eq!(loaded.architecture, spec.arch);
        let mut model = loaded.model;
        assert_eq!(model.context_len(), 128, "{}", spec.arch);
        let first = logits(model.as_mut(), &PROMPT, 0);
        assert_eq!(first.len(), VOCAB, "{}", spec.arch);
        assert!(first.iter().all(|x| x.is_finite()), "{}", spec.arch);
        // A cleared cache gives the same answer again.
        model.clear_kv_cache();
        assert!(
            max_diff(&first, &logits(model.as_mut(), &PROMPT, 0)) < 1e-5,
            "{}",
            spec.arch
        );
        assert!(
            model.forward(&[1; 200], 0).is_err(),
            "{}: past the context must fail",
            spec.arch
        );
    }
}

/// Feeding the prompt in chunks, or one token at a time, must give the
/// logits of one-shot prefill: the KV cache, masks for chunks after cached
/// tokens, and (gemma) the sliding window in step-by-step decoding.
#[test]
fn chunked_and_stepwise_decoding_match_one_shot_prefill() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, extra) in [
        (&LLAMA, vec![]),
        (&GEMMA3, gemma_window()),
        (&QWEN2, vec![]),
        (&QWEN3, vec![]),
    ] {
        let path = dir.path().join(format!("{}.gguf", spec.arch));
        write_model(&path, spec, &extra);
        let mut model = load(&path);
        for end in [5, 9, 12] {
            let whole = logits(model.as_mut(), &PROMPT[..end], 0);
            model.clear_kv_cache();
            let mut chunked = Vec::new();
            for (i, c) in PROMPT[..end].chunks(3).enumerate() {
                chunked = logits(model.as_mut(), c, 3 * i);
            }
            model.clear_kv_cache();
            let mut stepwise = Vec::new();
            for (i, t) in PROMPT[..end].iter().enumerate() {
                stepwise = logits(model.as_mut(), &[*t], i);
            }
            let tol = 1e-4;
            assert!(
                max_diff(&whole, &chunked) < tol,
                "{} chunked, {end} tokens: {}",
                spec.arch,
                max_diff(&whole, &chunked)
            );
            assert!(
                max_diff(&whole, &stepwise) < tol,
                "{} stepwise, {end} tokens: {}",
                spec.arch,
                max_diff(&whole, &stepwise)
            );
        }
    }
}

/// The window must actually matter: with it, the first tokens stop
/// influencing later positions of a local-only model.
#[test]
fn gemma_local_layers_forget_tokens_outside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gemma-local.gguf");
    // Pattern larger than the layer count: every layer is local.
    let extra = vec![
        ("gemma3.attention.sliding_window", Value::U32(3)),
        ("gemma3.attention.sliding_window_type", Value::U32(100)),
    ];
    write_model(&path, &GEMMA3, &extra);
    let mut model = load(&path);
    let a = logits(model.as_mut(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0);
    let b = logits(model.as_mut(), &[50, 60, 3, 4, 5, 6, 7, 8, 9, 10], 0);
    // 3 layers × window 3: position 9 sees back to position 3 at most.
    assert!(max_diff(&a, &b) < 1e-5, "{}", max_diff(&a, &b));
    let c = logits(model.as_mut(), &[1, 2, 3, 4, 5, 6, 7, 8, 50, 10], 0);
    assert!(
        max_diff(&a, &c) > 1e-4,
        "a token inside the window must matter"
    );
}

/// tolk's own qwen2/qwen3 module against candle-transformers' reference
/// modules on the same f32 weights (so no kernel rounding differs): biases,
/// q/k norms, NeoX rotation, grouped heads and the tied head must all match.
#[test]
fn qwen_modules_match_candle_transformers() {
    use candle_transformers::models::{quantized_qwen2, quantized_qwen3};
    let dir = tempfile::tempdir().unwrap();
    for base in [&QWEN2, &QWEN3] {
        let spec = Spec {
            weight_type: GgmlDType::F32,
            embed_type: GgmlDType::F32,
            ..*base
        };
        let path = dir.path().join(format!("{}-f32.gguf", spec.arch));
        write_model(&path, &spec, &[]);
        let mut ours = load(&path);
        let mut file = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let ids = Tensor::new(&PROMPT, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let step = Tensor::new(&[7u32], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let (theirs_prompt, theirs_step): (Vec<f32>, Vec<f32>) = if spec.arch == "qwen2" {
            let mut m =
                quantized_qwen2::ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
            let a = m.forward(&ids, 0).unwrap().flatten_all().unwrap();
            let b = m
                .forward(&step, PROMPT.len())
                .unwrap()
                .flatten_all()
                .unwrap();
            (a.to_vec1().unwrap(), b.to_vec1().unwrap())
        } else {
            let mut m =
                quantized_qwen3::ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
            let a = m.forward(&ids, 0).unwrap().flatten_all().unwrap();
            let b = m
                .forward(&step, PROMPT.len())
                .unwrap()
                .flatten_all()
                .unwrap();
            let f32 = |t: Tensor| -> Vec<f32> {
                t.to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            (f32(a), f32(b))
        };
        let a = logits(ours.as_mut(), &PROMPT, 0);
        let b = logits(ours.as_mut(), &[7], PROMPT.len());
        let scale = theirs_prompt.iter().map(|x| x.abs()).fold(0.0, f32::max);
        // candle's qwen3 keeps its KV cache in f16: allow for that rounding.
        let tol = if spec.arch == "qwen3" { 1e-2 } else { 1e-4 } * scale.max(1.0);
        assert!(
            max_diff(&a, &theirs_prompt) < tol,
            "{} prompt: {} (scale {scale})",
            spec.arch,
            max_diff(&a, &theirs_prompt)
        );
        assert!(
            max_diff(&b, &theirs_step) < tol,
            "{} step: {} (scale {scale})",
            spec.arch,
            max_diff(&b, &theirs_step)
        );
    }
}

#[test]
fn slow_formats_are_requantized_to_q8_0_with_close_logits() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        weight_type: GgmlDType::Q4_1,
        ..LLAMA
    };
    let path = dir.path().join("llama-q4_1.gguf");
    write_model(&path, &spec, &[]);
    let always = LoadOptions {
        requantize: Requantize::Always,
        ..LoadOptions::default()
    };
    let fast = load_causal_lm(&path, &Device::Cpu, always).unwrap();
    assert_eq!(fast.converted, LAYERS * 7, "every Q4_1 matrix is converted");
    // By default only where no SIMD kernel takes the format as it is.
    let default = load_causal_lm(&path, &Device::Cpu, LoadOptions::default()).unwrap();
    let kernel = tolk::models::qlinear::has_native_kernel(GgmlDType::Q4_1);
    assert_eq!(default.converted, if kernel { 0 } else { LAYERS * 7 });
    let plain = LoadOptions {
        requantize: Requantize::Never,
        ..LoadOptions::default()
    };
    let slow = load_causal_lm(&path, &Device::Cpu, plain).unwrap();
    assert_eq!(slow.converted, 0);
    let (mut fast, mut slow) = (fast.model, slow.model);
    let a = logits(fast.as_mut(), &PROMPT, 0);
    let b = logits(slow.as_mut(), &PROMPT, 0);
    let scale = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
    assert!(
        max_diff(&a, &b) < 0.05 * scale.max(1e-3),
        "{} vs scale {scale}",
        max_diff(&a, &b)
    );
}

#[test]
fn unsupported_architecture_names_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    let spec = Spec {
        arch: "mamba",
        ..LLAMA
    };
    write_model(&path, &spec, &[]);
    let err = load_causal_lm(&path, &Device::Cpu, LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unsupported model architecture 'mamba'"),
        "{err}"
    );
    for arch in SUPPORTED_ARCHITECTURES {
        assert!(err.contains(arch), "{err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn truncated_and_foreign_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.gguf");
    write_model(&path, &LLAMA, &[]);
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 100, bytes.len() / 2, 300, 20, 3, 0] {
        let cut = dir.path().join(format!("cut-{keep}.gguf"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let result = std::panic::catch_unwind(|| {
            load_causal_lm(&cut, &Device::Cpu, LoadOptions::default()).map(|_| ())
        });
        let err = result
            .expect("no panic")
            .expect_err("a truncated file must not load")
            .to_string();
        assert!(
            err.contains(&cut.display().to_string()),
            "names the file: {err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let json = dir.path().join("model.gguf");
    std::fs::write(&json, b"{\"not\": \"a gguf file\"}").unwrap();
    let err = load_causal_lm(&json, &Device::Cpu, LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a readable GGUF file"), "{err}");
    let missing = dir.path().join("missing.gguf");
    let err = load_causal_lm(&missing, &Device::Cpu, LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot open"), "{err}");
}

/// On a CUDA GPU (a `--features cuda` build) every architecture, and the
/// formats the CPU requantizes (Q4_1, Q5_0), run on candle's CUDA quantized
/// kernels as they are, with logits close to the CPU's; decoding one token
/// at a time through the device KV cache matches one-shot prefill. Prints
/// `SKIPPED: no CUDA device` without a GPU.
#[cfg(feature = "cuda")]
mod on_cuda {
    use super::*;

    fn close(a: &[f32], b: &[f32], what: &str) {
        let scale = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
        // The CUDA kernels quantize activations (Q8_1) where the CPU's do
        // otherwise: close, not equal.
        assert!(
            max_diff(a, b) < 0.05 * scale.max(1e-3),
            "{what}: {} vs scale {scale}",
            max_diff(a, b)
        );
    }

    #[test]
    fn every_architecture_matches_the_cpu() {
        common::on_cuda(|| {
            let gpu = common::test_device();
            let dir = tempfile::tempdir().unwrap();
            let q4_1 = Spec {
                weight_type: GgmlDType::Q4_1,
                ..LLAMA
            };
            let q5_0 = Spec {
                weight_type: GgmlDType::Q5_0,
                ..QWEN2
            };
            for (spec, extra) in [
                (&LLAMA, vec![]),
                (&GEMMA3, gemma_window()),
                (&QWEN2, vec![]),
                (&QWEN3, vec![]),
                (&q4_1, vec![]),
                (&q5_0, vec![]),
            ] {
                let what = format!("{} {:?}", spec.arch, spec.weight_type);
                let path = dir
                    .path()
                    .join(format!("{}-{:?}.gguf", spec.arch, spec.weight_type));
                write_model(&path, spec, &extra);
                let cpu = logits(load(&path).as_mut(), &PROMPT, 0);
                let loaded = load_causal_lm(&path, &gpu, LoadOptions::default()).unwrap();
                assert_eq!(
                    loaded.converted, 0,
                    "{what}: nothing is requantized on a GPU"
                );
                let mut model = loaded.model;
                let whole = logits(model.as_mut(), &PROMPT, 0);
                close(&whole, &cpu, &what);
                model.clear_kv_cache();
                let mut stepwise = Vec::new();
                for (i, t) in PROMPT.iter().enumerate() {
                    stepwise = logits(model.as_mut(), &[*t], i);
                }
                close(&stepwise, &whole, &format!("{what} stepwise"));
            }
        })
    }
}

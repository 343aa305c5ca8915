//! tolk's own PyTorch checkpoint reader against files written by real
//! `torch.save` in both layouts (scripts/gen_pytorch_fixtures.py): values
//! equal to what `torch.load` returns, shared storages, views, dtypes;
//! truncated and corrupted files are errors; malicious pickles are refused
//! without running; the legacy 2020-style Marian checkpoint gives the ids of
//! transformers, greedy and beam, from a folder laid out like a git clone.

mod common;

use candle_core::{DType, Device};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tolk::checkpoint::pytorch::{Format, PthFile};
use tolk::hub::{resolve_needs, HubOptions, ModelSource, MARIAN_FILES};
use tolk::pipeline::translate::{MarianTranslator, TranslateOptions};

/// The file the malicious fixtures would create if their pickle ran.
const MALICIOUS_MARKER: &str = "/tmp/tolk-malicious-pickle-ran";

fn fixture(name: &str) -> PathBuf {
    common::fixture(&format!("pytorch/{name}"))
}

#[derive(Deserialize)]
struct Expected {
    shape: Vec<usize>,
    dtype: String,
    values: Vec<f64>,
}

fn expected() -> BTreeMap<String, Expected> {
    serde_json::from_str(&std::fs::read_to_string(fixture("tensors.json")).unwrap()).unwrap()
}

fn values(file: &PthFile, name: &str) -> (Vec<usize>, DType, Vec<f64>) {
    let t = file.tensor(name).unwrap();
    let dims = t.dims().to_vec();
    let dtype = t.dtype();
    let v = t
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    (dims, dtype, v)
}

#[test]
fn both_layouts_read_what_torch_load_returns() {
    let want = expected();
    for (name, format) in [
        ("tensors-zip.pt", Format::Zip),
        ("tensors-legacy.pt", Format::Legacy),
    ] {
        let file = PthFile::open(&fixture(name)).unwrap();
        assert_eq!(file.format(), format, "{name}");
        let mut names: Vec<&str> = want.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(file.names(), names, "{name}");
        for (tensor, exp) in &want {
            let (shape, dtype, got) = values(&file, tensor);
            assert_eq!(shape, exp.shape, "{name}: shape of {tensor}");
            // f16/bf16/f32 widen to f64 exactly, so the values must be the
            // same f64 — up to one unit in the last place, which is all that
            // serde_json's default (not round-trip) float parsing of the
            // reference may be off by.
            assert_eq!(got.len(), exp.values.len(), "{name}: values of {tensor}");
            for (i, (g, e)) in got.iter().zip(&exp.values).enumerate() {
                let ulps = (i128::from(g.to_bits()) - i128::from(e.to_bits())).abs();
                assert!(
                    ulps <= 1,
                    "{name}: value {i} of {tensor}: {g} != {e} (torch.load)"
                );
            }
            let want_dtype = match exp.dtype.as_str() {
                "float32" => DType::F32,
                "float16" => DType::F16,
                "bfloat16" => DType::BF16,
                "float64" => DType::F64,
                "int64" => DType::I64,
                "bool" => DType::U8,
                other => panic!("unexpected dtype {other}"),
            };
            assert_eq!(dtype, want_dtype, "{name}: dtype of {tensor}");
        }
    }
}

#[test]
fn views_and_shared_storages_are_what_they_claim() {
    for name in ["tensors-zip.pt", "tensors-legacy.pt"] {
        let file = PthFile::open(&fixture(name)).unwrap();
        let base = file.tensor("f32").unwrap();
        let get = |n: &str| values(&file, n).2;
        assert_eq!(get("tied"), get("f32"));
        let transposed = base.t().unwrap().contiguous().unwrap();
        let transposed: Vec<f64> = transposed
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(get("transposed"), transposed);
        let rows = base.to_vec2::<f32>().unwrap();
        let row2: Vec<f64> = rows[2].iter().map(|&v| v as f64).collect();
        assert_eq!(get("row_view"), row2);
        let step: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.iter().step_by(2).map(|&v| v as f64))
            .collect();
        assert_eq!(get("step"), step);
        assert_eq!(get("offset_1d"), [1.5, 2.0, 2.5, 3.0, 3.5]);
        // Through a VarBuilder, f16 converts like safetensors does.
        let vb = PthFile::open(&fixture(name))
            .unwrap()
            .into_var_builder(DType::F32, &Device::Cpu);
        let f16 = vb.get((3, 5), "f16").unwrap();
        assert_eq!(f16.dtype(), DType::F32);
        assert!(vb.get((5, 3), "f16").is_err(), "a wrong shape is refused");
        assert!(vb.get(2, "missing").is_err());
    }
}

/// Opens a file and reads every tensor; must never panic.
fn open_and_read_all(path: &Path) -> anyhow::Result<usize> {
    let file = PthFile::open(path)?;
    let mut n = 0;
    for name in file.names() {
        file.tensor(name)?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn truncated_and_corrupted_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "tensors-zip.pt",
        "tensors-legacy.pt",
        "marian-tiny-legacy.bin",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = tmp.path().join(name);
        for cut in [0, 1, 4, 20, 200, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = open_and_read_all(&path).expect_err(&format!("{name} cut at {cut}"));
            let msg = format!("{err:#}");
            assert!(
                msg.contains("not a readable PyTorch checkpoint"),
                "{name} cut at {cut}: {msg}"
            );
        }
        // Every single-byte change in the first KB (the pickle): an error
        // or a file that still reads, never a panic or a huge allocation.
        for at in 0..bytes.len().min(1000) {
            let mut broken = bytes.clone();
            broken[at] ^= 0xa5;
            std::fs::write(&path, &broken).unwrap();
            let _ = open_and_read_all(&path);
        }
    }
}

#[test]
fn malicious_pickles_are_refused_without_running() {
    let _ = std::fs::remove_file(MALICIOUS_MARKER);
    for (name, global) in [
        ("malicious-zip.pt", "posix.system"),
        ("malicious-legacy.pt", "posix.system"),
        ("malicious-eval.pt", "__builtin__.eval"),
    ] {
        let err = PthFile::open(&fixture(name)).unwrap_err().to_string();
        assert!(err.contains(&format!("`{global}`")), "{name}: {err}");
        assert!(err.contains("refused"), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            !Path::new(MALICIOUS_MARKER).exists(),
            "{name}: the payload ran"
        );
    }
}

#[test]
fn checkpoints_of_t5_and_llama_equal_their_safetensors() {
    for (bin, dir, format) in [
        ("t5-tiny.bin", "t5-tiny", Format::Zip),
        ("llama-tiny-legacy.bin", "llama-tiny", Format::Legacy),
    ] {
        let pth = PthFile::open(&fixture(bin)).unwrap();
        assert_eq!(pth.format(), format);
        let st = unsafe {
            candle_core::safetensors::MmapedSafetensors::new(
                common::fixture(dir).join("model.safetensors"),
            )
        }
        .unwrap();
        let st_names: Vec<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(pth.names().len(), st_names.len(), "{bin}");
        for name in st_names {
            let a = pth.tensor(&name).unwrap().to_dtype(DType::F64).unwrap();
            let b = st
                .load(&name, &Device::Cpu)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            assert_eq!(a.dims(), b.dims(), "{bin}: {name}");
            let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, b, "{bin}: {name}");
        }
    }
}

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    beam4_ids: Vec<u32>,
}

#[test]
fn a_legacy_opus_mt_clone_gives_the_ids_of_transformers() {
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("marian-tiny-reference.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    common::legacy_marian_clone(tmp.path());
    assert_eq!(
        PthFile::open(&tmp.path().join("pytorch_model.bin"))
            .unwrap()
            .format(),
        Format::Legacy
    );
    let files = resolve_needs(
        &ModelSource::Dir(tmp.path().to_path_buf()),
        MARIAN_FILES,
        &HubOptions::default(),
    )
    .unwrap();
    assert!(files.get("model.safetensors").is_none());
    for beams in [1, 4] {
        let opts = TranslateOptions {
            num_beams: Some(beams),
            max_length: Some(reference.max_length),
            ..Default::default()
        };
        let t = MarianTranslator::load(&files, &Device::Cpu, &opts).unwrap();
        for case in &reference.cases {
            let hyp = &t
                .generate_ids(std::slice::from_ref(&case.input_ids))
                .unwrap()[0];
            let want = if beams == 1 {
                &case.greedy_ids
            } else {
                &case.beam4_ids
            };
            // transformers' sequences start with the decoder start token.
            assert_eq!(hyp.tokens, want[1..], "{beams} beams: {:?}", case.text);
        }
    }
}

//! Regression tests for what fuzzing found (`scripts/fuzz.sh`, README
//! "Reliability"): each input that once crashed a parser, or broke one of
//! its promises, stays here so plain `cargo test` keeps it fixed. Inputs are
//! built in code or read from `tests/fixtures/fuzz/`.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use tolk::batch::manifest::{read_jsonl, JsonlContents, JsonlLog, ManifestIndex, Record, Status};
use tolk::pipeline::summarize::llm::loader::read_header;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name)
}

/// A valid GGUF file with `metadata` and one small F32 tensor.
fn gguf_with(path: &Path, metadata: &[(&str, Value)]) {
    let t = QTensor::quantize(
        &Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta, &[("t", &t)]).unwrap();
}

#[test]
fn gguf_alignment_zero_is_an_error_not_a_division_by_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    gguf_with(
        &path,
        &[
            ("general.architecture", Value::String("llama".into())),
            ("general.alignment", Value::U32(0)),
        ],
    );
    let err = read_header(&path).unwrap_err().to_string();
    assert!(err.contains("general.alignment is 0"), "{err}");
    // The same file with a sane alignment reads.
    gguf_with(&path, &[("general.alignment", Value::U32(32))]);
    assert!(read_header(&path).is_ok());
}

#[test]
fn gguf_tensor_dimensions_whose_product_overflows_are_an_error() {
    // One tensor of 2^32 × 2^32 × 2^32 f32 elements: the product overflows u64.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    b.extend(1u64.to_le_bytes());
    b.extend(b"t");
    b.extend(3u32.to_le_bytes());
    for _ in 0..3 {
        b.extend((1u64 << 32).to_le_bytes());
    }
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32 + 64, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &b).unwrap();
    let err = read_header(&path).unwrap_err().to_string();
    assert!(err.contains("truncated or corrupt"), "{err}");
}

fn done(path: &str, t: u64) -> Record {
    let mut r = Record::new(path, Status::Done);
    r.key = Some(format!("key-{path}"));
    r.finished_unix_ms = t;
    r
}

fn manifest_with_tail(tail: &[u8]) -> (tempfile::TempDir, PathBuf, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tolk-manifest.jsonl");
    let records = vec![done("a.txt", 1), done("b.txt", 2)];
    let mut file = std::fs::File::create(&path).unwrap();
    for r in &records {
        file.write_all(&serde_json::to_vec(r).unwrap()).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.write_all(tail).unwrap();
    (dir, path, records)
}

#[test]
fn manifest_torn_inside_a_utf8_character_keeps_every_finished_record() {
    // A crash (or a full disk) cut the last append inside "ä": the file is
    // no longer valid UTF-8. It used to make the whole manifest unreadable,
    // so `tolk batch` could not resume at all.
    let tail = std::fs::read(fixture("manifest-torn-utf8")).unwrap();
    let (dir, path, records) = manifest_with_tail(&tail);
    let contents: JsonlContents<Record> = read_jsonl(&path).unwrap();
    let got: Vec<&Record> = contents.entries.iter().map(|(_, r)| r).collect();
    // The fixture holds one more finished record (e.txt) before its torn line.
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[..2], records.iter().collect::<Vec<_>>()[..]);
    assert_eq!(got[2].path, "e.txt");
    assert_eq!(got[2].status, Status::Done);
    assert!(contents.torn_tail);

    let mut warnings = Vec::new();
    let index = ManifestIndex::load(dir.path(), false, &mut warnings).unwrap();
    assert_eq!(index.latest("a.txt"), Some(&records[0]));
    assert!(
        warnings.iter().any(|w| w.contains("incomplete last line")),
        "{warnings:?}"
    );
    // The next run's append starts on a line of its own.
    let mut log = JsonlLog::open(&path).unwrap();
    log.append(&done("c.txt", 3)).unwrap();
    let after: JsonlContents<Record> = read_jsonl(&path).unwrap();
    assert_eq!(after.entries.len(), 4);
    assert_eq!(after.entries[3].1.path, "c.txt");
    assert!(after.broken_lines.is_empty() && !after.torn_tail);
}

#[test]
fn manifest_garbage_lines_are_reported_and_skipped() {
    // Zero bytes (what a power cut can leave) and invalid UTF-8 on complete lines.
    let (dir, path, records) = manifest_with_tail(b"\x00\x00\x00\n\xff\xfe{}\n");
    let contents: JsonlContents<Record> = read_jsonl(&path).unwrap();
    assert_eq!(contents.entries.len(), 2);
    assert_eq!(contents.broken_lines, [3, 4]);
    let mut warnings = Vec::new();
    let index = ManifestIndex::load(dir.path(), false, &mut warnings).unwrap();
    assert_eq!(index.latest("b.txt"), Some(&records[1]));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("2 broken line(s) (first: line 3)")),
        "{warnings:?}"
    );
}

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

/// The header error of a GGUF v3 file with no metadata and one f32 tensor
/// `t` of dimensions `dims` (its data, zeros, after the header).
fn read_one_tensor_header(dims: &[u64]) -> String {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    b.extend(1u64.to_le_bytes());
    b.extend(b"t");
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    b.resize(b.len().div_ceil(32) * 32 + 64, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &b).unwrap();
    read_header(&path).unwrap_err().to_string()
}

#[test]
fn gguf_tensor_dimensions_whose_product_overflows_are_an_error() {
    // One tensor of 2^32 × 2^32 × 2^32 f32 elements: the product overflows u64.
    let err = read_one_tensor_header(&[1 << 32, 1 << 32, 1 << 32]);
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

/// A fuzzing finding: a GGUF tensor with a zero dimension made candle build
/// an empty slice from a misaligned dangling pointer (undefined behaviour,
/// caught by the standard library's debug check as an abort).
#[test]
fn gguf_tensor_with_a_zero_dimension_is_an_error() {
    let err = read_one_tensor_header(&[0, 32]);
    assert!(err.contains("has no elements"), "{err}");
}

/// Found while writing the `pytorch` fuzz target: a tensor that views its
/// storage with a stride of 0 (a broadcast) was materialized at its full
/// size, so a file of a few hundred bytes could ask for any amount of
/// memory. Such views are refused; state dicts never hold them.
#[test]
fn pytorch_broadcast_view_is_refused_not_materialized() {
    use tolk::checkpoint::pytorch::PthFile;
    let sane = broadcast_checkpoint(4);
    let evil = broadcast_checkpoint(1 << 40);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sane.pt");
    std::fs::write(&path, sane).unwrap();
    // The same view with one row reads (stride 0 over a single row is fine).
    let file = PthFile::open(&path).unwrap();
    assert_eq!(file.shape("w"), Some(&[4usize, 4][..]));
    let _ = file;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.pt");
    std::fs::write(&path, evil).unwrap();
    let err = PthFile::open(&path).unwrap_err().to_string();
    assert!(err.contains("repeats elements"), "{err}");
}

/// A zip-less (legacy) torch checkpoint by hand: one f32 storage of 16
/// elements, and a tensor "w" viewing it as `rows` × 4 with strides (0, 1).
fn broadcast_checkpoint(rows: u64) -> Vec<u8> {
    let mut b = Vec::new();
    // Pickle 1: the magic number; 2: the protocol; 3: system info (a dict).
    let int_pickle = |b: &mut Vec<u8>, bytes: &[u8]| {
        b.extend([0x80, 2, 0x8a, bytes.len() as u8]);
        b.extend(bytes);
        b.push(b'.');
    };
    let mut magic = vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    magic.resize(16, 0);
    int_pickle(&mut b, &magic);
    int_pickle(&mut b, &1001u16.to_le_bytes());
    b.extend([0x80, 2, b'}', b'X']);
    b.extend(13u32.to_le_bytes());
    b.extend(b"little_endian");
    b.extend([0x88, b's', b'.']);
    // Pickle 4: {"w": _rebuild_tensor_v2(storage("0"), 0, (2^40, 4), (0, 1), False, OrderedDict())}
    b.extend([0x80, 2, b'}', b'X']);
    b.extend(1u32.to_le_bytes());
    b.extend(b"w");
    b.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
    b.push(b'(');
    // persistent id ('storage', torch.FloatStorage, '0', 'cpu', 4)
    b.push(b'(');
    b.push(b'X');
    b.extend(7u32.to_le_bytes());
    b.extend(b"storage");
    b.extend(b"ctorch\nFloatStorage\n");
    for s in ["0", "cpu"] {
        b.push(b'X');
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
    }
    b.extend([b'K', 16, b't', b'Q']);
    b.extend([b'K', 0]);
    b.push(b'(');
    b.push(0x8a);
    b.push(6);
    b.extend(&rows.to_le_bytes()[..6]);
    b.extend([b'K', 4, b't']);
    b.extend([b'K', 0, b'K', 1, 0x86]);
    b.push(0x89); // False
    b.extend(b"ccollections\nOrderedDict\n)R");
    b.extend([b't', b'R', b's', b'.']);
    // Pickle 5: the storage keys, then the storage: element count and bytes.
    b.extend([0x80, 2, b']', b'X']);
    b.extend(1u32.to_le_bytes());
    b.extend(b"0");
    b.extend([b'a', b'.']);
    b.extend(16u64.to_le_bytes());
    b.extend([0u8; 64]);
    b
}

/// A fuzzing finding: qwen2/qwen3 (and gemma3) GGUF hyper-parameters were
/// used unchecked, so a `block_count` of 2^40 asked for a vector of 2^40
/// layers and aborted the process. They are now bounded like llama's.
#[test]
fn gguf_absurd_hyper_parameters_are_an_error_for_every_architecture() {
    use tolk::pipeline::summarize::llm::loader::{load_causal_lm, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    for arch in ["llama", "qwen2", "qwen3", "gemma3"] {
        let key = |k: &str| format!("{arch}.{k}");
        let (bc, el, hc, hk, kl, cl, eps, sw) = (
            key("block_count"),
            key("embedding_length"),
            key("attention.head_count"),
            key("attention.head_count_kv"),
            key("attention.key_length"),
            key("context_length"),
            key("attention.layer_norm_rms_epsilon"),
            key("attention.sliding_window"),
        );
        gguf_with(
            &path,
            &[
                ("general.architecture", Value::String(arch.into())),
                (&bc, Value::U64(1 << 40)),
                (&el, Value::U32(64)),
                (&hc, Value::U32(2)),
                (&hk, Value::U32(2)),
                (&kl, Value::U32(32)),
                (&cl, Value::U32(128)),
                (&eps, Value::F32(1e-6)),
                (&sw, Value::U32(64)),
            ],
        );
        let opts = LoadOptions {
            requantize: tolk::pipeline::summarize::llm::Requantize::Never,
            dequantize: false,
        };
        let err = match load_causal_lm(&path, &Device::Cpu, opts) {
            Ok(_) => panic!("{arch}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("out of range"), "{arch}: {err}");
    }
}

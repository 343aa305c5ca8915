//! PyTorch checkpoints (`pytorch_model.bin`), read without running code.
//!
//! `torch.save` writes a pickle that refers to tensor storages by key, and
//! the storages' raw bytes. Two layouts exist:
//!
//! - **zip** (torch ≥ 1.6): `<name>/data.pkl` and one stored (uncompressed)
//!   entry `<name>/data/<key>` per storage;
//! - **legacy** (before 1.6, and `_use_new_zipfile_serialization=False`,
//!   e.g. the 2020 Helsinki-NLP opus-mt checkpoints): five pickles in a row
//!   (magic number, protocol version, system info, the state dict, the list
//!   of storage keys), then each storage as an 8-byte element count and its
//!   bytes.
//!
//! Both are parsed by a restricted unpickler ([`pickle`]) that knows only
//! what torch writes for a state dict and refuses every other global, so a
//! malicious file is an error, never code execution. Every tensor is checked
//! to lie inside bytes the file really holds before anything is read, and
//! tensors are read one at a time when the model asks for them (strided
//! views and shared storages included; f16/bf16 stay as they are stored and
//! are converted by the caller, as with safetensors).

mod pickle;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use pickle::{Input, StorageRef, StorageType, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;

/// The magic number opening a legacy checkpoint (`0x1950a86a20f9469cfc6c`), little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// Which of torch's two layouts a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Legacy,
}

/// Where one tensor lies: a strided window of a storage's bytes.
#[derive(Debug, Clone)]
struct Entry {
    dtype: StorageType,
    /// Offset in the file of the storage's first byte.
    storage_start: u64,
    /// Offset of the tensor's first element, in elements.
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
    contiguous: bool,
    /// Elements from `offset` to the last one touched.
    span: usize,
}

/// An opened PyTorch checkpoint whose tensors have been located and checked.
#[derive(Debug)]
pub struct PthFile {
    file: Mutex<File>,
    path: PathBuf,
    format: Format,
    entries: HashMap<String, Entry>,
}

/// The bytes of one storage in the file.
#[derive(Debug, Clone, Copy)]
struct StorageBytes {
    start: u64,
    len: u64,
}

impl PthFile {
    /// Opens `path`, parses its pickle with the restricted unpickler and
    /// checks every tensor against the bytes in the file.
    pub fn open(path: &Path) -> Result<Self> {
        let label = path.display();
        let mut file = File::open(path).with_context(|| format!("cannot open {label}"))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot read {label}"))?
            .len();
        let mut head = [0u8; 4];
        let read = file.read(&mut head)?;
        file.seek(SeekFrom::Start(0))?;
        let parsed = if read == 4 && head == *b"PK\x03\x04" {
            read_zip(&file, size).map(|p| (Format::Zip, p))
        } else {
            read_legacy(&file, size).map(|p| (Format::Legacy, p))
        };
        let (format, (root, storages)) =
            parsed.map_err(|e| anyhow!("{label} is not a readable PyTorch checkpoint: {e}"))?;
        let entries = locate(root, &storages)
            .map_err(|e| anyhow!("{label} is not a readable PyTorch checkpoint: {e}"))?;
        Ok(Self {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            format,
            entries,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The shape of a tensor, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// A `VarBuilder` that reads tensors from this file as they are asked for.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    /// Reads one tensor, on the CPU, in its stored dtype (i8 widened to i16,
    /// bool to u8: candle has neither).
    pub fn tensor(&self, name: &str) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        let io_error = |e: std::io::Error| {
            candle_core::Error::Msg(format!(
                "reading '{name}' from {}: {e}",
                self.path.display()
            ))
        };
        let size = entry.dtype.size();
        let start = entry.storage_start + (entry.offset * size) as u64;
        let mut file = self
            .file
            .lock()
            .map_err(|_| candle_core::Error::Msg("checkpoint file lock poisoned".into()))?;
        file.seek(SeekFrom::Start(start)).map_err(io_error)?;
        let shape = entry.shape.as_slice();
        if entry.contiguous && entry.dtype == StorageType::F32 {
            // Straight into the f32 buffer, a slice at a time.
            let len = entry.span * 4;
            let mut data = Vec::with_capacity(entry.span);
            let mut chunk = vec![0u8; (1 << 20).min(len)];
            let mut done = 0;
            while done < len {
                let n = chunk.len().min(len - done);
                file.read_exact(&mut chunk[..n]).map_err(io_error)?;
                data.extend(
                    chunk[..n]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                done += n;
            }
            return Tensor::from_vec(data, shape, &Device::Cpu);
        }
        let mut raw = vec![0u8; entry.span * size];
        file.read_exact(&mut raw).map_err(io_error)?;
        drop(file);
        let bytes = if entry.contiguous {
            raw
        } else {
            gather(&raw, &entry.shape, &entry.stride, size)
        };
        let (dtype, bytes) = match entry.dtype {
            StorageType::F64 => (DType::F64, bytes),
            StorageType::F32 => (DType::F32, bytes),
            StorageType::F16 => (DType::F16, bytes),
            StorageType::BF16 => (DType::BF16, bytes),
            StorageType::I64 => (DType::I64, bytes),
            StorageType::I32 => (DType::I32, bytes),
            StorageType::I16 => (DType::I16, bytes),
            StorageType::U8 | StorageType::Bool => (DType::U8, bytes),
            StorageType::I8 => (
                DType::I16,
                bytes
                    .iter()
                    .flat_map(|&b| (b as i8 as i16).to_le_bytes())
                    .collect(),
            ),
        };
        Tensor::from_raw_buffer(&bytes, dtype, shape, &Device::Cpu)
    }
}

/// Copies the elements of a strided view, in row-major order, from `raw`
/// (which starts at the view's first element).
fn gather(raw: &[u8], shape: &[usize], stride: &[usize], size: usize) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at = index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>() * size;
        out.extend_from_slice(&raw[at..at + size]);
        for dim in (0..shape.len()).rev() {
            index[dim] += 1;
            if index[dim] < shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    out
}

type Parsed = (Value, HashMap<String, StorageBytes>);

/// Records every storage the pickle refers to, by key.
fn persistent_loader(
    seen: &mut HashMap<String, Rc<StorageRef>>,
) -> impl FnMut(Value) -> Result<Value> + '_ {
    move |pid| {
        let storage = pickle::storage_from_pid(&pid)?;
        let storage = match seen.get(&storage.key) {
            // One storage may back several tensors (tied weights).
            Some(known) if known.dtype != storage.dtype => {
                bail!("storage {} is used with two dtypes", storage.key)
            }
            _ => {
                let storage = Rc::new(storage);
                seen.entry(storage.key.clone())
                    .or_insert_with(|| storage.clone());
                storage
            }
        };
        Ok(Value::Storage(storage))
    }
}

fn read_zip(file: &File, size: u64) -> Result<Parsed> {
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| anyhow!("invalid zip archive: {e}"))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|name| name.ok().map(|n| n.into_owned()))
        .collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| anyhow!("a zip archive without data.pkl"))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(mut entry) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        (&mut entry).take(16).read_to_string(&mut order)?;
        if order.trim() != "little" {
            bail!("it was saved on a {} -endian machine", order.trim());
        }
    }
    let pickle_bytes = {
        let entry = archive.by_name(&pkl)?;
        let len = entry.size();
        if len > size {
            bail!("data.pkl claims {len} bytes, more than the file");
        }
        let mut bytes = Vec::with_capacity(len as usize);
        entry.take(len).read_to_end(&mut bytes)?;
        bytes
    };
    let mut seen = HashMap::new();
    let mut reader: &[u8] = &pickle_bytes;
    let mut input = Input::new(&mut reader, pickle_bytes.len() as u64);
    let root = pickle::load(&mut input, &mut persistent_loader(&mut seen))?;
    let mut storages = HashMap::new();
    for key in seen.keys() {
        let name = format!("{prefix}data/{key}");
        let entry = archive
            .by_name(&name)
            .map_err(|_| anyhow!("the archive lacks {name}"))?;
        if entry.compression() != zip::CompressionMethod::Stored {
            bail!("{name} is compressed; torch stores tensors uncompressed");
        }
        let start = entry
            .data_start()
            .ok_or_else(|| anyhow!("cannot locate {name} in the archive"))?;
        let len = entry.size();
        if start.checked_add(len).is_none_or(|end| end > size) {
            bail!("{name} extends past the end of the file");
        }
        storages.insert(key.clone(), StorageBytes { start, len });
    }
    Ok((root, storages))
}

fn read_legacy(file: &File, size: u64) -> Result<Parsed> {
    let mut buffered = BufReader::new(file);
    let mut input = Input::new(&mut buffered, size);
    let mut no_ids = |_: Value| -> Result<Value> { bail!("unexpected storage reference") };
    let not_torch = || anyhow!("neither a zip archive nor a legacy torch.save file");
    let magic = pickle::load(&mut input, &mut no_ids).map_err(|_| not_torch())?;
    match magic {
        Value::Bytes(b)
            if b.len() == 16 && b[..10] == LEGACY_MAGIC && b[10..].iter().all(|&x| x == 0) => {}
        _ => return Err(not_torch()),
    }
    let protocol = pickle::load(&mut input, &mut no_ids)?;
    if protocol.as_int() != Some(LEGACY_PROTOCOL) {
        bail!("unknown legacy protocol version {protocol:?}");
    }
    let Value::Dict(sys_info) = pickle::load(&mut input, &mut no_ids)? else {
        bail!("bad system info");
    };
    let little = sys_info
        .items
        .iter()
        .find(|(k, _)| k.as_str() == Some("little_endian"))
        .map(|(_, v)| matches!(v, Value::Bool(true)));
    if little != Some(true) {
        bail!("it was saved on a big-endian machine");
    }
    let mut seen = HashMap::new();
    let root = pickle::load(&mut input, &mut persistent_loader(&mut seen))?;
    let keys = pickle::load(&mut input, &mut no_ids)?;
    let keys = keys
        .as_seq()
        .ok_or_else(|| anyhow!("bad storage key list"))?
        .iter()
        .map(|k| match k {
            Value::Str(s) => Ok(s.to_string()),
            Value::Int(i) => Ok(i.to_string()),
            _ => bail!("bad storage key"),
        })
        .collect::<Result<Vec<String>>>()?;
    let mut pos = input.pos;
    drop(buffered);
    let mut file = file;
    let mut storages = HashMap::new();
    for key in keys {
        let storage = seen
            .get(&key)
            .ok_or_else(|| anyhow!("storage {key} is listed but never used"))?;
        let mut count = [0u8; 8];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut count)
            .map_err(|_| anyhow!("truncated before storage {key}"))?;
        let len = u64::from_le_bytes(count)
            .checked_mul(storage.dtype.size() as u64)
            .ok_or_else(|| anyhow!("storage {key} is impossibly large"))?;
        let start = pos + 8;
        if start.checked_add(len).is_none_or(|end| end > size) {
            bail!("storage {key} extends past the end of the file (truncated?)");
        }
        storages.insert(key, StorageBytes { start, len });
        pos = start + len;
    }
    Ok((root, storages))
}

/// The tensors of a state dict, each checked to lie inside its storage's bytes.
fn locate(root: Value, storages: &HashMap<String, StorageBytes>) -> Result<HashMap<String, Entry>> {
    let Value::Dict(dict) = root else {
        bail!("it holds no state dict (a dict of tensors)");
    };
    let mut entries = HashMap::new();
    for (key, value) in dict.items.iter() {
        let (Some(name), Value::Tensor(tensor)) = (key.as_str(), value) else {
            continue;
        };
        let storage = &tensor.storage;
        let bytes = storages
            .get(&storage.key)
            .ok_or_else(|| anyhow!("the data of '{name}' is missing"))?;
        let size = storage.dtype.size() as u64;
        let span = tensor.span();
        let end = (tensor.offset as u64)
            .checked_add(span as u64)
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| anyhow!("'{name}' is impossibly large"))?;
        if span > 0 && end > bytes.len {
            bail!(
                "'{name}' needs {end} bytes of its storage, which holds {}",
                bytes.len
            );
        }
        entries.insert(
            name.to_string(),
            Entry {
                dtype: storage.dtype,
                storage_start: bytes.start,
                offset: tensor.offset,
                contiguous: tensor.is_contiguous(),
                shape: tensor.shape.clone(),
                stride: tensor.stride.clone(),
                span,
            },
        );
    }
    if entries.is_empty() {
        bail!("it holds no tensors");
    }
    Ok(entries)
}

impl SimpleBackend for PthFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(shape) = self.shape(name) {
            // Refuse a wrong shape before reading anything.
            if shape != s.dims() {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("shape mismatch for {name}"),
                    expected: s,
                    got: shape.into(),
                });
            }
        }
        self.get_unchecked(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.tensor(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

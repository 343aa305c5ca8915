//! Loading safetensors weights one tensor at a time, with positioned reads
//! (one file, or the shards of a checkpoint as one [`Shards`]).
//!
//! candle's CPU tensors own their memory, so weights loaded through a memory
//! map are copied anyway, and while the map is in place every page of it
//! that was read counts in the resident set too: the peak is twice the
//! weights. Reading each tensor straight into its own buffer keeps the peak
//! at one copy (the file stays in the page cache, outside the process), and
//! lets `--quantize` drop each f32 matrix as soon as it is converted.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where one tensor lies in the file.
#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    len: usize,
}

/// An open `.safetensors` file whose header has been read and checked.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// Behind a lock because reads seek; loading is sequential anyway.
    file: Mutex<File>,
    path: PathBuf,
    entries: HashMap<String, Entry>,
}

/// Headers are JSON of a few hundred bytes per tensor; anything larger than
/// this is not a weights file.
const MAX_HEADER: u64 = 100 << 20;

fn parse_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

impl SafetensorsFile {
    /// Opens `path` and validates its header against the file size.
    pub fn open(path: &Path) -> Result<Self> {
        let broken = || format!("{} is not a readable safetensors file", path.display());
        let mut file = File::open(path).with_context(broken)?;
        let size = file.metadata().with_context(broken)?.len();
        let mut head = [0u8; 8];
        file.read_exact(&mut head).with_context(broken)?;
        let header_len = u64::from_le_bytes(head);
        if header_len > MAX_HEADER || header_len > size.saturating_sub(8) {
            bail!("{}: header length {header_len} is impossible", broken());
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).with_context(broken)?;
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).with_context(broken)?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, info) in json {
            if name == "__metadata__" {
                continue;
            }
            let bad = || anyhow!("{}: bad header entry for '{name}'", broken());
            let dtype_name = info.get("dtype").and_then(|d| d.as_str()).ok_or_else(bad)?;
            let dtype = parse_dtype(dtype_name).ok_or_else(|| {
                anyhow!("{}: '{name}' has unsupported dtype {dtype_name}", broken())
            })?;
            let shape = info
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(bad)?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad))
                .collect::<Result<Vec<usize>>>()?;
            let offsets = info
                .get("data_offsets")
                .and_then(|o| o.as_array())
                .filter(|o| o.len() == 2)
                .ok_or_else(bad)?;
            let (begin, end) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
                (Some(b), Some(e)) if b <= e => (b, e),
                _ => return Err(bad()),
            };
            let elems = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let expected = elems.and_then(|n| n.checked_mul(dtype.size_in_bytes()));
            if expected != Some((end - begin) as usize) || data_start + end > size {
                return Err(bad());
            }
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape,
                    start: data_start + begin,
                    len: (end - begin) as usize,
                },
            );
        }
        Ok(Self {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The names of the tensors in the file, in no particular order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A `VarBuilder` that reads tensors from this file as they are asked for.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn read(&self, name: &str) -> candle_core::Result<Tensor> {
        let entry = self.entries.get(name).ok_or_else(|| {
            candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt()
        })?;
        let io_error = |e: std::io::Error| {
            candle_core::Error::Msg(format!(
                "reading '{name}' from {}: {e}",
                self.path.display()
            ))
        };
        let mut file = self
            .file
            .lock()
            .map_err(|_| candle_core::Error::Msg("weights file lock poisoned".into()))?;
        file.seek(SeekFrom::Start(entry.start)).map_err(io_error)?;
        if entry.dtype == DType::F32 {
            // Straight into the f32 buffer, a slice at a time: no second
            // full-size copy of the tensor.
            const CHUNK: usize = 1 << 20;
            let mut data = Vec::with_capacity(entry.len / 4);
            let mut bytes = vec![0u8; CHUNK.min(entry.len)];
            let mut done = 0;
            while done < entry.len {
                let n = CHUNK.min(entry.len - done);
                file.read_exact(&mut bytes[..n]).map_err(io_error)?;
                data.extend(
                    bytes[..n]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                done += n;
            }
            return Tensor::from_vec(data, entry.shape.as_slice(), &Device::Cpu);
        }
        let mut bytes = vec![0u8; entry.len];
        file.read_exact(&mut bytes).map_err(io_error)?;
        Tensor::from_raw_buffer(&bytes, entry.dtype, &entry.shape, &Device::Cpu)
    }
}

impl SimpleBackend for SafetensorsFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt())?
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Several safetensors files (the shards of one checkpoint) seen as one.
#[derive(Debug)]
pub struct Shards {
    files: Vec<SafetensorsFile>,
}

impl Shards {
    pub fn new(files: Vec<SafetensorsFile>) -> Self {
        Self { files }
    }

    /// A `VarBuilder` that reads tensors from the shards as they are asked for.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn file_with(&self, name: &str) -> candle_core::Result<&SafetensorsFile> {
        self.files
            .iter()
            .find(|f| f.entries.contains_key(name))
            .ok_or_else(|| {
                candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                }
                .bt()
            })
    }
}

impl SimpleBackend for Shards {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.file_with(name)?.get(s, name, init, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.file_with(name)?.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.entries.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }

    #[test]
    fn reads_what_candle_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let b = Tensor::new(&[1u32, 2, 3], &Device::Cpu).unwrap();
        write(&path, &[("a", a.clone()), ("b", b)]);
        let vb = SafetensorsFile::open(&path)
            .unwrap()
            .into_var_builder(DType::F32, &Device::Cpu);
        let got = vb.get((2, 3), "a").unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert!(vb.contains_tensor("b"));
        assert!(!vb.contains_tensor("c"));
        assert!(vb.get((3, 2), "a").is_err(), "wrong shape must fail");
        assert!(vb.get(3, "c").is_err(), "missing tensor must fail");
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        for bytes in [
            &b""[..],
            &b"\xff\xff\xff\xff\xff\xff\xff\x7f{}"[..],
            &b"\x02\x00\x00\x00\x00\x00\x00\x00{}"[..],
            &b"\x2e\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"[..],
        ] {
            std::fs::write(&path, bytes).unwrap();
            let result = SafetensorsFile::open(&path);
            if bytes.len() == 10 && bytes[0] == 2 {
                // An empty header is a valid file with no tensors.
                assert!(result.is_ok());
            } else {
                assert!(result.is_err(), "{bytes:?}");
            }
        }
    }
}

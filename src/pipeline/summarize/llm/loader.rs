//! Reading a GGUF file into a [`CausalLm`]: header checks, architecture
//! dispatch, and requantization of tensors that candle multiplies slowly.

use crate::models::causal_lm::{CausalLm, Hparams, TensorSource};
use crate::models::qlinear;
use crate::models::quantized_gemma3::{Gemma3Config, QuantizedGemma3};
use crate::models::quantized_llama::{LlamaConfig, QuantizedLlama};
use crate::models::quantized_qwen::{QuantizedQwen, QwenConfig, QwenVariant};
use crate::models::qweight::{MappedBytes, QWeight};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// The `general.architecture` values tolk can run.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "gemma3", "qwen2", "qwen3"];

/// Converting Q4_1/Q5_0/Q5_1 tensors to Q8_0 at load: candle 0.11 has only
/// scalar code for those formats, and Q8_0 multiplies several times faster
/// for a small change of rounding. On x86 with AVX2, tolk's own kernels
/// ([`crate::models::qlinear`]) take Q4_1 and Q5_0 as they are (fewer bytes
/// to stream per token), so only Q5_1 needs converting there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requantize {
    /// The formats no SIMD kernel multiplies on this CPU.
    #[default]
    WhereSlow,
    /// None: the file's formats as they are.
    Never,
    /// All of them, kernel or not (to compare the two).
    Always,
}

/// How to load the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Which Q4_1/Q5_0/Q5_1 tensors to convert to Q8_0 at load, on CPU.
    pub requantize: Requantize,
    /// Dequantize every weight to f32 and multiply densely. Several times
    /// slower and 4–8× the memory; it reproduces fp32 reference
    /// implementations (transformers) to within rounding, which the
    /// parity tests use to check the model code itself.
    pub dequantize: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            requantize: Requantize::WhereSlow,
            dequantize: false,
        }
    }
}

/// A model read from a GGUF file, with the metadata the tokenizer and prompt need.
pub struct LoadedModel {
    pub model: Box<dyn CausalLm>,
    pub architecture: String,
    pub metadata: HashMap<String, Value>,
    /// How many tensors were converted at load (requantized to Q8_0, or
    /// dequantized with [`LoadOptions::dequantize`]).
    pub converted: usize,
}

/// Opens `path` and reads its GGUF header, refusing files whose tensors run
/// past the end (truncated downloads) with one clear line.
pub fn read_header(path: &Path) -> Result<(Content, BufReader<File>)> {
    let file =
        File::open(path).with_context(|| format!("{}: cannot open model file", path.display()))?;
    let mut reader = BufReader::new(file);
    let unreadable = super::gguf_header::unreadable_by_candle(&mut reader)
        .with_context(|| format!("{}: cannot read model file", path.display()))?;
    if let Some(why) = unreadable {
        bail!("{}: not a readable GGUF file ({why})", path.display());
    }
    let tracked = super::gguf_header::Tracked::new(&mut reader)
        .with_context(|| format!("{}: cannot read model file", path.display()))?;
    let content = Content::read(&mut { tracked }).map_err(|e| {
        anyhow!(
            "{}: not a readable GGUF file ({})",
            path.display(),
            one_line(&e)
        )
    })?;
    let size = reader
        .seek(SeekFrom::End(0))
        .with_context(|| format!("{}: cannot read model file", path.display()))?;
    for (name, info) in &content.tensor_infos {
        // Checked: the dimensions are the file's word, and their product
        // can overflow (`Shape::elem_count` would panic or wrap).
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        if elems == Some(0) {
            // candle would build an empty slice from a dangling pointer of
            // the wrong alignment (undefined behaviour; a fuzzing finding).
            bail!(
                "{}: corrupt GGUF file: tensor {name} has no elements (a dimension is 0)",
                path.display()
            );
        }
        let block = info.ggml_dtype.block_size().max(1) as u64;
        let bytes = elems.and_then(|n| (n / block).checked_mul(info.ggml_dtype.type_size() as u64));
        let end = bytes.and_then(|bytes| {
            content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(bytes))
        });
        match end {
            Some(end) if end <= size => {}
            _ => bail!(
                "{}: truncated or corrupt GGUF file: tensor {name} ends past the file's {size} bytes (re-download it)",
                path.display()
            ),
        }
    }
    Ok((content, reader))
}

/// The message of a candle error without the backtrace candle appends when
/// `RUST_BACKTRACE` is set: errors here are one line.
fn one_line(e: &candle_core::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// The file's `general.architecture`.
pub fn architecture(metadata: &HashMap<String, Value>) -> Result<String> {
    match metadata.get("general.architecture") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => bail!("GGUF metadata lacks general.architecture"),
    }
}

/// Loads the model in `path` onto `device`.
pub fn load_causal_lm(path: &Path, device: &Device, opts: LoadOptions) -> Result<LoadedModel> {
    let (content, reader) = read_header(path)?;
    load_from_header(path, content, reader, device, opts)
}

/// [`load_causal_lm`] of a header already read with [`read_header`] (the
/// summarizer builds its tokenizer from the metadata first).
pub fn load_from_header(
    path: &Path,
    mut content: Content,
    mut reader: BufReader<File>,
    device: &Device,
    opts: LoadOptions,
) -> Result<LoadedModel> {
    let arch = architecture(&content.metadata).with_context(|| path.display().to_string())?;
    let name = path.display();
    let mode = if opts.dequantize {
        Conversion::Dequantize
    } else if device.is_cpu() {
        Conversion::Requantize(opts.requantize)
    } else {
        Conversion::None
    };
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        bail!(
            "{name}: unsupported model architecture '{arch}' (supported: {})",
            SUPPORTED_ARCHITECTURES.join(", ")
        )
    }
    let hparams = Hparams::new(&content.metadata, &arch);
    let mut src = GgufSource::new(&content, &mut reader, device, mode);
    let model = (|| -> candle_core::Result<Box<dyn CausalLm>> {
        Ok(match arch.as_str() {
            "llama" => Box::new(QuantizedLlama::new(
                LlamaConfig::from_metadata(&hparams)?,
                &mut src,
                device,
            )?),
            "gemma3" => Box::new(QuantizedGemma3::new(
                Gemma3Config::from_metadata(&hparams)?,
                &mut src,
                device,
            )?),
            qwen => {
                let variant = if qwen == "qwen2" {
                    QwenVariant::Qwen2
                } else {
                    QwenVariant::Qwen3
                };
                let cfg = QwenConfig::from_metadata(&hparams, variant)?;
                Box::new(QuantizedQwen::new(cfg, &mut src, device)?)
            }
        })
    })()
    .map_err(|e| anyhow!("{name}: {}", one_line(&e)))?;
    let converted = src.converted;
    drop(src); // ends the borrow of `content` before its metadata moves out
               // The metadata (a 262k-token vocabulary is tens of MB) is moved out, not
               // copied, once the tensors have been read.
    let metadata = std::mem::take(&mut content.metadata);
    Ok(LoadedModel {
        model,
        architecture: arch,
        metadata,
        converted,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    None,
    Requantize(Requantize),
    Dequantize,
}

/// Tensors read on demand from an open GGUF file; weight matrices that
/// tolk's kernels multiply as they are stay in the file's memory map.
struct GgufSource<'a> {
    content: &'a Content,
    reader: &'a mut BufReader<File>,
    device: &'a Device,
    mode: Conversion,
    converted: usize,
    map: Option<Arc<memmap2::Mmap>>,
}

impl<'a> GgufSource<'a> {
    fn new(
        content: &'a Content,
        reader: &'a mut BufReader<File>,
        device: &'a Device,
        mode: Conversion,
    ) -> Self {
        // Only CPU weights in their own format are repacked from the map.
        let mappable = device.is_cpu() && !matches!(mode, Conversion::Dequantize);
        // SAFETY: the map is read-only; like llama.cpp, tolk assumes the
        // model file is not truncated or rewritten while it runs.
        let map = mappable
            .then(|| unsafe { memmap2::Mmap::map(reader.get_ref()) }.ok())
            .flatten()
            .map(Arc::new);
        Self {
            content,
            reader,
            device,
            mode,
            converted: 0,
            map,
        }
    }

    /// The mapped blocks of `name`, when the weight is used as it is.
    fn mapped(&self, name: &str) -> candle_core::Result<Option<QWeight>> {
        let (Some(map), Some(info)) = (&self.map, self.content.tensor_infos.get(name)) else {
            return Ok(None);
        };
        let dtype = info.ggml_dtype;
        let &[rows, cols] = info.shape.dims() else {
            return Ok(None);
        };
        let converts = match self.mode {
            Conversion::Requantize(mode) => requantizes(dtype, cols, mode),
            Conversion::None => false,
            Conversion::Dequantize => true,
        };
        if converts || !qlinear::has_native_kernel(dtype) {
            return Ok(None);
        }
        let len = rows * (cols / dtype.block_size()) * dtype.type_size();
        let start = self.content.tensor_data_offset as usize + info.offset as usize;
        let bytes = MappedBytes::of_map(map.clone(), start, len)?;
        QWeight::mapped(bytes, dtype, rows, cols).map(Some)
    }
}

impl TensorSource for GgufSource<'_> {
    fn tensor(&mut self, name: &str) -> candle_core::Result<QTensor> {
        let t = self.content.tensor(self.reader, name, self.device)?;
        match self.mode {
            Conversion::Requantize(mode) if needs_requantization(&t, mode) => {
                self.converted += 1;
                requantize_q8_0(&t)
            }
            Conversion::Dequantize if t.dtype() != GgmlDType::F32 => {
                self.converted += 1;
                QTensor::quantize(&t.dequantize(self.device)?, GgmlDType::F32)
            }
            _ => Ok(t),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn weight(&mut self, name: &str) -> candle_core::Result<QWeight> {
        match self.mapped(name)? {
            Some(w) => Ok(w),
            None => Ok(QWeight::from_qtensor(self.tensor(name)?)),
        }
    }
}

/// Whether `mode` converts `t`: Q4_1/Q5_0/Q5_1 matrices whose rows are whole
/// Q8_0 blocks, and with [`Requantize::WhereSlow`] only those that would be
/// multiplied by scalar code on this CPU.
pub fn needs_requantization(t: &QTensor, mode: Requantize) -> bool {
    match t.shape().dims() {
        &[_, cols] => requantizes(t.dtype(), cols, mode),
        _ => false,
    }
}

/// [`needs_requantization`] of a matrix of `dtype` with rows of `cols` values.
fn requantizes(dtype: GgmlDType, cols: usize, mode: Requantize) -> bool {
    let slow_format = matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
    let wanted = match mode {
        Requantize::Never => false,
        Requantize::Always => true,
        Requantize::WhereSlow => !qlinear::has_native_kernel(dtype),
    };
    slow_format && wanted && cols.is_multiple_of(GgmlDType::Q8_0.block_size())
}

/// Dequantizes `t` and quantizes it again as Q8_0 (8 bits per weight plus a
/// scale per 32: finer than the 4–5-bit source, so little is lost).
pub fn requantize_q8_0(t: &QTensor) -> candle_core::Result<QTensor> {
    let dense = t.dequantize(&t.device())?;
    QTensor::quantize(&dense, GgmlDType::Q8_0)
}

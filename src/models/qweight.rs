//! Quantized weights as model code receives them: a tensor candle read into
//! memory, or blocks lying in a memory-mapped GGUF file. tolk's kernels
//! repack mapped blocks at load ([`super::qlinear::packed`]) and then drop
//! the mapped pages, so one copy is resident; an embedding table reads its
//! rows from the map. Model code does no I/O: the pipeline maps the file and
//! hands out [`MappedBytes`] through [`super::causal_lm::TensorSource::weight`].

use super::qlinear::QLinear;
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Result, Tensor};
use std::sync::Arc;

/// A byte range of a shared buffer (typically a memory-mapped file).
#[derive(Clone)]
pub struct MappedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
    /// The owner, when it is a file map whose pages may be dropped.
    map: Option<Arc<memmap2::Mmap>>,
}

impl std::fmt::Debug for MappedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedBytes({}..{})", self.start, self.start + self.len)
    }
}

impl MappedBytes {
    /// `owner[start..start + len]`; an error when it does not lie inside.
    pub fn new(
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        len: usize,
    ) -> Result<Self> {
        let total = (*owner).as_ref().len();
        if start.checked_add(len).is_none_or(|end| end > total) {
            candle_core::bail!("bytes {start}..+{len} lie outside a buffer of {total} bytes")
        }
        Ok(Self {
            owner,
            start,
            len,
            map: None,
        })
    }

    /// `map[start..start + len]` of a read-only file map, whose pages
    /// [`Self::release_part`] may drop.
    pub fn of_map(map: Arc<memmap2::Mmap>, start: usize, len: usize) -> Result<Self> {
        let mut bytes = Self::new(map.clone(), start, len)?;
        bytes.map = Some(map);
        Ok(bytes)
    }

    /// Drops the pages of `range` (offsets into these bytes) from this
    /// process's memory when they lie in a file map (a weight copied
    /// elsewhere at load): they stay in the page cache, and a later read
    /// faults them back in (a neighbour's first or last page too). Does
    /// nothing otherwise.
    pub fn release_part(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            let (from, to) = (range.start.min(self.len), range.end.min(self.len));
            if from >= to {
                return;
            }
            // SAFETY: the map is read-only and file-backed, so dropping its
            // pages changes no byte anyone reads; an error only leaves the
            // pages resident.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.start + from,
                    to - from,
                )
            };
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    pub fn bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
}

/// One weight matrix `[rows, cols]` in ggml's block layout.
#[derive(Debug, Clone)]
pub enum QWeight {
    /// Read into memory by candle.
    Tensor(Arc<QTensor>),
    /// Blocks in a mapped file.
    Mapped {
        bytes: MappedBytes,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    },
}

impl QWeight {
    pub fn from_qtensor(t: QTensor) -> Self {
        Self::Tensor(Arc::new(t))
    }

    /// Mapped blocks of a `[rows, cols]` matrix; checks that the byte count fits.
    pub fn mapped(bytes: MappedBytes, dtype: GgmlDType, rows: usize, cols: usize) -> Result<Self> {
        let block = dtype.block_size();
        if !cols.is_multiple_of(block) || bytes.len != rows * (cols / block) * dtype.type_size() {
            candle_core::bail!(
                "{dtype:?} weight [{rows}, {cols}] does not match its {} bytes",
                bytes.len
            )
        }
        Ok(Self::Mapped {
            bytes,
            dtype,
            rows,
            cols,
        })
    }

    pub fn dtype(&self) -> GgmlDType {
        match self {
            Self::Tensor(t) => t.dtype(),
            Self::Mapped { dtype, .. } => *dtype,
        }
    }

    /// The weight read into a candle tensor (a copy, for mapped weights).
    pub fn to_qtensor(&self) -> Result<Arc<QTensor>> {
        match self {
            Self::Tensor(t) => Ok(t.clone()),
            Self::Mapped {
                bytes,
                dtype,
                rows,
                cols,
            } => Ok(Arc::new(qtensor_from_ggml(
                *dtype,
                bytes.bytes(),
                vec![*rows, *cols],
                &Device::Cpu,
            )?)),
        }
    }

    /// The weight as an output head, which meets one activation row a
    /// step: mapped blocks multiplied where they lie when a kernel reads
    /// them in place ([`QLinear::in_place`]: nothing copied at load, the
    /// page cache's large pages), else as [`Self::linear`].
    pub fn head(&self) -> Result<QLinear> {
        if let Self::Mapped {
            bytes,
            dtype,
            rows,
            cols,
        } = self
        {
            if let Some(l) = QLinear::in_place(bytes.clone(), *dtype, *rows, *cols) {
                return Ok(l);
            }
        }
        self.linear()
    }

    /// A linear layer over this weight (shared, not copied, where tolk's
    /// kernels take its format).
    pub fn linear(&self) -> Result<QLinear> {
        match self {
            Self::Tensor(t) => QLinear::from_arc(t.clone()),
            Self::Mapped {
                bytes,
                dtype,
                rows,
                cols,
            } => match QLinear::from_mapped(bytes.clone(), *dtype, *rows, *cols) {
                Some(l) => Ok(l),
                None => QLinear::from_arc(self.to_qtensor()?),
            },
        }
    }
}

/// A token embedding table that stays quantized: rows are dequantized on
/// lookup (a 150k-row vocabulary in f32 would cost about a gigabyte).
#[derive(Debug, Clone)]
pub enum QEmbedding {
    Candle(QMatMul),
    Mapped {
        bytes: MappedBytes,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    },
}

impl QEmbedding {
    pub fn new(w: &QWeight) -> Result<Self> {
        Ok(match w {
            QWeight::Tensor(t) => Self::Candle(QMatMul::from_arc(t.clone())?),
            QWeight::Mapped {
                bytes,
                dtype,
                rows,
                cols,
            } => Self::Mapped {
                bytes: bytes.clone(),
                dtype: *dtype,
                rows: *rows,
                cols: *cols,
            },
        })
    }

    /// The rows of `ids` as `(1, ids.len(), cols)` f32 on `device`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Self::Candle(m) => m.embedding(&Tensor::new(ids, device)?.unsqueeze(0)?),
            Self::Mapped {
                bytes,
                dtype,
                rows,
                cols,
            } => {
                let row_bytes = cols / dtype.block_size() * dtype.type_size();
                let data = bytes.bytes();
                let mut out = Vec::with_capacity(ids.len() * cols);
                for &id in ids {
                    let id = id as usize;
                    if id >= *rows {
                        candle_core::bail!("token id {id} is outside the vocabulary of {rows}")
                    }
                    let raw = &data[id * row_bytes..(id + 1) * row_bytes];
                    let row = qtensor_from_ggml(*dtype, raw, vec![*cols], &Device::Cpu)?
                        .dequantize(&Device::Cpu)?;
                    out.extend(row.to_vec1::<f32>()?);
                }
                Tensor::from_vec(out, (1, ids.len(), *cols), device)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_weights_multiply_and_look_up_like_owned_ones() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..40 * 256)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let w = Tensor::from_vec(data, (40, 256), &dev).unwrap();
        for dtype in [
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
        ] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let raw = q.data().unwrap().into_owned();
            // The buffer holds other bytes around the tensor, as a file does.
            let mut file = vec![0xAAu8; 64];
            file.extend(&raw);
            file.extend([0x55u8; 32]);
            let bytes = MappedBytes::new(Arc::new(file), 64, raw.len()).unwrap();
            let mapped = QWeight::mapped(bytes, dtype, 40, 256).unwrap();
            let owned = QWeight::from_qtensor(q);
            let x = Tensor::randn(0f32, 1., (1, 3, 256), &dev).unwrap();
            let run = |w: &QWeight| -> Vec<f32> {
                use candle_core::Module;
                let y = w.linear().unwrap().forward(&x).unwrap();
                y.flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_eq!(run(&mapped), run(&owned), "{dtype:?}");
            // As an output head: read in place where a kernel takes the
            // format (Q6_K, Q8_0), the same products up to float order.
            let head = |w: &QWeight| -> Vec<f32> {
                use candle_core::Module;
                let y = w.head().unwrap().forward(&x).unwrap();
                y.flatten_all().unwrap().to_vec1().unwrap()
            };
            let (ours, want) = (head(&mapped), run(&owned));
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!(
                ours.iter()
                    .zip(&want)
                    .all(|(a, b)| (a - b).abs() <= 1e-5 * scale),
                "{dtype:?} head"
            );
            let ids = [0u32, 39, 7, 7];
            let look = |w: &QWeight| -> Vec<f32> {
                let e = QEmbedding::new(w).unwrap().lookup(&ids, &dev).unwrap();
                assert_eq!(e.dims(), &[1, 4, 256]);
                e.flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_eq!(look(&mapped), look(&owned), "{dtype:?}");
            assert!(QEmbedding::new(&mapped)
                .unwrap()
                .lookup(&[40], &dev)
                .is_err());
        }
        let short = MappedBytes::new(Arc::new(vec![0u8; 10]), 4, 6).unwrap();
        assert!(QWeight::mapped(short, GgmlDType::Q8_0, 1, 32).is_err());
        assert!(MappedBytes::new(Arc::new(vec![0u8; 10]), 4, 7).is_err());
    }
}

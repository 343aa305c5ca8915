//! A linear layer over GGUF weights (`y = x Wᵀ`) that multiplies Q4_1, Q5_0,
//! Q8_0, Q4_K, Q5_K and Q6_K weights with tolk's own AVX2 kernels on x86 CPUs, and leaves
//! every other case (other formats, other CPUs, GPUs) to candle's `QMatMul`.

pub mod avx2;
pub mod dense;
pub mod inplace;
pub mod int8;
pub mod kquants;
pub mod packed;

use super::qweight::MappedBytes;
use avx2::{Avx2, Format};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, DType, Module, Result, Storage, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Multiply-adds below which one thread does the whole product: waking the
/// pool costs more than it saves.
const SERIAL_WORK: usize = 1 << 18;

/// Runs `f(range)` over ranges that split `0..count` (`work` multiply-adds
/// in all) on candle's CPU worker pool (the one its own quantized matmul
/// uses, sized by `CANDLE_NUM_THREADS`/`--threads`). That pool lets the
/// calling thread do a share and keeps its workers spinning between the
/// ~200 products of a decoding step; handing each product to a sleeping
/// rayon thread instead costs two context switches a time. Ranges are
/// multiples of `align` long (but the last).
pub(crate) fn for_ranges(
    count: usize,
    work: usize,
    align: usize,
    f: impl Fn(std::ops::Range<usize>) + Sync,
) {
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    if threads == 1 || work < SERIAL_WORK {
        f(0..count);
        return;
    }
    // Ranges taken from a shared cursor, several per thread, so a thread
    // that was descheduled or woke late holds no one up.
    let size = count.div_ceil(threads * 4).next_multiple_of(align.max(1));
    let cursor = AtomicUsize::new(0);
    pool.execute(|_| loop {
        let start = cursor.fetch_add(1, Ordering::Relaxed) * size;
        if start >= count {
            break;
        }
        f(start..(start + size).min(count));
    });
}

/// A buffer that several threads write at disjoint places.
pub(crate) struct SharedOut<T = f32>(pub(crate) *mut T);
// SAFETY: every user hands each thread a disjoint part (see the callers).
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

/// The AVX2 kernels, when this CPU has them (checked once).
pub fn kernels() -> Option<Avx2> {
    static KERNELS: OnceLock<Option<Avx2>> = OnceLock::new();
    *KERNELS.get_or_init(|| {
        // TOLK_NO_NATIVE_KERNELS=1 forces candle's matmul (benchmarks, bisecting).
        if std::env::var_os("TOLK_NO_NATIVE_KERNELS").is_some() {
            None
        } else {
            Avx2::detect()
        }
    })
}

/// The kernel format for a weight of `dtype`, when there is one here.
fn native_format(dtype: GgmlDType) -> Option<Format> {
    kernels()?;
    match dtype {
        GgmlDType::Q4_1 => Some(Format::Q4_1),
        GgmlDType::Q5_0 => Some(Format::Q5_0),
        GgmlDType::Q8_0 => Some(Format::Q8_0),
        GgmlDType::Q4K => Some(Format::Q4K),
        GgmlDType::Q5K => Some(Format::Q5K),
        GgmlDType::Q6K => Some(Format::Q6K),
        _ => None,
    }
}

/// Whether a CPU weight of `dtype` is multiplied by tolk's own kernels (so
/// the loader need not convert it to a format candle multiplies fast).
pub fn has_native_kernel(dtype: GgmlDType) -> bool {
    native_format(dtype).is_some()
}

/// What a product applies to each output after its bias, while the value
/// is still in a register: an activation fused into the layer before it
/// (one pass over the output fewer, on the product's threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// `x / (1 + exp(-x))` (swish), Marian's feed-forward activation.
    Silu,
}

/// The activation of a gated feed-forward layer, `act(x W_gate) * (x W_up)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateAct {
    /// Llama, Qwen, SmolLM2 (SwiGLU).
    Silu,
    /// Gemma (GeGLU, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// `act(gate) * up`: on the CPU one vectorized pass over two contiguous f32
/// tensors (candle's ops take two, the activation through libm value by
/// value on one thread: a tenth of gemma-3's two-thread prompt time);
/// candle's ops elsewhere.
pub fn gated(gate: &Tensor, up: &Tensor, act: GateAct) -> Result<Tensor> {
    if let (Some(k), true) = (kernels(), gate.dims() == up.dims()) {
        let (gs, gl) = gate.storage_and_layout();
        let (us, ul) = up.storage_and_layout();
        if let (
            (Storage::Cpu(CpuStorage::F32(g)), Some((g0, g1))),
            (Storage::Cpu(CpuStorage::F32(u)), Some((u0, u1))),
        ) = (
            (&*gs, gl.contiguous_offsets()),
            (&*us, ul.contiguous_offsets()),
        ) {
            let n = g1 - g0;
            let mut out = Vec::with_capacity(n);
            k.gated(
                act,
                &g[g0..g1],
                &u[u0..u1],
                &mut out.spare_capacity_mut()[..n],
            );
            // SAFETY: `gated` wrote all n values.
            unsafe { out.set_len(n) };
            return Tensor::from_vec(out, gate.shape(), gate.device());
        }
    }
    let activated = match act {
        GateAct::Silu => candle_nn::ops::silu(gate)?,
        GateAct::GeluTanh => gate.gelu()?,
    };
    activated * up
}

/// A weight matrix `[out, in]` and how it is multiplied.
#[derive(Debug, Clone)]
pub struct QLinear {
    imp: Imp,
}

#[derive(Debug, Clone)]
enum Imp {
    Candle(QMatMul),
    /// Per-feature int8, packed at load ([`int8`]), bias included.
    Int8(Arc<int8::PackedI8>, packed::Kernel),
    /// Dense f32, packed at load ([`dense`]), bias included.
    F32(Arc<dense::PackedF32>, packed::Kernel),
    /// A GGUF weight repacked at load in groups of rows ([`packed`]).
    Packed(Arc<packed::Packed>),
    /// A GGUF weight read in place from the file's map ([`inplace`]).
    InPlace(Arc<inplace::InPlace>),
}

impl QLinear {
    pub fn from_qtensor(t: QTensor) -> Result<Self> {
        Self::from_arc(Arc::new(t))
    }

    /// Shares `t` (e.g. a tied embedding that is also the output head).
    pub fn from_arc(t: Arc<QTensor>) -> Result<Self> {
        let native = match t.shape().dims() {
            &[n, k] if t.device().is_cpu() => native_format(t.dtype())
                .filter(|f| k.is_multiple_of(f.block_values()))
                .map(|format| (format, n, k)),
            _ => None,
        };
        let packed = match native {
            Some((format, n, k)) => Self::packed(format, &t.data()?, n, k, |_| {}),
            None => None,
        };
        let imp = match packed {
            Some(imp) => imp,
            None => Imp::Candle(QMatMul::from_arc(t)?),
        };
        Ok(Self { imp })
    }

    /// A weight repacked for [`packed`]'s kernels (`None` when the memory
    /// for the copy cannot be had, or no kernel runs on this CPU); `done`
    /// hears of each range of `bytes` once it is packed
    /// ([`packed::Packed::pack_releasing`]).
    fn packed(
        format: Format,
        bytes: &[u8],
        n: usize,
        k: usize,
        done: impl Fn(std::ops::Range<usize>),
    ) -> Option<Imp> {
        let kernel = packed::Kernel::detect()?;
        let packed = packed::Packed::pack_releasing(format, kernel, bytes, n, k, done).ok()?;
        Some(Imp::Packed(Arc::new(packed)))
    }

    /// Repacks the `[rows, cols]` blocks of `dtype` in `bytes` for tolk's
    /// kernels, when they take that format on this CPU (else `None`), and
    /// drops `bytes`' pages from memory (the packed copy is all that is
    /// read from now on).
    pub fn from_mapped(
        bytes: MappedBytes,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        let format = native_format(dtype).filter(|f| cols.is_multiple_of(f.block_values()))?;
        if bytes.bytes().len() != format.row_bytes(cols) * rows {
            return None;
        }
        // Each slab's source pages go as soon as it is packed (every byte
        // is reported once, so nothing is left to release after).
        let imp = Self::packed(format, bytes.bytes(), rows, cols, |r| bytes.release_part(r))?;
        Some(Self { imp })
    }

    /// The `[rows, cols]` blocks of `dtype` in `bytes`, multiplied where
    /// they lie by [`inplace`]'s kernels, when those take that format on
    /// this CPU (else `None`): for weights that only ever meet one
    /// activation row (an LLM's output head).
    pub fn in_place(
        bytes: MappedBytes,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        let format = native_format(dtype)?;
        let w = inplace::InPlace::new(format, bytes, rows, cols)?;
        Some(Self {
            imp: Imp::InPlace(Arc::new(w)),
        })
    }

    /// The dense CPU weight `[out, in]` (and bias) quantized to int8 per
    /// output feature and packed for [`int8`]'s GEMM, when this CPU runs it
    /// (AVX2) and `in` is a multiple of 4; else `None`. The result adds the
    /// bias itself.
    pub fn int8(weight: &Tensor, bias: Option<&Tensor>) -> Result<Option<Self>> {
        let packed = Self::pack_dense(weight, bias, 4, int8::PackedI8::pack)?;
        Ok(packed.map(|(p, isa)| Self {
            imp: Imp::Int8(Arc::new(p), isa),
        }))
    }

    /// The dense f32 CPU weight `[out, in]` (and bias) packed for
    /// [`dense`]'s GEMM, when this CPU runs it (AVX2/FMA); else `None`.
    /// Same products in another float order than candle's; adds the bias
    /// itself.
    pub fn f32(weight: &Tensor, bias: Option<&Tensor>) -> Result<Option<Self>> {
        if weight.dtype() != DType::F32 {
            return Ok(None);
        }
        let packed = Self::pack_dense(weight, bias, 1, dense::PackedF32::pack)?;
        Ok(packed.map(|(p, isa)| Self {
            imp: Imp::F32(Arc::new(p), isa),
        }))
    }

    /// `pack(w, n, k, bias)` of a dense CPU weight `[n, k]` with `k` a
    /// multiple of `k_align`, when a kernel runs on this CPU.
    fn pack_dense<P>(
        weight: &Tensor,
        bias: Option<&Tensor>,
        k_align: usize,
        pack: impl Fn(&[f32], usize, usize, Option<&[f32]>) -> P,
    ) -> Result<Option<(P, packed::Kernel)>> {
        let isa = match packed::Kernel::detect() {
            Some(isa) if kernels().is_some() && weight.device().is_cpu() => isa,
            _ => return Ok(None),
        };
        let (n, k) = weight.dims2()?;
        if k == 0 || !k.is_multiple_of(k_align) {
            return Ok(None);
        }
        let bias: Option<Vec<f32>> = bias
            .map(|b| b.to_dtype(DType::F32)?.flatten_all()?.to_vec1())
            .transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != n) {
            candle_core::bail!("bias of {n} features expected");
        }
        // Read in place where the weight is a contiguous f32 CPU tensor: a
        // copy of a tied 58k-token embedding would be 119 MB more at the peak.
        let in_place = {
            let (storage, layout) = weight.storage_and_layout();
            match (&*storage, layout.contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => {
                    Some(pack(&data[start..end], n, k, bias.as_deref()))
                }
                _ => None,
            }
        };
        let packed = match in_place {
            Some(packed) => packed,
            None => {
                let w: Vec<f32> = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                pack(&w, n, k, bias.as_deref())
            }
        };
        Ok(Some((packed, isa)))
    }

    /// Whether this weight can also serve as an embedding table
    /// ([`QLinear::embed`]): an int8 or packed f32 one.
    pub fn can_embed(&self) -> bool {
        matches!(self.imp, Imp::Int8(..) | Imp::F32(..))
    }

    /// The rows `ids` of an int8 weight (dequantized) or of a packed f32
    /// one (exact), shaped `ids` × `in`: an embedding table tied to this
    /// output projection, looked up without an f32 copy of the table. An
    /// error for other weights and for ids out of range.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let (rows, n, k) = match &self.imp {
            Imp::Int8(p, _) => (p.rows(&flat), p.out_features(), p.in_features()),
            Imp::F32(p, _) => (p.rows(&flat), p.out_features(), p.in_features()),
            _ => candle_core::bail!("embedding lookup in a weight that is not packed"),
        };
        let Some(rows) = rows else {
            candle_core::bail!("token id out of range for a vocabulary of {n}")
        };
        let mut dims = ids.dims().to_vec();
        dims.push(k);
        Tensor::from_vec(rows, dims, ids.device())
    }

    /// Whether tolk's own kernel multiplies this weight.
    pub fn is_native(&self) -> bool {
        matches!(
            self.imp,
            Imp::Int8(..) | Imp::F32(..) | Imp::Packed(..) | Imp::InPlace(..)
        )
    }
}

impl QLinear {
    /// `x Wᵀ (+ b)` with `then` applied to every output: inside the kernel
    /// for int8 and packed f32 weights, as a tensor op after it elsewhere.
    pub fn forward_then(&self, x: &Tensor, then: Epilogue) -> Result<Tensor> {
        if let Some(dense) = self.dense() {
            let (k, n) = dense.dims();
            return dense_out(x, k, n, |input, m, out| dense.matmul(input, m, out, then));
        }
        let ys = match &self.imp {
            Imp::Candle(m) => m.forward(x)?,
            Imp::Packed(packed) => packed_forward(&[packed], x)?
                .pop()
                .expect("one weight, one output"),
            Imp::InPlace(w) => in_place_forward(w, x)?,
            Imp::Int8(..) | Imp::F32(..) => unreachable!("taken by QLinear::dense"),
        };
        then.apply(ys)
    }

    /// The weight when it is a packed dense one (int8 or f32).
    fn dense(&self) -> Option<Dense<'_>> {
        match &self.imp {
            Imp::Int8(packed, isa) => Some(Dense::Int8(packed, *isa)),
            Imp::F32(packed, isa) => Some(Dense::F32(packed, *isa)),
            Imp::Candle(_) | Imp::Packed(_) | Imp::InPlace(_) => None,
        }
    }

    /// [`Self::forward_then`], written into the memory of an earlier
    /// result that `reuse` keeps (and that this call then keeps) when it is
    /// a CPU f32 buffer of this layer's width with at least `x`'s rows: a
    /// decoder's output projection writes 15-60 MB of logits every step,
    /// and fresh memory of that size comes from the kernel page by page
    /// (`perf`: 15% of a beam search's time in page faults). Whoever
    /// holds an earlier result sees it overwritten. Layers other than the
    /// packed dense ones (int8, f32) allocate as `forward_then` does.
    pub fn forward_reusing(
        &self,
        x: &Tensor,
        then: Epilogue,
        reuse: &mut Option<Tensor>,
    ) -> Result<Tensor> {
        let Some(dense) = self.dense().filter(|_| x.dtype() == DType::F32) else {
            return self.forward_then(x, then);
        };
        let (k, n) = dense.dims();
        let m = rows_of(x, k)?;
        let mut shape = x.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        if let Some(buf) = reuse.as_ref() {
            let fits = buf.device().is_cpu()
                && x.device().is_cpu()
                && buf.dtype() == DType::F32
                && buf.is_contiguous()
                && matches!(buf.dims2(), Ok((rows, width)) if rows >= m && width == n);
            if fits {
                buf.inplace_op1(&WriteInto { dense, x, m, then })?;
                return buf.narrow(0, 0, m)?.reshape(shape);
            }
        }
        let out = self.forward_then(x, then)?;
        *reuse = Some(out.reshape((m, n))?);
        Ok(out)
    }

    /// `x Wᵀ` for each of `linears`. GGUF weights repacked at load that take
    /// the same input width and activation kind share one quantization of
    /// `x` and one pass of the threads (a layer's q/k/v, its gate and up);
    /// the results are those of [`Module::forward`] one by one, which is
    /// how any other mix runs.
    pub fn forward_all<const N: usize>(linears: [&QLinear; N], x: &Tensor) -> Result<[Tensor; N]> {
        let packed: Vec<&packed::Packed> = linears
            .iter()
            .filter_map(|l| match &l.imp {
                Imp::Packed(p) => Some(&**p),
                _ => None,
            })
            .collect();
        // Packed weights exist only where the kernels were detected.
        let shared = packed.len() == N
            && packed.iter().all(|p| {
                p.in_features() == packed[0].in_features()
                    && packed::is_k_quant(p.format()) == packed::is_k_quant(packed[0].format())
            });
        let outs = if shared && N > 0 {
            packed_forward(&packed, x)?
        } else {
            linears
                .iter()
                .map(|l| l.forward(x))
                .collect::<Result<Vec<_>>>()?
        };
        outs.try_into()
            .map_err(|_| candle_core::Error::Msg("forward_all: output count".into()))
    }
}

impl Epilogue {
    /// The same as a tensor op, for products that do not fuse it.
    pub fn apply(self, ys: Tensor) -> Result<Tensor> {
        match self {
            Self::None => Ok(ys),
            Self::Silu => candle_nn::ops::silu(&ys),
        }
    }
}

impl Module for QLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Epilogue::None)
    }
}

/// `x Wᵢᵀ` for packed weights that take the same input width and
/// activation kind: `x` quantized once, one pass of the threads.
fn packed_forward(weights: &[&packed::Packed], x: &Tensor) -> Result<Vec<Tensor>> {
    let Some(first) = weights.first() else {
        candle_core::bail!("packed_forward: no weights")
    };
    let mut outs = Vec::new();
    with_acts(x, first.in_features(), first.format(), |m, acts| {
        outs = weights
            .iter()
            .map(|w| vec![0f32; m * w.out_features()])
            .collect();
        let mut parts: Vec<(&packed::Packed, &mut [f32])> = weights
            .iter()
            .zip(outs.iter_mut())
            .map(|(w, out)| (*w, out.as_mut_slice()))
            .collect();
        packed::Packed::matmul_many(&mut parts, acts);
    })?;
    outs.into_iter()
        .zip(weights)
        .map(|(out, w)| shaped_like(out, x, w.out_features()))
        .collect()
}

/// `x Wᵀ` of a weight read in place.
fn in_place_forward(w: &inplace::InPlace, x: &Tensor) -> Result<Tensor> {
    let mut out = Vec::new();
    with_acts(x, w.in_features(), w.format(), |m, acts| {
        out = vec![0f32; m * w.out_features()];
        w.matmul(acts, &mut out);
    })?;
    shaped_like(out, x, w.out_features())
}

/// Calls `f` with the rows of `x` (`k` features each) and those rows
/// quantized as weights of `format` take them (per 256 values for the
/// K-quants, per 32 otherwise).
fn with_acts(
    x: &Tensor,
    k: usize,
    format: Format,
    f: impl FnOnce(usize, packed::Acts),
) -> Result<()> {
    let Some(kernels) = kernels() else {
        candle_core::bail!("native kernels vanished")
    };
    let m = rows_of(x, k)?;
    let input: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    if packed::is_k_quant(format) {
        f(m, packed::Acts::K(&kernels.quantize_k(&input, m, k)));
    } else {
        f(m, packed::Acts::B32(&kernels.quantize(&input, m, k)));
    }
    Ok(())
}

/// How many rows of `k` features `x` holds (an error when its last
/// dimension is not `k`).
fn rows_of(x: &Tensor, k: usize) -> Result<usize> {
    let dims = x.dims();
    match dims.last() {
        Some(&last) if last == k => Ok(x.elem_count() / k),
        _ => candle_core::bail!("linear layer expects {k} input features, got shape {dims:?}"),
    }
}

/// Row-major results of `n` features per row of `x`, in `x`'s shape (the
/// last dimension `n`), device and dtype.
fn shaped_like(out: Vec<f32>, x: &Tensor, n: usize) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Tensor::from_vec(out, shape, x.device())?.to_dtype(x.dtype())
}

/// `x Wᵀ + b` of a packed dense weight (`k` in, `n` out), in `x`'s shape
/// and dtype: `matmul(input, m, out)` writes all `m × n` values of `out`.
fn dense_out(
    x: &Tensor,
    k: usize,
    n: usize,
    matmul: impl FnOnce(&[f32], usize, Uninit),
) -> Result<Tensor> {
    let m = rows_of(x, k)?;
    let mut out = Vec::with_capacity(m * n);
    with_input(x, |input| {
        matmul(input, m, &mut out.spare_capacity_mut()[..m * n])
    })?;
    // SAFETY: `matmul` wrote all m × n values.
    unsafe { out.set_len(m * n) };
    shaped_like(out, x, n)
}

/// Where a packed product writes its results.
type Uninit<'a> = &'a mut [std::mem::MaybeUninit<f32>];

/// Calls `f` with `x`'s values as one row-major f32 slice. A contiguous f32
/// CPU input is read in place: an encoder batch's feed-forward input is
/// 18 MB that a copy would fault in anew.
fn with_input(x: &Tensor, f: impl FnOnce(&[f32])) -> Result<()> {
    let (storage, layout) = x.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => f(&data[start..end]),
        _ => {
            drop(storage);
            f(&x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }
    }
    Ok(())
}

/// A packed dense weight ([`QLinear::dense`]) and the kernel it runs on.
#[derive(Clone, Copy)]
enum Dense<'a> {
    Int8(&'a int8::PackedI8, packed::Kernel),
    F32(&'a dense::PackedF32, packed::Kernel),
}

impl Dense<'_> {
    /// `(in, out)` features.
    fn dims(self) -> (usize, usize) {
        match self {
            Self::Int8(p, _) => (p.in_features(), p.out_features()),
            Self::F32(p, _) => (p.in_features(), p.out_features()),
        }
    }

    /// `input Wᵀ + b` of `m` rows, `then` applied, into all of `out`.
    fn matmul(self, input: &[f32], m: usize, out: Uninit, then: Epilogue) {
        match self {
            Self::Int8(p, isa) => p.matmul_uninit(isa, input, m, out, then),
            Self::F32(p, isa) => p.matmul_uninit(isa, input, m, out, then),
        }
    }
}

/// [`QLinear::forward_reusing`]'s write into the buffer it keeps.
struct WriteInto<'a> {
    dense: Dense<'a>,
    x: &'a Tensor,
    m: usize,
    then: Epilogue,
}

impl candle_core::InplaceOp1 for WriteInto<'_> {
    fn name(&self) -> &'static str {
        "qlinear-write-into"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &candle_core::Layout) -> Result<()> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("forward_reusing: the kept buffer is not contiguous f32");
        };
        let n = self.dense.dims().1;
        let Some(out) = data[start..end].get_mut(..self.m * n) else {
            candle_core::bail!("forward_reusing: the kept buffer is too small");
        };
        // SAFETY: f32 and MaybeUninit<f32> share their layout, and only
        // initialized values are written into the slice.
        let out: Uninit = unsafe { &mut *(out as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
        with_input(self.x, |input| {
            self.dense.matmul(input, self.m, out, self.then)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Deterministic pseudo-random values in [-1, 1) with some larger ones,
    /// as real activations have.
    pub(super) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Our kernel against candle's dequantized weights in f32: the only
    /// difference left is the 8-bit rounding of the activations.
    fn check(dtype: GgmlDType, m: usize, n: usize, k: usize) {
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q.dequantize(&dev).unwrap();
        let x = Tensor::from_vec(values(m * k, 2), (1, m, k), &dev).unwrap();
        let lin = QLinear::from_qtensor(q).unwrap();
        assert!(lin.is_native(), "{dtype:?} should use the native kernel");
        let ours = lin.forward(&x).unwrap();
        assert_eq!(ours.dims(), &[1, m, n]);
        let reference = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
        let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
        let scale = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
        let worst = ours
            .iter()
            .zip(&reference)
            .fold(0f32, |a, (o, r)| a.max((o - r).abs()));
        // 8-bit activations: errors of about 1% of the output's range, twice
        // that for the K-quants, whose activations share one scale per 256
        // values (ggml's Q8_K, as llama.cpp multiplies them) and so lose more
        // precision next to this test's large values (one in 97).
        let k_quant = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K);
        let tolerance = if k_quant { 0.04 } else { 0.02 };
        assert!(
            worst <= tolerance * scale,
            "{dtype:?} m={m}: worst error {worst} vs output scale {scale}"
        );
        // And the error is not systematic: the results correlate almost perfectly.
        let dot: f64 = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a * b) as f64)
            .sum();
        let na: f64 = ours.iter().map(|a| (a * a) as f64).sum();
        let nb: f64 = reference.iter().map(|b| (b * b) as f64).sum();
        assert!(
            dot / (na.sqrt() * nb.sqrt()) > 0.9995,
            "{dtype:?} m={m}: poor correlation"
        );
    }

    /// Weights read in place ([`QLinear::in_place`], ggml's own blocks) give
    /// the packed kernels' results up to the order of the float additions
    /// (the integer sums per block are the same): one and several activation
    /// rows, an odd count of Q8_0 blocks, rows that do not fill a range of
    /// the threads. Other formats and wrong sizes are refused.
    #[test]
    fn in_place_weights_match_the_packed_kernels() {
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        for (dtype, m, n, k) in [
            (GgmlDType::Q6K, 1, 300, 512),
            (GgmlDType::Q6K, 3, 70, 256),
            (GgmlDType::Q8_0, 1, 300, 96),
            (GgmlDType::Q8_0, 2, 129, 640),
        ] {
            let w = Tensor::from_vec(values(n * k, 3), (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let raw = q.data().unwrap().into_owned();
            let len = raw.len();
            let short = MappedBytes::new(Arc::new(raw.clone()), 0, len - 1).unwrap();
            let bytes = MappedBytes::new(Arc::new(raw), 0, len).unwrap();
            assert!(QLinear::in_place(short, dtype, n, k).is_none());
            let in_place = QLinear::in_place(bytes, dtype, n, k).expect("a kernel reads it");
            assert!(in_place.is_native());
            let x = Tensor::from_vec(values(m * k, 4), (1, m, k), &dev).unwrap();
            let ours: Vec<f32> = in_place
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let packed = QLinear::from_qtensor(q).unwrap().forward(&x).unwrap();
            let packed: Vec<f32> = packed.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(ours.len(), m * n);
            let scale = packed.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (i, (a, b)) in ours.iter().zip(&packed).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{dtype:?} m={m} at {i}: {a} vs {b}"
                );
            }
        }
        let q = QTensor::quantize(
            &Tensor::zeros((8, 256), DType::F32, &dev).unwrap(),
            GgmlDType::Q4K,
        )
        .unwrap();
        let raw = q.data().unwrap().into_owned();
        let len = raw.len();
        let bytes = MappedBytes::new(Arc::new(raw), 0, len).unwrap();
        assert!(QLinear::in_place(bytes, GgmlDType::Q4K, 8, 256).is_none());
    }

    /// `forward_all` gives each weight's own `forward`, bit for bit: shared
    /// (K-quants of one width, one pass over all groups, ranges that span
    /// two weights) and one by one (a Q8_0 among K-quants, another width).
    #[test]
    fn forward_all_equals_forward_one_by_one() {
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        let linear = |dtype, n, k, seed| {
            let w = Tensor::from_vec(values(n * k, seed), (n, k), &dev).unwrap();
            QLinear::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap()
        };
        let q = linear(GgmlDType::Q4K, 520, 512, 1);
        let k = linear(GgmlDType::Q6K, 72, 512, 2);
        let v = linear(GgmlDType::Q5K, 130, 512, 3);
        let q8 = linear(GgmlDType::Q8_0, 64, 512, 4);
        let wide = linear(GgmlDType::Q4K, 40, 768, 5);
        for m in [1, 5] {
            let x = Tensor::from_vec(values(m * 512, 6), (1, m, 512), &dev).unwrap();
            let same = |a: &Tensor, b: &QLinear| {
                let b = b.forward(&x).unwrap();
                assert_eq!(a.dims(), b.dims());
                let (a, b) = (
                    a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
            };
            let [a, b, c] = QLinear::forward_all([&q, &k, &v], &x).unwrap();
            same(&a, &q);
            same(&b, &k);
            same(&c, &v);
            let [a, b] = QLinear::forward_all([&q, &q8], &x).unwrap();
            same(&a, &q);
            same(&b, &q8);
            let x_wide = Tensor::from_vec(values(m * 768, 7), (1, m, 768), &dev).unwrap();
            assert!(QLinear::forward_all([&q, &wide], &x_wide).is_err());
        }
    }

    #[test]
    fn forward_reusing_writes_the_kept_buffer_and_equals_forward() {
        let dev = Device::Cpu;
        let (n, k) = (40, 64);
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &dev).unwrap();
        let bias = Tensor::from_vec(values(n, 2), n, &dev).unwrap();
        let layers = [
            QLinear::int8(&w, Some(&bias)).unwrap(),
            QLinear::f32(&w, Some(&bias)).unwrap(),
        ];
        if layers.iter().all(Option::is_none) {
            eprintln!("SKIPPED: no packed dense kernels (AVX2/FMA) on this CPU");
            return;
        }
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for layer in layers.iter().flatten() {
            let mut kept = None;
            // Rows shrink as sentences finish, then a larger batch comes.
            let mut earlier: Vec<Tensor> = Vec::new();
            for (step, m) in [5, 5, 3, 7].into_iter().enumerate() {
                let x = Tensor::from_vec(values(m * k, 10 + step as u64), (m, 1, k), &dev).unwrap();
                let got = layer
                    .forward_reusing(&x, Epilogue::None, &mut kept)
                    .unwrap();
                let want = layer.forward(&x).unwrap();
                assert_eq!(got.dims(), want.dims());
                assert_eq!(flat(&got), flat(&want), "step {step}, {m} rows");
                earlier.push(got);
            }
            // Steps 1 and 2 wrote into step 0's memory; step 3 needed more
            // rows and took new memory, which it keeps.
            assert_eq!(flat(&earlier[0])[..3 * n], flat(&earlier[2])[..]);
            assert_ne!(flat(&earlier[0])[..3 * n], flat(&earlier[3])[..3 * n]);
            assert_eq!(kept.unwrap().dims2().unwrap(), (7, n));
        }
    }

    #[test]
    fn q4_1_matches_dense_reference() {
        for m in [1, 3, 4, 9] {
            check(GgmlDType::Q4_1, m, 70, 96);
        }
        check(GgmlDType::Q4_1, 5, 300, 1024);
    }

    #[test]
    fn q5_0_matches_dense_reference() {
        for m in [1, 4, 7] {
            check(GgmlDType::Q5_0, m, 70, 96);
        }
        check(GgmlDType::Q5_0, 6, 300, 1024);
    }

    #[test]
    fn q8_0_matches_dense_reference() {
        for m in [1, 2, 8] {
            check(GgmlDType::Q8_0, m, 70, 96);
        }
        check(GgmlDType::Q8_0, 5, 300, 1024);
    }

    #[test]
    fn q4_1_agrees_with_candle_kernel() {
        // candle's own (scalar) Q4_1 path also multiplies with Q8_1 activations:
        // the two must agree to float rounding.
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        let w = Tensor::from_vec(values(64 * 128, 3), (64, 128), &dev).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap());
        let x = Tensor::from_vec(values(3 * 128, 4), (3, 128), &dev).unwrap();
        let ours: Vec<f32> = QLinear::from_arc(q.clone())
            .unwrap()
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = QMatMul::from_arc(q)
            .unwrap()
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // They differ only in how the block sums are rounded to f16 (ggml
        // rounds sum × scale once; candle rounds both factors and the product).
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-3 * scale, "{a} vs {b} (scale {scale})");
        }
    }

    #[test]
    fn q4_k_matches_dense_reference() {
        for m in [1, 3, 4, 9] {
            check(GgmlDType::Q4K, m, 70, 256);
        }
        check(GgmlDType::Q4K, 5, 300, 1536);
    }

    #[test]
    fn q5_k_matches_dense_reference() {
        for m in [1, 4, 7] {
            check(GgmlDType::Q5K, m, 70, 512);
        }
        check(GgmlDType::Q5K, 6, 300, 1536);
    }

    #[test]
    fn q6_k_matches_dense_reference() {
        for m in [1, 2, 5] {
            check(GgmlDType::Q6K, m, 70, 512);
        }
        check(GgmlDType::Q6K, 5, 300, 1536);
    }

    #[test]
    fn k_quant_prompts_cross_activation_bands() {
        // 79 rows of 4096 values are more than one cache band of quantized
        // activations (256 KiB: 64 rows), so the prompt kernel runs a full
        // band and then a partial one through its 8-, 4- and 1-row tiles.
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            check(dtype, 79, 12, 4096);
        }
    }

    #[test]
    fn k_quants_agree_with_candle_kernel() {
        // Both multiply K-quants with Q8_K activations (one scale per 256
        // values), so they agree to float rounding (and the rare activation
        // halfway between two steps: ggml rounds ties to even, candle away
        // from zero).
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            let w = Tensor::from_vec(values(64 * 512, 7), (64, 512), &dev).unwrap();
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let x = Tensor::from_vec(values(3 * 512, 8), (3, 512), &dev).unwrap();
            let run = |t: &dyn Module| -> Vec<f32> {
                t.forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let ours = run(&QLinear::from_arc(q.clone()).unwrap());
            let theirs = run(&QMatMul::from_arc(q).unwrap());
            let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a - b).abs() <= 2e-3 * scale,
                    "{dtype:?}: {a} vs {b} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn other_formats_and_shapes_fall_back_to_candle() {
        let dev = Device::Cpu;
        let w = Tensor::from_vec(values(32 * 256, 5), (32, 256), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q2K).unwrap();
        assert!(!QLinear::from_qtensor(q).unwrap().is_native());
        let f = QTensor::quantize(&w, GgmlDType::F32).unwrap();
        assert!(!QLinear::from_qtensor(f).unwrap().is_native());
    }

    #[test]
    fn wrong_input_width_is_an_error() {
        if kernels().is_none() {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        }
        let dev = Device::Cpu;
        let w = Tensor::from_vec(values(8 * 64, 6), (8, 64), &dev).unwrap();
        let lin = QLinear::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let x = Tensor::zeros((2, 32), DType::F32, &dev).unwrap();
        assert!(lin.forward(&x).is_err());
    }

    /// The SiLU fused into the int8 and f32 kernels' stores gives candle's
    /// `x / (1 + exp(-x))` of the plain product, within the vector exp's
    /// few ulp, on every kernel of this CPU, at every tile height and a
    /// ragged last block; and through `QLinear::forward_then` it is the
    /// tensor op's result to the same tolerance.
    #[test]
    fn gated_matches_candles_ops() {
        let dev = Device::Cpu;
        // 8-lane body plus a tail; values up to ±8 and the extremes.
        let mut g = values(203, 11);
        g.extend([-100.0, -20.0, -0.0, 0.0, 20.0, 100.0]);
        let u = values(g.len(), 12);
        let shape = (1, g.len());
        let gate = Tensor::from_vec(g, shape, &dev).unwrap();
        let up = Tensor::from_vec(u, shape, &dev).unwrap();
        for (act, want) in [
            (GateAct::Silu, candle_nn::ops::silu(&gate).unwrap()),
            (GateAct::GeluTanh, gate.gelu().unwrap()),
        ] {
            let want: Vec<f32> = (want * &up)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let got: Vec<f32> = gated(&gate, &up, act)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                    "{act:?} value {i}: {a} against candle's {b}"
                );
            }
        }
        // Not contiguous: candle's ops, same values.
        let t = gate.t().unwrap();
        let ut = up.t().unwrap();
        let got = gated(&t, &ut, GateAct::Silu).unwrap();
        let want = (candle_nn::ops::silu(&t).unwrap() * &ut).unwrap();
        assert_eq!(got.dims(), want.dims());
    }

    #[test]
    fn fused_silu_is_silu_of_the_product() {
        use std::mem::MaybeUninit;
        let kernels = packed::Kernel::all_here();
        if kernels.is_empty() || super::kernels().is_none() {
            eprintln!("SKIPPED: no AVX2 kernels on this CPU");
            return;
        }
        let close = |got: f32, want: f32, what: &str| {
            let tol = 4.0 * f32::EPSILON * want.abs() + 1e-30;
            assert!((got - want).abs() <= tol, "{what}: {got} vs {want}");
        };
        let (n, k) = (37, 64);
        // Large weights, so that products reach well into both tails.
        let w: Vec<f32> = values(n * k, 11).iter().map(|v| v * 3.0).collect();
        let bias = values(n, 12);
        let int8 = int8::PackedI8::pack(&w, n, k, Some(&bias));
        let f32s = dense::PackedF32::pack(&w, n, k, Some(&bias));
        for isa in kernels {
            for m in 1..=9 {
                let x = values(m * k, 13 + m as u64);
                for name in ["int8", "f32"] {
                    let run = |then: Epilogue| {
                        let mut out = vec![MaybeUninit::new(f32::NAN); m * n];
                        match name {
                            "int8" => int8.matmul_uninit(isa, &x, m, &mut out, then),
                            _ => f32s.matmul_uninit(isa, &x, m, &mut out, then),
                        }
                        // SAFETY: initialized (NaN) before the product.
                        out.into_iter()
                            .map(|v| unsafe { v.assume_init() })
                            .collect::<Vec<f32>>()
                    };
                    let plain = run(Epilogue::None);
                    let fused = run(Epilogue::Silu);
                    assert!(plain.iter().any(|v| *v < -8.0) && plain.iter().any(|v| *v > 8.0));
                    for (i, (&p, &s)) in plain.iter().zip(&fused).enumerate() {
                        close(
                            s,
                            p / (1.0 + (-p).exp()),
                            &format!("{name} {isa:?} m={m} at {i}"),
                        );
                    }
                }
            }
        }
        let dev = Device::Cpu;
        let wt = Tensor::from_vec(w, (n, k), &dev).unwrap();
        let bt = Tensor::from_vec(bias, n, &dev).unwrap();
        let x = Tensor::from_vec(values(3 * k, 40), (3, k), &dev).unwrap();
        let lin = QLinear::f32(&wt, Some(&bt)).unwrap().unwrap();
        let want: Vec<f32> = candle_nn::ops::silu(&lin.forward(&x).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let got: Vec<f32> = lin
            .forward_then(&x, Epilogue::Silu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            close(g, w, &format!("forward_then at {i}"));
        }
    }
}

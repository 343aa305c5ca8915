//! An 8-bit integer GEMM for the linear layers of `--quantize q8` (Marian).
//!
//! Weights are quantized once, at load, to int8 with one scale per output
//! feature (as CTranslate2's int8 models are) and packed into the layout the
//! microkernel reads: blocks of [`COLS`] output features, four input values
//! of each feature side by side, so that one 32-byte load holds four inputs
//! of eight features. Activations are quantized per row at each product
//! (one scale per row). Products accumulate in 32-bit integers over the
//! whole row and are scaled once per output, where the Q8_0 kernels of
//! [`super::avx2`] convert and scale every 32 values; and each register
//! tile (4 activation rows × 16 features on 256 bits, 8 rows × 32 features
//! on 512) reads its weights once for all its rows and its activations once
//! for all its features, which is what many-row products (batches, beams,
//! encoder inputs) need. The next block's weights are prefetched while a
//! tile runs.
//!
//! The inner product is `vpdpbusd` (unsigned × signed bytes into 32-bit
//! sums, one instruction) where the CPU has it — on 512-bit registers with
//! AVX-512 VNNI (a whole block of 16 features × 4 inputs per instruction),
//! else on 256-bit ones with AVX-VNNI — and AVX2's `vpmaddubsw` +
//! `vpmaddwd` elsewhere (with ggml's sign trick, so no pair of products
//! saturates); chosen at run time: the [`Kernel`] that `Kernel::detect`
//! picks for the GGUF kernels too (`TOLK_INT8_ISA=avx2|avxvnni` caps both).
//! The output is row-major, bias added: no transpose afterwards.

use super::packed::Kernel;
use super::{Epilogue, SharedOut};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Output features per packed block: two vectors of eight 32-bit sums.
pub const COLS: usize = 16;

/// Activation rows per register tile: 4 × 2 accumulators, 2 weight vectors
/// and a broadcast fit AVX2's sixteen registers.
const ROWS: usize = 4;

/// Activation rows per register tile of the 512-bit kernel: one
/// accumulator per row holds the whole block, so eight rows read each
/// weight vector (AVX-512 has 32 registers; more rows measured no faster).
const ROWS_512: usize = 8;

/// Bytes of quantized activations walked per band: the band's rows stay in
/// the L2 cache while every weight block of a thread passes over them.
const BAND_BYTES: usize = 256 << 10;

/// Whether a tile takes two blocks of features side by side (only the
/// 512-bit kernel has the registers for it).
fn pairs(isa: Kernel) -> bool {
    isa == Kernel::Avx512Vnni
}

/// Activation rows per register tile.
fn tile_rows(isa: Kernel) -> usize {
    match isa {
        Kernel::Avx512Vnni => ROWS_512,
        _ => ROWS,
    }
}

/// A weight matrix `[n, k]` in int8, packed for the kernel, with its bias.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// `[n / COLS blocks][k / 4][COLS][4]`, the last block padded with zeros.
    packed: Vec<i8>,
    /// Per output feature (padded to whole blocks): max |w| / 127.
    scales: Vec<f32>,
    /// Per output feature: 128 × Σ w, what VNNI's unsigned activations
    /// (value + 128) add to each sum.
    offsets: Vec<i32>,
    /// Per output feature, zeros when the layer has none.
    bias: Vec<f32>,
}

impl PackedI8 {
    /// Quantizes and packs `w` (`n` rows of `k` values, `k` a multiple of 4).
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert!(
            k.is_multiple_of(4) && w.len() == n * k,
            "weights are not [n, k]"
        );
        assert!(bias.is_none_or(|b| b.len() == n), "bias is not [n]");
        let padded = n.next_multiple_of(COLS);
        let mut packed = vec![0i8; padded * k];
        let mut scales = vec![0f32; padded];
        let mut offsets = vec![0i32; padded];
        let mut bias_out = vec![0f32; padded];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (scale, inv) = scale_for(row.iter().fold(0f32, |m, v| m.max(v.abs())));
            let (block, col) = (j / COLS, j % COLS);
            let base = block * COLS * k;
            let mut sum = 0i32;
            for (i, v) in row.iter().enumerate() {
                let q = to_i8(v * inv);
                packed[base + (i / 4) * COLS * 4 + col * 4 + i % 4] = q;
                sum += q as i32;
            }
            scales[j] = scale;
            offsets[j] = 128 * sum;
            if let Some(b) = bias {
                bias_out[j] = b[j];
            }
        }
        Self {
            n,
            k,
            packed,
            scales,
            offsets,
            bias: bias_out,
        }
    }

    /// Weight rows `ids` dequantized (`[ids.len(), k]`): an embedding table
    /// that is also the output projection, looked up without an f32 copy.
    /// `None` when an id is out of range.
    pub fn rows(&self, ids: &[u32]) -> Option<Vec<f32>> {
        let k = self.k;
        let mut out = Vec::with_capacity(ids.len() * k);
        for &id in ids {
            let j = id as usize;
            if j >= self.n {
                return None;
            }
            let (block, col, scale) = (j / COLS, j % COLS, self.scales[j]);
            let base = &self.packed[block * COLS * k..(block + 1) * COLS * k];
            for group in base.chunks_exact(COLS * 4) {
                out.extend(
                    group[col * 4..col * 4 + 4]
                        .iter()
                        .map(|&q| q as f32 * scale),
                );
            }
        }
        Some(out)
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `out = x Wᵀ + bias` for `m` rows of `x` (`[m, k]`, row-major), `out`
    /// `[m, n]`; threads share the blocks of output features.
    pub fn matmul(&self, isa: Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and `matmul_uninit`
        // only writes initialized values.
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.matmul_uninit(isa, x, m, out, Epilogue::None)
    }

    /// [`Self::matmul`] into memory not yet initialized (a fresh `Vec`'s
    /// spare capacity: no zeroing pass over a buffer that every output
    /// overwrites), `then` applied to each output; every one of the
    /// `m × n` values is written.
    pub fn matmul_uninit(
        &self,
        isa: Kernel,
        x: &[f32],
        m: usize,
        out: &mut [MaybeUninit<f32>],
        then: Epilogue,
    ) {
        assert!(x.len() == m * self.k && out.len() == m * self.n, "shapes");
        if m == 0 || self.n == 0 {
            return;
        }
        if self.k == 0 {
            for row in out.chunks_exact_mut(self.n) {
                for (o, &b) in row.iter_mut().zip(&self.bias) {
                    o.write(match then {
                        Epilogue::None => b,
                        Epilogue::Silu => b / (1.0 + (-b).exp()),
                    });
                }
            }
            return;
        }
        let acts = quantize_rows(isa, x, m, self.k);
        let blocks = self.n.div_ceil(COLS);
        let out_ptr = SharedOut(out.as_mut_ptr().cast::<f32>());
        // Ranges of whole pairs of blocks where a tile takes two.
        let align = if pairs(isa) { 2 } else { 1 };
        super::for_ranges(blocks, m * self.n * self.k, align, |range| {
            // SAFETY: `isa` was detected on this CPU; each range of blocks
            // writes only its own output features (disjoint across ranges),
            // and `out` holds m × n values (asserted above).
            unsafe { self.blocks(isa, &acts, range, &out_ptr, then) }
        });
    }

    /// Output features of blocks `range` for every activation row, in
    /// bands of rows that stay in cache.
    ///
    /// # Safety
    /// `isa` runs on this CPU; nobody else writes these features of `out`.
    unsafe fn blocks(
        &self,
        isa: Kernel,
        acts: &Rows,
        range: std::ops::Range<usize>,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let rows = tile_rows(isa);
        let band = (BAND_BYTES / self.k.max(1)).max(rows) / rows * rows;
        for first in (0..acts.m).step_by(band) {
            let last = (first + band).min(acts.m);
            let mut block = range.start;
            while block < range.end {
                let pair = pairs(isa) && block + 1 < range.end;
                let mut row = first;
                while row < last {
                    let tile = (last - row).min(rows);
                    if pair {
                        self.tiles::<2>(isa, acts, block, row..row + tile, out, then);
                    } else {
                        self.tiles::<1>(isa, acts, block, row..row + tile, out, then);
                    }
                    row += tile;
                }
                block += if pair { 2 } else { 1 };
            }
        }
    }

    /// A tile of activation rows `rows` × `B` blocks from `block` on.
    #[inline]
    unsafe fn tiles<const B: usize>(
        &self,
        isa: Kernel,
        acts: &Rows,
        block: usize,
        rows: std::ops::Range<usize>,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let row = rows.start;
        match rows.len() {
            8 => self.tile::<8, B>(isa, acts, block, row, out, then),
            7 => self.tile::<7, B>(isa, acts, block, row, out, then),
            6 => self.tile::<6, B>(isa, acts, block, row, out, then),
            5 => self.tile::<5, B>(isa, acts, block, row, out, then),
            4 => self.tile::<4, B>(isa, acts, block, row, out, then),
            3 => self.tile::<3, B>(isa, acts, block, row, out, then),
            2 => self.tile::<2, B>(isa, acts, block, row, out, then),
            _ => self.tile::<1, B>(isa, acts, block, row, out, then),
        }
    }

    /// One register tile: activation rows `row..row + R` × the features of
    /// blocks `block..block + B` (the 256-bit kernels take the blocks one
    /// after the other).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn tile<const R: usize, const B: usize>(
        &self,
        isa: Kernel,
        acts: &Rows,
        block: usize,
        row: usize,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let w = self.packed.as_ptr().add(block * COLS * self.k);
        let stride = COLS * self.k;
        let a: [*const u8; R] = std::array::from_fn(|r| acts.q.as_ptr().add((row + r) * self.k));
        let steps = self.k / 4;
        let row_scales: [f32; R] = std::array::from_fn(|r| acts.scales[row + r]);
        let to: [StoreTo; B] = std::array::from_fn(|b| {
            let col = (block + b) * COLS;
            StoreTo {
                out: out.ptr().add(row * self.n + col),
                stride: self.n,
                width: (self.n - col).min(COLS),
                scales: self.scales.as_ptr().add(col),
                offsets: (isa != Kernel::Avx2).then(|| self.offsets.as_ptr().add(col)),
                bias: self.bias.as_ptr().add(col),
                silu: then == Epilogue::Silu,
            }
        });
        match isa {
            Kernel::Avx512Vnni => tile_512::<R, B>(w, stride, a, steps, to, row_scales),
            Kernel::AvxVnni => tile_vnni::<R, B>(w, stride, a, steps, to, row_scales),
            Kernel::Avx2 => tile_avx2::<R, B>(w, stride, a, steps, to, row_scales),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tile<const R: usize, const B: usize>(
        &self,
        _: Kernel,
        _: &Rows,
        _: usize,
        _: usize,
        _: &SharedOut,
        _: Epilogue,
    ) {
        unreachable!("no Kernel is detected off x86_64")
    }
}

/// Activation rows quantized to 8 bits, one scale per row: signed bytes for
/// AVX2, value + 128 (unsigned) for VNNI.
struct Rows {
    m: usize,
    q: Vec<u8>,
    scales: Vec<f32>,
}

fn quantize_rows(isa: Kernel, x: &[f32], m: usize, k: usize) -> Rows {
    let mut rows = Rows {
        m,
        q: vec![0; m * k],
        scales: vec![0.0; m],
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `isa` was detected on this CPU, which therefore has AVX2.
    unsafe {
        quantize_rows_avx2(isa, x, k, &mut rows)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, x, k);
    rows
}

/// The body of [`quantize_rows`]: the max and the rounding eight values
/// at a time, 32 bytes written at a time (ggml's `quantize_row_q8_0` way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_rows_avx2(isa: Kernel, x: &[f32], k: usize, rows: &mut Rows) {
    let flip = if isa == Kernel::Avx2 { 0 } else { 0x80u8 };
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    for ((xs, qs), scale) in x
        .chunks_exact(k)
        .zip(rows.q.chunks_exact_mut(k))
        .zip(&mut rows.scales)
    {
        let eights = xs.chunks_exact(8);
        let tail = eights.remainder();
        let mut vmax = _mm256_setzero_ps();
        for c in eights {
            vmax = _mm256_max_ps(vmax, _mm256_and_ps(abs_mask, _mm256_loadu_ps(c.as_ptr())));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
        let (d, inv) = scale_for(lanes.iter().chain(tail).fold(0f32, |m, v| m.max(v.abs())));
        let vinv = _mm256_set1_ps(inv);
        let mut i = 0;
        while i + 32 <= k {
            // Scaled, kept within ±127, rounded to nearest-even (the
            // default rounding of `cvtps`), packed 32 → 16 → 8 bits.
            let q: [__m256i; 4] = std::array::from_fn(|j| {
                let v = _mm256_mul_ps(_mm256_loadu_ps(xs.as_ptr().add(i + 8 * j)), vinv);
                _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi))
            });
            let bytes = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let bytes = _mm256_permutevar8x32_epi32(bytes, order);
            let bytes = _mm256_xor_si256(bytes, _mm256_set1_epi8(flip as i8));
            _mm256_storeu_si256(qs.as_mut_ptr().add(i) as *mut __m256i, bytes);
            i += 32;
        }
        for (q, v) in qs[i..].iter_mut().zip(&xs[i..]) {
            *q = (to_i8(v * inv) as u8) ^ flip;
        }
        *scale = d;
    }
}

/// The scale of a row whose largest magnitude is `amax` (it maps to 127),
/// and its inverse (0 for an all-zero row).
fn scale_for(amax: f32) -> (f32, f32) {
    let scale = amax / 127.0;
    (scale, if scale > 0.0 { 1.0 / scale } else { 0.0 })
}

/// `x` rounded to the nearest integer (ties to even) within ±127, NaN to 0.
/// Adding and taking away 1.5 × 2²³ rounds as the FPU does, in two adds
/// instead of a libm `rintf` call (most of a load's time otherwise).
#[inline(always)]
fn to_i8(x: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-127.0, 127.0);
    // `as` maps NaN to 0.
    ((x + MAGIC) - MAGIC) as i8
}

/// 32-bit sums of `R` activation rows with the 16 features of a block,
/// `steps` groups of four inputs, with `vpdpbusd`, prefetching the block
/// `stride` bytes on.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
#[inline]
unsafe fn dot_vnni<const R: usize>(
    w: *const i8,
    stride: usize,
    a: [*const u8; R],
    steps: usize,
) -> [[__m256i; 2]; R] {
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let w0 = _mm256_loadu_si256(w.add(s * 64) as *const __m256i);
        let w1 = _mm256_loadu_si256(w.add(s * 64 + 32) as *const __m256i);
        prefetch(w.wrapping_add(stride + s * 64));
        for r in 0..R {
            let x = _mm256_set1_epi32(std::ptr::read_unaligned(a[r].add(4 * s) as *const i32));
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], x, w0);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], x, w1);
        }
    }
    acc
}

/// A 512-bit tile: [`dot_vnni`] over `B` blocks `stride` bytes apart, on
/// 512-bit registers — one vector holds a whole block's four inputs of
/// sixteen features, so each row needs one `vpdpbusd` per block and step,
/// and each broadcast activation word serves `B` blocks — then stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_512<const R: usize, const B: usize>(
    w: *const i8,
    stride: usize,
    a: [*const u8; R],
    steps: usize,
    to: [StoreTo; B],
    row_scales: [f32; R],
) {
    let mut acc = [[_mm512_setzero_si512(); R]; B];
    for s in 0..steps {
        let wv: [__m512i; B] = std::array::from_fn(|b| {
            _mm512_loadu_si512(w.add(b * stride + s * 64) as *const __m512i)
        });
        for b in 0..B {
            prefetch(w.wrapping_add((B + b) * stride + s * 64));
        }
        for r in 0..R {
            let x = _mm512_set1_epi32(std::ptr::read_unaligned(a[r].add(4 * s) as *const i32));
            for b in 0..B {
                acc[b][r] = _mm512_dpbusd_epi32(acc[b][r], x, wv[b]);
            }
        }
    }
    for (block, to) in acc.into_iter().zip(to) {
        let sums = block.map(|v| [_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)]);
        store::<R>(sums, to, row_scales);
    }
}

/// A 256-bit tile: [`dot_vnni`] of each block, stored; one function with
/// the kernel inlined, so the sums stay in registers on their way out.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn tile_vnni<const R: usize, const B: usize>(
    w: *const i8,
    stride: usize,
    a: [*const u8; R],
    steps: usize,
    to: [StoreTo; B],
    row_scales: [f32; R],
) {
    for (b, to) in to.into_iter().enumerate() {
        store::<R>(
            dot_vnni::<R>(w.add(b * stride), stride, a, steps),
            to,
            row_scales,
        );
    }
}

/// [`tile_vnni`] with [`dot_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize, const B: usize>(
    w: *const i8,
    stride: usize,
    a: [*const u8; R],
    steps: usize,
    to: [StoreTo; B],
    row_scales: [f32; R],
) {
    for (b, to) in to.into_iter().enumerate() {
        store::<R>(
            dot_avx2::<R>(w.add(b * stride), stride, a, steps),
            to,
            row_scales,
        );
    }
}

/// [`dot_vnni`] with AVX2: `|w|` times the activation with `w`'s sign, so
/// that `vpmaddubsw` multiplies unsigned by signed bytes and a pair of
/// products (at most 2 × 127 × 127) never saturates its 16 bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_avx2<const R: usize>(
    w: *const i8,
    stride: usize,
    a: [*const u8; R],
    steps: usize,
) -> [[__m256i; 2]; R] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for s in 0..steps {
        let w0 = _mm256_loadu_si256(w.add(s * 64) as *const __m256i);
        let w1 = _mm256_loadu_si256(w.add(s * 64 + 32) as *const __m256i);
        prefetch(w.wrapping_add(stride + s * 64));
        let u0 = _mm256_sign_epi8(w0, w0);
        let u1 = _mm256_sign_epi8(w1, w1);
        for r in 0..R {
            let x = _mm256_set1_epi32(std::ptr::read_unaligned(a[r].add(4 * s) as *const i32));
            let p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(x, w0));
            let p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(x, w1));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
    acc
}

/// Asks for the cache line at `p` (the same step of the next block of
/// weights, read by the next tile): the blocks of a large layer (the output
/// projection's 30 MB) come from memory, and the hardware prefetcher alone
/// left the kernel waiting on them (2× slower at 16 rows). Into the L2
/// cache (`_MM_HINT_T2`), not L1: on the Zen 4 of the eleventh session, q8
/// greedy batch 1 read 210-238 tok/s with `T0` and 296-339 with `T2`
/// (alternating runs; batch 16 and 64 +2-10%). `p` may lie past the
/// weights: a prefetch never faults.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch(p: *const i8) {
    _mm_prefetch::<_MM_HINT_T2>(p);
}

/// Where a tile's results go: `width` (≤ 16) features from `out` on, rows
/// `stride` apart, and the per-feature numbers that scale them.
#[cfg(target_arch = "x86_64")]
struct StoreTo {
    out: *mut f32,
    stride: usize,
    width: usize,
    scales: *const f32,
    offsets: Option<*const i32>,
    bias: *const f32,
    /// Whether each value goes out through [`super::avx2::silu_ps`].
    silu: bool,
}

/// `(sum - offset) × feature scale × row scale + bias` (through SiLU where
/// asked), written to the rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store<const R: usize>(sums: [[__m256i; 2]; R], to: StoreTo, row_scales: [f32; R]) {
    let full = to.width == COLS;
    for (r, halves) in sums.iter().enumerate() {
        let mut line = [0f32; COLS];
        let dst = to.out.add(r * to.stride);
        for (h, &sum) in halves.iter().enumerate() {
            let sum = match to.offsets {
                Some(o) => {
                    _mm256_sub_epi32(sum, _mm256_loadu_si256(o.add(8 * h) as *const __m256i))
                }
                None => sum,
            };
            let scale = _mm256_mul_ps(
                _mm256_loadu_ps(to.scales.add(8 * h)),
                _mm256_set1_ps(row_scales[r]),
            );
            let v = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(sum),
                scale,
                _mm256_loadu_ps(to.bias.add(8 * h)),
            );
            let v = if to.silu { super::avx2::silu_ps(v) } else { v };
            let at = if full { dst } else { line.as_mut_ptr() };
            _mm256_storeu_ps(at.add(8 * h), v);
        }
        if !full {
            std::ptr::copy_nonoverlapping(line.as_ptr(), dst, to.width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::values;
    use super::*;

    /// The integer products, computed the slow way from the same quantized
    /// numbers the kernel sees: every kernel must match it to float rounding.
    fn reference(p: &PackedI8, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (p.n, p.k);
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            let xs = &x[i * k..(i + 1) * k];
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            for j in 0..n {
                let mut sum = 0i64;
                for (t, v) in xs.iter().enumerate() {
                    let q = ((v * inv).round_ties_even() as i32).clamp(-127, 127) as i64;
                    assert_eq!(q, to_i8(v * inv) as i64, "rounding of {}", v * inv);
                    let w = p.packed
                        [(j / COLS) * COLS * k + (t / 4) * COLS * 4 + (j % COLS) * 4 + t % 4];
                    sum += q * w as i64;
                }
                out[i * n + j] = sum as f32 * p.scales[j] * d + p.bias[j];
            }
        }
        out
    }

    fn check(m: usize, n: usize, k: usize) {
        let w = values(n * k, 1);
        let bias = values(n, 3);
        let x = values(m * k, 2);
        let p = PackedI8::pack(&w, n, k, Some(&bias));
        let exact = reference(&p, &x, m);
        let scale = exact.iter().fold(0f32, |a, v| a.max(v.abs()));
        for isa in Kernel::all_here() {
            let mut out = vec![f32::NAN; m * n];
            p.matmul(isa, &x, m, &mut out);
            for (idx, (o, e)) in out.iter().zip(&exact).enumerate() {
                assert!(
                    (o - e).abs() <= 1e-5 * scale.max(1.0),
                    "{isa:?} m={m} n={n} k={k} at {idx}: {o} vs {e}"
                );
            }
        }
        // And the quantization itself stays close to the f32 product.
        let mut worst = 0f32;
        for i in 0..m {
            for j in 0..n {
                let dense: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum::<f32>() + bias[j];
                worst = worst.max((dense - exact[i * n + j]).abs());
            }
        }
        assert!(worst <= 0.03 * scale, "worst {worst} vs scale {scale}");
    }

    #[test]
    fn every_kernel_matches_the_integer_reference() {
        if Kernel::all_here().is_empty() {
            eprintln!("SKIPPED: no AVX2/FMA on this CPU");
            return;
        }
        // Tiles of every height (1-4 rows on 256 bits, 1-8 on 512);
        // partial feature blocks; a band split.
        for (m, n, k) in [
            (1, 16, 4),
            (3, 17, 64),
            (4, 33, 128),
            (7, 40, 96),
            (10, 5, 512),
            (13, 48, 32),
            (22, 16, 8),
        ] {
            check(m, n, k);
        }
        check(300, 24, 1024);
    }

    #[test]
    fn rows_dequantize_the_packed_weights() {
        let (n, k) = (37, 12);
        let w = values(n * k, 4);
        let p = PackedI8::pack(&w, n, k, None);
        let rows = p.rows(&[0, 36, 17]).unwrap();
        for (r, &j) in [0usize, 36, 17].iter().enumerate() {
            for i in 0..k {
                let (got, want) = (rows[r * k + i], w[j * k + i]);
                assert!(
                    (got - want).abs() <= p.scales[j] / 2.0 + 1e-6,
                    "{j},{i}: {got} vs {want}"
                );
            }
        }
        assert!(p.rows(&[37]).is_none());
    }

    #[test]
    fn zero_rows_and_weights_give_the_bias() {
        let n = 20;
        let bias: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let p = PackedI8::pack(&vec![0.0; n * 8], n, 8, Some(&bias));
        for isa in Kernel::all_here() {
            let mut out = vec![f32::NAN; 2 * n];
            p.matmul(isa, &[0.0; 16], 2, &mut out);
            assert_eq!(&out[..n], &bias[..]);
            assert_eq!(&out[n..], &bias[..]);
        }
    }
}

//! An f32 GEMM for Marian's dense linear layers (`y = x Wᵀ + b`).
//!
//! The weights are packed once, at load, into the layout the microkernel
//! reads: blocks of [`COLS`] output features, the sixteen features' values
//! of one input side by side (64 bytes, one cache line), input after input.
//! A register tile of several activation rows × one or two blocks keeps its
//! sums in registers over the whole row: each step loads the block's
//! sixteen weights once for all the tile's rows and broadcasts each row's
//! input value once for all its features (one FMA per row and vector), and
//! the next block's weights are prefetched while a tile runs — the int8
//! kernel's scheme ([`super::int8`]) with f32 FMAs. candle's `gemm` packs
//! the weight operand again at every call and reached 25-45 GFLOP/s on a
//! decoding step's shapes here.
//!
//! Every output is one FMA chain over the inputs in order, then the bias:
//! the 256-bit and 512-bit kernels give the same bits, and a scalar
//! `mul_add` loop gives them too (the unit tests hold all three to it).

use super::packed::Kernel;
use super::{Epilogue, SharedOut};
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Output features per packed block: one 512-bit or two 256-bit vectors.
pub const COLS: usize = 16;

/// Activation rows per 256-bit tile: 6 rows × 2 accumulators, 2 weight
/// vectors and a broadcast fit AVX2's sixteen registers.
const ROWS_256: usize = 6;

/// Activation rows per 512-bit tile (of two blocks): 8 × 2 accumulators of
/// AVX-512's 32 registers.
const ROWS_512: usize = 8;

/// Bytes of activations walked per band: the band's rows stay in the L2
/// cache while every weight block of a thread passes over them.
const BAND_BYTES: usize = 256 << 10;

/// A weight matrix `[n, k]` packed for the kernel, with its bias.
#[derive(Debug, Clone)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    /// `[n / COLS blocks][k][COLS]`, the last block padded with zeros.
    packed: Vec<f32>,
    /// Per output feature (padded to whole blocks), zeros when the layer
    /// has none.
    bias: Vec<f32>,
}

impl PackedF32 {
    /// Packs `w` (`n` rows of `k` values) and its bias.
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert!(w.len() == n * k, "weights are not [n, k]");
        assert!(bias.is_none_or(|b| b.len() == n), "bias is not [n]");
        let padded = n.next_multiple_of(COLS);
        // Blocks in parallel on rayon's pool, as `packed.rs` repacks GGUF
        // weights (most of the time is the kernel handing out fresh pages:
        // 287 MB for opus-mt); padding features stay zero.
        let mut packed = vec![0f32; padded * k];
        packed
            .par_chunks_mut(COLS * k.max(1))
            .enumerate()
            .for_each(|(block, out)| {
                for (c, j) in (block * COLS..n.min((block + 1) * COLS)).enumerate() {
                    for (&v, line) in w[j * k..(j + 1) * k].iter().zip(out.chunks_exact_mut(COLS)) {
                        line[c] = v;
                    }
                }
            });
        let mut bias_out = vec![0f32; padded];
        if let Some(b) = bias {
            bias_out[..n].copy_from_slice(b);
        }
        Self {
            n,
            k,
            packed,
            bias: bias_out,
        }
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// Weight rows `ids` (`[ids.len(), k]`), exactly as packed: an embedding
    /// table that is also the output projection, looked up without a second
    /// copy. `None` when an id is out of range.
    pub fn rows(&self, ids: &[u32]) -> Option<Vec<f32>> {
        let k = self.k;
        let mut out = Vec::with_capacity(ids.len() * k);
        for &id in ids {
            let j = id as usize;
            if j >= self.n {
                return None;
            }
            let base = &self.packed[(j / COLS) * COLS * k..];
            out.extend((0..k).map(|i| base[i * COLS + j % COLS]));
        }
        Some(out)
    }

    /// `out = then(x Wᵀ + bias)` for `m` rows of `x` (`[m, k]`, row-major)
    /// into `out` (`[m, n]`, not yet initialized: every value is written);
    /// threads share the blocks of output features.
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
        let blocks = self.n.div_ceil(COLS);
        let out_ptr = SharedOut(out.as_mut_ptr().cast::<f32>());
        let wide = isa == Kernel::Avx512Vnni;
        super::for_ranges(
            blocks,
            m * self.n * self.k,
            if wide { 2 } else { 1 },
            |range| {
                // SAFETY: `isa` was detected on this CPU; each range of blocks
                // writes only its own output features (disjoint across ranges),
                // `x` holds m × k values and `out` m × n (asserted above).
                unsafe { self.blocks(wide, x, m, range, &out_ptr, then) }
            },
        );
    }

    /// [`Self::matmul_uninit`] into initialized memory.
    pub fn matmul(&self, isa: Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and `matmul_uninit`
        // only writes initialized values.
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.matmul_uninit(isa, x, m, out, Epilogue::None)
    }

    /// Output features of blocks `range` for every row of `x`, in bands of
    /// rows that stay in cache.
    ///
    /// # Safety
    /// The 512-bit kernel (`wide`) or AVX2/FMA runs on this CPU; nobody else
    /// writes these features of `out`.
    unsafe fn blocks(
        &self,
        wide: bool,
        x: &[f32],
        m: usize,
        range: std::ops::Range<usize>,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let rows = if wide { ROWS_512 } else { ROWS_256 };
        let band = (BAND_BYTES / (4 * self.k).max(1)).max(rows) / rows * rows;
        for first in (0..m).step_by(band) {
            let last = (first + band).min(m);
            let mut block = range.start;
            while block < range.end {
                let pair = wide && block + 1 < range.end;
                let mut row = first;
                while row < last {
                    let tile = (last - row).min(rows);
                    match (wide, pair) {
                        (true, true) => self.tiles::<2>(true, x, block, row..row + tile, out, then),
                        (true, false) => {
                            self.tiles::<1>(true, x, block, row..row + tile, out, then)
                        }
                        _ => self.tiles::<1>(false, x, block, row..row + tile, out, then),
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
        wide: bool,
        x: &[f32],
        block: usize,
        rows: std::ops::Range<usize>,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let row = rows.start;
        match rows.len() {
            8 => self.tile::<8, B>(wide, x, block, row, out, then),
            7 => self.tile::<7, B>(wide, x, block, row, out, then),
            6 => self.tile::<6, B>(wide, x, block, row, out, then),
            5 => self.tile::<5, B>(wide, x, block, row, out, then),
            4 => self.tile::<4, B>(wide, x, block, row, out, then),
            3 => self.tile::<3, B>(wide, x, block, row, out, then),
            2 => self.tile::<2, B>(wide, x, block, row, out, then),
            _ => self.tile::<1, B>(wide, x, block, row, out, then),
        }
    }

    /// One register tile: rows `row..row + R` × the features of blocks
    /// `block..block + B`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn tile<const R: usize, const B: usize>(
        &self,
        wide: bool,
        x: &[f32],
        block: usize,
        row: usize,
        out: &SharedOut,
        then: Epilogue,
    ) {
        let k = self.k;
        let w = self.packed.as_ptr().add(block * COLS * k);
        let a: [*const f32; R] = std::array::from_fn(|r| x.as_ptr().add((row + r) * k));
        let to: [StoreTo; B] = std::array::from_fn(|b| {
            let col = (block + b) * COLS;
            StoreTo {
                out: out.ptr().add(row * self.n + col),
                stride: self.n,
                width: (self.n - col).min(COLS),
                bias: self.bias.as_ptr().add(col),
                silu: then == Epilogue::Silu,
            }
        });
        if wide {
            tile_512::<R, B>(w, COLS * k, a, k, to)
        } else {
            for (b, to) in to.into_iter().enumerate() {
                tile_256::<R>(w.add(b * COLS * k), COLS * k, a, k, to)
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tile<const R: usize, const B: usize>(
        &self,
        _: bool,
        _: &[f32],
        _: usize,
        _: usize,
        _: &SharedOut,
        _: Epilogue,
    ) {
        unreachable!("no Kernel is detected off x86_64")
    }
}

/// Where a tile's results go: `width` (≤ 16) features from `out` on, rows
/// `stride` apart, their bias, and whether each value goes out through
/// [`super::avx2::silu_ps`].
#[cfg(target_arch = "x86_64")]
struct StoreTo {
    out: *mut f32,
    stride: usize,
    width: usize,
    bias: *const f32,
    silu: bool,
}

impl StoreTo {
    /// `sum + bias`, through SiLU where asked.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn finish(&self, sum: __m256, bias: __m256) -> __m256 {
        let v = _mm256_add_ps(sum, bias);
        if self.silu {
            super::avx2::silu_ps(v)
        } else {
            v
        }
    }
}

/// `R` rows × `B` blocks (`stride` floats apart) on 512-bit registers: one
/// vector per row and block holds the block's sixteen sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn tile_512<const R: usize, const B: usize>(
    w: *const f32,
    stride: usize,
    a: [*const f32; R],
    k: usize,
    to: [StoreTo; B],
) {
    let mut acc = [[_mm512_setzero_ps(); R]; B];
    for s in 0..k {
        let wv: [__m512; B] =
            std::array::from_fn(|b| _mm512_loadu_ps(w.add(b * stride + s * COLS)));
        for b in 0..B {
            prefetch(w.wrapping_add((B + b) * stride + s * COLS));
        }
        for r in 0..R {
            let xv = _mm512_set1_ps(*a[r].add(s));
            for b in 0..B {
                acc[b][r] = _mm512_fmadd_ps(xv, wv[b], acc[b][r]);
            }
        }
    }
    for (sums, to) in acc.iter().zip(to) {
        let bias = _mm512_loadu_ps(to.bias);
        let mask: __mmask16 = if to.width == COLS {
            !0
        } else {
            (1u16 << to.width) - 1
        };
        for (r, &sum) in sums.iter().enumerate() {
            let mut v = _mm512_add_ps(sum, bias);
            if to.silu {
                // The 256-bit SiLU on each half: the same bits as there.
                let lo = super::avx2::silu_ps(_mm512_castps512_ps256(v));
                let hi = super::avx2::silu_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(v),
                )));
                v = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                    _mm256_castps_pd(hi),
                ));
            }
            _mm512_mask_storeu_ps(to.out.add(r * to.stride), mask, v);
        }
    }
}

/// `R` rows × one block on 256-bit registers (two vectors of eight sums
/// per row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_256<const R: usize>(
    w: *const f32,
    stride: usize,
    a: [*const f32; R],
    k: usize,
    to: StoreTo,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for s in 0..k {
        let w0 = _mm256_loadu_ps(w.add(s * COLS));
        let w1 = _mm256_loadu_ps(w.add(s * COLS + 8));
        prefetch(w.wrapping_add(stride + s * COLS));
        for r in 0..R {
            let xv = _mm256_set1_ps(*a[r].add(s));
            acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
        }
    }
    let bias = [_mm256_loadu_ps(to.bias), _mm256_loadu_ps(to.bias.add(8))];
    for (r, sums) in acc.iter().enumerate() {
        let dst = to.out.add(r * to.stride);
        let mut line = [0f32; COLS];
        let at = if to.width == COLS {
            dst
        } else {
            line.as_mut_ptr()
        };
        _mm256_storeu_ps(at, to.finish(sums[0], bias[0]));
        _mm256_storeu_ps(at.add(8), to.finish(sums[1], bias[1]));
        if to.width < COLS {
            std::ptr::copy_nonoverlapping(line.as_ptr(), dst, to.width);
        }
    }
}

/// Asks for the cache line at `p` (the same step of the block the next tile
/// reads); `p` may lie past the weights: a prefetch never faults.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch(p: *const f32) {
    _mm_prefetch::<_MM_HINT_T1>(p.cast());
}

#[cfg(test)]
mod tests {
    use super::super::tests::values;
    use super::*;

    /// One `mul_add` chain per output in input order, then the bias: the
    /// kernels' float order, so they must match it bit for bit.
    fn reference(w: &[f32], bias: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for t in 0..k {
                    acc = x[i * k + t].mul_add(w[j * k + t], acc);
                }
                out[i * n + j] = acc + bias[j];
            }
        }
        out
    }

    fn check(m: usize, n: usize, k: usize) {
        let w = values(n * k, 1);
        let bias = values(n, 3);
        let x = values(m * k, 2);
        let p = PackedF32::pack(&w, n, k, Some(&bias));
        let exact = reference(&w, &bias, &x, m, n, k);
        let mut kernels = Kernel::all_here();
        // Both f32 kernels where the CPU has AVX-512 (Avx2 is 256 bits).
        kernels.retain(|k| matches!(k, Kernel::Avx2 | Kernel::Avx512Vnni));
        for isa in kernels {
            let mut out = vec![f32::NAN; m * n];
            p.matmul(isa, &x, m, &mut out);
            for (idx, (o, e)) in out.iter().zip(&exact).enumerate() {
                assert_eq!(
                    o.to_bits(),
                    e.to_bits(),
                    "{isa:?} m={m} n={n} k={k} at {idx}: {o} vs {e}"
                );
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_fma_chain_bit_for_bit() {
        if Kernel::all_here().is_empty() {
            eprintln!("SKIPPED: no AVX2/FMA on this CPU");
            return;
        }
        // Tiles of every height (1-6 rows on 256 bits, 1-8 on 512); single
        // and paired blocks; partial feature blocks; a band split.
        for (m, n, k) in [
            (1, 16, 4),
            (3, 17, 64),
            (4, 33, 128),
            (7, 40, 96),
            (10, 5, 512),
            (13, 48, 32),
            (22, 16, 8),
            (9, 64, 3),
            (2, 7, 0),
        ] {
            check(m, n, k);
        }
        check(200, 40, 2048);
    }

    #[test]
    fn rows_are_the_weights() {
        let (n, k) = (37, 12);
        let w = values(n * k, 4);
        let p = PackedF32::pack(&w, n, k, None);
        let rows = p.rows(&[0, 36, 17]).unwrap();
        for (r, &j) in [0usize, 36, 17].iter().enumerate() {
            assert_eq!(&rows[r * k..(r + 1) * k], &w[j * k..(j + 1) * k]);
        }
        assert!(p.rows(&[37]).is_none());
    }
}

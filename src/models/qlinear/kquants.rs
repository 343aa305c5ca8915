//! AVX2 dot products of the K-quants (Q4_K, Q5_K, Q6_K) with activations
//! quantized as ggml's Q8_K (one f32 scale per 256 values and the sums of
//! each 16), after ggml's `ggml_vec_dot_q{4,5,6}_K_q8_K`.
//!
//! A super-block's products stay in integers: the sub-block scales are
//! multiplied in with `madd` and the minimums are taken from the
//! activations' block sums once per super-block, so a super-block costs one
//! int-to-float conversion and one fused multiply-add, not eight of each
//! plus scalar scale decoding per 32 values. A weight super-block is
//! unpacked once for up to eight activation rows (prompts, over bands of
//! activation rows that stay in L2), and eight weight rows run side by side
//! when decoding (eight independent chains: +15-30% generated tokens on the
//! 1.5 B against four).

use super::avx2::{Avx2, Format, QK_K};

#[cfg(target_arch = "x86_64")]
use super::avx2::{f16_at, hsum};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How many super-blocks ahead to prefetch weights.
#[cfg(target_arch = "x86_64")]
const PREFETCH_SUPER_BLOCKS: usize = 2;

/// Rows of activations quantized as ggml's Q8_K: per 256 values one scale
/// `d` (value = d × q) and the sums of each 16 quantized values.
#[derive(Debug, Clone, Default)]
pub struct KActivations {
    rows: usize,
    /// Super-blocks per row.
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
}

impl KActivations {
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Quantizes one super-block as ggml's `quantize_row_q8_K_ref`: the value
/// of largest magnitude maps to -127 (nearest, ties to even).
///
/// Compiled for AVX2 so that the rounding is `vroundps` over eight values,
/// not a call to `rintf` per value (7% of a prompt on the 1.5 B model).
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma,f16c"))]
unsafe fn quantize_super_block(x: &[f32], qs: &mut [i8], bsums: &mut [i16]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        bsums.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (iscale * v).round_ties_even().min(127.0) as i8;
    }
    for (sum, group) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
        *sum = group.iter().map(|&q| q as i16).sum();
    }
    1.0 / iscale
}

impl Avx2 {
    /// Quantizes `rows` rows of `k` values each (`k` a multiple of 256) for
    /// the K-quant kernels.
    pub fn quantize_k(&self, x: &[f32], rows: usize, k: usize) -> KActivations {
        assert!(k.is_multiple_of(QK_K) && x.len() == rows * k);
        let blocks = k / QK_K;
        let mut a = KActivations {
            rows,
            blocks,
            qs: vec![0; rows * k],
            d: vec![0.0; rows * blocks],
            bsums: vec![0; rows * blocks * 16],
        };
        let parts = x
            .chunks_exact(QK_K)
            .zip(a.qs.chunks_exact_mut(QK_K))
            .zip(a.bsums.chunks_exact_mut(16));
        for (d, ((x, qs), bsums)) in a.d.iter_mut().zip(parts) {
            // SAFETY: `self` proves the CPU features.
            *d = unsafe { quantize_super_block(x, qs, bsums) };
        }
        a
    }

    /// Multiplies weight rows `first..first + out.len() / acts.rows()` of the
    /// K-quant matrix `weights` with every activation row; `out` is
    /// row-major `[weight row][activation row]`.
    pub fn matmul_rows_k(
        &self,
        format: Format,
        weights: &[u8],
        first: usize,
        acts: &KActivations,
        out: &mut [f32],
    ) {
        let m = acts.rows;
        if m == 0 {
            return;
        }
        assert!(out.len().is_multiple_of(m));
        let row_bytes = format.row_bytes(acts.blocks * QK_K);
        let n = out.len() / m;
        assert!(
            weights.len() >= (first + n) * row_bytes,
            "weight rows out of range"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` proves the CPU features; the asserts above bound every read.
        unsafe {
            match format {
                Format::Q4K => rows_kernel::<Q4K>(weights, row_bytes, first, acts, out),
                Format::Q5K => rows_kernel::<Q5K>(weights, row_bytes, first, acts, out),
                Format::Q6K => rows_kernel::<Q6K>(weights, row_bytes, first, acts, out),
                _ => panic!("{format:?} is not a K-quant"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no AVX2 outside x86_64")
    }
}

/// One K-quant format: how one weight super-block meets `R` activation rows.
#[cfg(target_arch = "x86_64")]
trait KBlock {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Adds the dot products of the super-block at `x` with super-block `b`
    /// of activation rows `row..row + R` to `acc` (eight partial sums each).
    ///
    /// # Safety
    /// `x` points at a whole super-block; the rows and block exist in `a`;
    /// the CPU has AVX2, FMA and F16C.
    unsafe fn accumulate<const R: usize>(
        x: *const u8,
        a: &KActivations,
        row: usize,
        b: usize,
        acc: &mut [__m256; R],
    );
}

#[cfg(target_arch = "x86_64")]
struct Q4K;
#[cfg(target_arch = "x86_64")]
struct Q5K;
#[cfg(target_arch = "x86_64")]
struct Q6K;

/// Shuffle masks that broadcast 16-bit lane `i` (0..8) of a 128-bit half to
/// every 16-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn broadcast_i16_mask(i: usize) -> __m256i {
    let lo = (2 * i) as i8;
    let pair = i16::from_le_bytes([lo as u8, lo as u8 + 1]);
    _mm256_set1_epi16(pair)
}

/// The eight 6-bit scales and eight 6-bit minimums of a Q4_K/Q5_K
/// super-block (12 packed bytes at `p`) as 16-bit lanes: scales in the low
/// eight lanes, minimums in the high eight (ggml's `utmp` shuffle).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scales_and_mins_k4(p: *const u8) -> __m256i {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let t3 = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let t1 = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let t2 = u1 & KMASK1;
    let t0 = u0 & KMASK1;
    _mm256_cvtepu8_epi16(_mm_set_epi32(t3 as i32, t2 as i32, t1 as i32, t0 as i32))
}

/// The minimums' share of a Q4_K/Q5_K super-block for one activation row:
/// Σ min_j × (sum of the activations of sub-block j), as 32-bit lanes in
/// the low half (the high half zero).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn mins_dot(mins: __m128i, bsums: *const i16) -> __m256i {
    let sums = _mm256_loadu_si256(bsums as *const __m256i);
    let per32 = _mm_hadd_epi16(
        _mm256_castsi256_si128(sums),
        _mm256_extracti128_si256::<1>(sums),
    );
    _mm256_zextsi128_si256(_mm_madd_epi16(mins, per32))
}

/// The shared body of Q4_K and Q5_K: `bits(j)` gives the 64 values of
/// sub-blocks 2j and 2j + 1 as two vectors of unsigned bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn accumulate_k4<const R: usize>(
    x: *const u8,
    a: &KActivations,
    row: usize,
    b: usize,
    acc: &mut [__m256; R],
    bits: impl Fn(usize) -> (__m256i, __m256i),
) {
    let d = f16_at(x);
    let dmin = f16_at(x.add(2));
    let sm = scales_and_mins_k4(x.add(4));
    let scales = _mm256_permute2x128_si256::<0x00>(sm, sm);
    let mins = _mm256_extracti128_si256::<1>(sm);
    let nb = a.blocks;
    let mut sumi = [_mm256_setzero_si256(); R];
    for j in 0..QK_K / 64 {
        let (lo, hi) = bits(j);
        let scale_lo = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j));
        let scale_hi = _mm256_shuffle_epi8(scales, broadcast_i16_mask(2 * j + 1));
        for (r, sum) in sumi.iter_mut().enumerate() {
            let q8 = a.qs.as_ptr().add(((row + r) * nb + b) * QK_K + 64 * j);
            let q8lo = _mm256_loadu_si256(q8 as *const __m256i);
            let q8hi = _mm256_loadu_si256(q8.add(32) as *const __m256i);
            let plo = _mm256_madd_epi16(scale_lo, _mm256_maddubs_epi16(lo, q8lo));
            let phi = _mm256_madd_epi16(scale_hi, _mm256_maddubs_epi16(hi, q8hi));
            *sum = _mm256_add_epi32(*sum, _mm256_add_epi32(plo, phi));
        }
    }
    for r in 0..R {
        let idx = (row + r) * nb + b;
        let dy = *a.d.get_unchecked(idx);
        let m = mins_dot(mins, a.bsums.as_ptr().add(idx * 16));
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * dy), _mm256_cvtepi32_ps(m), acc[r]);
    }
}

#[cfg(target_arch = "x86_64")]
impl KBlock for Q4K {
    // d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] (each 32 bytes hold
    // two sub-blocks, the first in the low nibbles).
    const BYTES: usize = 144;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate<const R: usize>(
        x: *const u8,
        a: &KActivations,
        row: usize,
        b: usize,
        acc: &mut [__m256; R],
    ) {
        let m4 = _mm256_set1_epi8(0x0F);
        accumulate_k4(x, a, row, b, acc, |j| {
            let q = _mm256_loadu_si256(x.add(16 + 32 * j) as *const __m256i);
            (
                _mm256_and_si256(q, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            )
        })
    }
}

#[cfg(target_arch = "x86_64")]
impl KBlock for Q5K {
    // d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]; bit j
    // of qh[l] is the fifth bit of value l of sub-block j.
    const BYTES: usize = 176;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate<const R: usize>(
        x: *const u8,
        a: &KActivations,
        row: usize,
        b: usize,
        acc: &mut [__m256; R],
    ) {
        let m4 = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        let qh = _mm256_loadu_si256(x.add(16) as *const __m256i);
        accumulate_k4(x, a, row, b, acc, |j| {
            let q = _mm256_loadu_si256(x.add(48 + 32 * j) as *const __m256i);
            let shift = _mm_cvtsi32_si128(2 * j as i32);
            let h = _mm256_srl_epi16(qh, shift);
            let hlo = _mm256_slli_epi16::<4>(_mm256_and_si256(h, one));
            let hhi = _mm256_slli_epi16::<3>(_mm256_and_si256(h, _mm256_set1_epi8(2)));
            (
                _mm256_or_si256(_mm256_and_si256(q, m4), hlo),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), hhi),
            )
        })
    }
}

#[cfg(target_arch = "x86_64")]
impl KBlock for Q6K {
    // ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16. Each half (128
    // values) has 64 bytes of ql and 32 of qh; its values 32t..32t + 32 take
    // the low (t < 2) or high nibbles of ql[32 (t % 2)..] and bits 2t, 2t + 1
    // of qh; values are 6-bit minus 32, one scale per 16 values.
    const BYTES: usize = 210;
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn accumulate<const R: usize>(
        x: *const u8,
        a: &KActivations,
        row: usize,
        b: usize,
        acc: &mut [__m256; R],
    ) {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(3);
        let d = f16_at(x.add(208));
        let scales8 = _mm_loadu_si128(x.add(192) as *const __m128i);
        let scales16 = _mm256_cvtepi8_epi16(scales8);
        let nb = a.blocks;
        let mut sumi = [_mm256_setzero_si256(); R];
        for half in 0..2 {
            let ql = x.add(64 * half);
            let q1 = _mm256_loadu_si256(ql as *const __m256i);
            let q2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
            let qh = _mm256_loadu_si256(x.add(128 + 32 * half) as *const __m256i);
            let high = |shift: i32| {
                _mm256_slli_epi16::<4>(_mm256_and_si256(
                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)),
                    m2,
                ))
            };
            let q = [
                _mm256_or_si256(_mm256_and_si256(q1, m4), high(0)),
                _mm256_or_si256(_mm256_and_si256(q2, m4), high(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q1), m4), high(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q2), m4), high(6)),
            ];
            // Scales 8 half + 2t, 8 half + 2t + 1: one per 16 values.
            let mut scale = [_mm256_setzero_si256(); 4];
            for (t, s) in scale.iter_mut().enumerate() {
                let lo = 8 * half + 2 * t;
                let mask = _mm_set_epi64x(
                    i64::from_le_bytes([lo as u8 + 1; 8]),
                    i64::from_le_bytes([lo as u8; 8]),
                );
                *s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales8, mask));
            }
            for (r, sum) in sumi.iter_mut().enumerate() {
                let q8 = a.qs.as_ptr().add(((row + r) * nb + b) * QK_K + 128 * half);
                for (t, (q, scale)) in q.iter().zip(&scale).enumerate() {
                    let y = _mm256_loadu_si256(q8.add(32 * t) as *const __m256i);
                    let p = _mm256_madd_epi16(*scale, _mm256_maddubs_epi16(*q, y));
                    *sum = _mm256_add_epi32(*sum, p);
                }
            }
        }
        for r in 0..R {
            let idx = (row + r) * nb + b;
            // The -32 of every value: 32 × Σ scale_s × (sum of sub-block s).
            let sums = _mm256_loadu_si256(a.bsums.as_ptr().add(idx * 16) as *const __m256i);
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(scales16, sums));
            let total = _mm256_sub_epi32(sumi[r], offset);
            let dy = *a.d.get_unchecked(idx);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(total), acc[r]);
        }
    }
}

/// Dot products of `W` weight rows with activation rows `row..row + R`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile<B: KBlock, const W: usize, const R: usize>(
    w: [*const u8; W],
    a: &KActivations,
    row: usize,
) -> [[f32; R]; W] {
    let mut acc = [[_mm256_setzero_ps(); R]; W];
    for b in 0..a.blocks {
        for k in 0..W {
            let ahead = w[k].wrapping_add((b + PREFETCH_SUPER_BLOCKS) * B::BYTES);
            for line in (0..B::BYTES).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
            }
            B::accumulate::<R>(w[k].add(b * B::BYTES), a, row, b, &mut acc[k]);
        }
    }
    let mut res = [[0f32; R]; W];
    for k in 0..W {
        for r in 0..R {
            res[k][r] = hsum(acc[k][r]);
        }
    }
    res
}

/// Weight rows `first..` times all activation rows: eight (then four) weight
/// rows per activation row when decoding, eight (then four) activation rows per
/// weight row (each super-block unpacked once for eight) when processing a
/// prompt.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_kernel<B: KBlock>(
    weights: &[u8],
    row_bytes: usize,
    first: usize,
    a: &KActivations,
    out: &mut [f32],
) {
    let m = a.rows;
    let n = out.len() / m;
    let row = |j: usize| weights.as_ptr().add((first + j) * row_bytes);
    if m < 4 {
        let mut j = 0;
        decode_tiles::<B, 8>(&row, a, n, &mut j, out);
        decode_tiles::<B, 4>(&row, a, n, &mut j, out);
        decode_tiles::<B, 1>(&row, a, n, &mut j, out);
        return;
    }
    // Activation rows in bands that stay in the core's L2 cache while every
    // weight row of the block passes over them (a prompt's activations for
    // a wide input, 256 × 8960 bytes, would otherwise stream from L3 once
    // per weight row); the weights are re-read once per band.
    let row_len = a.blocks * QK_K;
    let band = (ACTIVATION_BAND_BYTES / row_len).max(4) / 4 * 4;
    for i0 in (0..m).step_by(band) {
        let i1 = (i0 + band).min(m);
        for (j, out_row) in out.chunks_exact_mut(m).enumerate() {
            let mut i = i0;
            prompt_tiles::<B, 8>(row(j), a, &mut i, i1, out_row);
            prompt_tiles::<B, 4>(row(j), a, &mut i, i1, out_row);
            prompt_tiles::<B, 1>(row(j), a, &mut i, i1, out_row);
        }
    }
}

/// Decoding: weight rows `*j..n` in groups of `W`, each group against
/// every activation row; leaves `*j` at the first row not done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn decode_tiles<B: KBlock, const W: usize>(
    row: &impl Fn(usize) -> *const u8,
    a: &KActivations,
    n: usize,
    j: &mut usize,
    out: &mut [f32],
) {
    let m = a.rows;
    while *j + W <= n {
        for i in 0..m {
            let d = tile::<B, W, 1>(std::array::from_fn(|w| row(*j + w)), a, i);
            for (w, v) in d.iter().enumerate() {
                out[(*j + w) * m + i] = v[0];
            }
        }
        *j += W;
    }
}

/// Prompts: activation rows `*i..end` in groups of `R` against the weight
/// row at `w`; leaves `*i` at the first row not done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn prompt_tiles<B: KBlock, const R: usize>(
    w: *const u8,
    a: &KActivations,
    i: &mut usize,
    end: usize,
    out_row: &mut [f32],
) {
    while *i + R <= end {
        out_row[*i..*i + R].copy_from_slice(&tile::<B, 1, R>([w], a, *i)[0]);
        *i += R;
    }
}

/// Bytes of quantized activations a prompt tile keeps in cache: half of
/// the 512 KiB L2 of the smallest current x86 server cores.
#[cfg(target_arch = "x86_64")]
const ACTIVATION_BAND_BYTES: usize = 256 * 1024;

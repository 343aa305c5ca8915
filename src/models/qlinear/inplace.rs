//! GGUF weights multiplied where they lie: the file's own Q6_K and Q8_0
//! blocks, read through its memory map by row-by-row kernels (the shape of
//! ggml's `vec_dot_q6_K_q8_K` / `vec_dot_q8_0_q8_0`), for the LLMs' output
//! heads.
//!
//! A head always multiplies one activation row (only the last position's
//! logits are computed), it is the largest tensor of most files (the 1.5 B
//! Qwen's 191 MB Q6_K, gemma-3-270m's 178 MB Q8_0 embedding), and it is
//! read whole every step. Through the file's map, the page cache serves it
//! in 2 MiB pages where the file system keeps large folios (ext4, XFS on
//! recent kernels); a packed copy in anonymous memory comes in 4 KiB pages
//! (asking for huge ones there doubled the 1.5 B's load time: the kernel
//! zeroes every page first). Measured on the 1.5 B, one thread, inside a
//! decoding step: the packed head 11.5 ms a token (16.6 GB/s), in place
//! 9.5-10 ms (19-20 GB/s). A tied embedding is then one copy for the
//! lookup and the head, and nothing to pack at load.
//!
//! The sums per row go into eight float lanes over the blocks, added up
//! at the end (ggml's shape; Q8_0 with two such accumulators), not one lane
//! per row as in the packed kernels: the results agree with those up to the
//! order of the float additions.

#[cfg(target_arch = "x86_64")]
use super::avx2::hsum;
use super::avx2::{Format, QK, QK_K};
use super::packed::Acts;
use super::SharedOut;
use crate::models::qweight::MappedBytes;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// How far ahead of the block it multiplies the Q6_K kernel asks for
/// weights, into L2: the 1.5 B's head alone, one thread, 21.2 -> 22.8-23.9
/// GB/s (re-measured in the thirteenth session on a copy in memory: 18.8-19.1
/// without, 19.7-20.1 with; inside a decoding step no difference). The packed kernels, whose groups are read in the order of
/// their bytes, go without (see [`super::packed`]); so does the Q8_0 kernel
/// here, which measured slower with it (a prefetch every 68 bytes).
#[cfg(target_arch = "x86_64")]
const PREFETCH_BYTES: usize = 32 << 10;

/// Weight rows per work item of the threads (a multiple of this each).
const ROWS_ALIGN: usize = 64;

/// A `[n, k]` weight of ggml blocks, multiplied in place.
#[derive(Debug)]
pub struct InPlace {
    format: Format,
    bytes: MappedBytes,
    n: usize,
    k: usize,
}

impl InPlace {
    /// The weight when a kernel here reads `format` in place (Q6_K, Q8_0
    /// on x86_64 with AVX2, FMA and F16C) and `bytes` hold exactly `n` rows
    /// of `k` values; else `None`.
    pub fn new(format: Format, bytes: MappedBytes, n: usize, k: usize) -> Option<Self> {
        super::kernels()?;
        let ok = matches!(format, Format::Q6K | Format::Q8_0)
            && k.is_multiple_of(format.block_values())
            && bytes.bytes().len() == format.row_bytes(k) * n;
        ok.then_some(Self {
            format,
            bytes,
            n,
            k,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `out = acts Wᵀ`, `out` row-major `[activation row][weight row]`;
    /// threads share the weight rows.
    ///
    /// # Panics
    /// When `acts` is not the kind the format takes or not `k` wide, or
    /// `out` is not `rows × n`.
    pub fn matmul(&self, acts: Acts, out: &mut [f32]) {
        let w = self.bytes.bytes();
        let row_bytes = self.format.row_bytes(self.k);
        let n = self.n;
        let (m, fits) = match (acts, self.format) {
            (Acts::K(a), Format::Q6K) => (a.rows(), a.blocks() * QK_K == self.k),
            (Acts::B32(a), Format::Q8_0) => (a.rows(), a.blocks() * QK == self.k),
            _ => (0, false),
        };
        assert!(fits && out.len() == m * n && w.len() == row_bytes * n);
        let out = SharedOut(out.as_mut_ptr());
        super::for_ranges(n, m * n * self.k, ROWS_ALIGN, |rows| {
            let w = &w[rows.start * row_bytes..rows.end * row_bytes];
            for i in 0..m {
                // SAFETY: `kernels()` was detected in `new`; `w` holds whole
                // rows of `k` values and the activations are `k` wide
                // (asserted); each range writes only its own rows' outputs,
                // all within `m × n`.
                unsafe {
                    let out = out.ptr().add(i * n + rows.start);
                    match acts {
                        Acts::K(a) => rows_q6k(w, a.row(i), out),
                        Acts::B32(a) => rows_q8_0(w, a.row(i), out),
                    }
                }
            }
        });
    }
}

/// An f16 at `p` as f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
#[inline]
unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        p.cast::<u16>().read_unaligned() as i32,
    )))
}

/// Shuffles that spread Q6_K scales `2j` and `2j + 1` over eight bytes each.
#[cfg(target_arch = "x86_64")]
const SCALE_PAIRS: [[u8; 16]; 8] = {
    let mut t = [[0u8; 16]; 8];
    let mut j = 0;
    while j < 8 {
        let mut b = 0;
        while b < 16 {
            t[j][b] = (2 * j + b / 8) as u8;
            b += 1;
        }
        j += 1;
    }
    t
};

/// Weight rows `w` (ggml's `block_q6_K`s: low nibbles `ql[128]`, top bits
/// `qh[64]`, scales `[i8; 16]`, `d` f16) times one activation row
/// (values, super-block scales, sums of 16), into `out[..rows]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q6k(w: &[u8], (qs, ds, bsums): (&[i8], &[f32], &[i16]), out: *mut f32) {
    let blocks = ds.len();
    let m4 = _mm256_set1_epi8(0x0F);
    let m30 = _mm256_set1_epi8(0x30);
    let pairs: [__m128i; 8] =
        std::array::from_fn(|k| _mm_loadu_si128(SCALE_PAIRS[k].as_ptr() as *const __m128i));
    for (r, row) in w.chunks_exact(blocks * 210).enumerate() {
        let mut acc = _mm256_setzero_ps();
        for b in 0..blocks {
            let blk = row.as_ptr().add(b * 210);
            for line in (0..210).step_by(64) {
                _mm_prefetch::<_MM_HINT_T2>(blk.wrapping_add(PREFETCH_BYTES + line) as *const i8);
            }
            let (ql, qh) = (blk, blk.add(128));
            let q8 = qs.as_ptr().add(b * QK_K);
            let scales = _mm_loadu_si128(blk.add(192) as *const __m128i);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..2 {
                let l0 = _mm256_loadu_si256(ql.add(64 * j) as *const __m256i);
                let l1 = _mm256_loadu_si256(ql.add(64 * j + 32) as *const __m256i);
                let h = _mm256_loadu_si256(qh.add(32 * j) as *const __m256i);
                // Values 128j + 32c + 0..32, c = 0..4, unsigned 0..63: the
                // low nibbles and, at bits 4-5, bits 2c, 2c + 1 of `qh`
                // (16-bit shifts: what crosses into a neighbour byte is
                // masked off).
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(l0, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<4>(h), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(l1, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(h), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                        _mm256_and_si256(h, m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(h), m30),
                    ),
                ];
                for (c, q) in q.into_iter().enumerate() {
                    let y = _mm256_loadu_si256(q8.add(128 * j + 32 * c) as *const __m256i);
                    // Pairs of products (≤ 2 × 63 × 127: no saturation).
                    let p16 = _mm256_maddubs_epi16(q, y);
                    let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pairs[4 * j + c]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, s));
                }
            }
            // The −32 of every value: 32 × Σ scale_s × (sum of sub-block s).
            let sums = _mm256_loadu_si256(bsums.as_ptr().add(16 * b) as *const __m256i);
            let offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), sums);
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(offset));
            let d = _mm256_set1_ps(f16_at(blk.add(208)) * *ds.get_unchecked(b));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
        *out.add(r) = hsum(acc);
    }
}

/// Weight rows `w` (ggml's `block_q8_0`s: `d` f16, 32 signed bytes) times
/// one activation row (values, block scales), into `out[..rows]`. Two
/// accumulators, so that consecutive blocks do not wait on each other.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q8_0(w: &[u8], (qs, ds): (&[i8], &[f32]), out: *mut f32) {
    let blocks = ds.len();
    let ones = _mm256_set1_epi16(1);
    let block = |blk: *const u8, y: *const i8, da: f32| {
        let x = _mm256_loadu_si256(blk.add(2) as *const __m256i);
        let y = _mm256_loadu_si256(y as *const __m256i);
        // |x| × (y with x's sign): unsigned times signed, as maddubs takes.
        let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
        let p32 = _mm256_madd_epi16(p16, ones);
        (_mm256_set1_ps(f16_at(blk) * da), _mm256_cvtepi32_ps(p32))
    };
    for (r, row) in w.chunks_exact(blocks * 34).enumerate() {
        let (x, y) = (row.as_ptr(), qs.as_ptr());
        let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut b = 0;
        while b + 2 <= blocks {
            let (d, p) = block(x.add(34 * b), y.add(QK * b), *ds.get_unchecked(b));
            even = _mm256_fmadd_ps(d, p, even);
            let (d, p) = block(
                x.add(34 * b + 34),
                y.add(QK * b + QK),
                *ds.get_unchecked(b + 1),
            );
            odd = _mm256_fmadd_ps(d, p, odd);
            b += 2;
        }
        if b < blocks {
            let (d, p) = block(x.add(34 * b), y.add(QK * b), *ds.get_unchecked(b));
            even = _mm256_fmadd_ps(d, p, even);
        }
        *out.add(r) = hsum(_mm256_add_ps(even, odd));
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn rows_q6k(_: &[u8], _: (&[i8], &[f32], &[i16]), _: *mut f32) {
    unreachable!("kernels are never detected off x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn rows_q8_0(_: &[u8], _: (&[i8], &[f32]), _: *mut f32) {
    unreachable!("kernels are never detected off x86_64")
}

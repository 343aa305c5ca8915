//! GGUF weights (Q4_1, Q5_0, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K)
//! repacked at load for a GEMM of tolk's own, after llama.cpp's `q4_K_8x8`
//! repacking: eight weight rows are
//! interleaved so that each 32-bit lane of an AVX2 register holds four
//! consecutive values of one row. One weight register then meets one
//! activation word broadcast to every lane, and a single `vpdpbusd`
//! (AVX-VNNI; `vpmaddubsw` + `vpmaddwd` on plain AVX2) adds four products to
//! each of the eight rows: no horizontal sums, no per-row activation loads,
//! and the sub-block scales of eight rows applied by one multiply.
//!
//! The scales and minimums are decoded at load (ggml packs them in 6 bits),
//! the super-block scales are stored as f32, and the 5th and 6th bits of
//! Q5_K/Q6_K values lie in planes of their own, so the inner loop only
//! masks and shifts. A prompt runs four activation rows against each
//! unpacked weight register.
//!
//! Group layouts (per super-block of 256 values, eight rows; `r` a row of
//! the group, `t` 0..4 a value of a 4-value word):
//! - Q4_K/Q5_K: `d [f32; 8]`, `dmin [f32; 8]`, scales and minimums as byte
//!   pairs `[pair p][r][2]` (sub-blocks 2p and 2p + 1), then nibbles
//!   `[p][word i][r][t]` = value 64p + 4i + t | value 64p + 32 + 4i + t << 4;
//!   Q5_K adds `[i][r][t]` whose bit j is bit 4 of value 32j + 4i + t.
//! - Q6_K: `d [f32; 8]`, scales as pairs `[q][r][2]` (sub-blocks of 16
//!   values 2q, 2q + 1), nibbles `[c][r][t]` = low 4 bits of value
//!   4c + t | those of value 128 + 4c + t << 4 (c < 32), then the top two
//!   bits `[h][r][t]` of values 4h + t, 64 + 4h + t, 128 + 4h + t and
//!   192 + 4h + t at bits 0, 2, 4 and 6 (h < 16).
//!
//! And per block of 32 values (activations quantized per 32, ggml's Q8_0):
//! - Q8_0: `d [f16; 8]`, values `[word i][r][t]` as signed bytes.
//! - Q5_0: `d [f16; 8]`, nibbles `[i][r][t]` (ggml's own bytes: value
//!   4i + t | value 16 + 4i + t << 4), then `[r][t]` whose bit j is bit 4 of
//!   value 4j + t.
//! - Q4_1: `d [f16; 8]`, `m [f16; 8]`, nibbles as Q5_0's.

use super::avx2::{Activations, Format, QK, QK_K};
use super::int8::Isa;
use super::kquants::KActivations;
use super::SharedOut;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Weight rows per interleaved group: one per 32-bit lane.
const GROUP: usize = 8;

/// Activation rows a prompt tile runs against one weight group.
const TILE_ROWS: usize = 4;

/// Bytes of quantized activations walked per band: the band's rows stay in
/// the L2 cache while the weight groups of a thread pass over them.
const BAND_BYTES: usize = 256 << 10;

/// Bytes of one group's block (super-block for the K-quants).
const fn group_bytes(format: Format) -> usize {
    match format {
        Format::Q4K => 64 + 128 + 1024,
        Format::Q5K => 64 + 128 + 1024 + 256,
        Format::Q6K => 32 + 128 + 1024 + 512,
        Format::Q8_0 => 16 + 256,
        Format::Q5_0 => 16 + 128 + 32,
        Format::Q4_1 => 32 + 128,
    }
}

/// Whether `format` is multiplied with activations quantized as ggml's Q8_K
/// (one scale per 256 values) rather than per 32.
pub fn is_k_quant(format: Format) -> bool {
    matches!(format, Format::Q4K | Format::Q5K | Format::Q6K)
}

/// Quantized activation rows, of the kind the weight's format takes.
#[derive(Clone, Copy)]
pub enum Acts<'a> {
    /// For the K-quants.
    K(&'a KActivations),
    /// For Q8_0, Q5_0, Q4_1.
    B32(&'a Activations),
}

impl Acts<'_> {
    fn rows(&self) -> usize {
        match self {
            Acts::K(a) => a.rows(),
            Acts::B32(a) => a.rows(),
        }
    }

    fn values(&self) -> usize {
        match self {
            Acts::K(a) => a.blocks() * QK_K,
            Acts::B32(a) => a.blocks() * QK,
        }
    }
}

/// A weight matrix `[n, k]` in eight-row groups (the last padded with zero
/// rows).
#[derive(Debug)]
pub struct Packed {
    format: Format,
    n: usize,
    k: usize,
    data: memmap2::MmapMut,
}

/// Writes row `r` of a group's super-block (module docs) from ggml's block
/// `x`: mostly 4-byte words moved as they are.
fn write_row(format: Format, x: &[u8], r: usize, out: &mut [u8]) {
    let f16 = |i: usize| half::f16::from_le_bytes([x[i], x[i + 1]]).to_f32();
    // Fixed-size moves (a slice of run-time length would be a memcpy call
    // per word: most of the load time).
    fn put(out: &mut [u8], at: usize, word: [u8; 4]) {
        out[at..at + 4].copy_from_slice(&word);
    }
    let word = |bytes: &[u8]| -> [u8; 4] { bytes.try_into().expect("4-byte word") };
    match format {
        Format::Q4K | Format::Q5K => {
            put(out, 4 * r, f16(0).to_le_bytes());
            put(out, 32 + 4 * r, f16(2).to_le_bytes());
            let sc = &x[4..16];
            for j in 0..8 {
                let (scale, min) = if j < 4 {
                    (sc[j] & 63, sc[j + 4] & 63)
                } else {
                    (
                        (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4),
                        (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                    )
                };
                let at = 16 * (j / 2) + 2 * r + j % 2;
                out[64 + at] = scale;
                out[128 + at] = min;
            }
            // ggml's byte 32p + l already holds values 64p + l and 64p + 32 + l,
            // and Q5_K's qh[l] bit j is the fifth bit of value 32j + l.
            let qs = if format == Format::Q5K {
                &x[48..176]
            } else {
                &x[16..144]
            };
            for (i, q) in qs.chunks_exact(4).enumerate() {
                put(out, 192 + 32 * i + 4 * r, word(q));
            }
            if format == Format::Q5K {
                for (i, qh) in x[16..48].chunks_exact(4).enumerate() {
                    put(out, 1216 + 32 * i + 4 * r, word(qh));
                }
            }
        }
        Format::Q6K => {
            let (ql, qh, sc) = (&x[..128], &x[128..192], &x[192..208]);
            put(out, 4 * r, f16(208).to_le_bytes());
            for (j, &scale) in sc.iter().enumerate() {
                out[32 + 16 * (j / 2) + 2 * r + j % 2] = scale;
            }
            // Value u < 128 of each half: low nibble of ql[u] (u < 64) or
            // high nibble of ql[u - 64]; its top bits are bits 2(u / 32) of
            // qh[u % 32] (ggml's dequantize_row_q6_K).
            let (ql0, ql1) = (&ql[..64], &ql[64..]);
            let mut nibbles = [0u8; 128];
            for u in 0..64 {
                nibbles[u] = (ql0[u] & 0xF) | (ql1[u] << 4);
                nibbles[u + 64] = (ql0[u] >> 4) | (ql1[u] & 0xF0);
            }
            let (qh0, qh1) = (&qh[..32], &qh[32..]);
            let mut tops = [0u8; 64];
            for w in 0..64 {
                let shift = 2 * (w / 32);
                let (a, b) = (qh0[w % 32] >> shift, qh1[w % 32] >> shift);
                tops[w] = (a & 3) | ((a >> 4) & 3) << 2 | (b & 3) << 4 | ((b >> 4) & 3) << 6;
            }
            for (c, q) in nibbles.chunks_exact(4).enumerate() {
                put(out, 160 + 32 * c + 4 * r, word(q));
            }
            for (h, q) in tops.chunks_exact(4).enumerate() {
                put(out, 1184 + 32 * h + 4 * r, word(q));
            }
        }
        Format::Q8_0 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            for (i, q) in x[2..34].chunks_exact(4).enumerate() {
                put(out, 16 + 32 * i + 4 * r, word(q));
            }
        }
        Format::Q5_0 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            for (i, q) in x[6..22].chunks_exact(4).enumerate() {
                put(out, 16 + 32 * i + 4 * r, word(q));
            }
            // ggml's qh bit v is bit 4 of value v.
            let qh = u32::from_le_bytes(word(&x[2..6]));
            let bits = std::array::from_fn(|t| {
                (0..8).fold(0u8, |b, j| b | (((qh >> (4 * j + t)) & 1) as u8) << j)
            });
            put(out, 144 + 4 * r, bits);
        }
        Format::Q4_1 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            out[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&x[2..4]);
            for (i, q) in x[4..20].chunks_exact(4).enumerate() {
                put(out, 32 + 32 * i + 4 * r, word(q));
            }
        }
    }
}

/// `len` zero bytes of anonymous memory, or an error when there is not as
/// much. Not asked for in 2 MiB pages: where the kernel compacts memory to
/// find them (transparent huge pages on `madvise`), loading the 1.5 B model
/// took twice as long, for a decoding speed-up lost in the noise.
fn zeroed(len: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapOptions::new()
        .len(len.max(1))
        .populate()
        .map_anon()
}

impl Packed {
    /// Repacks `n` rows of `k` values (`k` a multiple of the format's
    /// block) in ggml's `format` layout, groups in parallel on rayon's
    /// pool. An error when the memory cannot be had.
    pub fn pack(format: Format, bytes: &[u8], n: usize, k: usize) -> std::io::Result<Self> {
        use rayon::prelude::*;
        let row_bytes = format.row_bytes(k);
        let block_values = format.block_values();
        assert!(k.is_multiple_of(block_values) && bytes.len() == n * row_bytes);
        let (blocks, block_bytes, gb) =
            (k / block_values, format.block_bytes(), group_bytes(format));
        let mut data = zeroed(n.div_ceil(GROUP) * blocks * gb)?;
        if blocks > 0 {
            data.par_chunks_mut(blocks * gb)
                .enumerate()
                .for_each(|(g, out)| {
                    for (b, out) in out.chunks_exact_mut(gb).enumerate() {
                        // Padding rows stay zero (every scale zero).
                        for r in 0..GROUP.min(n - GROUP * g) {
                            let at = (GROUP * g + r) * row_bytes + b * block_bytes;
                            write_row(format, &bytes[at..at + block_bytes], r, out);
                        }
                    }
                });
        }
        Ok(Self { format, n, k, data })
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
    /// threads share the groups of weight rows.
    ///
    /// # Panics
    /// When `acts` is not the kind the format takes ([`is_k_quant`]) or
    /// not `k` values wide, or `out` is not `rows × n`.
    pub fn matmul(&self, isa: Isa, acts: Acts, out: &mut [f32]) {
        let m = acts.rows();
        assert!(
            out.len() == m * self.n
                && acts.values() == self.k
                && matches!(acts, Acts::K(_)) == is_k_quant(self.format)
        );
        if m == 0 || self.n == 0 {
            return;
        }
        let out_ptr = SharedOut(out.as_mut_ptr());
        super::for_ranges(self.n.div_ceil(GROUP), m * self.n * self.k, 1, |groups| {
            // SAFETY: `isa` was detected on this CPU; each range of groups
            // writes only its own weight rows' columns of `out` (disjoint
            // across ranges), which holds m × n values (asserted above).
            unsafe { self.groups(isa, acts, groups, &out_ptr) }
        });
    }

    /// Groups `range` for every activation row, in bands of rows that stay
    /// in cache.
    ///
    /// # Safety
    /// `isa` runs on this CPU; nobody else writes these columns of `out`.
    unsafe fn groups(&self, isa: Isa, acts: Acts, range: std::ops::Range<usize>, out: &SharedOut) {
        let m = acts.rows();
        let band = (BAND_BYTES / self.k.max(1)).max(TILE_ROWS) / TILE_ROWS * TILE_ROWS;
        for i0 in (0..m).step_by(band) {
            let i1 = (i0 + band).min(m);
            for g in range.clone() {
                // The group's columns of `out` (the last group may be short).
                let cols = (self.n - GROUP * g).min(GROUP);
                let mut i = i0;
                while i < i1 {
                    let tile = (i1 - i).min(TILE_ROWS);
                    let mut res = [[0f32; GROUP]; TILE_ROWS];
                    match tile {
                        4 => self.tile::<4>(isa, acts, g, i, &mut res),
                        3 => self.tile::<3>(isa, acts, g, i, &mut res),
                        2 => self.tile::<2>(isa, acts, g, i, &mut res),
                        _ => self.tile::<1>(isa, acts, g, i, &mut res),
                    }
                    for (r, res) in res.iter().take(tile).enumerate() {
                        let to = out.ptr().add((i + r) * self.n + GROUP * g);
                        std::ptr::copy_nonoverlapping(res.as_ptr(), to, cols);
                    }
                    i += tile;
                }
            }
        }
    }

    /// Group `g` times activation rows `row..row + R`, into `res[..R]`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile<const R: usize>(
        &self,
        isa: Isa,
        acts: Acts,
        g: usize,
        row: usize,
        res: &mut [[f32; GROUP]; TILE_ROWS],
    ) {
        let gb = group_bytes(self.format);
        let blocks = self.k / self.format.block_values();
        let w = self.data.as_ptr().add(g * blocks * gb);
        let vnni = isa == Isa::AvxVnni;
        let out = match (acts, self.format) {
            (Acts::K(acts), format) => {
                let t = Tile { w, acts, row };
                match (vnni, format) {
                    (true, Format::Q4K) => tile_vnni::<K4<false>, R>(t),
                    (true, Format::Q5K) => tile_vnni::<K4<true>, R>(t),
                    (true, _) => tile_vnni::<K6, R>(t),
                    (false, Format::Q4K) => tile_avx2::<K4<false>, R>(t),
                    (false, Format::Q5K) => tile_avx2::<K4<true>, R>(t),
                    (false, _) => tile_avx2::<K6, R>(t),
                }
            }
            (Acts::B32(acts), format) => {
                let t = Tile { w, acts, row };
                match (vnni, format) {
                    (true, Format::Q8_0) => tile_vnni::<B32<Q8>, R>(t),
                    (true, Format::Q5_0) => tile_vnni::<B32<Q5>, R>(t),
                    (true, _) => tile_vnni::<B32<Q4M>, R>(t),
                    (false, Format::Q8_0) => tile_avx2::<B32<Q8>, R>(t),
                    (false, Format::Q5_0) => tile_avx2::<B32<Q5>, R>(t),
                    (false, _) => tile_avx2::<B32<Q4M>, R>(t),
                }
            }
        };
        res[..R].copy_from_slice(&out);
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tile<const R: usize>(
        &self,
        _: Isa,
        _: Acts,
        _: usize,
        _: usize,
        _: &mut [[f32; GROUP]; TILE_ROWS],
    ) {
        unreachable!("Isa is never detected off x86_64")
    }
}

/// What a tile multiplies: a group's first super-block and activation rows
/// `row..`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Tile<'a, A> {
    w: *const u8,
    acts: &'a A,
    row: usize,
}

/// Four unsigned weight bytes times four signed activation bytes, added to
/// each 32-bit lane.
#[cfg(target_arch = "x86_64")]
trait Dot {
    unsafe fn dot4(acc: __m256i, w: __m256i, a: __m256i) -> __m256i;
    /// What [`Dot::dot4_signed`] adds to each sum per unit of the activations' sum.
    const SIGNED_BIAS: i32;
    /// [`Dot::dot4`] of signed weight bytes: plus `SIGNED_BIAS` × Σ a.
    unsafe fn dot4_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i;
}

#[cfg(target_arch = "x86_64")]
struct Vnni;

#[cfg(target_arch = "x86_64")]
impl Dot for Vnni {
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, w, a)
    }
    /// The weights + 128 as unsigned bytes.
    const SIGNED_BIAS: i32 = 128;
    #[inline(always)]
    unsafe fn dot4_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), a)
    }
}

/// Plain AVX2: pairs of products in 16 bits (at most 2 × 63 × 127, no
/// saturation), then pairs of pairs in 32.
#[cfg(target_arch = "x86_64")]
struct Plain;

#[cfg(target_arch = "x86_64")]
impl Dot for Plain {
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(w, a);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    /// |w| times the activations with w's sign (no pair of products above
    /// 2 × 128 × 127 saturates).
    const SIGNED_BIAS: i32 = 0;
    #[inline(always)]
    unsafe fn dot4_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        Self::dot4(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }
}

/// One K-quant's group kernel.
#[cfg(target_arch = "x86_64")]
trait GroupKernel {
    const FORMAT: Format;
    /// The activations it takes.
    type Acts;
    unsafe fn run<D: Dot, const R: usize>(t: Tile<Self::Acts>) -> [[f32; GROUP]; R];
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn tile_vnni<K: GroupKernel, const R: usize>(t: Tile<K::Acts>) -> [[f32; GROUP]; R] {
    K::run::<Vnni, R>(t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<K: GroupKernel, const R: usize>(t: Tile<K::Acts>) -> [[f32; GROUP]; R] {
    K::run::<Plain, R>(t)
}

/// The activation word (four bytes) at `at`, in every lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn broadcast(at: *const i8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(at as *const i32))
}

/// The scales of sub-block `2p + odd` of eight rows, as 32-bit lanes, from
/// the byte pairs of `p` at `pairs`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pair_lanes(pairs: *const u8, odd: bool) -> __m256i {
    let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(pairs as *const __m128i));
    if odd {
        _mm256_srai_epi32::<16>(v)
    } else {
        _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(v))
    }
}

/// The lanes of `acc` as eight floats each.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes<const R: usize>(acc: [__m256; R]) -> [[f32; GROUP]; R] {
    let mut res = [[0f32; GROUP]; R];
    for (res, acc) in res.iter_mut().zip(acc) {
        _mm256_storeu_ps(res.as_mut_ptr(), acc);
    }
    res
}

/// Q4_K, and Q5_K when `HIGH`.
#[cfg(target_arch = "x86_64")]
struct K4<const HIGH: bool>;

#[cfg(target_arch = "x86_64")]
impl<const HIGH: bool> K4<HIGH> {
    /// Sub-blocks 2p and 2p + 1 (64 values: the low and high nibbles of
    /// the same bytes) of `R` activation rows against the group super-block
    /// at `x`: eight 4-value words each, then the sub-block scales. Two
    /// independent sums per row keep `vpdpbusd`'s latency hidden.
    #[inline(always)]
    unsafe fn pair<D: Dot, const R: usize>(
        x: *const u8,
        act: &[*const i8; R],
        p: usize,
        sums: &mut [__m256i; R],
    ) {
        let m4 = _mm256_set1_epi8(0x0F);
        let m16 = _mm256_set1_epi8(0x10);
        let nibbles = x.add(192 + 256 * p);
        let mut lo_acc = [_mm256_setzero_si256(); R];
        let mut hi_acc = [_mm256_setzero_si256(); R];
        for i in 0..8 {
            let q = _mm256_loadu_si256(nibbles.add(32 * i) as *const __m256i);
            let mut lo = _mm256_and_si256(q, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            if HIGH {
                // Bit 2p of each fifth-bit byte moved to bit 4 (and 2p + 1 to 5).
                let h = _mm256_loadu_si256(x.add(1216 + 32 * i) as *const __m256i);
                let h = if p < 2 {
                    _mm256_sll_epi16(h, _mm_cvtsi32_si128(4 - 2 * p as i32))
                } else {
                    _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * p as i32 - 4))
                };
                lo = _mm256_or_si256(lo, _mm256_and_si256(h, m16));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srli_epi16::<1>(h), m16));
            }
            for r in 0..R {
                let y = act[r].add(64 * p + 4 * i);
                lo_acc[r] = D::dot4(lo_acc[r], lo, broadcast(y));
                hi_acc[r] = D::dot4(hi_acc[r], hi, broadcast(y.add(32)));
            }
        }
        let lo_scale = pair_lanes(x.add(64 + 16 * p), false);
        let hi_scale = pair_lanes(x.add(64 + 16 * p), true);
        for r in 0..R {
            let lo = _mm256_mullo_epi32(lo_acc[r], lo_scale);
            let hi = _mm256_mullo_epi32(hi_acc[r], hi_scale);
            sums[r] = _mm256_add_epi32(sums[r], _mm256_add_epi32(lo, hi));
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl<const HIGH: bool> GroupKernel for K4<HIGH> {
    const FORMAT: Format = if HIGH { Format::Q5K } else { Format::Q4K };
    type Acts = KActivations;

    #[inline(always)]
    unsafe fn run<D: Dot, const R: usize>(t: Tile<Self::Acts>) -> [[f32; GROUP]; R] {
        let a = t.acts;
        let nb = a.blocks();
        let gb = group_bytes(Self::FORMAT);
        // The minimums' share in an accumulator of its own, subtracted at
        // the end: llama.cpp's order of float operations for its repacked
        // Q4_K, so both round alike and greedy decoding parts less often.
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_min = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let x = t.w.add(b * gb);
            let act: [*const i8; R] = std::array::from_fn(|r| a.qs_at(t.row + r, b));
            let mut sums = [_mm256_setzero_si256(); R];
            for p in 0..4 {
                Self::pair::<D, R>(x, &act, p, &mut sums);
            }
            let d = _mm256_loadu_ps(x as *const f32);
            let dmin = _mm256_loadu_ps(x.add(32) as *const f32);
            let mins: [__m256i; 4] = std::array::from_fn(|p| {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(x.add(128 + 16 * p) as *const __m128i))
            });
            for r in 0..R {
                let (da, sums32) = a.scale_and_sums32(t.row + r, b);
                // Σ min_j × (sum of the activations of sub-block j).
                let mut m = _mm256_setzero_si256();
                for (p, mins) in mins.iter().enumerate() {
                    let pair = _mm256_set1_epi32(std::ptr::read_unaligned(
                        sums32.add(2 * p) as *const i32
                    ));
                    m = _mm256_add_epi32(m, _mm256_madd_epi16(*mins, pair));
                }
                let da = _mm256_set1_ps(da);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), _mm256_mul_ps(d, da), acc[r]);
                acc_min[r] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dmin, da), acc_min[r]);
            }
        }
        for r in 0..R {
            acc[r] = _mm256_sub_ps(acc[r], acc_min[r]);
        }
        lanes(acc)
    }
}

/// Q6_K.
#[cfg(target_arch = "x86_64")]
struct K6;

#[cfg(target_arch = "x86_64")]
impl K6 {
    /// Quarters `Q` and `Q + 2` (64 values each: the low and high nibbles
    /// of the same bytes, four 16-value sub-blocks each) of `R` activation
    /// rows against the group super-block at `x`. Two independent sums per
    /// row keep `vpdpbusd`'s latency hidden.
    #[inline(always)]
    unsafe fn quarters<D: Dot, const R: usize, const Q: usize>(
        x: *const u8,
        act: &[*const i8; R],
        sums: &mut [__m256i; R],
    ) {
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        let nibbles = x.add(160 + 512 * Q);
        for s in 0..4 {
            let mut lo_acc = [_mm256_setzero_si256(); R];
            let mut hi_acc = [_mm256_setzero_si256(); R];
            for h in 4 * s..4 * s + 4 {
                let n = _mm256_loadu_si256(nibbles.add(32 * h) as *const __m256i);
                let top = _mm256_loadu_si256(x.add(1184 + 32 * h) as *const __m256i);
                // Quarter Q's top bits are bits 2Q, 2Q + 1; quarter Q + 2's 2Q + 4, 2Q + 5.
                let (top_lo, top_hi) = if Q == 0 {
                    (_mm256_slli_epi16::<4>(top), top)
                } else {
                    (_mm256_slli_epi16::<2>(top), _mm256_srli_epi16::<2>(top))
                };
                let lo = _mm256_or_si256(_mm256_and_si256(n, m4), _mm256_and_si256(top_lo, m30));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(n), m4),
                    _mm256_and_si256(top_hi, m30),
                );
                for r in 0..R {
                    let y = act[r].add(64 * Q + 4 * h);
                    lo_acc[r] = D::dot4(lo_acc[r], lo, broadcast(y));
                    hi_acc[r] = D::dot4(hi_acc[r], hi, broadcast(y.add(128)));
                }
            }
            // Sub-blocks 4Q + s and 4(Q + 2) + s.
            let (lo_sub, hi_sub) = (4 * Q + s, 4 * (Q + 2) + s);
            let lo_scale = pair_lanes(x.add(32 + 16 * (lo_sub / 2)), lo_sub % 2 == 1);
            let hi_scale = pair_lanes(x.add(32 + 16 * (hi_sub / 2)), hi_sub % 2 == 1);
            for r in 0..R {
                let lo = _mm256_mullo_epi32(lo_acc[r], lo_scale);
                let hi = _mm256_mullo_epi32(hi_acc[r], hi_scale);
                sums[r] = _mm256_add_epi32(sums[r], _mm256_add_epi32(lo, hi));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl GroupKernel for K6 {
    const FORMAT: Format = Format::Q6K;
    type Acts = KActivations;

    #[inline(always)]
    unsafe fn run<D: Dot, const R: usize>(t: Tile<Self::Acts>) -> [[f32; GROUP]; R] {
        let a = t.acts;
        let nb = a.blocks();
        let gb = group_bytes(Self::FORMAT);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let x = t.w.add(b * gb);
            let act: [*const i8; R] = std::array::from_fn(|r| a.qs_at(t.row + r, b));
            let mut sums = [_mm256_setzero_si256(); R];
            Self::quarters::<D, R, 0>(x, &act, &mut sums);
            Self::quarters::<D, R, 1>(x, &act, &mut sums);
            let d = _mm256_loadu_ps(x as *const f32);
            let scales: [__m256i; 8] = std::array::from_fn(|q| {
                _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(32 + 16 * q) as *const __m128i))
            });
            for r in 0..R {
                let (da, bsums) = a.scale_and_sums16(t.row + r, b);
                // The −32 of every value: 32 × Σ scale_s × (sum of sub-block s).
                let mut offset = _mm256_setzero_si256();
                for (q, scales) in scales.iter().enumerate() {
                    let pair =
                        _mm256_set1_epi32(std::ptr::read_unaligned(bsums.add(2 * q) as *const i32));
                    offset = _mm256_add_epi32(offset, _mm256_madd_epi16(*scales, pair));
                }
                let total = _mm256_sub_epi32(sums[r], _mm256_slli_epi32::<5>(offset));
                let da = _mm256_set1_ps(da);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(d, da), acc[r]);
            }
        }
        lanes(acc)
    }
}

/// The block-32 formats: what a weight byte holds and what is added to it.
#[cfg(target_arch = "x86_64")]
trait Block32 {
    const FORMAT: Format;
    /// Nibbles (Q5_0, Q4_1) rather than signed bytes (Q8_0).
    const NIBBLES: bool;
    /// A fifth-bit plane (Q5_0).
    const FIFTH_BIT: bool;
    /// What every unsigned value stands above zero (Q5_0: 16).
    const ZERO: i32;
    /// A per-row minimum (Q4_1's `m`), after the scales.
    const MIN: bool;
}

#[cfg(target_arch = "x86_64")]
struct Q8;
#[cfg(target_arch = "x86_64")]
struct Q5;
#[cfg(target_arch = "x86_64")]
struct Q4M;

#[cfg(target_arch = "x86_64")]
impl Block32 for Q8 {
    const FORMAT: Format = Format::Q8_0;
    const NIBBLES: bool = false;
    const FIFTH_BIT: bool = false;
    const ZERO: i32 = 0;
    const MIN: bool = false;
}

#[cfg(target_arch = "x86_64")]
impl Block32 for Q5 {
    const FORMAT: Format = Format::Q5_0;
    const NIBBLES: bool = true;
    const FIFTH_BIT: bool = true;
    const ZERO: i32 = 16;
    const MIN: bool = false;
}

#[cfg(target_arch = "x86_64")]
impl Block32 for Q4M {
    const FORMAT: Format = Format::Q4_1;
    const NIBBLES: bool = true;
    const FIFTH_BIT: bool = false;
    const ZERO: i32 = 0;
    const MIN: bool = true;
}

/// Q8_0, Q5_0 and Q4_1 against activations quantized per 32 values.
#[cfg(target_arch = "x86_64")]
struct B32<F>(std::marker::PhantomData<F>);

#[cfg(target_arch = "x86_64")]
impl<F: Block32> GroupKernel for B32<F> {
    const FORMAT: Format = F::FORMAT;
    type Acts = Activations;

    #[inline(always)]
    unsafe fn run<D: Dot, const R: usize>(t: Tile<Self::Acts>) -> [[f32; GROUP]; R] {
        let a = t.acts;
        let nb = a.blocks();
        let gb = group_bytes(F::FORMAT);
        let m4 = _mm256_set1_epi8(0x0F);
        let m16 = _mm256_set1_epi8(0x10);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let x = t.w.add(b * gb);
            let act: [*const i8; R] = std::array::from_fn(|r| a.qs_at(t.row + r, b));
            // Two independent sums per row: words 0..4 and 4..8.
            let mut lo_acc = [_mm256_setzero_si256(); R];
            let mut hi_acc = [_mm256_setzero_si256(); R];
            if F::NIBBLES {
                let nibbles = x.add(if F::MIN { 32 } else { 16 });
                let bits = if F::FIFTH_BIT {
                    _mm256_loadu_si256(x.add(144) as *const __m256i)
                } else {
                    _mm256_setzero_si256()
                };
                for i in 0..4 {
                    let q = _mm256_loadu_si256(nibbles.add(32 * i) as *const __m256i);
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if F::FIFTH_BIT {
                        // Bits i (word i) and 4 + i (word 4 + i) moved to bit 4.
                        let lo_bit = _mm256_sll_epi16(bits, _mm_cvtsi32_si128(4 - i as i32));
                        let hi_bit = _mm256_srl_epi16(bits, _mm_cvtsi32_si128(i as i32));
                        lo = _mm256_or_si256(lo, _mm256_and_si256(lo_bit, m16));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(hi_bit, m16));
                    }
                    for r in 0..R {
                        let y = act[r].add(4 * i);
                        lo_acc[r] = D::dot4(lo_acc[r], lo, broadcast(y));
                        hi_acc[r] = D::dot4(hi_acc[r], hi, broadcast(y.add(16)));
                    }
                }
            } else {
                for i in 0..4 {
                    let lo = _mm256_loadu_si256(x.add(16 + 32 * i) as *const __m256i);
                    let hi = _mm256_loadu_si256(x.add(16 + 32 * (i + 4)) as *const __m256i);
                    for r in 0..R {
                        let y = act[r].add(4 * i);
                        lo_acc[r] = D::dot4_signed(lo_acc[r], lo, broadcast(y));
                        hi_acc[r] = D::dot4_signed(hi_acc[r], hi, broadcast(y.add(16)));
                    }
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(x as *const __m128i));
            let offset = if F::NIBBLES { F::ZERO } else { D::SIGNED_BIAS };
            for r in 0..R {
                let (da, sum, scaled_sum) = a.block(t.row + r, b);
                let mut dot = _mm256_add_epi32(lo_acc[r], hi_acc[r]);
                if offset != 0 {
                    dot = _mm256_sub_epi32(dot, _mm256_set1_epi32(offset * sum));
                }
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(da));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[r]);
                if F::MIN {
                    let m = _mm256_cvtph_ps(_mm_loadu_si128(x.add(16) as *const __m128i));
                    acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(scaled_sum), acc[r]);
                }
            }
        }
        lanes(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::super::avx2::Avx2;
    use super::super::tests::values;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// One row's super-block, unpacked: value = d × scale × q − dmin × min
    /// (Q4_K/Q5_K: 32-value sub-blocks) or d × scale × (q − 32) (Q6_K:
    /// 16-value sub-blocks): ggml's `dequantize_row_q{4,5,6}_K` up to the
    /// multiplications, independent of the packing.
    struct Super {
        d: f32,
        dmin: f32,
        scales: [i8; 16],
        mins: [u8; 8],
        q: [u8; QK_K],
    }

    impl Super {
        fn unpack(format: Format, x: &[u8]) -> Self {
            let f16 = |i: usize| half::f16::from_le_bytes([x[i], x[i + 1]]).to_f32();
            let mut s = Super {
                d: 0.0,
                dmin: 0.0,
                scales: [0; 16],
                mins: [0; 8],
                q: [0; QK_K],
            };
            match format {
                Format::Q4K | Format::Q5K => {
                    s.d = f16(0);
                    s.dmin = f16(2);
                    let sc = &x[4..16];
                    for j in 0..8 {
                        let (scale, min) = if j < 4 {
                            (sc[j] & 63, sc[j + 4] & 63)
                        } else {
                            (
                                (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4),
                                (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
                            )
                        };
                        s.scales[j] = scale as i8;
                        s.mins[j] = min;
                    }
                    let (qh, qs) = if format == Format::Q5K {
                        (Some(&x[16..48]), &x[48..176])
                    } else {
                        (None, &x[16..144])
                    };
                    for (v, q) in s.q.iter_mut().enumerate() {
                        let (p, half, l) = (v / 64, (v / 32) % 2, v % 32);
                        let byte = qs[32 * p + l];
                        *q = if half == 0 { byte & 0xF } else { byte >> 4 };
                        if let Some(qh) = qh {
                            *q |= ((qh[l] >> (v / 32)) & 1) << 4;
                        }
                    }
                }
                _ => {
                    let (ql, qh, sc) = (&x[..128], &x[128..192], &x[192..208]);
                    s.d = f16(208);
                    for (scale, &b) in s.scales.iter_mut().zip(sc) {
                        *scale = b as i8;
                    }
                    for half in 0..2 {
                        let (ql, qh, y) = (&ql[64 * half..], &qh[32 * half..], 128 * half);
                        for l in 0..32 {
                            s.q[y + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                            s.q[y + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                            s.q[y + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                            s.q[y + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                        }
                    }
                }
            }
            s
        }
    }

    /// The exact sums of the integer products (the kernels' arithmetic,
    /// one f32 rounding per super-block) from ggml's unpacked blocks.
    fn reference(format: Format, bytes: &[u8], n: usize, k: usize, a: &KActivations) -> Vec<f32> {
        let (row_bytes, bb) = (format.row_bytes(k), format.block_bytes());
        let mut out = vec![0f32; n * a.rows()];
        for j in 0..n {
            for i in 0..a.rows() {
                let mut total = 0f64;
                for b in 0..k / QK_K {
                    let at = j * row_bytes + b * bb;
                    let s = Super::unpack(format, &bytes[at..at + bb]);
                    let (da, q8) = (a.scale_and_sums16(i, b).0, a.qs_at(i, b));
                    let (mut dot, mut mins) = (0i64, 0i64);
                    for v in 0..QK_K {
                        // SAFETY: a super-block of activations is 256 values.
                        let y = unsafe { *q8.add(v) } as i64;
                        let (scale, q) = match format {
                            Format::Q6K => (s.scales[v / 16] as i64, s.q[v] as i64 - 32),
                            _ => (s.scales[v / 32] as i64, s.q[v] as i64),
                        };
                        dot += scale * q * y;
                        if format != Format::Q6K {
                            mins += s.mins[v / 32] as i64 * y;
                        }
                    }
                    total += (s.d * da) as f64 * dot as f64 - (s.dmin * da) as f64 * mins as f64;
                }
                out[i * n + j] = total as f32;
            }
        }
        out
    }

    #[test]
    fn every_isa_matches_the_integer_reference() {
        let Some(kernels) = Avx2::detect() else {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        };
        let dev = Device::Cpu;
        for (dtype, format) in [
            (GgmlDType::Q4K, Format::Q4K),
            (GgmlDType::Q5K, Format::Q5K),
            (GgmlDType::Q6K, Format::Q6K),
        ] {
            // 13 rows: one full group and one padded; 1, 4 and 6 activation rows.
            let (n, k) = (13, 512);
            let w = Tensor::from_vec(values(n * k, 11), (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap();
            let packed = Packed::pack(format, &bytes, n, k).unwrap();
            for m in [1, 4, 6] {
                let x = values(m * k, 12 + m as u64);
                let acts = kernels.quantize_k(&x, m, k);
                let want = reference(format, &bytes, n, k, &acts);
                let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
                for isa in Isa::all_here() {
                    let mut out = vec![0f32; m * n];
                    packed.matmul(isa, Acts::K(&acts), &mut out);
                    for (o, w) in out.iter().zip(&want) {
                        assert!(
                            (o - w).abs() <= 1e-5 * scale,
                            "{format:?} {isa:?} m={m}: {o} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unpacking_matches_candle_dequantization() {
        let dev = Device::Cpu;
        for (dtype, format) in [
            (GgmlDType::Q4K, Format::Q4K),
            (GgmlDType::Q5K, Format::Q5K),
            (GgmlDType::Q6K, Format::Q6K),
        ] {
            let w = Tensor::from_vec(values(2 * 512, 3), (2, 512), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dense: Vec<f32> = q
                .dequantize(&dev)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let bytes = q.data().unwrap();
            let bb = format.block_bytes();
            for (b, want) in dense.chunks_exact(QK_K).enumerate() {
                let s = Super::unpack(format, &bytes[b * bb..(b + 1) * bb]);
                for (v, w) in want.iter().enumerate() {
                    let got = match format {
                        Format::Q6K => s.d * s.scales[v / 16] as f32 * (s.q[v] as f32 - 32.0),
                        _ => {
                            s.d * s.scales[v / 32] as f32 * s.q[v] as f32
                                - s.dmin * s.mins[v / 32] as f32
                        }
                    };
                    assert!(
                        (got - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{format:?} {v}: {got} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn block32_formats_match_the_dequantized_product_on_every_isa() {
        let Some(kernels) = Avx2::detect() else {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        };
        let dev = Device::Cpu;
        for (dtype, format) in [
            (GgmlDType::Q8_0, Format::Q8_0),
            (GgmlDType::Q5_0, Format::Q5_0),
            (GgmlDType::Q4_1, Format::Q4_1),
        ] {
            // 13 rows: one full group and one padded.
            let (n, k) = (13, 96);
            let w = Tensor::from_vec(values(n * k, 21), (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dense: Vec<f32> = q
                .dequantize(&dev)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let packed = Packed::pack(format, &q.data().unwrap(), n, k).unwrap();
            for m in [1, 4, 6] {
                let x = values(m * k, 22 + m as u64);
                let acts = kernels.quantize(&x, m, k);
                // The dequantized weights times the quantized activations:
                // what the kernels compute, but for float rounding (and
                // Q4_1's activation sums, rounded to f16 as ggml's Q8_1).
                let mut want = vec![0f32; n * m];
                for j in 0..n {
                    for i in 0..m {
                        let mut total = 0f64;
                        for b in 0..k / QK {
                            let (da, _, _) = acts.block(i, b);
                            let qa = acts.qs_at(i, b);
                            for v in 0..QK {
                                // SAFETY: a block of activations is 32 values.
                                let y = unsafe { *qa.add(v) } as f64 * da as f64;
                                total += dense[j * k + b * QK + v] as f64 * y;
                            }
                        }
                        want[i * n + j] = total as f32;
                    }
                }
                let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
                let mut first_isa: Option<Vec<f32>> = None;
                for isa in Isa::all_here() {
                    let mut out = vec![0f32; m * n];
                    packed.matmul(isa, Acts::B32(&acts), &mut out);
                    for (o, w) in out.iter().zip(&want) {
                        assert!(
                            (o - w).abs() <= 2e-3 * scale,
                            "{format:?} {isa:?} m={m}: {o} vs {w}"
                        );
                    }
                    // Every instruction set computes the same integers.
                    match &first_isa {
                        Some(first) => assert_eq!(first, &out, "{format:?} {isa:?} m={m}"),
                        None => first_isa = Some(out),
                    }
                }
            }
        }
    }
}

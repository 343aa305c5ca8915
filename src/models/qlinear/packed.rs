//! GGUF weights (Q4_1, Q5_0, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K)
//! repacked at load for a GEMM of tolk's own, after llama.cpp's `q4_K_8x8`
//! repacking: eight weight rows are interleaved so that each 32-bit lane of
//! an AVX2 register holds four consecutive values of one row. One weight
//! register then meets one
//! activation word broadcast to every lane, and a single `vpdpbusd`
//! (AVX-VNNI; `vpmaddubsw` + `vpmaddwd` on plain AVX2) adds four products to
//! each of the eight rows: no horizontal sums, no per-row activation loads,
//! and the sub-block scales of eight rows applied by one multiply.
//!
//! On AVX-512 VNNI a group is sixteen rows: two eight-row blocks side by
//! side per super-block, which a 512-bit register loads as one (prompts);
//! decoding takes each block on 256-bit registers, which measured faster.
//!
//! The scales and minimums are decoded at load (ggml packs them in 6 bits),
//! Q6_K's super-block scale is stored as f32 (Q4_K/Q5_K keep ggml's f16
//! `d` and `dmin`: four bytes a row less to read), and the 5th and 6th bits of
//! Q5_K/Q6_K values lie in words of their own, so the inner loop only
//! masks and shifts. A prompt runs four activation rows against each
//! unpacked weight register.
//!
//! Group layouts (per super-block of 256 values, eight rows; `r` a row of
//! the group, `t` 0..4 a value of a 4-value word):
//! - Q4_K/Q5_K: `d [f16; 8]`, `dmin [f16; 8]`, scales and minimums as byte
//!   pairs `[pair p][r][2]` (sub-blocks 2p and 2p + 1), for Q5_K
//!   `[i][r][t]` whose bit j is bit 4 of value 32j + 4i + t, then nibbles
//!   `[p][word i][r][t]` = value 64p + 4i + t | value 64p + 32 + 4i + t << 4.
//! - Q6_K: `d [f32; 8]`, scales as pairs `[q][r][2]` (sub-blocks of 16
//!   values 2q, 2q + 1), then for each h < 16 three words per row: the
//!   nibbles `[r][t]` of c = h and of c = 16 + h, where nibble word c holds
//!   the low 4 bits of value 4c + t | those of value 128 + 4c + t << 4,
//!   and the top two bits `[r][t]` of values 4h + t, 64 + 4h + t,
//!   128 + 4h + t and 192 + 4h + t at bits 0, 2, 4 and 6. The kernel's two
//!   passes (quarters 0 and 2, then 1 and 3) both walk h upwards.
//!
//! Decoding asks for no weights ahead (no software prefetch): each
//! group's super-blocks lie one after the other and every kernel reads a
//! super-block's bytes in about their order, which the hardware prefetcher
//! follows best. Measured on the Zen 4 EPYC of the thirteenth session, one
//! thread, weights far larger than the caches: Q4_K 15-17 GB/s with
//! prefetches 8-64 KB ahead into L2, 24-26 GB/s without; Q8_0 20 -> 21-22;
//! the 1.5 B Q4_K_M decoding 16-16.4 -> 20.2-21 tokens/s. (Q6_K had its
//! top bits in a plane of their own, read beside the nibbles 1 KB away,
//! and without prefetches streamed at 7 GB/s; interleaved as above, 21.)
//!
//! And per block of 32 values (activations quantized per 32, ggml's Q8_0):
//! - Q8_0: `d [f16; 8]`, values `[word i][r][t]` as signed bytes.
//! - Q5_0: `d [f16; 8]`, nibbles `[i][r][t]` (ggml's own bytes: value
//!   4i + t | value 16 + 4i + t << 4), then `[r][t]` whose bit j is bit 4 of
//!   value 4j + t.
//! - Q4_1: `d [f16; 8]`, `m [f16; 8]`, nibbles as Q5_0's.

use super::avx2::{Activations, Format, QK, QK_K};
use super::kquants::KActivations;
use super::SharedOut;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of an interleaved block: one per 32-bit lane of a 256-bit register.
/// A group is one block (AVX2, AVX-VNNI) or two side by side (AVX-512).
const BLOCK_ROWS: usize = 8;

/// Weight rows of the widest group.
const MAX_GROUP: usize = 2 * BLOCK_ROWS;

/// Activation rows a prompt tile runs against one weight group.
const TILE_ROWS: usize = 4;

/// Bytes of quantized activations walked per band: the band's rows stay in
/// the L2 cache while the weight groups of a thread pass over them.
const BAND_BYTES: usize = 256 << 10;

/// Bytes per row of one group's block (super-block for the K-quants): the
/// module docs' eight-row layouts.
const fn row_share(format: Format) -> usize {
    match format {
        Format::Q4K => 148,
        Format::Q5K => 180,
        Format::Q6K => 212,
        Format::Q8_0 => 34,
        Format::Q5_0 => 22,
        Format::Q4_1 => 20,
    }
}

/// Whether `format` is multiplied with activations quantized as ggml's Q8_K
/// (one scale per 256 values) rather than per 32.
pub fn is_k_quant(format: Format) -> bool {
    matches!(format, Format::Q4K | Format::Q5K | Format::Q6K)
}

/// The instruction set the kernels run on: these and Marian's int8 GEMM
/// ([`super::int8`]; the rows per register below are this module's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX2 `vpmaddubsw`/`vpmaddwd`, eight rows per register.
    Avx2,
    /// AVX-VNNI `vpdpbusd` on 256 bits, eight rows per register.
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd` on 512 bits, sixteen rows per register.
    Avx512Vnni,
}

impl Kernel {
    /// The best kernel this CPU runs (`None` off x86_64 or without AVX2,
    /// FMA and F16C), checked once. `TOLK_INT8_ISA=avx2` (or `avxvnni`)
    /// caps it (benchmarks, tests).
    pub fn detect() -> Option<Self> {
        static KERNEL: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            let cap = match std::env::var("TOLK_INT8_ISA").as_deref() {
                Ok("avx2") => Some(Self::Avx2),
                Ok("avxvnni") => Some(Self::AvxVnni),
                _ => None,
            };
            Self::all_here()
                .into_iter()
                .rfind(|k| cap.is_none_or(|cap| *k == cap || *k == Self::Avx2))
        })
    }

    /// Every kernel this CPU runs, the plainest first.
    pub fn all_here() -> Vec<Self> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                all.push(Self::Avx2);
                if is_x86_feature_detected!("avxvnni") {
                    all.push(Self::AvxVnni);
                }
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    all.push(Self::Avx512Vnni);
                }
            }
        }
        all
    }

    /// Weight rows per group.
    fn rows(self) -> usize {
        match self {
            Kernel::Avx512Vnni => 16,
            _ => 8,
        }
    }
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

/// A weight matrix `[n, k]` in groups of rows for one [`Kernel`] (the last
/// group padded with zero rows).
#[derive(Debug)]
pub struct Packed {
    format: Format,
    kernel: Kernel,
    n: usize,
    k: usize,
    data: memmap2::MmapMut,
}

/// Writes row `r` of an eight-row block (module docs) from ggml's block
/// `x`: mostly 4-byte words moved as they are.
fn write_row(format: Format, x: &[u8], r: usize, out: &mut [u8]) {
    let l = BLOCK_ROWS;
    let f16 = |i: usize| half::f16::from_le_bytes([x[i], x[i + 1]]).to_f32();
    // Fixed-size moves (a slice of run-time length would be a memcpy call
    // per word: most of the load time).
    fn put(out: &mut [u8], at: usize, word: [u8; 4]) {
        out[at..at + 4].copy_from_slice(&word);
    }
    let word = |bytes: &[u8]| -> [u8; 4] { bytes.try_into().expect("4-byte word") };
    match format {
        Format::Q4K | Format::Q5K => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            out[2 * l + 2 * r..2 * l + 2 * r + 2].copy_from_slice(&x[2..4]);
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
                let at = 2 * l * (j / 2) + 2 * r + j % 2;
                out[4 * l + at] = scale;
                out[12 * l + at] = min;
            }
            // ggml's byte 32p + l already holds values 64p + l and 64p + 32 + l,
            // and Q5_K's qh[l] bit j is the fifth bit of value 32j + l.
            let (qs, nibbles) = if format == Format::Q5K {
                (&x[48..176], 52 * l)
            } else {
                (&x[16..144], 20 * l)
            };
            for (i, q) in qs.chunks_exact(4).enumerate() {
                put(out, nibbles + 4 * l * i + 4 * r, word(q));
            }
            if format == Format::Q5K {
                for (i, qh) in x[16..48].chunks_exact(4).enumerate() {
                    put(out, 20 * l + 4 * l * i + 4 * r, word(qh));
                }
            }
        }
        Format::Q6K => {
            let sc = &x[192..208];
            put(out, 4 * r, f16(208).to_le_bytes());
            for (j, &scale) in sc.iter().enumerate() {
                out[4 * l + 2 * l * (j / 2) + 2 * r + j % 2] = scale;
            }
            // Value u < 128 of each half: low nibble of ql[u] (u < 64) or
            // high nibble of ql[u - 64]; its top bits are bits 2(u / 32) of
            // qh[u % 32] (ggml's dequantize_row_q6_K). Four bytes per step,
            // every shift the same for all four (they vectorize).
            const LOW: u32 = 0x0F0F_0F0F;
            let u32_at = |at: usize| u32::from_le_bytes(word(&x[at..at + 4]));
            for c in 0..16 {
                let (a, b) = (u32_at(4 * c), u32_at(64 + 4 * c));
                let low = (a & LOW) | ((b << 4) & !LOW);
                let high = ((a >> 4) & LOW) | (b & !LOW);
                put(out, 20 * l + 12 * l * c + 4 * r, low.to_le_bytes());
                put(out, 20 * l + 12 * l * c + 4 * l + 4 * r, high.to_le_bytes());
            }
            // Top-bit byte w (of 64): bits 0-1 and 4-5 of qh[w % 32] for
            // w < 32, bits 2-3 and 6-7 for w >= 32; then the same two bit
            // pairs of qh[32 + w % 32] in its high nibble.
            let tops = |a: u32, b: u32| {
                (a & 0x0303_0303)
                    | ((a >> 2) & 0x0C0C_0C0C)
                    | ((b << 4) & 0x3030_3030)
                    | ((b << 2) & 0xC0C0_C0C0)
            };
            for h in 0..8 {
                let (a, b) = (u32_at(128 + 4 * h), u32_at(160 + 4 * h));
                put(out, 28 * l + 12 * l * h + 4 * r, tops(a, b).to_le_bytes());
                put(
                    out,
                    28 * l + 12 * l * (h + 8) + 4 * r,
                    tops(a >> 2, b >> 2).to_le_bytes(),
                );
            }
        }
        Format::Q8_0 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            for (i, q) in x[2..34].chunks_exact(4).enumerate() {
                put(out, 2 * l + 4 * l * i + 4 * r, word(q));
            }
        }
        Format::Q5_0 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            for (i, q) in x[6..22].chunks_exact(4).enumerate() {
                put(out, 2 * l + 4 * l * i + 4 * r, word(q));
            }
            // ggml's qh bit v is bit 4 of value v.
            let qh = u32::from_le_bytes(word(&x[2..6]));
            let bits = std::array::from_fn(|t| {
                (0..8).fold(0u8, |b, j| b | (((qh >> (4 * j + t)) & 1) as u8) << j)
            });
            put(out, 18 * l + 4 * r, bits);
        }
        Format::Q4_1 => {
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            out[2 * l + 2 * r..2 * l + 2 * r + 2].copy_from_slice(&x[2..4]);
            for (i, q) in x[4..20].chunks_exact(4).enumerate() {
                put(out, 4 * l + 4 * l * i + 4 * r, word(q));
            }
        }
    }
}

/// Source bytes packed between two calls of [`Packed::pack_releasing`]'s
/// `done`: small beside the weights that matter (tens to hundreds of MB),
/// large enough that every thread has many groups to pack.
const SLAB_BYTES: usize = 16 << 20;

/// Asks for `len` bytes of `bytes` from `at` on (a few blocks ahead of the
/// one being packed): each of a group's rows is its own stream through the
/// file, and loads of the blocks were a third of the packing time.
fn prefetch_source(bytes: &[u8], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let ahead = bytes.as_ptr().wrapping_add(at);
        for line in (0..len).step_by(64) {
            // SAFETY: a prefetch never faults (the address may lie past
            // the end); SSE is baseline on x86_64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at, len);
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
    /// block) in ggml's `format` layout for `kernel`, groups in parallel on
    /// rayon's pool. An error when the memory cannot be had.
    pub fn pack(
        format: Format,
        kernel: Kernel,
        bytes: &[u8],
        n: usize,
        k: usize,
    ) -> std::io::Result<Self> {
        Self::pack_releasing(format, kernel, bytes, n, k, |_| {})
    }

    /// [`Self::pack`] in slabs of about [`SLAB_BYTES`] of `bytes`, telling
    /// `done` each byte range it has finished with: a mapped source can
    /// drop those pages while the rest is packed, so that a large weight
    /// (a 262k-token embedding) is not resident twice at the peak of a load.
    pub fn pack_releasing(
        format: Format,
        kernel: Kernel,
        bytes: &[u8],
        n: usize,
        k: usize,
        done: impl Fn(std::ops::Range<usize>),
    ) -> std::io::Result<Self> {
        Self::pack_in_slabs(format, kernel, bytes, n, k, SLAB_BYTES, done)
    }

    fn pack_in_slabs(
        format: Format,
        kernel: Kernel,
        bytes: &[u8],
        n: usize,
        k: usize,
        slab_bytes: usize,
        done: impl Fn(std::ops::Range<usize>),
    ) -> std::io::Result<Self> {
        use rayon::prelude::*;
        let row_bytes = format.row_bytes(k);
        let block_values = format.block_values();
        assert!(k.is_multiple_of(block_values) && bytes.len() == n * row_bytes);
        let l = kernel.rows();
        let block8 = row_share(format) * BLOCK_ROWS;
        let (blocks, block_bytes, gb) = (
            k / block_values,
            format.block_bytes(),
            block8 * (l / BLOCK_ROWS),
        );
        let mut data = zeroed(n.div_ceil(l) * blocks * gb)?;
        if blocks > 0 {
            // Groups of `l` rows; a slab is whole groups.
            let slab = (slab_bytes / (l * row_bytes).max(1)).max(1);
            for (s, outs) in data.chunks_mut(slab * blocks * gb).enumerate() {
                outs.par_chunks_mut(blocks * gb)
                    .enumerate()
                    .for_each(|(i, out)| {
                        let g = s * slab + i;
                        for (b, out) in out.chunks_exact_mut(gb).enumerate() {
                            // Eight-row blocks side by side; padding rows
                            // stay zero (every scale zero).
                            for r in 0..l.min(n - l * g) {
                                let at = (l * g + r) * row_bytes + b * block_bytes;
                                prefetch_source(
                                    bytes,
                                    at + (4 * block_bytes).max(256),
                                    block_bytes,
                                );
                                let block = &mut out[(r / BLOCK_ROWS) * block8..][..block8];
                                write_row(
                                    format,
                                    &bytes[at..at + block_bytes],
                                    r % BLOCK_ROWS,
                                    block,
                                );
                            }
                        }
                    });
                let rows = (s * slab * l).min(n)..((s + 1) * slab * l).min(n);
                done(rows.start * row_bytes..rows.end * row_bytes);
            }
        }
        Ok(Self {
            format,
            kernel,
            n,
            k,
            data,
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
    /// threads share the groups of weight rows.
    ///
    /// # Panics
    /// When `acts` is not the kind the format takes ([`is_k_quant`]) or
    /// not `k` values wide, or `out` is not `rows × n`.
    pub fn matmul(&self, acts: Acts, out: &mut [f32]) {
        Self::matmul_many(&mut [(self, out)], acts);
    }

    /// [`Self::matmul`] of several weights on the same activations: one
    /// pass of the threads over all their groups (a decoding step's q, k
    /// and v, or gate and up, each cost a wake-up and a wait of the threads
    /// when run one by one; k and v are small).
    ///
    /// # Panics
    /// As [`Self::matmul`], for each weight and its `out`.
    pub fn matmul_many(parts: &mut [(&Packed, &mut [f32])], acts: Acts) {
        let m = acts.rows();
        let (mut total, mut work) = (0, 0);
        let mut weights = Vec::with_capacity(parts.len());
        for (weight, out) in parts.iter_mut() {
            assert!(
                out.len() == m * weight.n
                    && acts.values() == weight.k
                    && matches!(acts, Acts::K(_)) == is_k_quant(weight.format)
            );
            let groups = weight.n.div_ceil(weight.kernel.rows());
            weights.push((*weight, total..total + groups, SharedOut(out.as_mut_ptr())));
            total += groups;
            work += m * weight.n * weight.k;
        }
        if m == 0 || total == 0 {
            return;
        }
        super::for_ranges(total, work, 1, |range| {
            for (weight, groups, out) in &weights {
                let (start, end) = (range.start.max(groups.start), range.end.min(groups.end));
                if start < end {
                    // SAFETY: the kernel was detected on this CPU; each range
                    // of groups writes only its own weight rows' columns of
                    // that weight's `out` (disjoint across ranges), which
                    // holds m × n values (asserted above).
                    unsafe { weight.groups(acts, start - groups.start..end - groups.start, out) }
                }
            }
        });
    }

    /// Groups `range` for every activation row, in bands of rows that stay
    /// in cache.
    ///
    /// # Safety
    /// The kernel runs on this CPU; nobody else writes these columns of `out`.
    unsafe fn groups(&self, acts: Acts, range: std::ops::Range<usize>, out: &SharedOut) {
        let m = acts.rows();
        let l = self.kernel.rows();
        let band = (BAND_BYTES / self.k.max(1)).max(TILE_ROWS) / TILE_ROWS * TILE_ROWS;
        for i0 in (0..m).step_by(band) {
            let i1 = (i0 + band).min(m);
            for g in range.clone() {
                // The group's columns of `out` (the last group may be short).
                let cols = (self.n - l * g).min(l);
                let mut i = i0;
                while i < i1 {
                    let tile = (i1 - i).min(TILE_ROWS);
                    let mut res = [[0f32; MAX_GROUP]; TILE_ROWS];
                    match tile {
                        4 => self.tile::<4>(acts, g, i, &mut res),
                        3 => self.tile::<3>(acts, g, i, &mut res),
                        2 => self.tile::<2>(acts, g, i, &mut res),
                        _ => self.tile::<1>(acts, g, i, &mut res),
                    }
                    for (r, res) in res.iter().take(tile).enumerate() {
                        let to = out.ptr().add((i + r) * self.n + l * g);
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
        acts: Acts,
        g: usize,
        row: usize,
        res: &mut [[f32; MAX_GROUP]; TILE_ROWS],
    ) {
        let gb = row_share(self.format) * self.kernel.rows();
        let blocks = self.k / self.format.block_values();
        let w = self.data.as_ptr().add(g * blocks * gb);
        macro_rules! run {
            ($t:expr, $kern:ty) => {
                match self.kernel {
                    Kernel::Avx2 => tile_avx2::<$kern, R>($t),
                    Kernel::AvxVnni => tile_vnni::<$kern, R>($t),
                    Kernel::Avx512Vnni => tile_512::<$kern, R>($t),
                }
            };
        }
        let out = match (acts, self.format) {
            (Acts::K(acts), format) => {
                let t = Tile { w, acts, row };
                match format {
                    Format::Q4K => run!(t, K4<false>),
                    Format::Q5K => run!(t, K4<true>),
                    _ => run!(t, K6),
                }
            }
            (Acts::B32(acts), format) => {
                let t = Tile { w, acts, row };
                match format {
                    Format::Q8_0 => run!(t, B32<Q8>),
                    Format::Q5_0 => run!(t, B32<Q5>),
                    _ => run!(t, B32<Q4M>),
                }
            }
        };
        res[..R].copy_from_slice(&out);
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn tile<const R: usize>(
        &self,
        _: Acts,
        _: usize,
        _: usize,
        _: &mut [[f32; MAX_GROUP]; TILE_ROWS],
    ) {
        unreachable!("Kernel is never detected off x86_64")
    }
}

/// What a tile multiplies: a group's first block and activation rows `row..`.
#[cfg(target_arch = "x86_64")]
struct Tile<'a, A> {
    w: *const u8,
    acts: &'a A,
    row: usize,
}

// Copy whatever the activations are (a derive would ask `A: Copy`).
#[cfg(target_arch = "x86_64")]
impl<A> Clone for Tile<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

#[cfg(target_arch = "x86_64")]
impl<A> Copy for Tile<'_, A> {}

/// The vector operations of the kernels, on registers of 8 (256-bit) or 16 (512-bit) 32-bit
/// lanes (one weight row each).
#[cfg(target_arch = "x86_64")]
trait Simd {
    type I: Copy;
    type F: Copy;
    unsafe fn zero() -> Self::I;
    unsafe fn zero_f() -> Self::F;
    /// One register of bytes from `p` (512 bits: half from `p`, half from
    /// `p + s`, the next eight-row block; every load below likewise).
    unsafe fn load(p: *const u8, s: usize) -> Self::I;
    unsafe fn splat8(b: i8) -> Self::I;
    /// The four bytes at `p` in every lane.
    unsafe fn word(p: *const u8) -> Self::I;
    unsafe fn and(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn or(a: Self::I, b: Self::I) -> Self::I;
    /// 16-bit lanes shifted left / right by `n`.
    unsafe fn shl16(a: Self::I, n: i32) -> Self::I;
    unsafe fn shr16(a: Self::I, n: i32) -> Self::I;
    /// Four unsigned weight bytes times four signed activation bytes,
    /// added to each lane.
    unsafe fn dot4(acc: Self::I, w: Self::I, a: Self::I) -> Self::I;
    /// What [`Simd::dot4_signed`] adds per unit of the activations' sum.
    const SIGNED_BIAS: i32;
    /// [`Simd::dot4`] of signed weight bytes, plus `SIGNED_BIAS` × Σ a.
    unsafe fn dot4_signed(acc: Self::I, w: Self::I, a: Self::I) -> Self::I;
    /// A byte pair per lane at `p` as pairs of 16-bit lanes (sign- or zero-extended).
    unsafe fn pairs_i8(p: *const u8, s: usize) -> Self::I;
    unsafe fn pairs_u8(p: *const u8, s: usize) -> Self::I;
    /// The first / second of each lane's two 16-bit values, sign-extended.
    unsafe fn first16(v: Self::I) -> Self::I;
    unsafe fn second16(v: Self::I) -> Self::I;
    unsafe fn mullo(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn sub(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn madd16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn splat32(v: i32) -> Self::I;
    unsafe fn times32(a: Self::I) -> Self::I;
    unsafe fn cvt(a: Self::I) -> Self::F;
    /// An f32 / f16 value per lane at `p`.
    unsafe fn load_f32(p: *const u8, s: usize) -> Self::F;
    unsafe fn load_f16(p: *const u8, s: usize) -> Self::F;
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn sub_f(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn splat_f(v: f32) -> Self::F;
    unsafe fn store_f(p: *mut f32, v: Self::F);
}

/// How a 256-bit kernel multiplies bytes: `vpmaddubsw` + `vpmaddwd`
/// (AVX2), AVX-VNNI's `vpdpbusd`, or AVX-512 VL's `vpdpbusd` (CPUs with
/// AVX-512 VNNI but not AVX-VNNI, such as Zen 4).
#[cfg(target_arch = "x86_64")]
const PLAIN: u8 = 0;
#[cfg(target_arch = "x86_64")]
const AVX_VNNI: u8 = 1;
#[cfg(target_arch = "x86_64")]
const VL_VNNI: u8 = 2;

/// AVX2 registers, multiplying as `DOT` says.
#[cfg(target_arch = "x86_64")]
struct W256<const DOT: u8>;

#[cfg(target_arch = "x86_64")]
impl<const DOT: u8> Simd for W256<DOT> {
    type I = __m256i;
    type F = __m256;
    #[inline(always)]
    unsafe fn zero() -> __m256i {
        _mm256_setzero_si256()
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8, _: usize) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn splat8(b: i8) -> __m256i {
        _mm256_set1_epi8(b)
    }
    #[inline(always)]
    unsafe fn word(p: *const u8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn and(a: __m256i, b: __m256i) -> __m256i {
        _mm256_and_si256(a, b)
    }
    #[inline(always)]
    unsafe fn or(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(a, b)
    }
    #[inline(always)]
    unsafe fn shl16(a: __m256i, n: i32) -> __m256i {
        _mm256_sll_epi16(a, _mm_cvtsi32_si128(n))
    }
    #[inline(always)]
    unsafe fn shr16(a: __m256i, n: i32) -> __m256i {
        _mm256_srl_epi16(a, _mm_cvtsi32_si128(n))
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        if DOT == AVX_VNNI {
            _mm256_dpbusd_avx_epi32(acc, w, a)
        } else if DOT == VL_VNNI {
            _mm256_dpbusd_epi32(acc, w, a)
        } else {
            // Pairs of products in 16 bits (at most 2 × 63 × 127, no
            // saturation), then pairs of pairs in 32.
            let pairs = _mm256_maddubs_epi16(w, a);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }
    // VNNI: the weights + 128 as unsigned bytes; AVX2: |w| times the
    // activations with w's sign (no pair above 2 × 128 × 127 saturates).
    const SIGNED_BIAS: i32 = if DOT == PLAIN { 0 } else { 128 };
    #[inline(always)]
    unsafe fn dot4_signed(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        if DOT != PLAIN {
            Self::dot4(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), a)
        } else {
            Self::dot4(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
        }
    }
    #[inline(always)]
    unsafe fn pairs_i8(p: *const u8, _: usize) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn pairs_u8(p: *const u8, _: usize) -> __m256i {
        _mm256_cvtepu8_epi16(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn first16(v: __m256i) -> __m256i {
        _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(v))
    }
    #[inline(always)]
    unsafe fn second16(v: __m256i) -> __m256i {
        _mm256_srai_epi32::<16>(v)
    }
    #[inline(always)]
    unsafe fn mullo(a: __m256i, b: __m256i) -> __m256i {
        _mm256_mullo_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sub_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn madd16(a: __m256i, b: __m256i) -> __m256i {
        _mm256_madd_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m256i {
        _mm256_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn times32(a: __m256i) -> __m256i {
        _mm256_slli_epi32::<5>(a)
    }
    #[inline(always)]
    unsafe fn cvt(a: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(a)
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const u8, _: usize) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8, _: usize) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub_f(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn splat_f(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
}

/// 16 bytes from `p` and 16 from `p + s`, as one 256-bit register.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn halves128(p: *const u8, s: usize) -> __m256i {
    let lo = _mm_loadu_si128(p as *const __m128i);
    let hi = _mm_loadu_si128(p.add(s) as *const __m128i);
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
}

/// AVX-512 registers with VNNI.
#[cfg(target_arch = "x86_64")]
struct W512;

#[cfg(target_arch = "x86_64")]
impl Simd for W512 {
    type I = __m512i;
    type F = __m512;
    #[inline(always)]
    unsafe fn zero() -> __m512i {
        _mm512_setzero_si512()
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const u8, s: usize) -> __m512i {
        let lo = _mm256_loadu_si256(p as *const __m256i);
        let hi = _mm256_loadu_si256(p.add(s) as *const __m256i);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    }
    #[inline(always)]
    unsafe fn splat8(b: i8) -> __m512i {
        _mm512_set1_epi8(b)
    }
    #[inline(always)]
    unsafe fn word(p: *const u8) -> __m512i {
        _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }
    #[inline(always)]
    unsafe fn and(a: __m512i, b: __m512i) -> __m512i {
        _mm512_and_si512(a, b)
    }
    #[inline(always)]
    unsafe fn or(a: __m512i, b: __m512i) -> __m512i {
        _mm512_or_si512(a, b)
    }
    #[inline(always)]
    unsafe fn shl16(a: __m512i, n: i32) -> __m512i {
        _mm512_sll_epi16(a, _mm_cvtsi32_si128(n))
    }
    #[inline(always)]
    unsafe fn shr16(a: __m512i, n: i32) -> __m512i {
        _mm512_srl_epi16(a, _mm_cvtsi32_si128(n))
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, w, a)
    }
    const SIGNED_BIAS: i32 = 128;
    #[inline(always)]
    unsafe fn dot4_signed(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
        Self::dot4(acc, _mm512_xor_si512(w, _mm512_set1_epi8(-128)), a)
    }
    #[inline(always)]
    unsafe fn pairs_i8(p: *const u8, s: usize) -> __m512i {
        _mm512_cvtepi8_epi16(halves128(p, s))
    }
    #[inline(always)]
    unsafe fn pairs_u8(p: *const u8, s: usize) -> __m512i {
        _mm512_cvtepu8_epi16(halves128(p, s))
    }
    #[inline(always)]
    unsafe fn first16(v: __m512i) -> __m512i {
        _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(v))
    }
    #[inline(always)]
    unsafe fn second16(v: __m512i) -> __m512i {
        _mm512_srai_epi32::<16>(v)
    }
    #[inline(always)]
    unsafe fn mullo(a: __m512i, b: __m512i) -> __m512i {
        _mm512_mullo_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512i, b: __m512i) -> __m512i {
        _mm512_sub_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn madd16(a: __m512i, b: __m512i) -> __m512i {
        _mm512_madd_epi16(a, b)
    }
    #[inline(always)]
    unsafe fn splat32(v: i32) -> __m512i {
        _mm512_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn times32(a: __m512i) -> __m512i {
        _mm512_slli_epi32::<5>(a)
    }
    #[inline(always)]
    unsafe fn cvt(a: __m512i) -> __m512 {
        _mm512_cvtepi32_ps(a)
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const u8, s: usize) -> __m512 {
        let lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(p as *const f32)));
        let hi = _mm256_castps_pd(_mm256_loadu_ps(p.add(s) as *const f32));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8, s: usize) -> __m512 {
        _mm512_cvtph_ps(halves128(p, s))
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub_f(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn splat_f(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
}

/// One format's group kernel.
#[cfg(target_arch = "x86_64")]
trait GroupKernel {
    /// The activations it takes.
    type Acts;
    /// `G` eight-row blocks per group and super-block (the layout); `HS`
    /// of them in turn on each super-block (a 256-bit kernel decoding a
    /// 16-row group), or 1 (every block in one register).
    unsafe fn run<V: Simd, const R: usize, const G: usize, const HS: usize>(
        t: Tile<Self::Acts>,
    ) -> [[f32; MAX_GROUP]; R];
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<K: GroupKernel, const R: usize>(t: Tile<K::Acts>) -> [[f32; MAX_GROUP]; R] {
    K::run::<W256<PLAIN>, R, 1, 1>(t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn tile_vnni<K: GroupKernel, const R: usize>(t: Tile<K::Acts>) -> [[f32; MAX_GROUP]; R] {
    K::run::<W256<AVX_VNNI>, R, 1, 1>(t)
}

/// Prompts on 512-bit registers; decoding (one activation row) on 256-bit
/// ones, both halves of the 16-row group in one pass: measured on Zen 5,
/// 512-bit decoding was slower, 512-bit prompts 40% faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_512<K: GroupKernel, const R: usize>(t: Tile<K::Acts>) -> [[f32; MAX_GROUP]; R] {
    if R > 1 {
        K::run::<W512, R, 2, 1>(t)
    } else {
        K::run::<W256<VL_VNNI>, R, 2, 2>(t)
    }
}

/// The lanes of `acc` as floats: each half's registers in turn (eight
/// lanes each on 256-bit registers decoding a 16-row group).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes<V: Simd, const R: usize, const HS: usize>(
    acc: [[V::F; R]; HS],
) -> [[f32; MAX_GROUP]; R] {
    let mut res = [[0f32; MAX_GROUP]; R];
    for (h, acc) in acc.iter().enumerate() {
        for (res, acc) in res.iter_mut().zip(acc) {
            // SAFETY (caller): 8 × HS ≤ 16 lanes.
            V::store_f(res.as_mut_ptr().add(8 * h), *acc);
        }
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
    unsafe fn pair<V: Simd, const R: usize>(
        (x, s): (*const u8, usize),
        act: &[*const u8; R],
        p: usize,
        sums: &mut [V::I; R],
    ) {
        let l = BLOCK_ROWS;
        let m4 = V::splat8(0x0F);
        let m16 = V::splat8(0x10);
        let nibbles = x.add(if HIGH { 52 } else { 20 } * l + 32 * l * p);
        let mut lo_acc = [V::zero(); R];
        let mut hi_acc = [V::zero(); R];
        for i in 0..8 {
            let q = V::load(nibbles.add(4 * l * i), s);
            let mut lo = V::and(q, m4);
            let mut hi = V::and(V::shr16(q, 4), m4);
            if HIGH {
                // Bit 2p of each fifth-bit byte moved to bit 4 (and 2p + 1 to 5).
                let h = V::load(x.add(20 * l + 4 * l * i), s);
                let h = if p < 2 {
                    V::shl16(h, 4 - 2 * p as i32)
                } else {
                    V::shr16(h, 2 * p as i32 - 4)
                };
                lo = V::or(lo, V::and(h, m16));
                hi = V::or(hi, V::and(V::shr16(h, 1), m16));
            }
            for r in 0..R {
                let y = act[r].add(64 * p + 4 * i);
                lo_acc[r] = V::dot4(lo_acc[r], lo, V::word(y));
                hi_acc[r] = V::dot4(hi_acc[r], hi, V::word(y.add(32)));
            }
        }
        let scales = V::pairs_i8(x.add(4 * l + 2 * l * p), s);
        let (lo_scale, hi_scale) = (V::first16(scales), V::second16(scales));
        for r in 0..R {
            let lo = V::mullo(lo_acc[r], lo_scale);
            let hi = V::mullo(hi_acc[r], hi_scale);
            sums[r] = V::add(sums[r], V::add(lo, hi));
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl<const HIGH: bool> GroupKernel for K4<HIGH> {
    type Acts = KActivations;

    #[inline(always)]
    unsafe fn run<V: Simd, const R: usize, const G: usize, const HS: usize>(
        t: Tile<Self::Acts>,
    ) -> [[f32; MAX_GROUP]; R] {
        let a = t.acts;
        // Eight-row blocks (`s` bytes), `G` side by side per group.
        let l = BLOCK_ROWS;
        let s = l * row_share(if HIGH { Format::Q5K } else { Format::Q4K });
        let gb = G * s;
        // The minimums' share in an accumulator of its own, subtracted at
        // the end: llama.cpp's order of float operations for its repacked
        // Q4_K, so both round alike and greedy decoding parts less often.
        let mut acc = [[V::zero_f(); R]; HS];
        let mut acc_min = [[V::zero_f(); R]; HS];
        for b in 0..a.blocks() {
            for h in 0..HS {
                let x = t.w.add(b * gb + h * s);
                let act: [*const u8; R] =
                    std::array::from_fn(|r| a.qs_at(t.row + r, b) as *const u8);
                let mut sums = [V::zero(); R];
                for p in 0..4 {
                    Self::pair::<V, R>((x, s), &act, p, &mut sums);
                }
                let d = V::load_f16(x, s);
                let dmin = V::load_f16(x.add(2 * l), s);
                let mins: [V::I; 4] =
                    std::array::from_fn(|p| V::pairs_u8(x.add(12 * l + 2 * l * p), s));
                for r in 0..R {
                    let (da, sums32) = a.scale_and_sums32(t.row + r, b);
                    // Σ min_j × (sum of the activations of sub-block j).
                    let mut m = V::zero();
                    for (p, mins) in mins.iter().enumerate() {
                        let pair = V::word(sums32.add(2 * p) as *const u8);
                        m = V::add(m, V::madd16(*mins, pair));
                    }
                    let da = V::splat_f(da);
                    acc[h][r] = V::fmadd(V::cvt(sums[r]), V::mul(d, da), acc[h][r]);
                    acc_min[h][r] = V::fmadd(V::cvt(m), V::mul(dmin, da), acc_min[h][r]);
                }
            }
        }
        for (acc, acc_min) in acc.iter_mut().zip(&acc_min) {
            for r in 0..R {
                acc[r] = V::sub_f(acc[r], acc_min[r]);
            }
        }
        lanes::<V, R, HS>(acc)
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
    unsafe fn quarters<V: Simd, const R: usize, const Q: usize>(
        (x, s): (*const u8, usize),
        act: &[*const u8; R],
        sums: &mut [V::I; R],
    ) {
        let l = BLOCK_ROWS;
        let m4 = V::splat8(0x0F);
        let m30 = V::splat8(0x30);
        let nibbles = x.add(20 * l + 4 * l * Q);
        for sb in 0..4 {
            let mut lo_acc = [V::zero(); R];
            let mut hi_acc = [V::zero(); R];
            for h in 4 * sb..4 * sb + 4 {
                let n = V::load(nibbles.add(12 * l * h), s);
                let top = V::load(x.add(28 * l + 12 * l * h), s);
                // Quarter Q's top bits are bits 2Q, 2Q + 1; quarter Q + 2's 2Q + 4, 2Q + 5.
                let (top_lo, top_hi) = if Q == 0 {
                    (V::shl16(top, 4), top)
                } else {
                    (V::shl16(top, 2), V::shr16(top, 2))
                };
                let lo = V::or(V::and(n, m4), V::and(top_lo, m30));
                let hi = V::or(V::and(V::shr16(n, 4), m4), V::and(top_hi, m30));
                for r in 0..R {
                    let y = act[r].add(64 * Q + 4 * h);
                    lo_acc[r] = V::dot4(lo_acc[r], lo, V::word(y));
                    hi_acc[r] = V::dot4(hi_acc[r], hi, V::word(y.add(128)));
                }
            }
            // Sub-blocks 4Q + sb and 4(Q + 2) + sb.
            let (lo_sub, hi_sub) = (4 * Q + sb, 4 * (Q + 2) + sb);
            let scale = |sub: usize| {
                let pairs = V::pairs_i8(x.add(4 * l + 2 * l * (sub / 2)), s);
                if sub % 2 == 1 {
                    V::second16(pairs)
                } else {
                    V::first16(pairs)
                }
            };
            let (lo_scale, hi_scale) = (scale(lo_sub), scale(hi_sub));
            for r in 0..R {
                let lo = V::mullo(lo_acc[r], lo_scale);
                let hi = V::mullo(hi_acc[r], hi_scale);
                sums[r] = V::add(sums[r], V::add(lo, hi));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl GroupKernel for K6 {
    type Acts = KActivations;

    #[inline(always)]
    unsafe fn run<V: Simd, const R: usize, const G: usize, const HS: usize>(
        t: Tile<Self::Acts>,
    ) -> [[f32; MAX_GROUP]; R] {
        let a = t.acts;
        let l = BLOCK_ROWS;
        let s = l * row_share(Format::Q6K);
        let gb = G * s;
        let mut acc = [[V::zero_f(); R]; HS];
        for b in 0..a.blocks() {
            for (h, acc) in acc.iter_mut().enumerate() {
                let x = t.w.add(b * gb + h * s);
                let act: [*const u8; R] =
                    std::array::from_fn(|r| a.qs_at(t.row + r, b) as *const u8);
                let mut sums = [V::zero(); R];
                Self::quarters::<V, R, 0>((x, s), &act, &mut sums);
                Self::quarters::<V, R, 1>((x, s), &act, &mut sums);
                let d = V::load_f32(x, s);
                let scales: [V::I; 8] =
                    std::array::from_fn(|q| V::pairs_i8(x.add(4 * l + 2 * l * q), s));
                for r in 0..R {
                    let (da, bsums) = a.scale_and_sums16(t.row + r, b);
                    // The −32 of every value: 32 × Σ scale_s × (sum of sub-block s).
                    let mut offset = V::zero();
                    for (q, scales) in scales.iter().enumerate() {
                        let pair = V::word(bsums.add(2 * q) as *const u8);
                        offset = V::add(offset, V::madd16(*scales, pair));
                    }
                    let total = V::sub(sums[r], V::times32(offset));
                    acc[r] = V::fmadd(V::cvt(total), V::mul(d, V::splat_f(da)), acc[r]);
                }
            }
        }
        lanes::<V, R, HS>(acc)
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
    type Acts = Activations;

    #[inline(always)]
    unsafe fn run<V: Simd, const R: usize, const G: usize, const HS: usize>(
        t: Tile<Self::Acts>,
    ) -> [[f32; MAX_GROUP]; R] {
        let a = t.acts;
        let l = BLOCK_ROWS;
        let s = l * row_share(F::FORMAT);
        let gb = G * s;
        let m4 = V::splat8(0x0F);
        let m16 = V::splat8(0x10);
        let mut acc = [[V::zero_f(); R]; HS];
        for b in 0..a.blocks() {
            for (h, acc) in acc.iter_mut().enumerate() {
                let x = t.w.add(b * gb + h * s);
                let act: [*const u8; R] =
                    std::array::from_fn(|r| a.qs_at(t.row + r, b) as *const u8);
                // Two independent sums per row: words 0..4 and 4..8.
                let mut lo_acc = [V::zero(); R];
                let mut hi_acc = [V::zero(); R];
                if F::NIBBLES {
                    let nibbles = x.add(if F::MIN { 4 * l } else { 2 * l });
                    let bits = if F::FIFTH_BIT {
                        V::load(x.add(18 * l), s)
                    } else {
                        V::zero()
                    };
                    for i in 0..4 {
                        let q = V::load(nibbles.add(4 * l * i), s);
                        let mut lo = V::and(q, m4);
                        let mut hi = V::and(V::shr16(q, 4), m4);
                        if F::FIFTH_BIT {
                            // Bits i (word i) and 4 + i (word 4 + i) moved to bit 4.
                            let lo_bit = V::shl16(bits, 4 - i as i32);
                            let hi_bit = V::shr16(bits, i as i32);
                            lo = V::or(lo, V::and(lo_bit, m16));
                            hi = V::or(hi, V::and(hi_bit, m16));
                        }
                        for r in 0..R {
                            let y = act[r].add(4 * i);
                            lo_acc[r] = V::dot4(lo_acc[r], lo, V::word(y));
                            hi_acc[r] = V::dot4(hi_acc[r], hi, V::word(y.add(16)));
                        }
                    }
                } else {
                    for i in 0..4 {
                        let lo = V::load(x.add(2 * l + 4 * l * i), s);
                        let hi = V::load(x.add(2 * l + 4 * l * (i + 4)), s);
                        for r in 0..R {
                            let y = act[r].add(4 * i);
                            lo_acc[r] = V::dot4_signed(lo_acc[r], lo, V::word(y));
                            hi_acc[r] = V::dot4_signed(hi_acc[r], hi, V::word(y.add(16)));
                        }
                    }
                }
                let d = V::load_f16(x, s);
                let offset = if F::NIBBLES { F::ZERO } else { V::SIGNED_BIAS };
                for r in 0..R {
                    let (da, sum, scaled_sum) = a.block(t.row + r, b);
                    let mut dot = V::add(lo_acc[r], hi_acc[r]);
                    if offset != 0 {
                        dot = V::sub(dot, V::splat32(offset * sum));
                    }
                    acc[r] = V::fmadd(V::cvt(dot), V::mul(d, V::splat_f(da)), acc[r]);
                    if F::MIN {
                        let m = V::load_f16(x.add(2 * l), s);
                        acc[r] = V::fmadd(m, V::splat_f(scaled_sum), acc[r]);
                    }
                }
            }
        }
        lanes::<V, R, HS>(acc)
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
            // 21 rows: full groups (of 8 or 16) and a padded one; 1, 4 and
            // 6 activation rows.
            let (n, k) = (21, 512);
            let w = Tensor::from_vec(values(n * k, 11), (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap();
            for kernel in Kernel::all_here() {
                let packed = Packed::pack(format, kernel, &bytes, n, k).unwrap();
                for m in [1, 4, 6] {
                    let x = values(m * k, 12 + m as u64);
                    let acts = kernels.quantize_k(&x, m, k);
                    let want = reference(format, &bytes, n, k, &acts);
                    let scale = want.iter().fold(0f32, |s, v| s.max(v.abs()));
                    let mut out = vec![0f32; m * n];
                    packed.matmul(Acts::K(&acts), &mut out);
                    for (o, w) in out.iter().zip(&want) {
                        assert!(
                            (o - w).abs() <= 1e-5 * scale,
                            "{format:?} {kernel:?} m={m}: {o} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// Packing in slabs gives the same bytes as in one go, and reports
    /// every source byte once, in order, slab after slab.
    #[test]
    fn slabs_pack_the_same_and_report_every_byte() {
        let dev = Device::Cpu;
        let (n, k) = (45, 256);
        let w = Tensor::from_vec(values(n * k, 21), (n, k), &dev).unwrap();
        for (dtype, format) in [
            (GgmlDType::Q8_0, Format::Q8_0),
            (GgmlDType::Q4K, Format::Q4K),
        ] {
            let bytes = QTensor::quantize(&w, dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            for kernel in Kernel::all_here() {
                let whole = Packed::pack(format, kernel, &bytes, n, k).unwrap();
                let seen = std::cell::RefCell::new(Vec::new());
                let row = format.row_bytes(k);
                let slabs = Packed::pack_in_slabs(format, kernel, &bytes, n, k, 3 * row, |r| {
                    seen.borrow_mut().push(r)
                })
                .unwrap();
                assert_eq!(&whole.data[..], &slabs.data[..], "{format:?} {kernel:?}");
                let seen = seen.into_inner();
                assert!(seen.len() > 2, "{format:?} {kernel:?}: {seen:?}");
                let mut at = 0;
                for r in &seen {
                    assert_eq!(r.start, at, "{seen:?}");
                    assert!(r.end > r.start, "{seen:?}");
                    at = r.end;
                }
                assert_eq!(at, bytes.len(), "{seen:?}");
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
            // 21 rows: full groups (of 8 or 16) and a padded one.
            let (n, k) = (21, 96);
            let w = Tensor::from_vec(values(n * k, 21), (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let dense: Vec<f32> = q
                .dequantize(&dev)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let bytes = q.data().unwrap();
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
                for kernel in Kernel::all_here() {
                    let packed = Packed::pack(format, kernel, &bytes, n, k).unwrap();
                    let mut out = vec![0f32; m * n];
                    packed.matmul(Acts::B32(&acts), &mut out);
                    for (o, w) in out.iter().zip(&want) {
                        assert!(
                            (o - w).abs() <= 2e-3 * scale,
                            "{format:?} {kernel:?} m={m}: {o} vs {w}"
                        );
                    }
                    // Every instruction set computes the same integers.
                    match &first_isa {
                        Some(first) => assert_eq!(first, &out, "{format:?} {kernel:?} m={m}"),
                        None => first_isa = Some(out),
                    }
                }
            }
        }
    }
}

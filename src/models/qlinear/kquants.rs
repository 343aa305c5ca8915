//! Activations quantized as ggml's Q8_K for the K-quant kernels
//! ([`super::packed`]): one f32 scale per 256 values and the sums of each
//! 16 and each 32 values (what the minimums and Q6_K's offset multiply).

use super::avx2::{Avx2, QK_K};
use super::SharedOut;

/// Rows of activations quantized as ggml's Q8_K: per 256 values one scale
/// `d` (value = d × q), the sums of each 16 and of each 32 quantized values.
#[derive(Debug, Clone, Default)]
pub struct KActivations {
    rows: usize,
    /// Super-blocks per row.
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
    sums32: Vec<i16>,
}

impl KActivations {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Super-blocks per row.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The 256 quantized values of super-block `b` of `row`.
    ///
    /// # Panics
    /// When the row or block does not exist.
    pub fn qs_at(&self, row: usize, b: usize) -> *const i8 {
        self.qs[(row * self.blocks + b) * QK_K..][..QK_K].as_ptr()
    }

    /// Row `row` whole: its quantized values, the scale of each super-block
    /// and their sums of 16 values (16 per super-block).
    ///
    /// # Panics
    /// When the row does not exist.
    pub fn row(&self, row: usize) -> (&[i8], &[f32], &[i16]) {
        let b = self.blocks;
        (
            &self.qs[row * b * QK_K..][..b * QK_K],
            &self.d[row * b..][..b],
            &self.bsums[row * b * 16..][..b * 16],
        )
    }

    /// The scale of super-block `b` of `row` and its 16 sums of 16 values.
    pub fn scale_and_sums16(&self, row: usize, b: usize) -> (f32, *const i16) {
        let idx = row * self.blocks + b;
        (self.d[idx], self.bsums[16 * idx..][..16].as_ptr())
    }

    /// The scale of super-block `b` of `row` and its 8 sums of 32 values.
    pub fn scale_and_sums32(&self, row: usize, b: usize) -> (f32, *const i16) {
        let idx = row * self.blocks + b;
        (self.d[idx], self.sums32[8 * idx..][..8].as_ptr())
    }
}

/// Quantizes one super-block as ggml's `quantize_row_q8_K_ref`: the value
/// of largest magnitude maps to -127 (nearest, ties to even).
///
/// Compiled for AVX2 so that the rounding is `vroundps` over eight values,
/// not a call to `rintf` per value (7% of a prompt on the 1.5 B model).
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma,f16c"))]
unsafe fn quantize_super_block(x: &[f32], qs: &mut [i8], bsums: &mut [i16]) -> f32 {
    // The largest magnitude, eight lanes at a time (a NaN never wins, as
    // in ggml's scalar comparison), then the first value that has it: its
    // sign sets the scale's, as when ggml keeps the first of equal ones.
    let lanes = x.chunks_exact(8).fold([0f32; 8], |m, c| {
        std::array::from_fn(|i| if c[i].abs() > m[i] { c[i].abs() } else { m[i] })
    });
    let amax = lanes
        .into_iter()
        .fold(0f32, |m, v| if v > m { v } else { m });
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
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
        let total = rows * blocks;
        let mut a = KActivations {
            rows,
            blocks,
            qs: vec![0; rows * k],
            d: vec![0.0; total],
            bsums: vec![0; total * 16],
            sums32: vec![0; total * 8],
        };
        let qs = SharedOut(a.qs.as_mut_ptr());
        let d = SharedOut(a.d.as_mut_ptr());
        let bsums = SharedOut(a.bsums.as_mut_ptr());
        let sums32 = SharedOut(a.sums32.as_mut_ptr());
        // A prompt's rows are quantized on every thread (the products that
        // follow do not start before all are done).
        super::for_ranges(total, rows * k * 4, 1, |range| {
            for idx in range {
                // SAFETY: the ranges are disjoint, so each super-block's
                // values, scale and sums are written by one thread, within
                // the buffers' sizes (`idx < total`); `self` proves the CPU
                // features.
                unsafe {
                    let qs = std::slice::from_raw_parts_mut(qs.ptr().add(idx * QK_K), QK_K);
                    let bsums = std::slice::from_raw_parts_mut(bsums.ptr().add(idx * 16), 16);
                    *d.ptr().add(idx) = quantize_super_block(&x[idx * QK_K..][..QK_K], qs, bsums);
                    for (j, pair) in bsums.chunks_exact(2).enumerate() {
                        *sums32.ptr().add(idx * 8 + j) = pair[0] + pair[1];
                    }
                }
            }
        });
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::values;
    use super::*;

    /// ggml's `quantize_row_q8_K_ref`, value by value: the first value of
    /// largest magnitude sets the scale.
    fn reference(x: &[f32]) -> (f32, Vec<i8>, Vec<i16>) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return (0.0, vec![0; QK_K], vec![0; 16]);
        }
        let iscale = -127.0 / max;
        let qs: Vec<i8> = x
            .iter()
            .map(|&v| (iscale * v).round_ties_even().min(127.0) as i8)
            .collect();
        let bsums = qs
            .chunks_exact(16)
            .map(|g| g.iter().map(|&q| q as i16).sum())
            .collect();
        (1.0 / iscale, qs, bsums)
    }

    #[test]
    fn super_blocks_match_ggml_bit_for_bit() {
        let Some(kernels) = Avx2::detect() else {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        };
        let mut cases: Vec<Vec<f32>> = (0..8).map(|s| values(QK_K, 40 + s)).collect();
        // Equal magnitudes of both signs: the first one decides the sign.
        let mut tie = values(QK_K, 50);
        tie[17] = -9.0;
        tie[200] = 9.0;
        cases.push(tie.clone());
        tie[17] = 9.0;
        tie[200] = -9.0;
        cases.push(tie);
        // A NaN never wins; an infinity does; all zeros give zeros.
        let mut odd = values(QK_K, 51);
        odd[3] = f32::NAN;
        cases.push(odd.clone());
        odd[100] = f32::NEG_INFINITY;
        cases.push(odd);
        cases.push(vec![0.0; QK_K]);
        cases.push(vec![-0.0; QK_K]);
        for (i, x) in cases.iter().enumerate() {
            let got = kernels.quantize_k(x, 1, QK_K);
            let (d, qs, bsums) = reference(x);
            let (got_qs, got_d, got_bsums) = got.row(0);
            assert_eq!(got_d[0].to_bits(), d.to_bits(), "case {i}");
            assert_eq!(got_qs, &qs[..], "case {i}");
            assert_eq!(got_bsums, &bsums[..], "case {i}");
        }
    }
}

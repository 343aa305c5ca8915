use super::*;

fn cfg(num_beams: usize) -> GenerationConfig {
    GenerationConfig {
        max_length: 6,
        min_length: 0,
        num_beams,
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Heuristic,
        decoder_start_token_id: 3,
        eos_token_id: 0,
        forced_eos_token_id: Some(0),
        bad_words_ids: vec![vec![3]],
    }
}

/// A toy model whose next-token distribution depends only on the last
/// token: a fixed transition table.
struct Table {
    rows: usize,
    table: Vec<Vec<f32>>,
}

/// A step's logits as a test model hands them over: `data` as `rows` ×
/// `vocab`, on the CPU.
fn logits(data: Vec<f32>, rows: usize, vocab: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        data,
        (rows, vocab),
        &candle_core::Device::Cpu,
    )?)
}

impl StepModel for Table {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        assert_eq!(tokens.len(), self.rows);
        let data: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.table[t as usize].clone())
            .collect();
        logits(data, tokens.len(), 4)
    }
    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.rows = rows.len();
        Ok(())
    }
}

fn table() -> Table {
    Table {
        rows: 1,
        table: vec![
            vec![0.0, 0.0, 0.0, 0.0],
            vec![-1.0, 0.5, 2.0, 9.0], // after 1: 2 (3 is banned)
            vec![1.5, 1.0, -3.0, 0.0], // after 2: eos
            vec![-2.0, 3.0, 1.0, 0.0], // after start: 1
        ],
    }
}

#[test]
fn transposed_logits_reach_the_host_row_by_row() {
    let dev = candle_core::Device::Cpu;
    let by_token = Tensor::arange(0f32, 70.0 * 3.0, &dev)
        .unwrap()
        .reshape((70, 3))
        .unwrap();
    let logits = by_token.t().unwrap(); // (3 rows, 70 vocab), not contiguous
    let (data, vocab) = host_logits(&logits).unwrap();
    assert_eq!(vocab, 70);
    let want: Vec<f32> = logits
        .contiguous()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(data, want);
    let (data, _) = host_logits(&by_token).unwrap();
    assert_eq!(
        data,
        by_token.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn top_k_stable_equals_a_stable_sort_cut_to_k() {
    // Few distinct values, so ties are everywhere; -inf and NaN too.
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for round in 0..200 {
        let len = next() % 40;
        let values: Vec<(f32, usize, u32)> = (0..len)
            .map(|i| {
                let v = match next() % 7 {
                    0 => f32::NEG_INFINITY,
                    1 if round % 10 == 0 => f32::NAN,
                    r => r as f32 * 0.5,
                };
                (v, i % 3, i as u32)
            })
            .collect();
        for k in [0, 1, 3, 8, 50] {
            let got = top_k_stable(values.iter().copied(), k);
            let want = top_k_desc(&values, k);
            let ids = |v: &[(f32, usize, u32)]| v.iter().map(|x| x.2).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "k={k} values={values:?}");
        }
    }
}

#[test]
fn greedy_follows_argmax_bans_bad_words_and_stops_at_eos() {
    let hyps = generate(&mut table(), 1, &cfg(1)).unwrap();
    assert_eq!(hyps[0].tokens, vec![1, 2, 0]);
    assert_eq!(hyps[0].token_logprobs.len(), 3);
    assert!(hyps[0].token_logprobs.iter().all(|&p| p < 0.0));
}

#[test]
fn forced_eos_ends_at_max_length() {
    let mut t = table();
    t.table[2] = vec![-5.0, 9.0, 0.0, 0.0]; // 2 → 1 → 2 → 1 ... never eos
    let hyps = generate(&mut t, 1, &cfg(1)).unwrap();
    assert_eq!(hyps[0].tokens, vec![1, 2, 1, 2, 0]);
    assert_eq!(hyps[0].tokens.len(), 6 - 1);
}

#[test]
fn beam_search_finds_a_better_sequence_than_greedy() {
    // Greedy takes 1 (best first step) and is then stuck with a bad
    // continuation; beam search keeps 2 as well and wins.
    let t = Table {
        rows: 1,
        table: vec![
            vec![0.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, -9.0],
            vec![9.0, -9.0, -9.0, -9.0],
            vec![-9.0, 1.0, 0.9, -9.0],
        ],
    };
    let mut t1 = Table {
        rows: 1,
        table: t.table.clone(),
    };
    let greedy = generate(&mut t1, 1, &cfg(1)).unwrap();
    assert_eq!(greedy[0].tokens, vec![1, 0]);
    let mut t2 = Table {
        rows: 1,
        table: t.table.clone(),
    };
    let beam = generate(&mut t2, 1, &cfg(2)).unwrap();
    assert_eq!(beam[0].tokens, vec![2, 0]);
}

/// A toy model over a larger vocabulary: the next-token scores depend on
/// the last token only, drawn from a few values (so ties are common).
struct Random {
    rows: usize,
    vocab: usize,
    table: Vec<f32>,
}

impl Random {
    /// A model holding the encoder state of `sentences` sentences, one row
    /// each, as `generate` expects.
    fn new(sentences: usize, vocab: usize, seed: u64) -> Self {
        let mut s = seed;
        let table = (0..vocab * vocab)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 9) as f32 * 0.75 - 3.0
            })
            .collect();
        Self {
            rows: sentences,
            vocab,
            table,
        }
    }
}

impl StepModel for Random {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        assert_eq!(tokens.len(), self.rows);
        let v = self.vocab;
        let data: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.table[t as usize * v..(t as usize + 1) * v].to_vec())
            .collect();
        logits(data, tokens.len(), v)
    }
    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.rows = rows.len();
        Ok(())
    }
}

/// The search that GPUs use (logits reduced where they are, see
/// `device::search`) gives the same hypotheses as the host search, run
/// here on the CPU: greedy and beams, bad words with prefixes, a minimum
/// length, several sentences.
#[test]
fn device_search_matches_the_host_search() {
    for (seed, beams) in [(1u64, 1usize), (2, 2), (3, 3), (4, 4), (5, 1), (6, 4)] {
        let vocab = 11;
        let cfg = GenerationConfig {
            max_length: 9,
            min_length: 3,
            num_beams: beams,
            bad_words_ids: vec![vec![10], vec![4, 5], vec![2, 2, 7]],
            decoder_start_token_id: 10,
            ..cfg(beams)
        };
        let run = |on_device: bool| {
            DEVICE_SEARCH_ON_CPU.with(|c| c.set(on_device));
            let mut model = Random::new(3, vocab, seed);
            let out = generate(&mut model, 3, &cfg);
            DEVICE_SEARCH_ON_CPU.with(|c| c.set(false));
            out.unwrap()
        };
        let (host, device) = (run(false), run(true));
        assert_eq!(host.len(), device.len());
        for (h, d) in host.iter().zip(&device) {
            assert_eq!(h.tokens, d.tokens, "seed {seed}, {beams} beams");
            assert!(
                (h.score - d.score).abs() < 1e-4,
                "{} vs {}",
                h.score,
                d.score
            );
            assert_eq!(h.token_logprobs.len(), d.token_logprobs.len());
            for (a, b) in h.token_logprobs.iter().zip(&d.token_logprobs) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }
}

/// `len` deterministic pseudo-random 24-bit draws (an LCG seeded by `seed`).
fn draws(len: usize, seed: u64) -> impl Iterator<Item = u64> {
    let mut s = seed;
    (0..len).map(move |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 40
    })
}

#[test]
fn log_sum_exp_agrees_with_libm_in_f64() {
    // The vector kernel (where the CPU has one) against the plain formula:
    // rows with a tail, banned (-inf) tokens, wide and narrow ranges.
    let reference = |row: &[f32]| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
        (max, sum.ln() as f32)
    };
    for (i, (len, spread)) in [(1, 1.0), (13, 3.0), (58_101, 20.0), (1000, 200.0)]
        .into_iter()
        .enumerate()
    {
        let mut row: Vec<f32> = draws(len, 7 + i as u64)
            .map(|d| (d as f32 / (1u64 << 24) as f32 - 0.5) * spread)
            .collect();
        if len > 10 {
            row[3] = f32::NEG_INFINITY;
            row[len - 1] = f32::NEG_INFINITY;
        }
        let (max, log_sum) = log_sum_exp(&row).unwrap();
        let (want_max, want_log_sum) = reference(&row);
        assert_eq!(max, want_max);
        assert!(
            (log_sum - want_log_sum).abs() <= 1e-6 * want_log_sum.abs().max(1.0),
            "len {len}: {log_sum} vs {want_log_sum}"
        );
    }
    assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 20]), None);
}

#[test]
fn top_k_row_equals_the_plain_pass() {
    // Rows with ties across the cut, banned tokens and a tail that is not
    // a multiple of eight: the vector skip must keep the same winners in
    // the same order as the one-value-at-a-time pass.
    for (i, (len, k)) in [(5, 8), (37, 2), (1000, 8), (58_101, 8)]
        .into_iter()
        .enumerate()
    {
        // Few distinct values, so ties are common.
        let mut row: Vec<f32> = draws(len, 11 + i as u64)
            .map(|d| (d % 64) as f32 * 0.25)
            .collect();
        row[len / 2] = f32::NEG_INFINITY;
        let norm = log_sum_exp(&row).unwrap();
        let base = -1.75;
        let plain = top_k_stable(
            row.iter()
                .enumerate()
                .map(|(t, &x)| ((x - norm.0 - norm.1) + base, 3, t as u32)),
            k,
        );
        assert_eq!(top_k_row(&row, norm, base, 3, k), plain, "len {len} k {k}");
    }
}

#[test]
fn greedy_pick_equals_processing_a_copy() {
    // The in-place pick against what it replaced: process a copy of the
    // row, take the first maximum, log-softmax it. Rows with ties for the
    // maximum (one of them banned), banned first and last tokens, a
    // min-length EOS ban, all banned, and the forced-EOS step.
    let mut cfg = cfg(1);
    cfg.max_length = 20;
    cfg.min_length = 5;
    cfg.bad_words_ids = vec![vec![7], vec![2, 9], vec![57]];
    let reference = |row: &[f32], generated: &[u32], cur_len: usize, cfg: &GenerationConfig| {
        let mut scores = row.to_vec();
        process(&mut scores, generated, cur_len, cfg);
        let (token, _) =
            scores
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &s)| {
                    if s > best.1 {
                        (i, s)
                    } else {
                        best
                    }
                });
        let logprob = match log_sum_exp(&scores) {
            Some((max, log_sum)) => scores[token] - max - log_sum,
            None => scores[token],
        };
        (token, logprob)
    };
    for seed in 0..40u64 {
        let mut row: Vec<f32> = draws(58, seed)
            .map(|d| (d / 4096) as f32 / 512.0 - 4.0)
            .collect();
        if seed % 3 == 0 {
            row[7] = 10.0; // the maximum, banned
            row[30] = 9.0;
            row[44] = 9.0; // a tie: the first wins
        }
        if seed % 5 == 0 {
            row[0] = 20.0; // EOS, banned below min_length
        }
        for (generated, cur_len) in [
            (vec![], 1),
            (vec![4, 2], 3),
            (vec![4, 2], 8),
            (vec![1; 18], 19),
        ] {
            let (token, logprob) = greedy_pick(&row, &generated, cur_len, &cfg);
            let (want_token, want_logprob) = reference(&row, &generated, cur_len, &cfg);
            assert_eq!(token, want_token, "seed {seed}, step {cur_len}");
            assert!(
                (logprob - want_logprob).abs() <= 1e-5 * want_logprob.abs().max(1.0),
                "seed {seed}, step {cur_len}: {logprob} vs {want_logprob}"
            );
        }
    }
    // Every token banned: token 0 at -inf, as the fold gives.
    let mut all = cfg.clone();
    all.bad_words_ids = (0..4).map(|t| vec![t]).collect();
    assert_eq!(
        greedy_pick(&[1.0, 2.0, 3.0, 4.0], &[], 10, &all),
        (0, f32::NEG_INFINITY)
    );
}

/// Rows large enough to go to the compute threads come back in row order,
/// each changed where it lies (and small steps the same on one thread).
#[test]
fn map_rows_keeps_row_order_and_changes_rows_in_place() {
    for (rows, vocab) in [(9, 1 << 16), (3, 5)] {
        let mut data: Vec<f32> = (0..rows * vocab).map(|v| v as f32).collect();
        let firsts = map_rows(&mut data, vocab, |i, row| {
            row[1] = -(i as f32);
            (i, row[0])
        });
        let want: Vec<(usize, f32)> = (0..rows).map(|i| (i, (i * vocab) as f32)).collect();
        assert_eq!(firsts, want);
        for i in 0..rows {
            assert_eq!(data[i * vocab + 1], -(i as f32), "row {i}");
            assert_eq!(data[i * vocab + 2], (i * vocab + 2) as f32, "row {i}");
        }
    }
}

/// A toy model whose scores depend on the sentence, the row's position and
/// the last token, so a row that lost track of its sentence or position
/// would decode something else. It holds `sentences` rows at first, or
/// none, and takes sentences in through `admit` (a queued run).
struct PerSentence {
    vocab: usize,
    seed: u64,
    /// (sentence, position) of each row.
    rows: Vec<(usize, usize)>,
    admitted: Vec<usize>,
    widest: usize,
}

impl PerSentence {
    fn new(present: usize, vocab: usize, seed: u64) -> Self {
        Self {
            vocab,
            seed,
            rows: (0..present).map(|s| (s, 0)).collect(),
            admitted: Vec::new(),
            widest: present,
        }
    }
}

impl StepModel for PerSentence {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        assert_eq!(tokens.len(), self.rows.len());
        let v = self.vocab;
        let mut data = Vec::with_capacity(tokens.len() * v);
        for (row, &t) in self.rows.iter_mut().zip(tokens) {
            let seed = self.seed ^ ((row.0 as u64) << 40) ^ ((row.1 as u64) << 20) ^ u64::from(t);
            data.extend(draws(v, seed.wrapping_add(1)).map(|d| (d % 13) as f32 * 0.5 - 3.0));
            row.1 += 1;
        }
        logits(data, tokens.len(), v)
    }
    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.rows = rows.iter().map(|&r| self.rows[r as usize]).collect();
        Ok(())
    }
    fn admit(&mut self, sentences: &[usize], group: usize) -> Result<()> {
        for &s in sentences {
            self.admitted.push(s);
            self.rows.extend(std::iter::repeat_n((s, 0), group));
        }
        self.widest = self.widest.max(self.rows.len());
        Ok(())
    }
}

/// A queued run (rows refilled as sentences finish) gives every sentence
/// the hypothesis that one batch holding all of them gives: greedy and
/// beams, widths from 1 to all, sentences of very different lengths (a
/// minimum length, EOS drawn often, the forced EOS at max_length). The
/// rows never exceed the width, every sentence is admitted once and in
/// order, and `finished` counts every sentence once.
#[test]
fn a_queued_run_equals_one_batch_of_all_sentences() {
    let total = 9;
    for (seed, beams) in [(11u64, 1usize), (12, 2), (13, 3), (14, 1)] {
        let cfg = GenerationConfig {
            max_length: 12,
            min_length: 2,
            num_beams: beams,
            bad_words_ids: vec![vec![6], vec![2, 5]],
            decoder_start_token_id: 6,
            ..cfg(beams)
        };
        let whole = generate(&mut PerSentence::new(total, 7, seed), total, &cfg).unwrap();
        let lengths: Vec<usize> = whole.iter().map(|h| h.tokens.len()).collect();
        assert!(
            lengths.iter().min() != lengths.iter().max(),
            "seed {seed}: sentences of one length test nothing: {lengths:?}"
        );
        for width in [1, 2, 4, total, total + 3] {
            let mut model = PerSentence::new(0, 7, seed);
            let mut done = 0;
            let queued = generate_queued(&mut model, total, width, &cfg, &mut |n| {
                done += n;
                Ok(())
            })
            .unwrap();
            assert_eq!(queued, whole, "seed {seed}, {beams} beams, width {width}");
            assert_eq!(done, total);
            assert_eq!(model.admitted, (0..total).collect::<Vec<_>>());
            assert!(model.widest <= width.min(total) * beams);
        }
    }
}

/// An error from `finished` stops a queued run (how Ctrl-C ends one).
#[test]
fn an_error_from_finished_stops_a_queued_run() {
    let mut model = PerSentence::new(0, 7, 3);
    let mut steps = 0;
    let err = generate_queued(&mut model, 5, 2, &cfg(1), &mut |_| {
        steps += 1;
        anyhow::bail!("interrupted")
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "interrupted");
    assert_eq!(steps, 1);
}

#[test]
fn compact_keeps_slots_in_place_and_fills_holes_from_the_end() {
    assert_eq!(compact(&[0, 1, 2]), vec![0, 1, 2]);
    assert_eq!(compact(&[0, 2, 4]), vec![0, 4, 2]);
    assert_eq!(compact(&[1, 2, 3, 4]), vec![4, 1, 2, 3]);
    assert_eq!(compact(&[3, 5]), vec![5, 3]);
    assert_eq!(compact(&[]), Vec::<usize>::new());
    // Every kept slot exactly once.
    let keep = [0, 3, 4, 7, 8, 9];
    let mut got = compact(&keep);
    got.sort_unstable();
    assert_eq!(got, keep);
}

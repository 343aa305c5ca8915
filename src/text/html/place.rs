//! Where an inline element goes in its paragraph's translation: its own
//! translation found in the paragraph's (exactly, else the window sharing
//! most words), else the same relative place.

use super::{has_words, Run};
use crate::text::protect::{self, Piece};

/// Where each span's element goes in the run's translation `t`: nested in
/// its parent's range, after its previous sibling.
pub(super) fn place_spans(run: &Run, t: &str, all: &[String]) -> Vec<(usize, usize)> {
    let mut ranges = vec![(0, 0); run.spans.len()];
    let mut sibling_end: Vec<Option<usize>> = vec![None; run.spans.len() + 1];
    let src_len = run.text.trim_end().len().max(1) as f64;
    for (i, span) in run.spans.iter().enumerate() {
        let (lo, hi) = match span.parent {
            Some(p) => ranges[p],
            None => (0, t.len()),
        };
        let slot = span.parent.map_or(run.spans.len(), |p| p);
        let lo = sibling_end[slot].unwrap_or(lo).max(lo).min(hi);
        let source = &run.text[span.start..span.end];
        let wanted = (
            (span.start as f64 / src_len * t.len() as f64) as usize,
            (span.end as f64 / src_len * t.len() as f64) as usize,
        );
        let found = if span.start == span.end {
            None
        } else if source.trim() == run.text.trim() {
            Some((lo, hi))
        } else if !has_words(source) {
            atoms_range(source, t, lo, hi)
        } else {
            let helper = span.helper.and_then(|h| all.get(h)).map(String::as_str);
            helper
                .and_then(|h| find_exact(t, h, lo, hi, wanted.0))
                .or_else(|| helper.and_then(|h| find_overlap(t, h, lo, hi, wanted.0)))
        };
        let (s, e) = match found {
            Some(r) => r,
            None if span.start == span.end => {
                let p = snap(t, wanted.0.clamp(lo, hi), lo, hi);
                (p, p)
            }
            None => proportional(t, wanted, lo, hi),
        };
        let (s, e) = (s.clamp(lo, hi), e.clamp(lo, hi));
        let e = e.max(s);
        ranges[i] = (s, e);
        sibling_end[slot] = Some(e);
    }
    ranges
}

/// The range from the first to the last atom placeholder of `source` in `t`.
fn atoms_range(source: &str, t: &str, lo: usize, hi: usize) -> Option<(usize, usize)> {
    let mut range: Option<(usize, usize)> = None;
    for piece in protect::split_placeholders(source) {
        if let Piece::Placeholder(i) = piece {
            let p = protect::placeholder(i);
            let at = t[lo..hi].find(&p).map(|x| x + lo)?;
            let r = (at, at + p.len());
            range = Some(match range {
                Some((s, e)) => (s.min(r.0), e.max(r.1)),
                None => r,
            });
        }
    }
    range
}

/// `needle` (without its final punctuation) in `t[lo..hi]`, any case, on
/// word boundaries; the occurrence nearest to `near`.
fn find_exact(t: &str, needle: &str, lo: usize, hi: usize, near: usize) -> Option<(usize, usize)> {
    let needle = needle
        .trim()
        .trim_end_matches(['.', '!', '?', ',', ';', ':']);
    if needle.is_empty() || !t.is_char_boundary(lo) || !t.is_char_boundary(hi) {
        return None;
    }
    let hay = t[lo..hi].to_lowercase();
    let n = needle.to_lowercase();
    if hay.len() != hi - lo || n.len() != needle.len() {
        // Lowercasing changed lengths: offsets would be wrong.
        return None;
    }
    hay.match_indices(&n)
        .map(|(p, _)| (lo + p, lo + p + n.len()))
        .filter(|&(s, e)| {
            let before = t[..s].chars().next_back();
            let after = t[e..].chars().next();
            before.is_none_or(|c| !c.is_alphanumeric())
                && after.is_none_or(|c| !c.is_alphanumeric())
        })
        .min_by_key(|&(s, _)| s.abs_diff(near))
}

/// Words of `t[lo..hi]` with their byte ranges.
fn words_in(t: &str, lo: usize, hi: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in t[lo..hi].char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((lo + s, lo + i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((lo + s, hi));
    }
    out
}

/// Equal, or one a prefix of the other of at least 3 characters ("book",
/// "books"): inflection should not hide a word.
fn similar(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.chars().count() >= 3 && long.starts_with(short))
}

fn bare(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// The window of `t[lo..hi]`, as many words long as `needle`, that shares
/// the most words with it (at least one).
fn find_overlap(
    t: &str,
    needle: &str,
    lo: usize,
    hi: usize,
    near: usize,
) -> Option<(usize, usize)> {
    let wanted: Vec<String> = needle
        .split_whitespace()
        .map(bare)
        .filter(|w| !w.is_empty())
        .collect();
    let words = words_in(t, lo, hi);
    if wanted.is_empty() || words.is_empty() {
        return None;
    }
    let n = wanted.len().min(words.len());
    let mut best: Option<(usize, usize, (usize, usize))> = None;
    for start in 0..=words.len() - n {
        let window = &words[start..start + n];
        let score = window
            .iter()
            .filter(|&&(s, e)| {
                let w = bare(&t[s..e]);
                wanted.iter().any(|x| similar(x, &w))
            })
            .count();
        let last = &t[window[n - 1].0..window[n - 1].1];
        let trimmed = last.trim_end_matches(|c: char| !c.is_alphanumeric()).len();
        let range = (
            window[0].0,
            window[n - 1].0 + if trimmed == 0 { last.len() } else { trimmed },
        );
        let dist = range.0.abs_diff(near);
        let better = match best {
            None => score > 0,
            Some((bs, bd, _)) => score > bs || (score == bs && dist < bd),
        };
        if better {
            best = Some((score, dist, range));
        }
    }
    best.map(|(_, _, r)| r)
}

/// The words around the same relative place (`wanted`, byte offsets
/// scaled to `t`), at least one word.
fn proportional(t: &str, wanted: (usize, usize), lo: usize, hi: usize) -> (usize, usize) {
    let words = words_in(t, lo, hi);
    if words.is_empty() {
        return (lo, lo);
    }
    let first = words
        .iter()
        .position(|&(_, e)| e > wanted.0)
        .unwrap_or(words.len() - 1);
    let last = words
        .iter()
        .rposition(|&(s, _)| s < wanted.1)
        .unwrap_or(first)
        .max(first);
    (words[first].0, words[last].1)
}

/// The nearest word boundary to `p` within `lo..hi`.
fn snap(t: &str, p: usize, lo: usize, hi: usize) -> usize {
    let mut best = lo;
    for (i, c) in t[lo..hi].char_indices() {
        if c == ' ' && (lo + i).abs_diff(p) < best.abs_diff(p) {
            best = lo + i;
        }
    }
    if hi.abs_diff(p) < best.abs_diff(p) {
        best = hi;
    }
    best
}

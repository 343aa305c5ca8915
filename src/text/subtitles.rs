//! SRT and WebVTT subtitles: cue text in, cue text out, everything else
//! byte for byte.
//!
//! Cue numbers, identifiers, timing lines (with their settings), the VTT
//! header and its `NOTE`/`STYLE`/`REGION` blocks, blank lines and line
//! endings are copied unchanged. A sentence that runs over several cues is
//! translated once: consecutive cues are joined until one ends a sentence
//! (`.`, `!`, `?`, `…`, possibly before closing quotes), and the translation
//! is split back over the same cues in proportion to their source lengths,
//! on word boundaries. Cues that hold dialogue lines (`- Ja.` / `- Nein.`)
//! are translated line by line and keep their dashes. Each cue is re-wrapped
//! to the longest text line of the original file.
//!
//! Markup: tags that wrap a whole cue (`<i>…</i>`, `{\an8}`) are kept
//! around its translation; tags inside a cue's text are dropped (the
//! translation has no words to put them around).
//!
//! A file that is not valid SRT/VTT (no cue number or timing where one must
//! be) fails with the line number.

use anyhow::{bail, Result};

/// A parsed subtitle file.
#[derive(Debug, Clone)]
pub struct Subtitles {
    parts: Vec<Part>,
    cues: Vec<Cue>,
    /// The cues' text, grouped into translation paragraphs.
    groups: Vec<Group>,
    /// Longest text line of the original, in characters.
    max_line: usize,
}

#[derive(Debug, Clone)]
enum Part {
    Keep(String),
    /// Cue `n`'s text lines (replaced by its translation, re-wrapped).
    Cue(usize),
}

#[derive(Debug, Clone, Default)]
struct Cue {
    /// Tags before and after the text (`<i>`, `</i>`).
    open: String,
    close: String,
    /// The text, lines joined with spaces, inner tags removed.
    text: String,
    /// Dialogue lines ("- Ja."), each translated alone; empty otherwise.
    dialogue: Vec<String>,
    eol: String,
    /// Dialogue lines' text (with `dialogue`).
    lines: Vec<String>,
    /// The original text lines without tags, for the wrap width.
    source_lines: Vec<String>,
    /// The original text lines with their line endings, written back as
    /// they were when the cue has no words to translate.
    raw: String,
}

impl Cue {
    fn has_words(&self) -> bool {
        !self.text.is_empty() || self.lines.iter().any(|l| !l.is_empty())
    }
}

/// Cues translated together, or one dialogue line.
#[derive(Debug, Clone)]
struct Group {
    /// (cue, dialogue line) pieces: for a plain group, cues with line None.
    cues: Vec<usize>,
    dialogue_line: Option<usize>,
    text: String,
}

/// Timestamps: `00:00:01,000` (SRT), `00:01.000` or `00:00:01.000` (VTT).
fn is_timestamp(s: &str, vtt: bool) -> bool {
    let sep = if vtt { '.' } else { ',' };
    let (clock, millis) = match s.rsplit_once(sep) {
        Some(x) => x,
        // SRT files in the wild also use a period.
        None if !vtt => match s.rsplit_once('.') {
            Some(x) => x,
            None => return false,
        },
        None => return false,
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let numeric = |f: &str| !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit());
    millis.len() == 3
        && millis.bytes().all(|b| b.is_ascii_digit())
        && (fields.len() == 3 || (vtt && fields.len() == 2))
        && fields.iter().all(|f| numeric(f))
}

/// `start --> end[ settings]`.
fn is_timing(line: &str, vtt: bool) -> bool {
    let Some((start, rest)) = line.split_once("-->") else {
        return false;
    };
    let end = rest.split_whitespace().next().unwrap_or("");
    is_timestamp(start.trim(), vtt) && is_timestamp(end, vtt)
}

fn content(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

impl Subtitles {
    /// Parses SRT, or WebVTT when the file starts with `WEBVTT`.
    pub fn parse(text: &str) -> Result<Self> {
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        let vtt = body.starts_with("WEBVTT");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut parts = Vec::new();
        let mut cues = Vec::new();
        let mut keep = String::new();
        let mut i = 0;
        if vtt {
            // The header runs to the first blank line.
            while i < lines.len() && !content(lines[i]).trim().is_empty() {
                keep.push_str(lines[i]);
                i += 1;
            }
        } else if body.trim_start().starts_with("WEBVTT") || text.trim().is_empty() {
            bail!("line 1: not a subtitle file (a WebVTT file must start with WEBVTT)");
        }
        while i < lines.len() {
            let line = content(lines[i]);
            if line.trim().is_empty() {
                keep.push_str(lines[i]);
                i += 1;
                continue;
            }
            // A block: optional number/identifier, timing, text lines.
            let first = line.trim_start_matches('\u{feff}');
            if vtt
                && ["NOTE", "STYLE", "REGION"].iter().any(|k| {
                    first == *k
                        || first.starts_with(&format!("{k} "))
                        || first.starts_with(&format!("{k}\t"))
                })
            {
                while i < lines.len() && !content(lines[i]).trim().is_empty() {
                    keep.push_str(lines[i]);
                    i += 1;
                }
                continue;
            }
            if !is_timing(first, vtt) {
                if first.contains("-->") || first.contains("->") {
                    bail!("line {}: invalid timing line {:?}", i + 1, preview(first));
                }
                let is_number = first.trim().bytes().all(|b| b.is_ascii_digit());
                if !vtt && !is_number {
                    bail!(
                        "line {}: expected a cue number or a timing line, found {:?}",
                        i + 1,
                        preview(first)
                    );
                }
                keep.push_str(lines[i]);
                i += 1;
                let next = lines.get(i).map(|l| content(l)).unwrap_or("");
                if !is_timing(next, vtt) {
                    bail!(
                        "line {}: expected a timing line like {:?}, found {:?}",
                        i + 1,
                        if vtt {
                            "00:00:01.000 --> 00:00:04.000"
                        } else {
                            "00:00:01,000 --> 00:00:04,000"
                        },
                        preview(next)
                    );
                }
            }
            keep.push_str(lines[i]);
            i += 1;
            let mut payload = Vec::new();
            let mut eol = String::new();
            while i < lines.len() && !content(lines[i]).trim().is_empty() {
                if eol.is_empty() {
                    eol = lines[i][content(lines[i]).len()..].to_string();
                }
                payload.push(content(lines[i]));
                i += 1;
            }
            if payload.is_empty() {
                continue;
            }
            if eol.is_empty() {
                eol = if text.contains("\r\n") { "\r\n" } else { "\n" }.to_string();
            }
            if !keep.is_empty() {
                parts.push(Part::Keep(std::mem::take(&mut keep)));
            }
            parts.push(Part::Cue(cues.len()));
            cues.push(read_cue(&payload, eol));
        }
        if !keep.is_empty() {
            parts.push(Part::Keep(keep));
        }
        if cues.is_empty() {
            bail!("line 1: no subtitle cues found (not an SRT or WebVTT file)");
        }
        let max_line = cues
            .iter()
            .flat_map(|c| c.source_lines.iter())
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(1)
            .max(1);
        let groups = group_cues(&cues);
        Ok(Subtitles {
            parts,
            cues,
            groups,
            max_line,
        })
    }

    /// The file without its cue text (numbers, identifiers, timings,
    /// headers, notes, blank lines), which a translation keeps byte for byte.
    pub fn kept(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Keep(s) => s.as_str(),
                Part::Cue(_) => "\u{0}",
            })
            .collect()
    }

    /// How many cues the file has.
    pub fn cue_count(&self) -> usize {
        self.cues.len()
    }

    /// The text of each translation paragraph, in order.
    pub fn paragraphs(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.text.clone()).collect()
    }

    /// The file with each paragraph replaced by its translation.
    pub fn assemble(&self, translations: &[String]) -> Result<String> {
        if translations.len() != self.groups.len() {
            bail!(
                "internal error: {} translations for {} subtitle paragraphs",
                translations.len(),
                self.groups.len()
            );
        }
        let mut texts: Vec<Vec<String>> = self
            .cues
            .iter()
            .map(|c| vec![String::new(); c.dialogue.len().max(1)])
            .collect();
        for (group, translation) in self.groups.iter().zip(translations) {
            // A cue's text is one run of words: a line break or a blank line
            // in a model's answer would end the cue early or forge a new one
            // ("\n\n99\n00:00:00,000 --> …").
            let translation = &crate::text::normalize_whitespace(translation);
            if let Some(line) = group.dialogue_line {
                texts[group.cues[0]][line] = translation.clone();
                continue;
            }
            let weights: Vec<usize> = group
                .cues
                .iter()
                .map(|&c| self.cues[c].text.chars().count().max(1))
                .collect();
            for (&c, piece) in group
                .cues
                .iter()
                .zip(split_proportionally(translation, &weights))
            {
                texts[c][0] = piece;
            }
        }
        // A cue that had words keeps a line: a translation with fewer words
        // than cues (or none) leaves "…" rather than an empty cue, which
        // would end the block early in the file's structure.
        for (cue, slots) in self.cues.iter().zip(&mut texts) {
            for (k, slot) in slots.iter_mut().enumerate() {
                let had_words = match cue.lines.get(k) {
                    Some(line) => !line.is_empty(),
                    None => !cue.text.is_empty(),
                };
                if had_words && slot.trim().is_empty() {
                    *slot = CONTINUED.to_string();
                }
            }
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Keep(s) => out.push_str(s),
                Part::Cue(c) => {
                    let cue = &self.cues[*c];
                    if !cue.has_words() {
                        // Only markup or symbols (♪, an unclosed tag): as it was.
                        out.push_str(&cue.raw);
                        continue;
                    }
                    let lines: Vec<String> = if cue.dialogue.is_empty() {
                        wrap(&texts[*c][0], self.max_line)
                    } else {
                        cue.dialogue
                            .iter()
                            .zip(&texts[*c])
                            .map(|(dash, t)| format!("{dash}{t}"))
                            .collect()
                    };
                    let n = lines.len();
                    for (k, line) in lines.into_iter().enumerate() {
                        if k == 0 {
                            out.push_str(&cue.open);
                        }
                        out.push_str(&line);
                        if k + 1 == n {
                            out.push_str(&cue.close);
                        }
                        out.push_str(&cue.eol);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Reads a cue's text lines: wrapping tags, dialogue dashes, inner tags.
fn read_cue(payload: &[&str], eol: String) -> Cue {
    let joined = payload.join("\n");
    let (open, inner, close) = split_wrapping_tags(&joined);
    let lines: Vec<&str> = inner.split("\n").collect();
    let dialogue_lines = lines.len() > 1 && lines.iter().all(|l| l.trim_start().starts_with('-'));
    let raw = payload.iter().map(|l| format!("{l}{eol}")).collect();
    let mut cue = Cue {
        open: open.to_string(),
        close: close.to_string(),
        eol,
        raw,
        source_lines: payload.iter().map(|l| strip_tags(l)).collect(),
        ..Cue::default()
    };
    if dialogue_lines {
        for line in &lines {
            let body = line.trim_start().trim_start_matches('-');
            let text = strip_tags(body);
            let dash_len = line.len() - body.len() + (body.len() - body.trim_start().len());
            cue.dialogue.push(line[..dash_len].to_string());
            cue.lines.push(super::normalize_whitespace(&text));
        }
    } else {
        cue.text = super::normalize_whitespace(&strip_tags(&lines.join(" ")));
    }
    cue
}

/// `<i>Text</i>` → ("<i>", "Text", "</i>"); `{\an8}Text` → ("{\an8}", "Text", "").
fn split_wrapping_tags(text: &str) -> (&str, &str, &str) {
    let mut open_end = 0;
    let mut names = Vec::new();
    loop {
        let rest = &text[open_end..];
        if rest.starts_with('{') {
            match rest.find('}') {
                Some(e) => open_end += e + 1,
                None => break,
            }
        } else if rest.starts_with('<') && !rest.starts_with("</") {
            match rest.find('>') {
                Some(e) => {
                    let name: String = rest[1..e]
                        .chars()
                        .take_while(|c| c.is_alphanumeric())
                        .collect();
                    names.push(name);
                    open_end += e + 1;
                }
                None => break,
            }
        } else {
            break;
        }
    }
    let mut close_start = text.len();
    for name in names.iter().rev() {
        let tag = format!("</{name}>");
        if text[open_end..close_start].ends_with(&tag) {
            close_start -= tag.len();
        } else {
            break;
        }
    }
    (
        &text[..open_end],
        &text[open_end..close_start],
        &text[close_start..],
    )
}

/// Removes `<…>` and `{…}` tags.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth: Option<char> = None;
    for c in text.chars() {
        match (depth, c) {
            (None, '<') => depth = Some('>'),
            (None, '{') => depth = Some('}'),
            (Some(end), c) if c == end => depth = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// Whether a cue's text ends a sentence.
fn ends_sentence(text: &str) -> bool {
    let t = text.trim_end_matches(|c: char| {
        matches!(
            c,
            '"' | '\'' | '”' | '“' | '’' | '»' | '«' | '›' | ')' | ']'
        ) || c.is_whitespace()
    });
    t.ends_with(['.', '!', '?', '…', ':', ';', '♪']) || t.is_empty()
}

/// Joins consecutive cues until one ends a sentence; dialogue lines stand alone.
fn group_cues(cues: &[Cue]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut open = false;
    for (i, cue) in cues.iter().enumerate() {
        if !cue.dialogue.is_empty() {
            open = false;
            for (k, line) in cue.lines.iter().enumerate() {
                groups.push(Group {
                    cues: vec![i],
                    dialogue_line: Some(k),
                    text: line.clone(),
                });
            }
            continue;
        }
        match groups.last_mut() {
            Some(g) if open => {
                g.cues.push(i);
                g.text.push(' ');
                g.text.push_str(&cue.text);
            }
            _ => groups.push(Group {
                cues: vec![i],
                dialogue_line: None,
                text: cue.text.clone(),
            }),
        }
        open = !ends_sentence(&cue.text);
    }
    groups
}

/// The text of a cue whose sentence ran out of words in translation.
const CONTINUED: &str = "…";

/// Splits `text` into `weights.len()` pieces on word boundaries, piece `k`
/// getting about `weights[k] / sum` of the characters; no piece is empty
/// while there are words enough.
pub fn split_proportionally(text: &str, weights: &[usize]) -> Vec<String> {
    let words = words_of(text);
    let n = weights.len();
    if n <= 1 {
        return vec![words.join(" ")];
    }
    let total_weight: usize = weights.iter().sum::<usize>().max(1);
    let total_chars: usize = words.iter().map(|w| w.chars().count() + 1).sum();
    // Word k ends at character ends[k] (with one space per word).
    let mut ends = Vec::with_capacity(words.len());
    let mut acc = 0;
    for w in &words {
        acc += w.chars().count() + 1;
        ends.push(acc);
    }
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0; // first word of the current piece
    let mut cum_weight = 0;
    for (k, &w) in weights.iter().enumerate().take(n - 1) {
        cum_weight += w;
        let target = total_chars * cum_weight / total_weight;
        let remaining_pieces = n - k - 1;
        // Cut after word `cut - 1`: at least one word here, one per later piece.
        let min_cut = (start + 1).min(words.len());
        let max_cut = words.len().saturating_sub(remaining_pieces).max(min_cut);
        let mut cut = min_cut;
        let mut best = usize::MAX;
        for c in min_cut..=max_cut.min(words.len()) {
            let end = if c == 0 { 0 } else { ends[c - 1] };
            let d = end.abs_diff(target);
            if d < best {
                best = d;
                cut = c;
            }
        }
        if start >= words.len() {
            cut = start;
        }
        pieces.push(words[start..cut].join(" "));
        start = cut;
    }
    pieces.push(words[start.min(words.len())..].join(" "));
    pieces
}

/// The words of `text`; a protected span ("5 km", see
/// [`super::protect`]) is one word, never cut by a wrap or a cue boundary.
fn words_of(text: &str) -> Vec<&str> {
    let spans = super::protect::find_spans(text);
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let inside = spans.iter().any(|&(s, e)| s < i && i < e);
        if c.is_whitespace() && !inside {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

/// Greedy wrap to lines of at most `width` characters (a longer word
/// stands alone).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words_of(text) {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(40).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Translates each paragraph with `f`, as the document driver does
    /// (sentence by sentence, joined with spaces).
    fn translate(text: &str, f: impl Fn(&str) -> String) -> String {
        let subs = Subtitles::parse(text).unwrap();
        let out: Vec<String> = subs
            .paragraphs()
            .iter()
            .map(|p| {
                crate::text::split_sentences(p)
                    .iter()
                    .map(|s| f(s))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        subs.assemble(&out).unwrap()
    }

    const SRT: &str = "1\r\n00:00:01,000 --> 00:00:03,500\r\nGestern bin ich mit meinem\r\nBruder\r\n\r\n2\r\n00:00:03,600 --> 00:00:05,000\r\nnach Hause gegangen.\r\n\r\n3\r\n00:00:06,000 --> 00:00:08,000\r\n<i>Es regnete.</i>\r\n\r\n4\r\n00:00:08,500 --> 00:00:10,000\r\n- Kommst du?\r\n- Ja.\r\n";

    #[test]
    fn a_sentence_over_two_cues_is_translated_once_and_split_back() {
        let subs = Subtitles::parse(SRT).unwrap();
        assert_eq!(
            subs.paragraphs(),
            vec![
                "Gestern bin ich mit meinem Bruder nach Hause gegangen.",
                "Es regnete.",
                "Kommst du?",
                "Ja."
            ]
        );
        let out = translate(SRT, |s| match s {
            "Gestern bin ich mit meinem Bruder nach Hause gegangen." => {
                "Yesterday I went home with my brother.".into()
            }
            "Es regnete." => "It was raining.".into(),
            "Kommst du?" => "Are you coming?".into(),
            "Ja." => "Yes.".into(),
            other => panic!("unexpected {other:?}"),
        });
        // Weights 33 and 20 characters: the cut after "home" (22 of 39
        // characters) is the word boundary nearest to 33/53 of the text.
        assert_eq!(
            out,
            "1\r\n00:00:01,000 --> 00:00:03,500\r\nYesterday I went home\r\n\r\n\
             2\r\n00:00:03,600 --> 00:00:05,000\r\nwith my brother.\r\n\r\n\
             3\r\n00:00:06,000 --> 00:00:08,000\r\n<i>It was raining.</i>\r\n\r\n\
             4\r\n00:00:08,500 --> 00:00:10,000\r\n- Are you coming?\r\n- Yes.\r\n"
        );
    }

    #[test]
    fn cues_left_without_words_keep_a_line_and_the_file_its_structure() {
        let srt = "1\n00:00:01,000 --> 00:00:03,000\nGestern bin ich mit meinem Bruder\n\n\
                   2\n00:00:03,100 --> 00:00:05,000\nnach Hause gegangen.\n\n\
                   3\n00:00:06,000 --> 00:00:08,000\n- Kommst du?\n- Ja.\n";
        let out = translate(srt, |s| match s {
            "Ja." => String::new(),
            _ => "Anananan.".into(),
        });
        assert_eq!(
            out,
            "1\n00:00:01,000 --> 00:00:03,000\nAnananan.\n\n\
             2\n00:00:03,100 --> 00:00:05,000\n…\n\n\
             3\n00:00:06,000 --> 00:00:08,000\n- Anananan.\n- …\n"
        );
        // Still a valid file.
        Subtitles::parse(&out).unwrap();
    }

    #[test]
    fn timings_and_numbers_are_kept_byte_for_byte() {
        let out = translate(SRT, |s| s.to_uppercase());
        let keep = |t: &str| -> Vec<String> {
            t.split("\r\n")
                .filter(|l| l.contains("-->") || l.bytes().all(|b| b.is_ascii_digit()))
                .map(String::from)
                .collect()
        };
        assert_eq!(keep(&out), keep(SRT));
        assert_eq!(out.matches("\r\n").count(), out.matches('\n').count());
    }

    #[test]
    fn proportional_split_is_on_word_boundaries_and_never_empty() {
        assert_eq!(
            split_proportionally("a bb ccc dddd", &[1, 1]),
            vec!["a bb", "ccc dddd"]
        );
        assert_eq!(
            split_proportionally("one two", &[10, 1, 1]),
            vec!["one", "two", ""]
        );
        assert_eq!(
            split_proportionally("x y z", &[100, 1, 1]),
            vec!["x", "y", "z"]
        );
        let text = "the quick brown fox jumps over the lazy dog";
        let parts = split_proportionally(text, &[3, 1]);
        assert_eq!(parts.join(" "), text);
        assert!(parts[0].len() > parts[1].len());
    }

    #[test]
    fn rewraps_to_the_longest_original_line() {
        assert_eq!(wrap("aa bb cc dd", 5), vec!["aa bb", "cc dd"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            vec!["averyveryverylongword", "x"]
        );
        let srt = "1\n00:00:01,000 --> 00:00:02,000\nKurz und gut.\n";
        let out = translate(srt, |_| "This is much longer than the line was".into());
        let lines: Vec<&str> = out.lines().skip(2).collect();
        assert_eq!(lines, vec!["This is much", "longer than", "the line was"]);
    }

    #[test]
    fn webvtt_keeps_header_notes_settings_and_identifiers() {
        let vtt = "\u{feff}WEBVTT - Nachrichten\nKind: captions\n\nNOTE Das bleibt so.\nNoch eine Zeile.\n\nSTYLE\n::cue { color: red }\n\nintro\n00:01.000 --> 00:04.000 align:start position:10%\n<v Anna>Guten Tag.</v>\n\n00:00:05.000 --> 00:00:06.000\nWie geht es?\n";
        let out = translate(vtt, |s| s.to_uppercase());
        assert_eq!(
            out,
            "\u{feff}WEBVTT - Nachrichten\nKind: captions\n\nNOTE Das bleibt so.\nNoch eine Zeile.\n\nSTYLE\n::cue { color: red }\n\nintro\n00:01.000 --> 00:04.000 align:start position:10%\n<v Anna>GUTEN TAG.</v>\n\n00:00:05.000 --> 00:00:06.000\nWIE GEHT ES?\n"
        );
    }

    #[test]
    fn a_cue_without_words_is_written_back_as_it_was() {
        // A fuzzing finding: the cue's only text sat inside an unclosed tag,
        // so it had no words, and it was written back as an empty line that
        // ended the block: the output was no subtitle file at all.
        let text = "1\r\n00:00:01,000 --> 00:00:02,000\r\n{\\an8 kein Ende\r\n<b>♪\r\n\r\n\
                    2\r\n00:00:03,000 --> 00:00:04,000\r\nJa.\r\n";
        let out = translate(text, |_| "Yes.".into());
        assert_eq!(
            out,
            "1\r\n00:00:01,000 --> 00:00:02,000\r\n{\\an8 kein Ende\r\n<b>♪\r\n\r\n\
             2\r\n00:00:03,000 --> 00:00:04,000\r\nYes.\r\n"
        );
        assert_eq!(Subtitles::parse(&out).unwrap().cue_count(), 2);
    }

    #[test]
    fn line_breaks_in_a_translation_cannot_forge_cues() {
        let forged = "Ja.\n\n99\n00:00:00,000 --> 00:09:00,000\nGEFÄLSCHT";
        for text in [
            SRT,
            "WEBVTT\n\n00:01.000 --> 00:02.000\n- Kommst du?\n- Ja.\n",
        ] {
            let subs = Subtitles::parse(text).unwrap();
            let out = translate(text, |_| forged.to_string());
            let again = Subtitles::parse(&out).unwrap();
            assert_eq!(again.cue_count(), subs.cue_count(), "{out}");
            assert_eq!(again.kept(), subs.kept(), "{out}");
            assert!(!out.contains("\n99\n"), "{out}");
        }
    }

    #[test]
    fn invalid_files_fail_with_the_line_number() {
        let err = |t: &str| Subtitles::parse(t).unwrap_err().to_string();
        assert!(err("").starts_with("line 1:"), "{}", err(""));
        assert!(err("Hallo Welt\n").starts_with("line 1: expected a cue number"));
        let e =
            err("1\n00:00:01,000 --> 00:00:02,000\nGut.\n\n2\n00:00:03 --> 00:00:04,000\nNein.\n");
        assert!(e.starts_with("line 6: expected a timing line"), "{e}");
        let e = err("WEBVTT\n\n00:01.000 -> 00:02.000\nText\n");
        assert!(e.starts_with("line 3:"), "{e}");
        let e = err("1\n00:00:01,000 --> 00:00:02,000\nGut.\n\nkein Cue\n");
        assert!(e.starts_with("line 5:"), "{e}");
    }
}

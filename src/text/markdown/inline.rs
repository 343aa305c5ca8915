//! Inside one block of Markdown: code spans, links and images, autolinks,
//! inline HTML and footnote references are kept; the text around them is
//! prose.

use crate::text::segment::Builder;

/// Prose with inline markup: code spans, links, images, autolinks and tags
/// are kept, the rest is text.
pub(super) fn inline(s: &str, out: &mut Builder) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // (where the kept markup starts, where the span ends)
        let mut span = None;
        match bytes[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'`' => match code_span_end(s, i) {
                Some(end) => {
                    out.text(&s[start..i]);
                    out.keep(&s[i..end]);
                    span = Some(end);
                }
                None => {
                    // An unclosed run is literal text; skip it whole so a
                    // shorter run inside it is not read as an opener.
                    i += bytes[i..].iter().take_while(|b| **b == b'`').count();
                    continue;
                }
            },
            b'!' if bytes.get(i + 1) == Some(&b'[') => {
                if let Some((text_end, end)) = link(s, i + 1) {
                    out.text(&s[start..i]);
                    out.keep("![");
                    inline(&s[i + 2..text_end], out);
                    out.keep(&s[text_end..end]);
                    span = Some(end);
                }
            }
            b'[' => {
                if let Some(end) = footnote_reference(s, i) {
                    out.text(&s[start..i]);
                    out.keep(&s[i..end]);
                    span = Some(end);
                } else if let Some((text_end, end)) = link(s, i) {
                    out.text(&s[start..i]);
                    out.keep("[");
                    inline(&s[i + 1..text_end], out);
                    out.keep(&s[text_end..end]);
                    span = Some(end);
                }
            }
            b'<' => {
                if let Some(end) = angle_span_end(s, i) {
                    out.text(&s[start..i]);
                    out.keep(&s[i..end]);
                    span = Some(end);
                }
            }
            _ => {}
        }
        match span {
            Some(end) => {
                start = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if start < s.len() {
        out.text(&s[start..]);
    }
}

/// The end of the code span opened by the backtick run at `i`, if closed.
pub(super) fn code_span_end(s: &str, i: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
    let mut j = i + run;
    while j < bytes.len() {
        if bytes[j] == b'`' {
            let close = bytes[j..].iter().take_while(|b| **b == b'`').count();
            if close == run {
                return Some(j + close);
            }
            j += close;
        } else {
            j += 1;
        }
    }
    None
}

/// A link opened by `[` at `i`: (index of the `]` ending its text, end of
/// its destination `(...)` or reference `[...]`).
fn link(s: &str, i: usize) -> Option<(usize, usize)> {
    let text_end = matching(s, i, b'[', b']')?;
    match s.as_bytes().get(text_end + 1)? {
        b'(' => Some((text_end, matching(s, text_end + 1, b'(', b')')? + 1)),
        b'[' => Some((text_end, matching(s, text_end + 1, b'[', b']')? + 1)),
        _ => None,
    }
}

/// `[^label]`.
fn footnote_reference(s: &str, i: usize) -> Option<usize> {
    if s.as_bytes().get(i + 1) != Some(&b'^') {
        return None;
    }
    let close = matching(s, i, b'[', b']')?;
    let label = &s[i + 2..close];
    (!label.is_empty() && !label.contains(char::is_whitespace)).then_some(close + 1)
}

/// The index of the bracket closing the one at `i` (escapes and code spans skipped).
fn matching(s: &str, i: usize, open: u8, close: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut j = i;
    while j < bytes.len() {
        let b = bytes[j];
        if b == b'\\' {
            j += 2;
            continue;
        }
        if b == b'`' {
            if let Some(end) = code_span_end(s, j) {
                j = end;
                continue;
            }
        }
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
        j += 1;
    }
    None
}

/// An autolink (`<https://…>`, `<a@b.de>`) or an inline HTML tag or
/// comment starting at `i`.
fn angle_span_end(s: &str, i: usize) -> Option<usize> {
    let rest = &s[i + 1..];
    if rest.starts_with("!--") {
        return rest.find("-->").map(|e| i + 1 + e + 3);
    }
    let first = rest.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '/') {
        return None;
    }
    let close = rest.find('>')?;
    let body = &rest[..close];
    if body.contains('<') {
        return None;
    }
    let name: String = body
        .trim_start_matches('/')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let after_name = &body.trim_start_matches('/')[name.len()..];
    let is_autolink =
        !body.contains(char::is_whitespace) && (after_name.starts_with(':') || body.contains('@'));
    let is_tag = !name.is_empty()
        && (after_name.is_empty()
            || after_name.starts_with('/')
            // Any whitespace, as a translation collapses it to a space (a
            // fuzzing finding: `<a\rb>` was prose, `<a b>` a tag).
            || after_name.starts_with(char::is_whitespace));
    (is_autolink || is_tag).then_some(i + 1 + close + 1)
}

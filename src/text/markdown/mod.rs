//! The Markdown scanner behind [`super::segment`](mod@super::segment): which parts of a
//! Markdown document are prose to translate and which are markup to keep.
//!
//! A pragmatic line-based reading of CommonMark + GFM tables, not a full
//! parser:
//! - kept verbatim: YAML front matter, fenced (```` ``` ````/`~~~`) and
//!   indented code blocks, HTML blocks, thematic breaks, setext underlines,
//!   link reference definitions (also when broken over lines), footnote
//!   definition markers (`[^1]: `), table delimiter rows and cell pipes, heading
//!   markers (`## `) and closing `#`s, list markers (`- `, `1. `, task boxes
//!   `[ ] `), blockquote markers (`> `), inline code spans, link and image
//!   destinations (`](url "title")`, `][ref]`), autolinks, inline HTML tags,
//!   footnote references (`[^1]`);
//! - translated: paragraphs (hard-wrapped lines stay one `Text`), heading
//!   text, list item text (with its continuation lines), table cells, link
//!   text and image alt text.
//!
//! Limits: a link cuts its sentence into separately translated pieces
//! (`Siehe ` / `die Doku` / ` für Details.`); blockquote lines are translated
//! line by line (each line carries its own `>` marker), so a sentence
//! hard-wrapped inside a blockquote is split at the wrap; code blocks nested
//! in list items must be fenced (indentation inside a list is read as list
//! content, never as an indented code block); emphasis markers (`*`, `_`)
//! stay inside the prose; bare URLs stay inside the prose (the sentence
//! splitter does not cut them, but the model may alter them).

use super::segment::Builder;
use inline::{code_span_end, inline};

mod inline;

/// Cuts Markdown `text` into prose and markup, appending to `out`.
pub(super) fn scan(text: &str, out: &mut Builder) {
    Markdown::new(text, out).run()
}

/// One line of the input: its whole text (with the line ending) and its
/// content (without).
#[derive(Clone, Copy)]
struct Line<'a> {
    start: usize,
    full: &'a str,
    content: &'a str,
}

impl<'a> Line<'a> {
    fn new(start: usize, full: &'a str) -> Self {
        let content = full
            .strip_suffix('\n')
            .map(|c| c.strip_suffix('\r').unwrap_or(c))
            .unwrap_or(full);
        Line {
            start,
            full,
            content,
        }
    }

    fn eol(&self) -> &'a str {
        &self.full[self.content.len()..]
    }

    fn is_blank(&self) -> bool {
        self.content.trim().is_empty()
    }

    /// Leading spaces/tabs: (bytes, columns with tab stops of 4).
    fn indent(&self) -> (usize, usize) {
        indent_of(self.content)
    }
}

fn indent_of(s: &str) -> (usize, usize) {
    let mut cols = 0;
    let mut bytes = 0;
    for c in s.chars() {
        match c {
            ' ' => cols += 1,
            '\t' => cols += 4 - cols % 4,
            _ => break,
        }
        bytes += 1;
    }
    (bytes, cols)
}

/// Where an HTML block ends.
enum HtmlEnd {
    /// At the first line containing this (that line included).
    Marker(&'static str),
    /// Before the next blank line.
    BlankLine,
}

struct Markdown<'a, 'o> {
    text: &'a str,
    lines: Vec<Line<'a>>,
    out: &'o mut Builder,
    /// Byte offset where the paragraph being read started.
    paragraph: Option<usize>,
    /// Inside a list: indentation is list content, not an indented code block.
    in_list: bool,
    /// A fence opened inside a blockquote: (fence char, length).
    quote_fence: Option<(char, usize)>,
}

impl<'a, 'o> Markdown<'a, 'o> {
    fn new(text: &'a str, out: &'o mut Builder) -> Self {
        let mut lines = Vec::new();
        let mut pos = 0;
        for full in text.split_inclusive('\n') {
            lines.push(Line::new(pos, full));
            pos += full.len();
        }
        Markdown {
            text,
            lines,
            out,
            paragraph: None,
            in_list: false,
            quote_fence: None,
        }
    }

    fn flush_paragraph(&mut self, end: usize) {
        if let Some(start) = self.paragraph.take() {
            inline(&self.text[start..end], self.out);
        }
    }

    fn run(mut self) {
        let mut i = self.front_matter_end();
        if i > 0 {
            let end = self.lines[i - 1].start + self.lines[i - 1].full.len();
            self.out.keep(&self.text[..end]);
        }
        while i < self.lines.len() {
            i = self.line(i);
        }
        self.flush_paragraph(self.text.len());
    }

    /// The number of lines of YAML front matter (`---` ... `---`/`...`), or 0.
    fn front_matter_end(&self) -> usize {
        if self.lines.first().map(|l| l.content.trim_end()) != Some("---") {
            return 0;
        }
        self.lines
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, l)| matches!(l.content.trim_end(), "---" | "..."))
            .map_or(0, |(n, _)| n + 1)
    }

    /// Handles line `i` (and any lines its block spans); returns the next line.
    fn line(&mut self, i: usize) -> usize {
        let line = self.lines[i];
        if line.is_blank() {
            self.flush_paragraph(line.start);
            self.quote_fence = None;
            self.out.keep(line.full);
            return i + 1;
        }
        let (indent_bytes, indent_cols) = line.indent();
        let rest = &line.content[indent_bytes..];
        let starts_list_item = list_marker(rest).is_some();
        if indent_cols == 0 && self.paragraph.is_none() && !starts_list_item {
            self.in_list = false;
        }
        if !rest.starts_with('>') {
            self.quote_fence = None;
        }

        if indent_cols >= 4 && !self.in_list {
            if self.paragraph.is_none() {
                self.out.keep(line.full); // indented code
            }
            // Otherwise a lazy continuation line of the paragraph.
            return i + 1;
        }

        if let Some((ch, len)) = fence_open(rest) {
            self.flush_paragraph(line.start);
            let mut j = i + 1;
            while j < self.lines.len() {
                let inner = self.lines[j].content.trim_start_matches([' ', '\t']);
                j += 1;
                if is_fence_close(inner, ch, len) {
                    break;
                }
            }
            self.keep_lines(i, j);
            return j;
        }

        if let Some(end) = html_block_start(rest, self.paragraph.is_some()) {
            self.flush_paragraph(line.start);
            let mut j = i;
            match end {
                HtmlEnd::Marker(marker) => {
                    while j < self.lines.len() {
                        let found = self.lines[j].content.contains(marker);
                        j += 1;
                        if found {
                            break;
                        }
                    }
                }
                HtmlEnd::BlankLine => {
                    while j < self.lines.len() && !self.lines[j].is_blank() {
                        j += 1;
                    }
                }
            }
            self.keep_lines(i, j);
            return j;
        }

        if let Some(level) = atx_heading(rest) {
            self.flush_paragraph(line.start);
            self.out.keep(&line.content[..indent_bytes + level]);
            heading_body(&rest[level..], self.out);
            self.out.keep(line.eol());
            return i + 1;
        }

        if self.paragraph.is_some() && is_setext_underline(rest) {
            self.flush_paragraph(line.start);
            self.out.keep(line.full);
            return i + 1;
        }

        if is_thematic_break(rest) {
            self.flush_paragraph(line.start);
            self.out.keep(line.full);
            return i + 1;
        }

        if rest.contains('|')
            && self
                .lines
                .get(i + 1)
                .is_some_and(|next| is_table_delimiter(next.content))
        {
            self.flush_paragraph(line.start);
            table_row(line.content, self.out);
            self.out.keep(line.eol());
            self.out.keep(self.lines[i + 1].full);
            let mut j = i + 2;
            while j < self.lines.len()
                && !self.lines[j].is_blank()
                && self.lines[j].content.contains('|')
            {
                table_row(self.lines[j].content, self.out);
                self.out.keep(self.lines[j].eol());
                j += 1;
            }
            return j;
        }

        if rest.starts_with('>') {
            self.flush_paragraph(line.start);
            self.blockquote_line(line, indent_bytes);
            return i + 1;
        }

        if let Some((marker_len, can_interrupt)) = list_marker(rest) {
            let item_text = &rest[marker_len..];
            if self.paragraph.is_none() || (can_interrupt && !item_text.trim().is_empty()) {
                self.flush_paragraph(line.start);
                self.in_list = true;
                let content_start = indent_bytes + marker_len + task_box_len(item_text);
                self.out.keep(&line.content[..content_start]);
                if line.content[content_start..].trim().is_empty() {
                    self.out.keep(&line.full[content_start..]);
                } else {
                    self.paragraph = Some(line.start + content_start);
                }
                return i + 1;
            }
        }

        if self.paragraph.is_none() {
            // A footnote definition `[^1]: text`: the marker kept, the text prose.
            if let Some(marker) = footnote_definition(rest) {
                let end = indent_bytes + marker;
                self.out.keep(&line.content[..end]);
                if line.content[end..].trim().is_empty() {
                    self.out.keep(&line.full[end..]);
                } else {
                    self.paragraph = Some(line.start + end);
                }
                return i + 1;
            }
            let following = self.lines[i + 1..]
                .iter()
                .take_while(|l| !l.is_blank())
                .map(|l| l.content);
            if let Some(n) = link_reference_definition(rest, following) {
                self.flush_paragraph(line.start);
                self.keep_lines(i, i + n);
                return i + n;
            }
        }

        if self.paragraph.is_none() {
            self.paragraph = Some(line.start);
        }
        i + 1
    }

    fn keep_lines(&mut self, from: usize, to: usize) {
        let start = self.lines[from].start;
        let end = self.lines[to - 1].start + self.lines[to - 1].full.len();
        self.out.keep(&self.text[start..end]);
    }

    /// A `>` line: markers kept, the rest read as one line of prose, heading,
    /// list item or fenced code.
    fn blockquote_line(&mut self, line: Line<'a>, indent_bytes: usize) {
        let mut pos = indent_bytes;
        loop {
            let after = &line.content[pos..];
            let (ib, ic) = indent_of(after);
            if ic <= 3 && after[ib..].starts_with('>') {
                pos += ib + 1;
                if line.content[pos..].starts_with([' ', '\t']) {
                    pos += 1;
                }
            } else {
                break;
            }
        }
        self.out.keep(&line.content[..pos]);
        let inner = &line.content[pos..];
        let (ib, _) = indent_of(inner);
        let rest = &inner[ib..];
        if let Some((ch, len)) = self.quote_fence {
            if is_fence_close(rest, ch, len) {
                self.quote_fence = None;
            }
            self.out.keep(inner);
        } else if let Some(fence) = fence_open(rest) {
            self.quote_fence = Some(fence);
            self.out.keep(inner);
        } else if let Some(level) = atx_heading(rest) {
            self.out.keep(&inner[..ib + level]);
            heading_body(&rest[level..], self.out);
        } else if is_thematic_break(rest) {
            self.out.keep(inner);
        } else if let Some((marker_len, _)) = list_marker(rest) {
            let content_start = ib + marker_len + task_box_len(&rest[marker_len..]);
            self.out.keep(&inner[..content_start]);
            inline(&inner[content_start..], self.out);
        } else {
            inline(inner, self.out);
        }
        self.out.keep(line.eol());
    }
}

/// A fence opener: 3+ backticks or tildes (backtick info strings hold no backtick).
fn fence_open(rest: &str) -> Option<(char, usize)> {
    let ch = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.chars().take_while(|c| *c == ch).count();
    if len < 3 || (ch == '`' && rest[len..].contains('`')) {
        return None;
    }
    Some((ch, len))
}

fn is_fence_close(rest: &str, ch: char, len: usize) -> bool {
    let run = rest.chars().take_while(|c| *c == ch).count();
    run >= len && rest[run..].trim().is_empty()
}

/// The number of `#`s of an ATX heading marker.
fn atx_heading(rest: &str) -> Option<usize> {
    let level = rest.bytes().take_while(|b| *b == b'#').count();
    let after = &rest[level..];
    ((1..=6).contains(&level) && (after.is_empty() || after.starts_with(char::is_whitespace)))
        .then_some(level)
}

/// A heading's text between its marker and its optional closing `#`s.
fn heading_body(body: &str, out: &mut Builder) {
    let trimmed = body.trim_end();
    let without_hashes = trimmed.trim_end_matches('#');
    let close = if without_hashes.len() < trimmed.len()
        && (without_hashes.is_empty() || without_hashes.ends_with(char::is_whitespace))
    {
        without_hashes.len()
    } else {
        trimmed.len()
    };
    inline(&body[..close], out);
    out.keep(&body[close..]);
}

fn is_thematic_break(rest: &str) -> bool {
    let mut marks = rest.chars().filter(|c| !c.is_whitespace());
    let Some(first) = marks.next() else {
        return false;
    };
    matches!(first, '-' | '*' | '_')
        && rest.chars().filter(|c| *c == first).count() >= 3
        && marks.all(|c| c == first)
}

fn is_setext_underline(rest: &str) -> bool {
    let t = rest.trim_end();
    !t.is_empty() && (t.bytes().all(|b| b == b'=') || t.bytes().all(|b| b == b'-'))
}

/// A list marker's length including the spaces after it, and whether it may
/// interrupt a paragraph (bullets and ordered lists starting at 1 may).
///
/// Block markers here take any Unicode whitespace where CommonMark asks for
/// a space or tab: a translation collapses whitespace to spaces, and a
/// paragraph such as "13.\u{2028}Januar" must not turn into a list item
/// once translated (a finding of the property tests).
fn list_marker(rest: &str) -> Option<(usize, bool)> {
    let bytes = rest.as_bytes();
    let (marker_len, can_interrupt) = match bytes.first()? {
        b'-' | b'+' | b'*' => (1, true),
        b'0'..=b'9' => {
            let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 9 || !matches!(bytes.get(digits), Some(b'.' | b')')) {
                return None;
            }
            (digits + 1, &rest[..digits] == "1")
        }
        _ => return None,
    };
    let after = &rest[marker_len..];
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        return None;
    }
    let spaces = after.len() - after.trim_start().len();
    Some((marker_len + spaces, can_interrupt))
}

/// `[ ] `, `[x] ` or `[X] ` at the start of a list item.
fn task_box_len(item: &str) -> usize {
    for b in ["[ ]", "[x]", "[X]"] {
        if let Some(after) = item.strip_prefix(b) {
            if after.starts_with(char::is_whitespace) {
                return item.len() - after.trim_start().len();
            }
        }
    }
    0
}

/// The length of a GFM footnote definition's marker (`[^label]:` and the
/// spaces after it) at the start of `rest`.
fn footnote_definition(rest: &str) -> Option<usize> {
    let label = rest.strip_prefix("[^")?;
    let close = label.find("]:")?;
    if close == 0
        || label[..close]
            .chars()
            .any(|c| c.is_whitespace() || c == '[' || c == ']' || c == '\\')
    {
        return None;
    }
    let marker = 2 + close + 2;
    Some(rest.len() - rest[marker..].trim_start().len())
}

/// How many lines a link reference definition starting at `first` (its
/// text after the indentation) takes, with `following` the next lines up to
/// a blank one: `[label]: destination "title"`, where the label, the gaps
/// and the title may break over lines (CommonMark) and nothing but
/// whitespace may follow on the last line.
///
/// Any Unicode whitespace counts as a gap, and line breaks may stand in
/// angle-bracketed destinations, so that a paragraph that is *not* a
/// definition can never become one once its lines are joined and its
/// whitespace collapsed (which is what a translation of it looks like).
fn link_reference_definition<'t>(
    first: &str,
    following: impl Iterator<Item = &'t str>,
) -> Option<usize> {
    if !first.starts_with('[') {
        return None;
    }
    let mut text = first.to_string();
    let mut line_ends = vec![text.len()];
    for line in following.take(64) {
        text.push('\n');
        text.push_str(line);
        line_ends.push(text.len());
    }
    let end = reference_definition_end(&text)?;
    line_ends.iter().position(|&e| e == end).map(|k| k + 1)
}

/// Where the definition at the start of `t` ends (a line end), if it is one.
fn reference_definition_end(t: &str) -> Option<usize> {
    let gap = |from: usize| from + (t.len() - from - t[from..].trim_start().len());
    // The label: no unescaped brackets, not blank.
    let label_end = 1 + unescaped(&t[1..], ']', Some('['))?;
    if t[1..label_end].trim().is_empty() || !t[label_end + 1..].starts_with(':') {
        return None;
    }
    // The destination: `<…>` or a run of non-whitespace.
    let dest = gap(label_end + 2);
    let after_dest = if t[dest..].starts_with('<') {
        dest + 1 + unescaped(&t[dest + 1..], '>', Some('<'))? + 1
    } else {
        let len = t[dest..]
            .find(char::is_whitespace)
            .unwrap_or(t.len() - dest);
        if len == 0 {
            return None;
        }
        dest + len
    };
    let line_end = |from: usize| -> Option<usize> {
        let rest = &t[from..];
        let end = from + rest.find('\n').unwrap_or(rest.len());
        t[from..end].trim().is_empty().then_some(end)
    };
    // An optional title after whitespace; without one (or with a broken
    // one) the definition ends with the destination's line.
    let title = gap(after_dest);
    if title > after_dest {
        let close = match t[title..].chars().next() {
            Some('"') => Some('"'),
            Some('\'') => Some('\''),
            Some('(') => Some(')'),
            _ => None,
        };
        let end = close.and_then(|close| {
            let i = unescaped(&t[title + 1..], close, (close == ')').then_some('('))?;
            line_end(title + 1 + i + close.len_utf8())
        });
        if end.is_some() {
            return end;
        }
    }
    line_end(after_dest)
}

/// The byte offset in `s` of the first `close` not escaped by a backslash,
/// unless an unescaped `forbidden` comes first.
fn unescaped(s: &str, close: char, forbidden: Option<char>) -> Option<usize> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == close {
            return Some(i);
        } else if Some(c) == forbidden {
            return None;
        }
    }
    None
}

/// A GFM delimiter row such as `| --- | :-: |`.
fn is_table_delimiter(content: &str) -> bool {
    let t = content.trim();
    if !t.contains('|') || !t.contains('-') {
        return false;
    }
    let inner = t.strip_prefix('|').unwrap_or(t);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').all(|cell| {
        let c = cell.trim();
        let c = c.strip_prefix(':').unwrap_or(c);
        let c = c.strip_suffix(':').unwrap_or(c);
        !c.is_empty() && c.bytes().all(|b| b == b'-')
    })
}

/// HTML block start conditions (CommonMark types 1–7, simplified).
fn html_block_start(rest: &str, in_paragraph: bool) -> Option<HtmlEnd> {
    if !rest.starts_with('<') {
        return None;
    }
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("<!--") {
        return Some(HtmlEnd::Marker("-->"));
    }
    if lower.starts_with("<?") {
        return Some(HtmlEnd::Marker("?>"));
    }
    if lower.starts_with("<![cdata[") {
        return Some(HtmlEnd::Marker("]]>"));
    }
    if lower.len() > 2 && lower.starts_with("<!") && lower.as_bytes()[2].is_ascii_alphabetic() {
        return Some(HtmlEnd::Marker(">"));
    }
    let name_of = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    };
    let closing = lower.starts_with("</");
    let name = name_of(&lower[if closing { 2 } else { 1 }..]);
    if name.is_empty() {
        return None;
    }
    let after_name = &lower[(if closing { 2 } else { 1 }) + name.len()..];
    let name_ends = after_name.is_empty() || after_name.starts_with([' ', '\t', '>', '/']);
    if !closing && name_ends {
        match name.as_str() {
            "script" => return Some(HtmlEnd::Marker("</script>")),
            "pre" => return Some(HtmlEnd::Marker("</pre>")),
            "style" => return Some(HtmlEnd::Marker("</style>")),
            "textarea" => return Some(HtmlEnd::Marker("</textarea>")),
            _ => {}
        }
    }
    if name_ends && BLOCK_TAGS.contains(&name.as_str()) {
        return Some(HtmlEnd::BlankLine);
    }
    // Type 7: a lone complete tag on its line; it cannot interrupt a paragraph.
    let t = rest.trim_end();
    if !in_paragraph && name_ends && t.ends_with('>') && t.matches('<').count() == 1 {
        return Some(HtmlEnd::BlankLine);
    }
    None
}

const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "base",
    "basefont",
    "blockquote",
    "body",
    "caption",
    "center",
    "col",
    "colgroup",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "frame",
    "frameset",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "iframe",
    "legend",
    "li",
    "link",
    "main",
    "menu",
    "menuitem",
    "nav",
    "noframes",
    "ol",
    "optgroup",
    "option",
    "p",
    "param",
    "search",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "track",
    "ul",
];

/// A table row: pipes kept, each cell's content read as inline prose.
fn table_row(content: &str, out: &mut Builder) {
    let bytes = content.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'`' => i = code_span_end(content, i).unwrap_or(i + 1),
            b'|' => {
                inline(&content[start..i], out);
                out.keep("|");
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    inline(&content[start.min(content.len())..], out);
}

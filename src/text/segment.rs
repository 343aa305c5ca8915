//! Cutting a document into prose to translate and markup to keep, losslessly.
//!
//! [`segment`] returns [`Segment`]s whose concatenation is exactly the input.
//! A translator replaces each [`Segment::Text`] with its translation and
//! copies each [`Segment::Keep`] as it is, so layout, code and links survive.
//!
//! Every segment is non-empty, neighbours always differ in kind, and a
//! `Text` never starts or ends with whitespace (surrounding whitespace is
//! `Keep`, so a translation cannot lose the line breaks around it).
//!
//! # Markdown: what is recognised
//! A pragmatic line-based reading of CommonMark + GFM tables, not a full
//! parser:
//! - kept verbatim: YAML front matter, fenced (```` ``` ````/`~~~`) and
//!   indented code blocks, HTML blocks, thematic breaks, setext underlines,
//!   link reference definitions, table delimiter rows and cell pipes, heading
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

use std::path::Path;
use std::str::FromStr;

/// A piece of a document: prose to translate, or anything else to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Layout, markup or code: copied verbatim.
    Keep(String),
    /// Prose: translated.
    Text(String),
}

impl Segment {
    /// The segment's text, whatever its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Segment::Keep(s) | Segment::Text(s) => s,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, Segment::Text(_))
    }
}

/// How a document is marked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Paragraphs separated by blank lines.
    #[default]
    Plain,
    /// Markdown (CommonMark with GFM tables), read pragmatically.
    Markdown,
    /// An HTML page (see [`crate::text::html`]); [`segment`] reads it as plain text.
    Html,
    /// SRT or WebVTT subtitles (see [`crate::text::subtitles`]); [`segment`]
    /// reads them as plain text.
    Subtitles,
}

impl Format {
    /// By extension, any case: `.md`/`.markdown` Markdown, `.html`/`.htm`/
    /// `.xhtml` HTML, `.srt`/`.vtt` subtitles, everything else Plain.
    pub fn from_path(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "srt" | "vtt" => Format::Subtitles,
            _ => Format::Plain,
        }
    }

    /// The canonical name, as `--input-format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Subtitles => "subtitles",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    /// `plain`/`text`/`txt`, `markdown`/`md`, `html`/`htm`, or
    /// `subtitles`/`srt`/`vtt`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "plain" | "text" | "txt" => Ok(Format::Plain),
            "markdown" | "md" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "subtitles" | "srt" | "vtt" => Ok(Format::Subtitles),
            _ => Err(format!(
                "unknown format {s:?}: expected plain, markdown, html or subtitles"
            )),
        }
    }
}

/// Cuts `text` into prose and markup; the segments concatenate to `text`.
pub fn segment(text: &str, format: Format) -> Vec<Segment> {
    let mut out = Builder::default();
    match format {
        Format::Plain | Format::Html | Format::Subtitles => segment_plain(text, &mut out),
        Format::Markdown => Markdown::new(text, &mut out).run(),
    }
    out.segments
}

/// Appends segments, merging neighbours of one kind and moving whitespace
/// at the edges of prose into `Keep`.
#[derive(Default)]
struct Builder {
    segments: Vec<Segment>,
}

impl Builder {
    fn keep(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Keep(k)) => k.push_str(s),
            _ => self.segments.push(Segment::Keep(s.to_string())),
        }
    }

    fn text(&mut self, s: &str) {
        let start = s.len() - s.trim_start().len();
        let end = s.trim_end().len();
        if end <= start {
            self.keep(s);
            return;
        }
        self.keep(&s[..start]);
        match self.segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(&s[start..end]),
            _ => self.segments.push(Segment::Text(s[start..end].to_string())),
        }
        self.keep(&s[end..]);
    }
}

fn segment_plain(text: &str, out: &mut Builder) {
    let mut paragraph_start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(start) = paragraph_start.take() {
                out.text(&text[start..pos]);
            }
            out.keep(line);
        } else if paragraph_start.is_none() {
            paragraph_start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(start) = paragraph_start {
        out.text(&text[start..]);
    }
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

        if self.paragraph.is_none() && is_link_reference_definition(rest) {
            self.out.keep(line.full);
            return i + 1;
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
    ((1..=6).contains(&level) && (after.is_empty() || after.starts_with([' ', '\t'])))
        .then_some(level)
}

/// A heading's text between its marker and its optional closing `#`s.
fn heading_body(body: &str, out: &mut Builder) {
    let trimmed = body.trim_end();
    let without_hashes = trimmed.trim_end_matches('#');
    let close = if without_hashes.len() < trimmed.len()
        && (without_hashes.is_empty() || without_hashes.ends_with([' ', '\t']))
    {
        without_hashes.len()
    } else {
        trimmed.len()
    };
    inline(&body[..close], out);
    out.keep(&body[close..]);
}

fn is_thematic_break(rest: &str) -> bool {
    let mut marks = rest.chars().filter(|c| !matches!(c, ' ' | '\t'));
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
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
    Some((marker_len + spaces, can_interrupt))
}

/// `[ ] `, `[x] ` or `[X] ` at the start of a list item.
fn task_box_len(item: &str) -> usize {
    for b in ["[ ] ", "[x] ", "[X] "] {
        if item.starts_with(b) {
            return b.len();
        }
    }
    0
}

fn is_link_reference_definition(rest: &str) -> bool {
    let Some(label_end) = rest.find("]:") else {
        return false;
    };
    rest.starts_with('[') && label_end > 1 && !rest[label_end + 2..].trim().is_empty()
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

/// Prose with inline markup: code spans, links, images, autolinks and tags
/// are kept, the rest is text.
fn inline(s: &str, out: &mut Builder) {
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
fn code_span_end(s: &str, i: usize) -> Option<usize> {
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
        && (after_name.is_empty() || after_name.starts_with([' ', '\t', '\n', '/']));
    (is_autolink || is_tag).then_some(i + 1 + close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(segments: &[Segment]) -> String {
        segments.iter().map(Segment::as_str).collect()
    }

    fn texts(segments: &[Segment]) -> Vec<&str> {
        segments
            .iter()
            .filter(|s| s.is_text())
            .map(Segment::as_str)
            .collect()
    }

    fn keeps(segments: &[Segment]) -> Vec<&str> {
        segments
            .iter()
            .filter(|s| !s.is_text())
            .map(Segment::as_str)
            .collect()
    }

    /// The invariants every segmentation must keep.
    fn check_invariants(input: &str, format: Format) -> Vec<Segment> {
        let segments = segment(input, format);
        assert_eq!(concat(&segments), input, "not lossless for {input:?}");
        for pair in segments.windows(2) {
            assert_ne!(
                pair[0].is_text(),
                pair[1].is_text(),
                "neighbours of one kind in {input:?}: {segments:?}"
            );
        }
        for s in &segments {
            assert!(!s.as_str().is_empty(), "empty segment for {input:?}");
            if let Segment::Text(t) = s {
                assert_eq!(t.trim(), t, "text with edge whitespace in {input:?}");
            }
        }
        segments
    }

    #[test]
    fn format_from_path() {
        assert_eq!(Format::from_path(Path::new("a/b.md")), Format::Markdown);
        assert_eq!(Format::from_path(Path::new("b.MARKDOWN")), Format::Markdown);
        assert_eq!(Format::from_path(Path::new("b.txt")), Format::Plain);
        assert_eq!(Format::from_path(Path::new("md")), Format::Plain);
        assert_eq!("Markdown".parse::<Format>(), Ok(Format::Markdown));
        assert!("rst".parse::<Format>().is_err());
    }

    #[test]
    fn plain_paragraphs_are_text_and_gaps_are_kept() {
        let input = "\n  Erster Absatz,\nzweite Zeile.\n\n\nZweiter Absatz.  \n";
        let segments = check_invariants(input, Format::Plain);
        assert_eq!(
            segments,
            vec![
                Segment::Keep("\n  ".into()),
                Segment::Text("Erster Absatz,\nzweite Zeile.".into()),
                Segment::Keep("\n\n\n".into()),
                Segment::Text("Zweiter Absatz.".into()),
                Segment::Keep("  \n".into()),
            ]
        );
    }

    #[test]
    fn plain_edge_cases() {
        assert!(check_invariants("", Format::Plain).is_empty());
        assert_eq!(
            check_invariants(" \n\t\n", Format::Plain),
            vec![Segment::Keep(" \n\t\n".into())]
        );
        assert_eq!(
            check_invariants("Satz", Format::Plain),
            vec![Segment::Text("Satz".into())]
        );
        // Windows line endings and whitespace-only lines separate paragraphs.
        let segments = check_invariants("A.\r\n \r\nB.\r\n", Format::Plain);
        assert_eq!(texts(&segments), vec!["A.", "B."]);
    }

    #[test]
    fn the_sample_article_has_five_paragraphs() {
        let text = include_str!("../../samples/de_article.txt");
        let segments = check_invariants(text, Format::Plain);
        let paragraphs = texts(&segments);
        assert_eq!(paragraphs.len(), 5);
        assert!(paragraphs[0].starts_with("In Kasachstan"));
        assert_eq!(paragraphs[3], "KasachstanProtesteJanuar2022 2");
    }

    #[test]
    fn markdown_headings_lists_and_quotes() {
        let input = "# Titel der Seite #\n\nEin Absatz,\numbrochen.\n\n- Punkt eins\n  geht weiter\n- [x] erledigt\n1. Erstens\n\n> Zitat hier\n> > tiefer\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec![
                "Titel der Seite",
                "Ein Absatz,\numbrochen.",
                "Punkt eins\n  geht weiter",
                "erledigt",
                "Erstens",
                "Zitat hier",
                "tiefer",
            ]
        );
        let kept = keeps(&segments);
        assert_eq!(kept[0], "# ");
        assert!(kept.contains(&" #\n\n"));
        assert!(kept.contains(&"\n- [x] "));
        assert!(kept.contains(&"\n> > "));
    }

    #[test]
    fn markdown_code_blocks_are_kept() {
        let input = "Vorher.\n\n```rust\nlet x = \"Text\";\n\nmehr Code\n```\nNachher.\n\n    eingerückter Code\n    noch mehr\n\n~~~\nnie geschlossen\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Vorher.", "Nachher."]);
        let all_kept: String = keeps(&segments).concat();
        assert!(all_kept.contains("let x = \"Text\";\n\nmehr Code\n```\n"));
        assert!(all_kept.contains("    eingerückter Code\n    noch mehr\n"));
        assert!(all_kept.ends_with("~~~\nnie geschlossen\n"));
    }

    #[test]
    fn markdown_indented_line_continues_a_paragraph() {
        let segments = check_invariants("Absatz\n    weiter\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["Absatz\n    weiter"]);
    }

    #[test]
    fn markdown_inline_links_code_and_tags() {
        let input = "Siehe [die Doku](https://example.org/a_(b) \"Titel\") und `cargo test`, <br> <https://x.y> ![ein Bild](bild.png) [^1] [Ref][r].";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec!["Siehe", "die Doku", "und", ",", "ein Bild", "Ref", "."]
        );
        let kept = keeps(&segments);
        assert!(kept.contains(&"](https://example.org/a_(b) \"Titel\") "));
        assert!(kept.contains(&" `cargo test`"));
        assert!(kept.contains(&" <br> <https://x.y> ![")); // tag, autolink, image opener
        assert!(kept.contains(&"](bild.png) [^1] ["));
        assert!(kept.contains(&"][r]"));
    }

    #[test]
    fn markdown_escapes_and_unclosed_markup_stay_prose() {
        let input = "Preis \\[netto\\](x) und ``nicht zu` und a < b, [offen";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec![input]);
    }

    #[test]
    fn markdown_tables_keep_pipes_and_delimiters() {
        let input =
            "| Name | Wert |\n|:-----|-----:|\n| Apfel | `1` |\n| Birne | zwei |\n\nDanach.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec!["Name", "Wert", "Apfel", "Birne", "zwei", "Danach."]
        );
        assert!(keeps(&segments).contains(&" |\n|:-----|-----:|\n| "));
    }

    #[test]
    fn markdown_html_front_matter_rules_and_setext() {
        let input = "---\ntitle: Hallo\n---\n<div class=\"x\">\nInhalt im HTML\n</div>\n\n<!-- Kommentar\nzwei Zeilen -->\nÜberschrift\n===========\n\n***\n[r]: https://example.org\nText.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Überschrift", "Text."]);
        assert!(keeps(&segments)[0].starts_with("---\ntitle: Hallo\n---\n<div"));
    }

    #[test]
    fn markdown_ordered_item_other_than_one_does_not_interrupt_a_paragraph() {
        let segments = check_invariants("Es war am\n13. Januar.\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["Es war am\n13. Januar."]);
    }

    #[test]
    fn markdown_quote_with_fence_keeps_the_code() {
        let input = "> Satz.\n> ```\n> code hier\n> ```\n> Noch ein Satz.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Satz.", "Noch ein Satz."]);
    }

    /// A tiny deterministic generator (xorshift) so the property test needs
    /// no extra crate and every failure is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Fragments that exercise every rule, including broken markup.
    const FRAGMENTS: &[&str] = &[
        "Wort",
        "Satz.",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        "    ",
        "# ",
        "###",
        "- ",
        "* ",
        "+ ",
        "1. ",
        "2) ",
        "> ",
        ">",
        "```",
        "~~~",
        "`",
        "``",
        "|",
        "|---|",
        ":-:",
        "[",
        "]",
        "(",
        ")",
        "](",
        "![",
        "[^",
        "<",
        ">",
        "<div>",
        "</div>",
        "<!--",
        "-->",
        "<?",
        "?>",
        "<br/>",
        "<https://a.b>",
        "\\",
        "---",
        "***",
        "===",
        "[ ] ",
        "[x] ",
        "ä",
        "ß",
        "„",
        "“",
        "…",
        "é",
        "\u{a0}",
        "€",
        "z. B.",
        "[r]: ",
        "http://x.y/z",
        "---\n",
    ];

    #[test]
    fn concatenating_segments_reproduces_any_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let n = rng.below(40);
            let input: String = (0..n)
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect();
            check_invariants(&input, Format::Plain);
            check_invariants(&input, Format::Markdown);
        }
    }
}

//! Finding the spans to protect: URLs, e-mail addresses, inline code,
//! paths, numbers with units, emoji, and text that looks like a placeholder.

use super::{find_prefix, parse_placeholder, PREFIX};

/// Byte ranges of the protected spans of `text`, sorted, not overlapping.
pub fn find_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = code_spans(text);
    // Text that already looks like a placeholder is protected too, so that
    // it can never be mistaken for one.
    let mut pos = 0;
    while let Some(p) = find_prefix(&text[pos..]) {
        let at = pos + p;
        match parse_placeholder(&text[at..]) {
            Some((_, len)) if !overlaps(&spans, at, at + len) => {
                spans.push((at, at + len));
                pos = at + len;
            }
            _ => pos = at + PREFIX.len(),
        }
    }
    for (start, end) in tokens(text) {
        if overlaps(&spans, start, end) {
            continue;
        }
        if let Some(span) = token_span(text, start, end) {
            spans.push(span);
        }
    }
    spans.sort_unstable();
    for span in number_unit_spans(text) {
        if !overlaps(&spans, span.0, span.1) {
            spans.push(span);
        }
    }
    spans.sort_unstable();
    for span in emoji_spans(text) {
        if !overlaps(&spans, span.0, span.1) {
            spans.push(span);
        }
    }
    spans.sort_unstable();
    spans
}

fn overlaps(spans: &[(usize, usize)], start: usize, end: usize) -> bool {
    spans.iter().any(|&(s, e)| start < e && s < end)
}

/// `` `code` `` on one line.
fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(open) = text[pos..].find('`').map(|p| p + pos) {
        let run = text[open..].bytes().take_while(|&b| b == b'`').count();
        let fence = &text[open..open + run];
        let body_start = open + run;
        match text[body_start..].find(fence) {
            Some(close) if close > 0 && !text[body_start..body_start + close].contains('\n') => {
                let end = body_start + close + run;
                out.push((open, end));
                pos = end;
            }
            _ => pos = body_start,
        }
    }
    out
}

/// Whitespace-separated tokens.
fn tokens(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = None;
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out.into_iter()
}

fn is_leading_punct(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | '{' | '<' | '"' | '\'' | '„' | '“' | '‚' | '‘' | '»' | '«' | '›' | '‹'
    )
}

fn is_trailing_punct(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | ')'
            | ']'
            | '}'
            | '>'
            | '"'
            | '\''
            | '“'
            | '”'
            | '‘'
            | '’'
            | '»'
            | '«'
            | '›'
            | '‹'
            | '…'
    )
}

/// A URL, e-mail address or path in the token `text[start..end]`.
fn token_span(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let token = &text[start..end];
    let lead = token.len() - token.trim_start_matches(is_leading_punct).len();
    let core = &token[lead..];
    let mut core_end = core.trim_end_matches(is_trailing_punct).len();
    // Keep a closing bracket the URL itself opened: ".../Foo_(Bar)".
    while core_end < core.len() {
        let c = core[core_end..].chars().next()?;
        let opened = match c {
            ')' => '(',
            ']' => '[',
            _ => break,
        };
        let inner = &core[..core_end];
        if inner.matches(opened).count() > inner.matches(c).count() {
            core_end += c.len_utf8();
        } else {
            break;
        }
    }
    let core = &core[..core_end];
    if core.is_empty() {
        return None;
    }
    let protected = is_url(core) || is_email(core) || is_path(core);
    protected.then_some((start + lead, start + lead + core.len()))
}

fn is_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    for scheme in [
        "https://", "http://", "ftp://", "ftps://", "file://", "mailto:",
    ] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            return !rest.is_empty();
        }
    }
    lower
        .strip_prefix("www.")
        .is_some_and(|rest| rest.contains('.') || rest.len() > 2)
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let ok_local = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '-' | '%'));
    let labels: Vec<&str> = domain.split('.').collect();
    ok_local
        && labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.chars().all(char::is_alphabetic))
}

/// File extensions that make a bare `name.ext` a file name.
const FILE_EXTENSIONS: &[&str] = &[
    "txt",
    "md",
    "pdf",
    "doc",
    "docx",
    "odt",
    "xls",
    "xlsx",
    "ods",
    "ppt",
    "pptx",
    "csv",
    "json",
    "xml",
    "html",
    "htm",
    "yaml",
    "yml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "log",
    "zip",
    "gz",
    "tar",
    "tgz",
    "7z",
    "rar",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "webp",
    "mp3",
    "mp4",
    "wav",
    "srt",
    "vtt",
    "exe",
    "dll",
    "so",
    "sh",
    "py",
    "rs",
    "js",
    "ts",
    "c",
    "h",
    "cpp",
    "java",
    "go",
    "rb",
    "php",
    "sql",
    "db",
    "iso",
    "bin",
    "gguf",
    "safetensors",
];

fn is_path(s: &str) -> bool {
    let path_char = |c: char| c.is_alphanumeric() || "/\\._-~+@:%=".contains(c);
    if !s.chars().all(path_char) {
        return false;
    }
    let bytes = s.as_bytes();
    // Windows drive paths: C:\Temp
    if bytes.len() > 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/')
    {
        return true;
    }
    let has_letter = s.chars().any(char::is_alphabetic);
    if (s.starts_with('/') || s.starts_with("~/") || s.starts_with("./") || s.starts_with("../"))
        && s.len() > 2
        && has_letter
        && (s[1..].contains('/') || s.starts_with("~/") || s.starts_with("./") || s.contains('.'))
    {
        return true;
    }
    // dir/file.ext or name.ext with a known extension
    if let Some((stem, ext)) = s.rsplit_once('.') {
        let ext_ok = FILE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
            && ext.chars().any(|c| c.is_ascii_lowercase());
        let stem_ok =
            stem.chars().filter(|c| c.is_alphanumeric()).count() >= 2 && !stem.ends_with('.');
        if ext_ok && stem_ok {
            return true;
        }
    }
    false
}

/// Units after a number (matched whole, case-sensitive).
const UNITS: &[&str] = &[
    "km/h", "m/s", "km²", "m²", "m³", "cm²", "cm³", "mm", "cm", "dm", "km", "m", "µm", "nm", "mg",
    "kg", "g", "t", "ml", "cl", "dl", "l", "hl", "°C", "°F", "°", "K", "%", "‰", "€", "$", "£",
    "¥", "CHF", "EUR", "USD", "GBP", "kWh", "MWh", "GWh", "TWh", "mAh", "W", "kW", "MW", "GW", "V",
    "kV", "mV", "A", "mA", "Hz", "kHz", "MHz", "GHz", "B", "KB", "kB", "MB", "GB", "TB", "KiB",
    "MiB", "GiB", "TiB", "bit", "Bit", "kbit/s", "Mbit/s", "Gbit/s", "ms", "µs", "ns", "s", "min",
    "h", "PS", "dB", "px", "pt", "ha", "mph", "ppm",
];

/// Currency signs that may come before a number.
const PREFIX_UNITS: &[char] = &['€', '$', '£', '¥'];

/// `5 km`, `3,5 kg`, `20 °C`, `10%`, `1.000 €`, `$5`.
fn number_unit_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        let starts_word = i == 0 || {
            let prev = text[..i].chars().next_back().unwrap_or(' ');
            !prev.is_alphanumeric() && prev != '.' && prev != ','
        };
        if !(c.is_ascii_digit() && starts_word) {
            i += c.len_utf8();
            continue;
        }
        // The number: digits with inner . or , groups.
        let mut end = i;
        while end < text.len() {
            let b = bytes[end];
            let inner_separator =
                (b == b'.' || b == b',') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
            if b.is_ascii_digit() || inner_separator {
                end += 1;
            } else {
                break;
            }
        }
        // Currency before it: "$5", "€ 10".
        let mut start = i;
        let before = text[..i].trim_end_matches([' ', '\u{a0}', '\u{202f}']);
        if let Some(sign) = before.chars().next_back() {
            if PREFIX_UNITS.contains(&sign) && before.len() + 3 >= i {
                start = before.len() - sign.len_utf8();
            }
        }
        let after = &text[end..];
        let gap = after.len() - after.trim_start_matches([' ', '\u{a0}', '\u{202f}']).len();
        let gap = if gap > 3 { usize::MAX } else { gap };
        let unit = (gap != usize::MAX)
            .then(|| {
                UNITS
                    .iter()
                    .filter(|u| {
                        after[gap..].starts_with(*u)
                            && after[gap + u.len()..]
                                .chars()
                                .next()
                                .is_none_or(|n| !n.is_alphanumeric())
                    })
                    .map(|u| u.len())
                    .max()
            })
            .flatten();
        match unit {
            Some(len) => {
                out.push((start, end + gap + len));
                i = end + gap + len;
            }
            None if start < i => {
                out.push((start, end));
                i = end;
            }
            None => i = end.max(i + 1),
        }
    }
    out
}

/// Whether `c` is an emoji (Extended_Pictographic, roughly) or a regional
/// indicator of a flag.
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B05..=0x2B07 | 0x2B1B..=0x2B1C
        | 0x2B50 | 0x2B55 | 0x2934..=0x2935 | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0x2190..=0x21FF | 0x231A..=0x231B | 0x2328 | 0x23CF..=0x23FA)
}

/// Characters that continue an emoji sequence.
fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0x200D | 0xFE0E | 0xFE0F | 0x20E3 | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
}

fn emoji_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if !is_emoji(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, n)) = iter.peek() {
            if is_emoji_modifier(n) || (is_emoji(n) && text[..j].ends_with('\u{200D}')) {
                end = j + n.len_utf8();
                iter.next();
            } else {
                break;
            }
        }
        // A flag is two regional indicators; any run of emoji stays one span.
        match out.last_mut() {
            Some(last) if last.1 == i => last.1 = end,
            _ => out.push((i, end)),
        }
    }
    out
}

//! HTML pages: the DOM kept, the words translated.
//!
//! The page is parsed by `html5ever` (Servo's parser, the HTML5 tree
//! construction algorithm that browsers use, so broken markup is repaired
//! the way a browser would) into `markup5ever_rcdom`, translated in place
//! and serialized back.
//!
//! - Text is translated paragraph by paragraph: a *run* is a stretch of
//!   inline content (text, `<b>`, `<i>`, `<a>`, `<span>`, …) between block
//!   boundaries; its sentences may cross inline tags.
//! - Inline tags are put back around the words they belonged to: each
//!   inline element's own text is translated alone as well, and found in
//!   the run's translation (exact match, then the window sharing most
//!   words, then the same relative position on word boundaries). Nested
//!   elements are placed inside their parent's range.
//! - Opaque inline content (`<code>`, `<kbd>`, `<img>`, `<br>`, elements
//!   with `translate="no"` or class `notranslate`, comments) travels as a
//!   placeholder through the model (see [`crate::text::protect`]) and comes
//!   back as the very same node.
//! - Untouched: `<script>`, `<style>`, `<code>`, `<pre>`, `<kbd>`, `<samp>`,
//!   `<textarea>`, `<svg>`, `<math>`, `<template>` and anything marked
//!   `translate="no"` or `class="notranslate"`.
//! - Translated attributes: `alt`, `title`, `placeholder`, `aria-label`, and
//!   the `content` of `<meta name="description">` (and `og:`/`twitter:`
//!   title and description). `<html lang>` becomes `en`.
//! - The doctype, comments and the encoding declaration (`<meta charset>`)
//!   stay. Entities keep their meaning: `&amp;`, `&lt;`, `&gt;`, `&quot;`
//!   (in attributes) and `&nbsp;` are written as entities, other named
//!   entities (`&auml;`) as the UTF-8 characters they stand for.
//!
//! Whitespace inside a translated run is collapsed to single spaces (as a
//! browser renders it); the whitespace around it is kept.

use super::protect::{self, Piece};
use place::place_spans;

mod place;
use anyhow::{bail, Context, Result};
use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::{local_name, ns, parse_document, parse_fragment, serialize, QualName};
use markup5ever_rcdom::{Handle, Node, NodeData, RcDom, SerializableHandle};
use std::rc::Rc;

/// A page and the texts in it to translate. It keeps the source, not the
/// DOM (whose nodes are reference-counted, so neither `Send` nor `Sync`):
/// [`HtmlPage::assemble`] parses the page again, which gives the very same
/// tree, and fills it in.
#[derive(Debug, Clone)]
pub struct HtmlPage {
    source: String,
    paragraphs: Vec<HtmlParagraph>,
}

/// A parsed page and what in it gets translated.
struct Parsed {
    dom: RcDom,
    /// The fragment root when the input had no `<html>`/`<body>`/doctype.
    fragment: bool,
    items: Vec<Item>,
    paragraphs: Vec<HtmlParagraph>,
}

/// A text to translate: the page's own text, or a helper (an inline
/// element's words, used only to place its tags).
#[derive(Debug, Clone)]
pub struct HtmlParagraph {
    pub text: String,
    /// Part of the page's text (false for helpers).
    pub aligned: bool,
}

enum Item {
    Attr {
        node: Handle,
        name: &'static str,
    },
    Run(Run),
    /// An inline element's text; its translation is read by its run.
    Helper,
}

/// Inline content between block boundaries: consecutive children
/// `first..first + count` of `parent`.
struct Run {
    parent: Handle,
    first: usize,
    count: usize,
    /// Whitespace before and after the run's content, kept as it was.
    lead: String,
    trail: String,
    /// The run's text: whitespace collapsed, atoms as placeholders.
    text: String,
    /// Opaque nodes; atom `k` is placeholder `k`.
    atoms: Vec<Handle>,
    /// Whether atom `k` touched the text before / after it (no whitespace
    /// between): the model sees it as a word of its own, the output glues
    /// it back.
    glue: Vec<(bool, bool)>,
    /// The last atom, while nothing has followed it yet.
    after_atom: Option<usize>,
    /// Inline elements in document order (parents before children).
    spans: Vec<Span>,
}

struct Span {
    node: Handle,
    start: usize,
    end: usize,
    /// Index of the enclosing span, if any.
    parent: Option<usize>,
    /// Paragraph index of the element's own text (a helper), if it has words.
    helper: Option<usize>,
}

fn is_skipped_tag(name: &str) -> bool {
    matches!(
        name,
        "script"
            | "style"
            | "code"
            | "pre"
            | "kbd"
            | "samp"
            | "textarea"
            | "svg"
            | "math"
            | "template"
            | "noscript"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "video"
            | "audio"
            | "select"
            | "head"
    )
}

/// Inline elements whose text is translated.
fn is_inline_tag(name: &str) -> bool {
    matches!(
        name,
        "a" | "abbr"
            | "b"
            | "bdi"
            | "bdo"
            | "cite"
            | "data"
            | "dfn"
            | "em"
            | "i"
            | "mark"
            | "q"
            | "s"
            | "small"
            | "span"
            | "strong"
            | "sub"
            | "sup"
            | "time"
            | "u"
            | "var"
            | "font"
            | "big"
            | "tt"
            | "del"
            | "ins"
            | "label"
            | "nobr"
            | "strike"
            | "button"
            | "output"
    )
}

/// Inline elements that are kept whole, never translated inside.
fn is_inline_atom_tag(name: &str) -> bool {
    matches!(
        name,
        "img"
            | "br"
            | "wbr"
            | "input"
            | "code"
            | "kbd"
            | "samp"
            | "svg"
            | "math"
            | "select"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "video"
            | "audio"
            | "picture"
            | "meter"
            | "progress"
            | "script"
            | "style"
            | "noscript"
            | "template"
            | "textarea"
    )
}

const TRANSLATED_ATTRIBUTES: &[&str] = &["alt", "title", "placeholder", "aria-label"];

const META_NAMES: &[&str] = &[
    "description",
    "og:description",
    "og:title",
    "twitter:description",
    "twitter:title",
];

fn tag(node: &Handle) -> Option<&str> {
    match &node.data {
        NodeData::Element { name, .. } => Some(&*name.local),
        _ => None,
    }
}

fn attr(node: &Handle, name: &str) -> Option<String> {
    match &node.data {
        NodeData::Element { attrs, .. } => attrs
            .borrow()
            .iter()
            .find(|a| &*a.name.local == name)
            .map(|a| a.value.to_string()),
        _ => None,
    }
}

fn set_attr(node: &Handle, name: &str, value: &str) {
    if let NodeData::Element { attrs, .. } = &node.data {
        let mut attrs = attrs.borrow_mut();
        match attrs.iter_mut().find(|a| &*a.name.local == name) {
            Some(a) => a.value = StrTendril::from_slice(value),
            None => attrs.push(html5ever::Attribute {
                name: QualName::new(None, ns!(), name.into()),
                value: StrTendril::from_slice(value),
            }),
        }
    }
}

/// `translate="no"` or class `notranslate`.
fn marked_no_translate(node: &Handle) -> bool {
    attr(node, "translate").is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        || attr(node, "class").is_some_and(|c| c.split_whitespace().any(|c| c == "notranslate"))
}

fn is_opaque(node: &Handle) -> bool {
    match tag(node) {
        Some(t) => is_skipped_tag(t) || is_inline_atom_tag(t) || marked_no_translate(node),
        None => false,
    }
}

/// Whether `node` is inline content: text, comments, inline elements
/// without block descendants, and inline atoms.
fn is_inline(node: &Handle) -> bool {
    match &node.data {
        NodeData::Text { .. } | NodeData::Comment { .. } => true,
        NodeData::Element { name, .. } => {
            let t: &str = &name.local;
            if is_inline_atom_tag(t) {
                return true;
            }
            if marked_no_translate(node) {
                // An opaque inline element stays in the run; a block stays a block.
                return is_inline_tag(t);
            }
            is_inline_tag(t) && node.children.borrow().iter().all(is_inline)
        }
        _ => false,
    }
}

impl HtmlPage {
    /// Parses `html` as a browser would (it never fails on bad markup).
    pub fn parse(html: &str) -> Result<Self> {
        let parsed = Parsed::new(html);
        Ok(HtmlPage {
            source: html.to_string(),
            paragraphs: parsed.paragraphs,
        })
    }

    /// The texts to translate, in order (helpers included).
    pub fn paragraphs(&self) -> &[HtmlParagraph] {
        &self.paragraphs
    }

    /// Writes the page with `translations` (one per paragraph, in order).
    pub fn assemble(&self, translations: &[String]) -> Result<String> {
        let parsed = Parsed::new(&self.source);
        if parsed.paragraphs.len() != self.paragraphs.len() {
            bail!("internal error: the page parsed differently the second time");
        }
        parsed.assemble(translations)
    }
}

impl Parsed {
    fn new(html: &str) -> Self {
        let lower: String = html.chars().take(4096).collect::<String>().to_lowercase();
        let fragment = !(lower.contains("<html")
            || lower.contains("<body")
            || lower.contains("<!doctype")
            || lower.contains("<head"));
        let dom = if fragment {
            parse_fragment(
                RcDom::default(),
                Default::default(),
                QualName::new(None, ns!(html), local_name!("body")),
                Vec::new(),
                false,
            )
            .one(html)
        } else {
            parse_document(RcDom::default(), Default::default()).one(html)
        };
        let mut page = Parsed {
            dom,
            fragment,
            items: Vec::new(),
            paragraphs: Vec::new(),
        };
        let root = page.dom.document.clone();
        page.walk(&root);
        page
    }

    fn push(&mut self, item: Item, text: String, aligned: bool) -> usize {
        self.items.push(item);
        self.paragraphs.push(HtmlParagraph { text, aligned });
        self.paragraphs.len() - 1
    }

    fn walk(&mut self, node: &Handle) {
        if let Some(t) = tag(node) {
            if t == "html" {
                set_attr(node, "lang", "en");
            }
            if marked_no_translate(node) || (is_skipped_tag(t) && t != "head") {
                return;
            }
            self.attributes(node);
        }
        let children: Vec<Handle> = node.children.borrow().clone();
        let in_head = tag(node) == Some("head");
        let mut k = 0;
        while k < children.len() {
            if in_head {
                // Only the title's text and meta descriptions are translated.
                let child = &children[k];
                match tag(child) {
                    Some("title") => self.walk(child),
                    Some("meta") => self.attributes(child),
                    _ => {}
                }
                k += 1;
                continue;
            }
            if !is_inline(&children[k]) {
                self.walk(&children[k]);
                k += 1;
                continue;
            }
            let start = k;
            while k < children.len() && is_inline(&children[k]) {
                k += 1;
            }
            self.run(node, start, &children[start..k]);
        }
    }

    /// Queues an element's translatable attributes.
    fn attributes(&mut self, node: &Handle) {
        if tag(node) == Some("meta") {
            let name = attr(node, "name").or_else(|| attr(node, "property"));
            if name.is_some_and(|n| META_NAMES.contains(&n.to_ascii_lowercase().as_str())) {
                if let Some(v) = attr(node, "content").filter(|v| has_words(v)) {
                    let text = super::normalize_whitespace(&v);
                    self.push(
                        Item::Attr {
                            node: node.clone(),
                            name: "content",
                        },
                        text,
                        true,
                    );
                }
            }
            return;
        }
        for &name in TRANSLATED_ATTRIBUTES {
            if let Some(v) = attr(node, name).filter(|v| has_words(v)) {
                let text = super::normalize_whitespace(&v);
                self.push(
                    Item::Attr {
                        node: node.clone(),
                        name,
                    },
                    text,
                    true,
                );
            }
        }
    }

    /// Queues a run of inline children `nodes` of `parent` (from `first`).
    fn run(&mut self, parent: &Handle, first: usize, nodes: &[Handle]) {
        let mut run = Run {
            parent: parent.clone(),
            first,
            count: nodes.len(),
            lead: String::new(),
            trail: String::new(),
            text: String::new(),
            atoms: Vec::new(),
            glue: Vec::new(),
            after_atom: None,
            spans: Vec::new(),
        };
        let mut pending_space = false;
        for node in nodes {
            self.collect(node, &mut run, None, &mut pending_space);
        }
        if !has_words(&run.text) {
            // Nothing to translate, but attributes inside (alt, title) were queued.
            return;
        }
        if let Some(NodeData::Text { contents }) = nodes.first().map(|n| &n.data) {
            let c = contents.borrow();
            run.lead = c[..c.len() - c.trim_start().len()].to_string();
        }
        if let Some(NodeData::Text { contents }) = nodes.last().map(|n| &n.data) {
            let c = contents.borrow();
            run.trail = c[c.trim_end().len()..].to_string();
        }
        for span in &mut run.spans {
            // Ranges cover words only.
            let inner = &run.text[span.start..span.end];
            span.start += inner.len() - inner.trim_start().len();
            span.end = span.start + inner.trim().len();
        }
        let text = run.text.trim_end().to_string();
        let helpers: Vec<(usize, String)> = run
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (i, run.text[s.start..s.end].to_string()))
            .filter(|(_, t)| has_words(t) && t.as_str() != text.as_str())
            .collect();
        for (i, t) in helpers {
            let p = self.push(Item::Helper, t, false);
            run.spans[i].helper = Some(p);
        }
        self.push(Item::Run(run), text, true);
    }

    fn collect(&mut self, node: &Handle, run: &mut Run, parent: Option<usize>, space: &mut bool) {
        match &node.data {
            NodeData::Text { contents } => {
                let c = contents.borrow();
                if let Some(k) = run.after_atom {
                    if !c.trim().is_empty() {
                        run.glue[k].1 = !*space && !c.starts_with(char::is_whitespace);
                        run.after_atom = None;
                    }
                }
                for (i, word) in c.split_whitespace().enumerate() {
                    if (i > 0 || *space || c.starts_with(char::is_whitespace))
                        && !run.text.is_empty()
                        && !run.text.ends_with(' ')
                    {
                        run.text.push(' ');
                    }
                    run.text.push_str(word);
                    *space = false;
                }
                if c.ends_with(char::is_whitespace) {
                    *space = true;
                }
            }
            NodeData::Element { .. } if !is_opaque(node) => {
                self.attributes(node);
                if let Some(k) = run.after_atom.take() {
                    run.glue[k].1 = !*space;
                }
                if *space && !run.text.is_empty() && !run.text.ends_with(' ') {
                    run.text.push(' ');
                    *space = false;
                }
                let index = run.spans.len();
                run.spans.push(Span {
                    node: node.clone(),
                    start: run.text.len(),
                    end: run.text.len(),
                    parent,
                    helper: None,
                });
                for child in node.children.borrow().iter() {
                    self.collect(child, run, Some(index), space);
                }
                run.spans[index].end = run.text.len();
            }
            _ => {
                // An atom: comments, images, code, untranslated spans. It
                // stands apart as a word; `glue` remembers what it touched.
                if tag(node).is_some_and(|t| !is_skipped_tag(t)) && !marked_no_translate(node) {
                    self.attributes(node); // alt and title of images
                }
                let previous = run.after_atom.take();
                if let Some(k) = previous {
                    run.glue[k].1 = !*space;
                }
                let glued_left = !*space
                    && !run.text.is_empty()
                    && (previous.is_some() || !run.text.ends_with(' '));
                if !run.text.is_empty() && !run.text.ends_with(' ') {
                    run.text.push(' ');
                }
                *space = false;
                run.text.push_str(&protect::placeholder(run.atoms.len()));
                run.text.push(' ');
                run.after_atom = Some(run.atoms.len());
                run.glue.push((glued_left, false));
                run.atoms.push(node.clone());
            }
        }
    }

    fn assemble(&self, translations: &[String]) -> Result<String> {
        if translations.len() != self.paragraphs.len() {
            bail!(
                "internal error: {} translations for {} HTML paragraphs",
                translations.len(),
                self.paragraphs.len()
            );
        }
        // Replace runs from the last to the first so that the child indices
        // of earlier runs of one parent stay valid.
        for (item, translation) in self.items.iter().zip(translations).rev() {
            match item {
                Item::Attr { node, name } => set_attr(node, name, translation),
                Item::Run(run) => self.replace_run(run, translation, translations),
                Item::Helper => {}
            }
        }
        let root = if self.fragment {
            // parse_fragment puts the content under an <html> element.
            self.dom
                .document
                .children
                .borrow()
                .first()
                .cloned()
                .context("empty fragment")?
        } else {
            self.dom.document.clone()
        };
        let mut out = Vec::new();
        let handle: SerializableHandle = root.into();
        serialize(&mut out, &handle, Default::default()).context("cannot write the page")?;
        Ok(String::from_utf8(out)?)
    }

    fn replace_run(&self, run: &Run, translation: &str, all: &[String]) {
        let t = protect::fix_placeholders(&run.text, translation.trim(), run.atoms.len(), 0);
        let ranges = place_spans(run, &t, all);
        let mut nodes = Vec::new();
        if !run.lead.is_empty() {
            nodes.push(text_node(&run.lead));
        }
        let top: Vec<usize> = (0..run.spans.len())
            .filter(|&i| run.spans[i].parent.is_none())
            .collect();
        emit(run, &t, (0, t.len()), &top, &ranges, &mut nodes);
        if !run.trail.is_empty() {
            nodes.push(text_node(&run.trail));
        }
        let parent = &run.parent;
        for n in &nodes {
            n.parent.set(Some(Rc::downgrade(parent)));
        }
        parent
            .children
            .borrow_mut()
            .splice(run.first..run.first + run.count, nodes);
    }
}

fn text_node(s: &str) -> Handle {
    Node::new(NodeData::Text {
        contents: std::cell::RefCell::new(StrTendril::from_slice(s)),
    })
}

fn has_words(s: &str) -> bool {
    let mut rest = s;
    // Placeholders alone are no words.
    loop {
        match rest.find(|c: char| c.is_alphabetic()) {
            None => return false,
            Some(i) => {
                let tail = &rest[i..];
                match protect::split_placeholders(tail).first() {
                    Some(Piece::Placeholder(p)) => {
                        rest = &tail[protect::placeholder(*p).len()..];
                    }
                    _ => return true,
                }
            }
        }
    }
}

/// Appends the nodes of `t[range]`, with spans `children` (and their
/// descendants) as elements around their ranges.
fn emit(
    run: &Run,
    t: &str,
    range: (usize, usize),
    children: &[usize],
    ranges: &[(usize, usize)],
    out: &mut Vec<Handle>,
) {
    let mut pos = range.0;
    for &c in children {
        let (s, e) = ranges[c];
        text_pieces(run, &t[pos..s], out);
        let node = &run.spans[c].node;
        let grandchildren: Vec<usize> = (0..run.spans.len())
            .filter(|&i| run.spans[i].parent == Some(c))
            .collect();
        let mut inner = Vec::new();
        emit(run, t, (s, e), &grandchildren, ranges, &mut inner);
        for n in &inner {
            n.parent.set(Some(Rc::downgrade(node)));
        }
        *node.children.borrow_mut() = inner;
        out.push(node.clone());
        pos = e;
    }
    text_pieces(run, &t[pos..range.1], out);
}

/// Text nodes and atoms for a piece of translation; an atom that touched
/// its neighbours in the source touches them again.
fn text_pieces(run: &Run, s: &str, out: &mut Vec<Handle>) {
    let pieces = protect::split_placeholders(s);
    let mut texts: Vec<Option<String>> = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => Some(t.to_string()),
            Piece::Placeholder(_) => None,
        })
        .collect();
    for (k, piece) in pieces.iter().enumerate() {
        if let Piece::Placeholder(i) = piece {
            let (left, right) = run.glue.get(*i).copied().unwrap_or_default();
            if left && k > 0 {
                if let Some(Some(t)) = texts.get_mut(k - 1) {
                    if t.ends_with(' ') {
                        t.pop();
                    }
                }
            }
            if right {
                if let Some(Some(t)) = texts.get_mut(k + 1) {
                    if t.starts_with(' ') {
                        t.remove(0);
                    }
                }
            }
        }
    }
    for (piece, text) in pieces.iter().zip(texts) {
        match (piece, text) {
            (_, Some(t)) => {
                if !t.is_empty() {
                    out.push(text_node(&t));
                }
            }
            (Piece::Placeholder(i), None) => match run.atoms.get(*i) {
                Some(atom) => out.push(atom.clone()),
                None => out.push(text_node(&protect::placeholder(*i))),
            },
            (Piece::Text(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! The main text of an HTML page, without navigation, teasers, footers and
//! comment sections: what a summary should be made of.
//!
//! A readability-style score: every block that holds paragraphs earns
//! points for their text (its length, its commas), its parent half of
//! them; link-heavy text counts little; elements whose tag, `id`, `class`
//! or `role` say navigation, footer, sidebar, comments, advertising,
//! cookie banners, sharing or "related articles" are dropped first, and
//! `<article>`/`<main>` get a bonus. The best-scoring container wins; its
//! headings, paragraphs, list items, quotes and captions become plain text
//! paragraphs separated by blank lines, after the page's headline.

use html5ever::tendril::TendrilSink;
use html5ever::{parse_document, ParseOpts};
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use std::collections::HashMap;

/// Words in `id`/`class`/`role` (lowercase) that mark page furniture.
const UNLIKELY: &[&str] = &[
    "nav",
    "menu",
    "footer",
    "sidebar",
    "aside",
    "comment",
    "advert",
    "ads",
    "banner",
    "cookie",
    "consent",
    "share",
    "social",
    "related",
    "teaser",
    "promo",
    "newsletter",
    "breadcrumb",
    "header",
    "masthead",
    "popup",
    "modal",
    "subscribe",
    "widget",
    "pagination",
    "skip",
];

/// Words that mark the article itself.
const LIKELY: &[&str] = &[
    "article", "content", "story", "post", "entry", "text", "body", "main", "artikel", "beitrag",
];

fn tag(node: &Handle) -> Option<&str> {
    match &node.data {
        NodeData::Element { name, .. } => Some(&*name.local),
        _ => None,
    }
}

fn attr(node: &Handle, name: &str) -> String {
    match &node.data {
        NodeData::Element { attrs, .. } => attrs
            .borrow()
            .iter()
            .find(|a| &*a.name.local == name)
            .map(|a| a.value.to_lowercase())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn names_of(node: &Handle) -> String {
    format!(
        "{} {} {}",
        attr(node, "id"),
        attr(node, "class"),
        attr(node, "role")
    )
}

fn has_word(names: &str, words: &[&str]) -> bool {
    names
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| {
            words
                .iter()
                .any(|u| w == *u || (u.len() > 3 && w.starts_with(u)))
        })
}

/// Whether the element is page furniture, never part of the article.
fn is_unlikely(node: &Handle) -> bool {
    match tag(node) {
        Some(
            "nav" | "footer" | "aside" | "header" | "script" | "style" | "noscript" | "form"
            | "iframe" | "svg" | "template" | "button" | "select" | "dialog",
        ) => true,
        Some("article" | "main" | "body" | "html") => false,
        Some(_) => {
            let names = names_of(node);
            has_word(&names, UNLIKELY) && !has_word(&names, &["article", "main", "story"])
                || attr(node, "hidden") == "hidden"
                || attr(node, "aria-hidden") == "true"
        }
        None => false,
    }
}

/// Visible text of `node`, whitespace collapsed, furniture skipped.
fn text_of(node: &Handle, out: &mut String) {
    match &node.data {
        NodeData::Text { contents } => {
            out.push_str(&contents.borrow());
        }
        NodeData::Element { .. } if is_unlikely(node) => {}
        _ => {
            if matches!(tag(node), Some("br")) {
                out.push(' ');
            }
            for c in node.children.borrow().iter() {
                text_of(c, out);
            }
        }
    }
}

fn link_text_len(node: &Handle) -> usize {
    if tag(node) == Some("a") {
        let mut s = String::new();
        text_of(node, &mut s);
        return s.split_whitespace().map(|w| w.chars().count() + 1).sum();
    }
    node.children.borrow().iter().map(link_text_len).sum()
}

const PARAGRAPH_TAGS: &[&str] = &["p", "pre", "td", "blockquote", "li", "dd"];

/// The page's headline: the first `<h1>`, else `<title>`.
fn headline(node: &Handle) -> Option<String> {
    fn find(node: &Handle, name: &str) -> Option<Handle> {
        if tag(node) == Some(name) {
            return Some(node.clone());
        }
        node.children.borrow().iter().find_map(|c| find(c, name))
    }
    let h = find(node, "h1").or_else(|| find(node, "title"))?;
    let mut s = String::new();
    text_of(&h, &mut s);
    let s = super::normalize_whitespace(&s);
    (!s.is_empty()).then_some(s)
}

/// Scores containers by the paragraphs they hold.
fn score(node: &Handle, scores: &mut HashMap<*const markup5ever_rcdom::Node, (Handle, f64)>) {
    if is_unlikely(node) {
        return;
    }
    if let Some(t) = tag(node) {
        if PARAGRAPH_TAGS.contains(&t) {
            let mut text = String::new();
            text_of(node, &mut text);
            let text = super::normalize_whitespace(&text);
            let len = text.chars().count();
            if len >= 25 {
                let links = link_text_len(node) as f64 / len.max(1) as f64;
                let points = (1.0 + text.matches(',').count() as f64 + (len / 100).min(3) as f64)
                    * (1.0 - links.min(1.0));
                let mut ancestor = parent_of(node);
                let mut share = 1.0;
                for _ in 0..3 {
                    let Some(a) = ancestor else { break };
                    let bonus = match tag(&a) {
                        Some("article" | "main") => 1.5,
                        _ if has_word(&names_of(&a), LIKELY) => 1.25,
                        _ => 1.0,
                    };
                    let entry = scores
                        .entry(std::rc::Rc::as_ptr(&a))
                        .or_insert_with(|| (a.clone(), 0.0));
                    entry.1 += points * share * bonus;
                    share /= 2.0;
                    ancestor = parent_of(&a);
                }
            }
        }
    }
    for c in node.children.borrow().iter() {
        score(c, scores);
    }
}

fn parent_of(node: &Handle) -> Option<Handle> {
    let weak = node.parent.take();
    let parent = weak.as_ref().and_then(|w| w.upgrade());
    node.parent.set(weak);
    parent
}

/// Block-level text of the winning container, one paragraph per block.
fn blocks(node: &Handle, out: &mut Vec<String>) {
    if is_unlikely(node) {
        return;
    }
    if let Some(
        "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "li" | "blockquote" | "figcaption" | "pre"
        | "dd" | "dt" | "td" | "th",
    ) = tag(node)
    {
        let has_block_child = node.children.borrow().iter().any(|c| {
            matches!(
                tag(c),
                Some("p" | "ul" | "ol" | "div" | "blockquote" | "table" | "li")
            )
        });
        if !has_block_child {
            let mut s = String::new();
            text_of(node, &mut s);
            let s = super::normalize_whitespace(&s);
            if !s.is_empty() {
                out.push(s);
            }
            return;
        }
    }
    for c in node.children.borrow().iter() {
        blocks(c, out);
    }
}

/// The article's text: its headline and its paragraphs, separated by blank
/// lines. Pages without paragraphs give their whole visible text.
pub fn main_text(html: &str) -> String {
    let dom = parse_document(RcDom::default(), ParseOpts::default()).one(html);
    let mut scores = HashMap::new();
    score(&dom.document, &mut scores);
    let best = scores
        .into_values()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(h, _)| h);
    let mut paragraphs = Vec::new();
    match best {
        Some(container) => blocks(&container, &mut paragraphs),
        None => {
            let mut s = String::new();
            text_of(&dom.document, &mut s);
            paragraphs.push(super::normalize_whitespace(&s));
        }
    }
    if let Some(h) = headline(&dom.document) {
        if paragraphs.first() != Some(&h) {
            paragraphs.insert(0, h);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_news_page_gives_its_article_without_furniture() {
        let text = main_text(include_str!("../../tests/fixtures/pages/de_news.html"));
        let paragraphs: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(
            paragraphs[0],
            "Hochwasser in Passau: Der Pegel sinkt langsam"
        );
        for wanted in [
            "Nach tagelangem Regen sinkt der Pegel",
            "Oberbürgermeister Jürgen Dupper",
            "Aufräumen beginnt",
            "helfer@passau.de",
            "„Wir haben aus 2013 gelernt.",
            "dreistelligen Millionenbetrag",
            "Die Innpromenade stand am Montag",
        ] {
            assert!(text.contains(wanted), "missing {wanted:?} in {text}");
        }
        for unwanted in [
            "Cookies",
            "Politik",
            "Suche",
            "Mehr zum Thema",
            "Kommentare",
            "Impressum",
            "Rechte vorbehalten",
            "dataLayer",
            "Tracking",
        ] {
            assert!(!text.contains(unwanted), "kept {unwanted:?} in {text}");
        }
    }

    #[test]
    fn a_blog_without_semantic_tags_gives_its_post() {
        let text = main_text(include_str!("../../tests/fixtures/pages/en_blog.html"));
        assert!(
            text.starts_with("Why my sourdough failed three times\n\nThe first loaf"),
            "{text}"
        );
        assert!(text.ends_with("a thermometer, and patience."), "{text}");
        for unwanted in ["Popular posts", "newsletter", "Copyright", "Shop"] {
            assert!(!text.contains(unwanted), "kept {unwanted:?} in {text}");
        }
    }

    #[test]
    fn a_page_without_paragraphs_gives_its_text() {
        assert_eq!(main_text("<div>Nur <b>ein</b> Satz</div>"), "Nur ein Satz");
        assert_eq!(main_text(""), "");
    }
}

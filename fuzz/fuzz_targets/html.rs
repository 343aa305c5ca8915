//! HTML pages (`text::html`, on html5ever): parsed as a browser would, then
//! put back together with translations of every shape a model can answer
//! with, and translated end to end by the document driver with the identity.
//! Invariants: parsing never fails, assembling never panics or fails, and a
//! model's answer is always text: markup in it comes out escaped, never as
//! an element of the page.
#![no_main]

use html5ever::tendril::TendrilSink;
use libfuzzer_sys::fuzz_target;
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use tolk::pipeline::translate::translate_document;
use tolk::text::html::HtmlPage;
use tolk::text::Format;

#[path = "../../tests/support/text_invariants.rs"]
#[allow(dead_code)]
mod invariants;

/// Whether the page has an element named `name`, as a browser reads it.
fn has_element(html: &str, name: &str) -> bool {
    fn walk(node: &Handle, name: &str) -> bool {
        if let NodeData::Element { name: n, .. } = &node.data {
            if &*n.local == name {
                return true;
            }
        }
        node.children.borrow().iter().any(|c| walk(c, name))
    }
    let dom = html5ever::parse_document(RcDom::default(), Default::default()).one(html);
    walk(&dom.document, name)
}

const MARKUP: &str = "<tolkinjected onclick=\"x\">&amp;</tolkinjected>";

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let input = String::from_utf8_lossy(rest);
    let page = HtmlPage::parse(&input).expect("HTML parsing never fails");
    let paragraphs = page.paragraphs();
    let answers: [&dyn Fn(&str) -> String; 3] = [&|p| p.to_string(), &|_| String::new(), &|p| {
        format!("{MARKUP} {p} \"' <")
    }];
    for (k, answer) in answers.iter().enumerate() {
        let translations: Vec<String> = paragraphs.iter().map(|p| answer(&p.text)).collect();
        let out = page
            .assemble(&translations)
            .unwrap_or_else(|e| panic!("answer {k}: {e}"));
        if k == 2 && !input.to_ascii_lowercase().contains("tolkinjected") {
            assert!(
                !has_element(&out, "tolkinjected"),
                "a translation became markup:\n{out}"
            );
        }
    }
    let budget = usize::from(options) % 16 + 1;
    translate_document(
        &mut invariants::Identity { max_tokens: budget },
        &input,
        Format::Html,
        &mut |_, _| {},
        &mut |_| {},
    )
    .expect("the identity translation of a page cannot fail");
});

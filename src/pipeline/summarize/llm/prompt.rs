//! What the model is asked, and how the question is wrapped in the model's
//! own chat format.
//!
//! All instruction wording lives in [`Task::instruction`]. The chat template
//! (Jinja, from GGUF metadata or `tokenizer_config.json`) is rendered with
//! minijinja around a placeholder; the article replaces the placeholder only
//! after tokenization of the markup, so text in the article can never become
//! control tokens.

use crate::pipeline::summarize::SummaryLength;
use crate::text::Lang;
use anyhow::{anyhow, bail, Result};
use minijinja::{context, Environment, Error, ErrorKind};

/// Stands for the article while the template renders. Private-use characters
/// keep it from colliding with anything a template or article contains.
const PLACEHOLDER: &str = "\u{E000}TOLK_ARTICLE\u{E001}";

/// One request to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Summarize a whole article.
    Summarize { lang: Lang, length: SummaryLength },
    /// Summarize one part of a long article (map step); always answered in English.
    SummarizePart { lang: Lang, length: SummaryLength },
    /// Merge the partial summaries of consecutive parts (reduce step).
    Combine { length: SummaryLength },
}

fn target(length: SummaryLength) -> String {
    match length {
        SummaryLength::Sentences(1) => "in one sentence".to_string(),
        SummaryLength::Sentences(n) => format!("in {n} sentences"),
        SummaryLength::Words(n) => format!("in at most {n} words"),
    }
}

impl Task {
    /// The instruction, placed after the text: small models follow an
    /// instruction next to their answer far better than one a thousand
    /// tokens back. The only place with prompt wording.
    pub fn instruction(&self) -> String {
        match *self {
            Task::Summarize {
                lang: Lang::En,
                length,
            } => {
                format!("Summarize the article above {}.", target(length))
            }
            Task::Summarize {
                lang: Lang::De,
                length,
            } => format!(
                "The article above is written in German. Summarize it in English {}. \
                 Write only English.",
                target(length)
            ),
            Task::SummarizePart {
                lang: Lang::En,
                length,
            } => format!(
                "The text above is one part of a longer article. Summarize this part {}.",
                target(length)
            ),
            Task::SummarizePart {
                lang: Lang::De,
                length,
            } => format!(
                "The text above is one part of a longer article written in German. \
                 Summarize this part in English {}. Write only English.",
                target(length)
            ),
            Task::Combine { length } => format!(
                "The texts above summarize consecutive parts of one article. \
                 Combine them into one summary of the whole article {}.",
                target(length)
            ),
        }
    }
}

/// A rendered prompt, split around the article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptParts {
    /// Trusted markup before the article (special tokens allowed).
    pub before: String,
    /// Trusted markup after the article.
    pub after: String,
    /// Strings that end the answer besides the stop tokens.
    pub stop_strings: Vec<String>,
}

/// How prompts are built for one model.
#[derive(Debug, Clone)]
pub struct PromptFormat {
    chat_template: Option<String>,
    bos_token: String,
    eos_token: String,
}

impl PromptFormat {
    /// `chat_template` as found in the model's metadata; `None` (base models)
    /// selects the plain fallback prompt.
    pub fn new(chat_template: Option<String>, bos_token: String, eos_token: String) -> Self {
        let chat_template = chat_template.filter(|t| !t.trim().is_empty());
        Self {
            chat_template,
            bos_token,
            eos_token,
        }
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders `task` for `text` (the text itself is not inserted; see [`PromptParts`]).
    pub fn render(&self, task: Task) -> Result<PromptParts> {
        let content = format!("{PLACEHOLDER}\n\n{}", task.instruction());
        match &self.chat_template {
            Some(template) => {
                let rendered = render_chat(template, &content, &self.bos_token, &self.eos_token)?;
                split_at_placeholder(&rendered, Vec::new())
            }
            // Plain fallback for base models without a chat template: the
            // instruction, the text, and a "Summary:" cue; a blank line ends
            // the answer, since base models tend to continue with new sections.
            None => {
                split_at_placeholder(&format!("{content}\n\nSummary:"), vec!["\n\n".to_string()])
            }
        }
    }
}

/// A user message around untrusted text, for tasks other than summaries
/// (translation): `before` and `after` are the caller's own wording, `text`
/// is data whose special-token strings stay plain text.
#[derive(Debug, Clone, Copy)]
pub struct UserTurn<'a> {
    pub before: &'a str,
    pub text: &'a str,
    pub after: &'a str,
    /// Appended after the message for base models without a chat template
    /// (e.g. "\n\nEnglish:"); a blank line then ends the answer.
    pub plain_cue: &'a str,
    /// When set, `(lead, cue)`: the answer is begun for the model as `lead`,
    /// the text again (as data), then `cue`, so that the model continues a
    /// source/translation pair instead of reading the text as a request; the
    /// answer then ends at the end of its line.
    pub echo: Option<(&'a str, &'a str)>,
}

impl PromptFormat {
    /// Renders a [`UserTurn`] (the text itself is not inserted; see [`PromptParts`]).
    pub fn render_turn(&self, turn: &UserTurn) -> Result<PromptParts> {
        let content = format!("{}{PLACEHOLDER}{}", turn.before, turn.after);
        match &self.chat_template {
            Some(template) => {
                let rendered = render_chat(template, &content, &self.bos_token, &self.eos_token)?;
                split_at_placeholder(&rendered, Vec::new())
            }
            None => split_at_placeholder(
                &format!("{content}{}", turn.plain_cue),
                vec!["\n\n".to_string()],
            ),
        }
    }
}

fn split_at_placeholder(rendered: &str, stop_strings: Vec<String>) -> Result<PromptParts> {
    let mut pieces = rendered.split(PLACEHOLDER);
    let before = pieces.next().unwrap_or_default().to_string();
    let after = pieces
        .next()
        .ok_or_else(|| anyhow!("the chat template dropped the user message"))?
        .to_string();
    if pieces.next().is_some() {
        bail!("the chat template repeats the user message");
    }
    Ok(PromptParts {
        before,
        after,
        stop_strings,
    })
}

fn raise_exception(msg: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Renders a Hugging Face chat template for one user message with the
/// generation prompt appended.
pub fn render_chat(template: &str, user: &str, bos_token: &str, eos_token: &str) -> Result<String> {
    let mut env = Environment::new();
    // HF templates call Python string methods (.strip(), .startswith(), ...).
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    // `trim` and `tojson` are minijinja built-ins (the latter with the json feature).
    env.add_template("chat", template)
        .map_err(|e| anyhow!("the model's chat template does not parse: {e}"))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| anyhow!("the model's chat template does not parse: {e}"))?;
    tmpl.render(context! {
        messages => vec![context! { role => "user", content => user }],
        add_generation_prompt => true,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| anyhow!("the model's chat template failed to render: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_template_wraps_the_article() {
        let fmt = PromptFormat::new(Some(CHATML.into()), "<s>".into(), "</s>".into());
        let task = Task::Summarize {
            lang: Lang::En,
            length: SummaryLength::Sentences(3),
        };
        let parts = fmt.render(task).unwrap();
        assert_eq!(
            parts.before,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\n"
        );
        assert_eq!(
            parts.after,
            "\n\nSummarize the article above in 3 sentences.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(parts.stop_strings.is_empty());
    }

    #[test]
    fn python_methods_filters_and_raise_exception_work() {
        let t = "{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['user'] %}{{ raise_exception('bad role') }}{% endif %}{{ m['content'].strip() | trim }}{{ m['role'] | tojson }}{% endfor %}";
        let out = render_chat(t, "  hi  ", "<bos>", "<eos>").unwrap();
        assert_eq!(out, "<bos>hi\"user\"");
        let t = "{{ raise_exception('only user and assistant roles') }}";
        let err = render_chat(t, "x", "", "").unwrap_err().to_string();
        assert!(err.contains("only user and assistant roles"), "{err}");
    }

    #[test]
    fn base_models_get_the_plain_prompt() {
        let fmt = PromptFormat::new(None, "<bos>".into(), "<eos>".into());
        let parts = fmt
            .render(Task::Summarize {
                lang: Lang::De,
                length: SummaryLength::Words(50),
            })
            .unwrap();
        assert_eq!(parts.before, "");
        assert_eq!(
            parts.after,
            "\n\nThe article above is written in German. Summarize it in English in at most 50 words. \
             Write only English.\n\nSummary:"
        );
        assert_eq!(parts.stop_strings, vec!["\n\n".to_string()]);
    }

    #[test]
    fn a_template_without_the_message_is_an_error() {
        let fmt = PromptFormat::new(Some("hello".into()), String::new(), String::new());
        let task = Task::Combine {
            length: SummaryLength::Sentences(2),
        };
        assert!(fmt.render(task).is_err());
    }

    #[test]
    fn instructions_name_the_length_and_language() {
        let de = Task::Summarize {
            lang: Lang::De,
            length: SummaryLength::Sentences(1),
        };
        assert_eq!(
            de.instruction(),
            "The article above is written in German. Summarize it in English in one sentence. \
             Write only English."
        );
    }
}

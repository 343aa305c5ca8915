//! Progress bars on stderr: drawn only on a terminal and without `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// True when bars should be drawn.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal() && !crate::hub::progress_disabled_by_env()
}

/// A bar counting `unit`s (e.g. "sentences"), hidden when not [`enabled`].
pub fn bar(quiet: bool, unit: &str) -> ProgressBar {
    if !enabled(quiet) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let template =
        format!("{{spinner}} {{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Prints a warning line on stderr without tearing a bar that is drawn.
pub fn warn(bar: &ProgressBar, message: &str) {
    bar.suspend(|| eprintln!("tolk: warning: {message}"));
}

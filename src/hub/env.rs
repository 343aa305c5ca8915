//! Where the Hub cache, endpoint and token come from.
//!
//! Read exactly as the Python `huggingface_hub` reads them, so tolk and
//! Python tools share one cache and one login. hf-hub 0.4.3 only knows
//! `HF_HOME` (not `HF_HUB_CACHE`, `HF_TOKEN` or `XDG_CACHE_HOME`), so these
//! values are computed here and handed to it explicitly.

use std::path::{Path, PathBuf};

/// The public Hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Looks up an environment variable; the tests pass a fake one.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A set, non-blank environment variable (huggingface_hub ignores empty ones too).
fn process_env(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn is_truthy(value: Option<String>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

/// True when HF_HUB_OFFLINE asks for offline mode, as huggingface_hub reads it.
pub fn offline_from_env() -> bool {
    is_truthy(process_env("HF_HUB_OFFLINE"))
}

/// True when HF_HUB_DISABLE_PROGRESS_BARS asks for no progress bars.
pub fn progress_disabled_by_env() -> bool {
    is_truthy(process_env("HF_HUB_DISABLE_PROGRESS_BARS"))
}

fn home_dir() -> Option<PathBuf> {
    process_env("HOME")
        .or_else(|| process_env("USERPROFILE"))
        .map(PathBuf::from)
}

/// Expands a leading `~` the way Python's `os.path.expanduser` does.
pub(crate) fn expand_tilde(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with(['/', '\\']) => home.join(&rest[1..]),
        _ => PathBuf::from(path),
    }
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub(crate) fn hf_home_from(env: EnvLookup, home: Option<&Path>) -> PathBuf {
    if let Some(hf_home) = env("HF_HOME") {
        return expand_tilde(&hf_home, home);
    }
    let cache = match env("XDG_CACHE_HOME") {
        Some(xdg) => expand_tilde(&xdg, home),
        None => home
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            .join(".cache"),
    };
    cache.join("huggingface")
}

/// `HF_HUB_CACHE` (or its old name `HUGGINGFACE_HUB_CACHE`), else `<HF_HOME>/hub`.
pub(crate) fn cache_dir_from(env: EnvLookup, home: Option<&Path>) -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return expand_tilde(&dir, home);
    }
    hf_home_from(env, home).join("hub")
}

/// `HF_TOKEN` (or the old `HUGGING_FACE_HUB_TOKEN`), else the token file that
/// `huggingface-cli login` writes (`HF_TOKEN_PATH`, default `<HF_HOME>/token`).
pub(crate) fn token_from(env: EnvLookup, home: Option<&Path>) -> Option<String> {
    if let Some(token) = env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")) {
        return Some(token.trim().to_string());
    }
    let path = match env("HF_TOKEN_PATH") {
        Some(path) => expand_tilde(&path, home),
        None => hf_home_from(env, home).join("token"),
    };
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// `HF_ENDPOINT` without a trailing slash, else the public Hub.
pub(crate) fn endpoint_from(env: EnvLookup) -> String {
    env("HF_ENDPOINT")
        .map(|endpoint| endpoint.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// The Hub cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (as huggingface_hub does).
pub fn cache_dir() -> PathBuf {
    cache_dir_from(&process_env, home_dir().as_deref())
}

/// The Hub to download from: `HF_ENDPOINT`, else <https://huggingface.co>.
pub fn endpoint() -> String {
    endpoint_from(&process_env)
}

/// The access token for private and gated models, if one is configured.
pub fn token() -> Option<String> {
    token_from(&process_env, home_dir().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fake_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn cache_dir_precedence_matches_huggingface_hub() {
        let home = Some(Path::new("/home/u"));
        let all = fake_env(&[
            ("HF_HUB_CACHE", "/a/hub"),
            ("HF_HOME", "/b"),
            ("XDG_CACHE_HOME", "/c"),
        ]);
        assert_eq!(cache_dir_from(&all, home), PathBuf::from("/a/hub"));
        let home_only = fake_env(&[("HF_HOME", "~/hf"), ("XDG_CACHE_HOME", "/c")]);
        assert_eq!(
            cache_dir_from(&home_only, home),
            PathBuf::from("/home/u/hf/hub")
        );
        let xdg = fake_env(&[("XDG_CACHE_HOME", "/c")]);
        assert_eq!(
            cache_dir_from(&xdg, home),
            PathBuf::from("/c/huggingface/hub")
        );
        let none = fake_env(&[]);
        assert_eq!(
            cache_dir_from(&none, home),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        let legacy = fake_env(&[("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/b")]);
        assert_eq!(cache_dir_from(&legacy, home), PathBuf::from("/old"));
    }

    #[test]
    fn token_comes_from_env_then_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let hf_home = dir.path().to_str().unwrap();
        let both = fake_env(&[("HF_TOKEN", "hf_env"), ("HF_HOME", hf_home)]);
        assert_eq!(token_from(&both, None).as_deref(), Some("hf_env"));
        let file_only = fake_env(&[("HF_HOME", hf_home)]);
        assert_eq!(token_from(&file_only, None).as_deref(), Some("hf_file"));
        let elsewhere = fake_env(&[("HF_HOME", "/nonexistent-tolk-test")]);
        assert_eq!(token_from(&elsewhere, None), None);
    }

    #[test]
    fn endpoint_drops_trailing_slash() {
        assert_eq!(endpoint_from(&fake_env(&[])), DEFAULT_ENDPOINT);
        let custom = fake_env(&[("HF_ENDPOINT", "http://mirror.local:8080/")]);
        assert_eq!(endpoint_from(&custom), "http://mirror.local:8080");
    }

    #[test]
    fn tilde_expands_only_at_the_start() {
        let home = Some(Path::new("/h"));
        assert_eq!(expand_tilde("~/x", home), PathBuf::from("/h/x"));
        assert_eq!(expand_tilde("~", home), PathBuf::from("/h"));
        assert_eq!(expand_tilde("a/~/x", home), PathBuf::from("a/~/x"));
        assert_eq!(expand_tilde("~user/x", home), PathBuf::from("~user/x"));
    }
}

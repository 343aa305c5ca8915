//! Finding model files: the Hugging Face cache, downloads, local folders.

/// True when HF_HUB_OFFLINE asks for offline mode, as huggingface_hub reads it.
pub fn offline_from_env() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

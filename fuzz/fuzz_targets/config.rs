//! `config.json` and `generation_config.json` of Marian, T5 and llama
//! checkpoints, read by the real loaders next to the tiny test fixtures'
//! weights and tokenizers, then one short generation. The bounds checks are
//! the point: no number in a config may make tolk allocate without limit
//! (libFuzzer's `-malloc_limit_mb` turns such an allocation into a finding),
//! panic, or loop for long.
//!
//! Input: one byte choosing the family, then `config.json`, a 0xFF byte
//! (never in UTF-8), and `generation_config.json` (absent without the 0xFF).
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tolk::hub::{ModelFiles, ModelSource};
use tolk::pipeline::summarize::llm::safetensors::load_checkpoint;
use tolk::pipeline::summarize::t5::{T5Options, T5Summarizer};
use tolk::pipeline::translate::{MarianTranslator, TranslateOptions};
use tolk::pipeline::Translator;

#[path = "common.rs"]
mod common;

/// A model folder: the fuzzed JSON files written, the rest linked from a fixture.
fn folder(family: &str, fixture: &str, config: &[u8], generation: Option<&[u8]>) -> ModelFiles {
    let dir = common::scratch().join(family);
    let src = common::fixtures().join(fixture);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let name = entry.unwrap().file_name();
            if name != "config.json" && name != "generation_config.json" {
                std::os::unix::fs::symlink(src.join(&name), dir.join(&name)).unwrap();
            }
        }
    }
    std::fs::write(dir.join("config.json"), config).unwrap();
    let generation_path = dir.join("generation_config.json");
    match generation {
        Some(bytes) => std::fs::write(&generation_path, bytes).unwrap(),
        None => {
            let _ = std::fs::remove_file(&generation_path);
        }
    }
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        files.insert(name.clone(), dir.join(&name));
    }
    ModelFiles {
        source: ModelSource::Dir(dir.clone()),
        root: dir,
        files,
        notes: Vec::new(),
    }
}

fn dir_of(files: &ModelFiles) -> &Path {
    &files.root
}

fuzz_target!(|data: &[u8]| {
    let Some((&family, rest)) = data.split_first() else {
        return;
    };
    let (config, generation) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    match family % 3 {
        0 => {
            let files = folder("marian", "marian-tiny", config, generation);
            let opts = TranslateOptions::default();
            if let Ok(mut t) = MarianTranslator::load(&files, &Device::Cpu, &opts) {
                let _ = t.translate_batch(&["Hallo Welt.", "Der Zug kam."]);
            }
        }
        1 => {
            let files = folder("t5", "t5-tiny", config, generation);
            if let Ok(mut t) = T5Summarizer::load(&files, &Device::Cpu, T5Options::default()) {
                let _ = t.summarize_text("Der Zug kam spät. Alle warteten.", 8, &mut |_| {});
            }
        }
        _ => {
            let files = folder("llama", "llama-tiny", config, generation);
            if let Ok(mut loaded) = load_checkpoint(dir_of(&files), &Device::Cpu) {
                let _ = loaded.model.forward(&[1, 2, 3], 0);
            }
        }
    }
});

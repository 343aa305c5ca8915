//! GGUF files: the header and metadata reader (`loader::read_header`, on
//! candle's `gguf_file`), the hyper-parameters, the tokenizer rebuilt from
//! the metadata, and a model load with one forward step. Nothing may panic
//! or allocate more than the file (and the model it describes) could need.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use tolk::pipeline::summarize::llm::loader::{self, LoadOptions};
use tolk::pipeline::summarize::llm::Requantize;
use tolk::tokenize::gguf::tokenizer_from_gguf;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_scratch("model.gguf", data);
    let Ok((content, _reader)) = loader::read_header(&path) else {
        return;
    };
    let _ = loader::architecture(&content.metadata);
    if let Ok(tokenizer) = tokenizer_from_gguf(&content.metadata) {
        if let Ok(ids) = tokenizer.encode_text("Der Zug kam um 13:05 an. <|im_start|>") {
            let _ = tokenizer.decode(&ids, true);
        }
    }
    drop(content);
    let opts = LoadOptions {
        requantize: Requantize::Never,
        dequantize: false,
    };
    if let Ok(mut loaded) = loader::load_causal_lm(&path, &Device::Cpu, opts) {
        let _ = loaded.model.forward(&[1, 2], 0);
        let _ = loaded.model.forward(&[0], 2);
    }
});

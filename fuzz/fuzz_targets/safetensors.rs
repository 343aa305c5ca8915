//! The safetensors reader (`checkpoint::safetensors`): header checks against the
//! file size, then every tensor read. It must never panic, and never
//! allocate more than the file could hold.
#![no_main]

use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use libfuzzer_sys::fuzz_target;
use tolk::checkpoint::safetensors::SafetensorsFile;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_scratch("model.safetensors", data);
    let Ok(file) = SafetensorsFile::open(&path) else {
        return;
    };
    let names: Vec<String> = file.tensor_names().map(str::to_string).collect();
    for name in &names {
        for dtype in [DType::F32, DType::BF16] {
            if let Ok(t) = file.get_unchecked(name, dtype, &Device::Cpu) {
                assert!(t.elem_count() * t.dtype().size_in_bytes() <= data.len() * 4);
            }
        }
    }
});

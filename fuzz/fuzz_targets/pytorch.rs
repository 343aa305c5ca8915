//! PyTorch checkpoints (`checkpoint::pytorch`: zip and legacy layouts, the
//! restricted unpickler). A file must never run code (the unpickler knows no
//! callable but torch's tensor rebuilders), never panic, and never allocate
//! more than the file could hold: every tensor read back is checked against
//! the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolk::checkpoint::pytorch::PthFile;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_scratch("pytorch_model.bin", data);
    let Ok(file) = PthFile::open(&path) else {
        return;
    };
    let _ = file.format();
    let names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    for name in &names {
        let shape = file.shape(name).map(<[usize]>::to_vec);
        if let Ok(t) = file.tensor(name) {
            assert_eq!(Some(t.dims().to_vec()), shape, "{name}: shape differs");
            // i8 is widened to i16, so a tensor may take twice its bytes;
            // a strided view may repeat elements (stride 0), which is the
            // only way to need more memory than the file holds.
            let bytes = t.elem_count() * t.dtype().size_in_bytes();
            let broadcast = file.shape(name).is_some_and(|s| s.contains(&0));
            assert!(
                bytes <= data.len() * 2 || broadcast || t.elem_count() <= 1,
                "{name}: {bytes} bytes from a {}-byte file",
                data.len()
            );
        }
    }
});

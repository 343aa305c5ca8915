//! SentencePiece model files (`tokenize::spm`, a hand-written protobuf
//! reader): parsed, turned into a tokenizer (Marian and T5 paths), used to
//! encode and decode. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolk::tokenize::spm::SpmModel;
use tolk::tokenize::t5::T5Tokenizer;

const TEXT: &str = "Der Zug kam um 13:05 an, z. B. in Köln – „pünktlich“!  ";

fuzz_target!(|data: &[u8]| {
    let Ok(model) = SpmModel::from_bytes(data) else {
        return;
    };
    let _ = model.unk_id();
    if let Ok(tokenizer) = model.to_tokenizer() {
        if let Ok(encoding) = tokenizer.encode(TEXT, false) {
            let _ = tokenizer.decode(encoding.get_ids(), true);
        }
    }
    if let Ok(t5) = T5Tokenizer::from_spm(data) {
        if let Ok(ids) = t5.encode(TEXT) {
            let _ = t5.decode(&ids);
        }
    }
});

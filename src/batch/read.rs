//! Reading one input of a batch: its bytes (through [`crate::io::read_bytes`],
//! as `tolk translate` reads a file), their sha256 for the manifest, and the
//! text; a failure keeps the reason without the path (the record names the
//! input already), and the hash once the bytes were read.

use super::discover::InputFile;
use super::outputs::sha256_hex;
use crate::io::{decode_text, read_bytes, InputErrorKind, ReadOptions};
use std::path::Path;
use std::time::{Instant, SystemTime};

/// An input read into memory.
pub struct Loaded {
    pub file: InputFile,
    pub bytes: u64,
    pub sha256: String,
    pub text: String,
    /// Size and modification time before reading, to notice a file that
    /// changes while it is processed.
    pub stamp: Option<(u64, SystemTime)>,
    pub read_ms: u64,
}

/// Why an input could not be read (its hash, when the bytes were read).
pub struct ReadFailure {
    pub reason: String,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

/// The size and modification time of `path`.
pub fn stamp_of(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Reads `file` as text.
pub fn read_input(file: &InputFile, opts: ReadOptions) -> Result<Loaded, ReadFailure> {
    let start = Instant::now();
    let stamp = stamp_of(&file.path);
    let bytes = read_bytes(&file.path, &file.rel, opts.max_bytes).map_err(|e| ReadFailure {
        reason: match e.kind {
            // Listed a moment ago: another process removed it.
            InputErrorKind::NotFound => "vanished before it could be read".to_string(),
            kind => kind.to_string(),
        },
        sha256: None,
        bytes: None,
    })?;
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let text = decode_text(bytes, &file.rel, opts.lossy).map_err(|e| ReadFailure {
        reason: e.kind.to_string(),
        sha256: Some(sha256.clone()),
        bytes: Some(size),
    })?;
    Ok(Loaded {
        file: file.clone(),
        bytes: size,
        sha256,
        text,
        stamp,
        read_ms: start.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, rel: &str) -> InputFile {
        InputFile {
            path: dir.join(rel),
            rel: rel.to_string(),
        }
    }

    #[test]
    fn failures_carry_the_reason_without_the_path_and_the_hash_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ReadOptions::default();
        let gone = read_input(&input(dir.path(), "gone.txt"), opts)
            .err()
            .unwrap();
        assert_eq!(gone.reason, "vanished before it could be read");
        assert_eq!(gone.sha256, None);

        std::fs::write(dir.path().join("latin1.txt"), b"Gr\xfc\xdfe").unwrap();
        let bad = read_input(&input(dir.path(), "latin1.txt"), opts)
            .err()
            .unwrap();
        assert!(
            bad.reason.starts_with("invalid UTF-8 at byte offset 2"),
            "{}",
            bad.reason
        );
        assert_eq!(
            bad.sha256.as_deref(),
            Some(sha256_hex(b"Gr\xfc\xdfe").as_str())
        );
        assert_eq!(bad.bytes, Some(5));

        let small = ReadOptions {
            max_bytes: 3,
            ..opts
        };
        let big = read_input(&input(dir.path(), "latin1.txt"), small)
            .err()
            .unwrap();
        assert!(
            big.reason.starts_with("5 bytes is over the limit"),
            "{}",
            big.reason
        );

        std::fs::write(dir.path().join("ok.txt"), "\u{feff}Hallo").unwrap();
        let ok = read_input(&input(dir.path(), "ok.txt"), opts).ok().unwrap();
        assert_eq!(ok.text, "Hallo");
        assert_eq!(ok.bytes, 8);
    }
}

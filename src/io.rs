//! Reading input text safely and writing output atomically.
//!
//! Every input error is a [`InputError`] whose `Display` is one line that a
//! user can act on; outputs go to a temporary file in the target folder and
//! are renamed into place, so a failed run never leaves a partial file.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Inputs larger than this are refused unless the caller raises the limit:
/// a multi-gigabyte "article" is almost always a mistake (a log, a dump).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Why an input could not be read: the input (a path, or `<stdin>`) and
/// the reason, shown as `path: reason`.
#[derive(Debug, Error)]
#[error("{path}: {kind}")]
pub struct InputError {
    pub path: String,
    pub kind: InputErrorKind,
}

/// The reason of an [`InputError`]; its `Display` is one line without the
/// path, for records that name the input already.
#[derive(Debug, Error)]
pub enum InputErrorKind {
    #[error("no such file")]
    NotFound,
    #[error("is a directory, not a text file (use `tolk batch` for folders)")]
    IsDirectory,
    #[error("cannot read: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("{size} bytes is over the limit of {limit} bytes (raise it with --max-bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("looks binary (NUL byte at offset {offset}), not text")]
    Binary { offset: usize },
    #[error(
        "invalid UTF-8 at byte offset {offset} (use --lossy to replace bad bytes with U+FFFD)"
    )]
    NotUtf8 { offset: usize },
}

impl InputErrorKind {
    fn at(self, path: &str) -> InputError {
        InputError {
            path: path.to_string(),
            kind: self,
        }
    }
}

/// How input bytes become text.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    pub lossy: bool,
    /// Refuse inputs larger than this many bytes.
    pub max_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            lossy: false,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Reads `path` (or standard input for `-`) as text.
pub fn read_text(path: &Path, opts: ReadOptions) -> Result<String, InputError> {
    if path.as_os_str() == "-" {
        let label = "<stdin>";
        let mut buf = Vec::new();
        std::io::stdin()
            .take(opts.max_bytes + 1)
            .read_to_end(&mut buf)
            .map_err(|e| InputErrorKind::Unreadable(e).at(label))?;
        check_size(buf.len() as u64, opts.max_bytes, label)?;
        return decode_text(buf, label, opts.lossy);
    }
    let label = path.display().to_string();
    let bytes = read_bytes(path, &label, opts.max_bytes)?;
    decode_text(bytes, &label, opts.lossy)
}

fn check_size(size: u64, limit: u64, label: &str) -> Result<(), InputError> {
    if size > limit {
        return Err(InputErrorKind::TooLarge { size, limit }.at(label));
    }
    Ok(())
}

/// Reads the bytes of the file at `path` (named `label` in errors),
/// refusing folders and files over `max_bytes` (checked before reading, and
/// again after, for a file that grew meanwhile).
pub fn read_bytes(path: &Path, label: &str, max_bytes: u64) -> Result<Vec<u8>, InputError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InputErrorKind::NotFound.at(label),
        _ => InputErrorKind::Unreadable(e).at(label),
    })?;
    if meta.is_dir() {
        return Err(InputErrorKind::IsDirectory.at(label));
    }
    check_size(meta.len(), max_bytes, label)?;
    let bytes = fs::read(path).map_err(|e| InputErrorKind::Unreadable(e).at(label))?;
    check_size(bytes.len() as u64, max_bytes, label)?;
    Ok(bytes)
}

/// Turns bytes into text: refuses binary data, and invalid UTF-8 unless `lossy`.
/// A UTF-8 byte-order mark is dropped.
pub fn decode_text(bytes: Vec<u8>, label: &str, lossy: bool) -> Result<String, InputError> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(InputErrorKind::Binary { offset }.at(label));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) if lossy => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        Err(err) => {
            let offset = err.utf8_error().valid_up_to();
            return Err(InputErrorKind::NotUtf8 { offset }.at(label));
        }
    };
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// A file written and synced under a temporary name next to its target,
/// not yet in place. Dropped without [`StagedFile::commit`], the temporary
/// file is removed.
pub struct StagedFile {
    temp: tempfile::TempPath,
    target: PathBuf,
}

/// Writes `contents` to a temporary file (named `<prefix>…<suffix>`) in the
/// folder of `target`, creating the folder, and syncs it.
pub fn stage(
    target: &Path,
    contents: &[u8],
    prefix: &str,
    suffix: &str,
) -> anyhow::Result<StagedFile> {
    use anyhow::Context;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(suffix);
    // Temporary files are private (0600) by default; an output is an
    // ordinary file, so it gets the mode any new file gets (0666 less umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder
        .tempfile_in(&dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    temp.write_all(contents)
        .and_then(|_| temp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", target.display()))?;
    Ok(StagedFile {
        temp: temp.into_temp_path(),
        target: target.to_path_buf(),
    })
}

impl StagedFile {
    /// Renames the temporary file over the target.
    pub fn commit(self) -> anyhow::Result<()> {
        use anyhow::Context;
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("{}: cannot move the output into place", target.display()))
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// folder, flushed and synced, then renamed over the target.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    stage(path, contents, ".tolk-", ".part")?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_the_offset() {
        let err = decode_text(b"abc\xffdef".to_vec(), "x", false).unwrap_err();
        assert!(
            matches!(err.kind, InputErrorKind::NotUtf8 { offset: 3 }),
            "{err}"
        );
        assert!(err.to_string().starts_with("x: invalid UTF-8"), "{err}");
        let text = decode_text(b"abc\xffdef".to_vec(), "x", true).unwrap();
        assert_eq!(text, "abc\u{fffd}def");
    }

    #[test]
    fn nul_bytes_mean_binary() {
        let err = decode_text(b"ab\0c".to_vec(), "x", true).unwrap_err();
        assert!(matches!(err.kind, InputErrorKind::Binary { offset: 2 }));
    }

    #[test]
    fn files_over_the_limit_and_folders_are_refused_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bytes(dir.path(), "d", 10).unwrap_err();
        assert!(matches!(err.kind, InputErrorKind::IsDirectory), "{err}");
        let file = dir.path().join("f.txt");
        fs::write(&file, b"0123456789ab").unwrap();
        let err = read_bytes(&file, "f.txt", 10).unwrap_err();
        assert!(
            matches!(
                err.kind,
                InputErrorKind::TooLarge {
                    size: 12,
                    limit: 10
                }
            ),
            "{err}"
        );
        assert_eq!(read_bytes(&file, "f.txt", 12).unwrap().len(), 12);
        let err = read_bytes(&dir.path().join("none"), "none", 10).unwrap_err();
        assert_eq!(err.to_string(), "none: no such file");
    }

    #[test]
    fn bom_is_dropped() {
        assert_eq!(
            decode_text("\u{feff}Hallo".into(), "x", false).unwrap(),
            "Hallo"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/out.txt");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&out).unwrap().permissions().mode();
            assert_ne!(
                mode & 0o044,
                0,
                "outputs must not be private temp files: {mode:o}"
            );
        }
    }
}

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

#[derive(Debug, Error)]
pub enum InputError {
    #[error("{path}: no such file")]
    NotFound { path: String },
    #[error("{path}: is a directory, not a text file (use `tolk batch` for folders)")]
    IsDirectory { path: String },
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is over the limit of {limit} bytes (raise it with --max-bytes)")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: looks binary (NUL byte at offset {offset}), not text")]
    Binary { path: String, offset: usize },
    #[error("{path}: invalid UTF-8 at byte offset {offset} (use --lossy to replace bad bytes with U+FFFD)")]
    NotUtf8 { path: String, offset: usize },
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
    let name = path.display().to_string();
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(opts.max_bytes + 1)
            .read_to_end(&mut buf)
            .map_err(|source| InputError::Unreadable {
                path: "<stdin>".into(),
                source,
            })?;
        if buf.len() as u64 > opts.max_bytes {
            return Err(InputError::TooLarge {
                path: "<stdin>".into(),
                size: buf.len() as u64,
                limit: opts.max_bytes,
            });
        }
        buf
    } else {
        let meta = fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => InputError::NotFound { path: name.clone() },
            _ => InputError::Unreadable {
                path: name.clone(),
                source,
            },
        })?;
        if meta.is_dir() {
            return Err(InputError::IsDirectory { path: name });
        }
        if meta.len() > opts.max_bytes {
            return Err(InputError::TooLarge {
                path: name,
                size: meta.len(),
                limit: opts.max_bytes,
            });
        }
        fs::read(path).map_err(|source| InputError::Unreadable {
            path: name.clone(),
            source,
        })?
    };
    let label = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        name
    };
    decode_text(bytes, &label, opts.lossy)
}

/// Turns bytes into text: refuses binary data, and invalid UTF-8 unless `lossy`.
/// A UTF-8 byte-order mark is dropped.
pub fn decode_text(bytes: Vec<u8>, label: &str, lossy: bool) -> Result<String, InputError> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(InputError::Binary {
            path: label.to_string(),
            offset,
        });
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) if lossy => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        Err(err) => {
            return Err(InputError::NotUtf8 {
                path: label.to_string(),
                offset: err.utf8_error().valid_up_to(),
            })
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
            matches!(err, InputError::NotUtf8 { offset: 3, .. }),
            "{err}"
        );
        let text = decode_text(b"abc\xffdef".to_vec(), "x", true).unwrap();
        assert_eq!(text, "abc\u{fffd}def");
    }

    #[test]
    fn nul_bytes_mean_binary() {
        let err = decode_text(b"ab\0c".to_vec(), "x", true).unwrap_err();
        assert!(matches!(err, InputError::Binary { offset: 2, .. }));
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

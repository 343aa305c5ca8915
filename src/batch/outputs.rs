//! Output files of a batch: their names, the rule that tolk never
//! overwrites a file it did not write, and two-phase writing (a synced
//! temporary file first, renamed into place only after the manifest
//! records it).
//!
//! Why that order: if the process dies after the manifest line and before
//! the rename, the output is missing and `--resume` redoes the input; if it
//! dies before the manifest line, the temporary file is swept at the next
//! start. Either way no output file is ever partial, and every output file
//! in place is vouched for by a manifest line with its sha256.

use super::discover::Shard;
use super::manifest::ManifestIndex;
use crate::text::Format;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// `out/<input>.en.txt`
pub const TRANSLATION_SUFFIX: &str = ".en.txt";
/// `out/<input>.summary.txt`
pub const SUMMARY_SUFFIX: &str = ".summary.txt";

/// `out/<input>.en.txt`, or `out/<input>.en.<ext>` for HTML pages and
/// subtitles (`page.html` → `page.html.en.html`), whose translation is the
/// same kind of document: a browser or a video player opens it.
pub fn translation_path(rel: &str) -> String {
    let path = Path::new(rel);
    match (
        Format::from_path(path),
        path.extension().and_then(|e| e.to_str()),
    ) {
        (Format::Html | Format::Subtitles, Some(ext)) => format!("{rel}.en.{ext}"),
        _ => format!("{rel}{TRANSLATION_SUFFIX}"),
    }
}

pub fn summary_path(rel: &str) -> String {
    format!("{rel}{SUMMARY_SUFFIX}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The prefix of this run's temporary files. Each shard has its own, so a
/// shard sweeping its leftovers never touches another shard's files.
pub fn temp_prefix(shard: Option<&Shard>) -> String {
    match shard {
        Some(s) => format!(".tolk-part-{}-", s.tag()),
        None => ".tolk-part-all-".to_string(),
    }
}

const TEMP_SUFFIX: &str = ".part";

/// Removes temporary files with `prefix` that an interrupted run left under
/// `out_dir`; returns how many. Links are not followed.
pub fn sweep_temps(out_dir: &Path, prefix: &str) -> Result<usize> {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(out_dir).into_iter().flatten() {
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file() && name.starts_with(prefix) && name.ends_with(TEMP_SUFFIX) {
            std::fs::remove_file(entry.path()).with_context(|| {
                format!(
                    "{}: cannot remove a stale temporary file",
                    entry.path().display()
                )
            })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Why an output path may not be written, or `Ok` when it may: absent, or
/// holding exactly what a manifest says tolk wrote there, or `force`.
pub fn check_target(
    out_dir: &Path,
    rel: &str,
    index: &ManifestIndex,
    force: bool,
) -> Result<(), String> {
    let path = out_dir.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("output {rel}: cannot check it: {e}")),
    };
    if meta.is_dir() {
        return Err(format!("output {rel} is a folder"));
    }
    if force {
        return Ok(());
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("output {rel}: cannot read it: {e}"))?;
    if index.wrote(rel, &sha256_hex(&bytes)) {
        return Ok(());
    }
    Err(if index.knows_output(rel) {
        format!(
            "output {rel} was changed since tolk wrote it; not overwritten (--force overwrites)"
        )
    } else {
        format!("output {rel} already exists and was not written by tolk; not overwritten (--force overwrites)")
    })
}

/// True when `rel` holds exactly the content with `sha256`.
pub fn holds(out_dir: &Path, rel: &str, sha256: &str) -> bool {
    std::fs::read(out_dir.join(rel)).is_ok_and(|bytes| sha256_hex(&bytes) == sha256)
}

/// An output written and synced under a temporary name, not yet in place.
/// Dropped without [`Staged::commit`], the temporary file is removed.
pub struct Staged {
    file: crate::io::StagedFile,
    pub rel: String,
    pub sha256: String,
}

/// Writes `contents` to a temporary file next to `out_dir/rel`.
pub fn stage(out_dir: &Path, rel: &str, contents: &[u8], prefix: &str) -> Result<Staged> {
    Ok(Staged {
        file: crate::io::stage(&out_dir.join(rel), contents, prefix, TEMP_SUFFIX)?,
        rel: rel.to_string(),
        sha256: sha256_hex(contents),
    })
}

impl Staged {
    /// Renames the temporary file into place.
    pub fn commit(self) -> Result<()> {
        self.file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::manifest::{OutputFile, Record, Status};

    #[test]
    fn pages_and_subtitles_keep_their_extension() {
        assert_eq!(translation_path("a/b.txt"), "a/b.txt.en.txt");
        assert_eq!(translation_path("a/b.md"), "a/b.md.en.txt");
        assert_eq!(translation_path("a/page.HTML"), "a/page.HTML.en.HTML");
        assert_eq!(translation_path("film.srt"), "film.srt.en.srt");
        assert_eq!(translation_path("talk.vtt"), "talk.vtt.en.vtt");
        assert_eq!(translation_path("noext"), "noext.en.txt");
        assert_eq!(summary_path("page.html"), "page.html.summary.txt");
    }

    #[test]
    fn only_outputs_tolk_wrote_may_be_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let mut index = ManifestIndex::default();
        assert!(check_target(out, "a.txt.en.txt", &index, false).is_ok());

        std::fs::write(out.join("a.txt.en.txt"), "mine").unwrap();
        let err = check_target(out, "a.txt.en.txt", &index, false).unwrap_err();
        assert!(err.contains("not written by tolk"), "{err}");
        assert!(check_target(out, "a.txt.en.txt", &index, true).is_ok());

        let mut record = Record::new("a.txt", Status::Done);
        record.outputs = vec![OutputFile {
            path: "a.txt.en.txt".into(),
            sha256: sha256_hex(b"mine"),
        }];
        index.note(record);
        assert!(check_target(out, "a.txt.en.txt", &index, false).is_ok());
        std::fs::write(out.join("a.txt.en.txt"), "edited").unwrap();
        let err = check_target(out, "a.txt.en.txt", &index, false).unwrap_err();
        assert!(err.contains("changed since"), "{err}");
    }

    #[test]
    fn staged_files_appear_only_on_commit_and_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let prefix = temp_prefix(None);
        let staged = stage(out, "sub/a.txt.en.txt", b"hello", &prefix).unwrap();
        assert!(!out.join("sub/a.txt.en.txt").exists());
        assert_eq!(staged.sha256, sha256_hex(b"hello"));
        staged.commit().unwrap();
        assert!(holds(out, "sub/a.txt.en.txt", &sha256_hex(b"hello")));

        // A dropped stage cleans up after itself...
        drop(stage(out, "sub/b.txt.en.txt", b"x", &prefix).unwrap());
        assert_eq!(std::fs::read_dir(out.join("sub")).unwrap().count(), 1);
        // ...and what a killed process left behind is swept, for this
        // shard's prefix only.
        std::fs::write(out.join("sub").join(format!("{prefix}x{TEMP_SUFFIX}")), "p").unwrap();
        let other = temp_prefix(Some(&Shard { index: 1, count: 2 }));
        std::fs::write(out.join(format!("{other}y{TEMP_SUFFIX}")), "p").unwrap();
        assert_eq!(sweep_temps(out, &prefix).unwrap(), 1);
        assert!(out.join(format!("{other}y{TEMP_SUFFIX}")).exists());
    }
}

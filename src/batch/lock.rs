//! The lock that keeps two `tolk batch` runs from writing one output
//! folder (or one shard of it) at once: two runs appending to one manifest
//! would interleave it.

use super::discover::Shard;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Holds an exclusive lock on the output folder (per shard) for the life of
/// the value: two runs writing the same manifest would interleave it. The
/// operating system releases the lock when the process dies, however it dies.
pub struct OutputLock {
    _file: File,
}

/// `.tolk-batch.lock`, or `.tolk-batch.shard-I-of-N.lock` for a shard.
pub fn lock_name(shard: Option<&Shard>) -> String {
    match shard {
        Some(s) => format!("{LOCK_STEM}.{}.lock", s.tag()),
        None => format!("{LOCK_STEM}.lock"),
    }
}

const LOCK_STEM: &str = ".tolk-batch";

/// The shards' lock files in `out_dir` (not the main one).
pub fn shard_lock_files(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(out_dir).with_context(|| format!("{}: cannot list", out_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!("{LOCK_STEM}.shard-")) && name.ends_with(".lock") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

pub fn lock_output(out_dir: &Path, shard: Option<&Shard>) -> Result<OutputLock> {
    let path = out_dir.join(lock_name(shard));
    lock_file(&path, || {
        format!(
            "another `tolk batch` is writing to {}{}; wait for it to finish",
            out_dir.display(),
            shard.map(|s| format!(" as shard {s}")).unwrap_or_default()
        )
    })
}

/// Takes the lock in `path`, or fails with `busy()` when a live process holds it.
pub fn lock_file(path: &Path, busy: impl FnOnce() -> String) -> Result<OutputLock> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot create the lock file", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(OutputLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow!(busy())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_on_the_same_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_output(dir.path(), None).unwrap();
        let err = lock_output(dir.path(), None).err().unwrap();
        assert!(err.to_string().contains("another"), "{err}");
        // Another shard may run next to it.
        assert!(lock_output(dir.path(), Some(&Shard { index: 1, count: 2 })).is_ok());
    }
}

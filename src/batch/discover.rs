//! Finding the inputs of a batch: a walk of the input folder with globs,
//! excludes, hidden-file and symlink rules, and deterministic sharding.
//!
//! Policies (documented in the README's "Batch mode"):
//! - Symbolic links are followed, so a tree of links to an archive works.
//!   A link that points back to one of its own ancestors (a loop) is not
//!   followed again: it is reported once as *ignored*, and the walk goes on.
//!   A dangling link is an input that cannot be read and *fails*.
//! - Hidden files and folders (name starting with `.`) are skipped unless
//!   asked for: they are editor backups, VCS data and our own temporary files.
//! - Anything that is neither a regular file nor a folder (FIFOs, sockets,
//!   devices) is *ignored*: reading a FIFO would block the run forever.
//! - The output folder is never walked when it lies inside the input folder.
//! - Names that are not valid UTF-8 fail: they cannot be recorded faithfully
//!   in the JSON manifest.

use anyhow::{bail, Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use walkdir::WalkDir;

/// The files a batch reads when no `--glob` is given (any case).
pub const DEFAULT_GLOBS: &[&str] = &["*.txt", "*.md"];

/// What to walk and what to keep.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// Globs a file's relative path must match; empty means [`DEFAULT_GLOBS`].
    pub include: Vec<String>,
    /// Globs of relative paths (files or folders) to leave out.
    pub exclude: Vec<String>,
    /// Walk sub-folders (else only the top level).
    pub recursive: bool,
    /// Include hidden files and folders.
    pub hidden: bool,
    /// Folders never to walk (the output folder); compared after resolving links.
    pub skip_dirs: Vec<PathBuf>,
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where to read it.
    pub path: PathBuf,
    /// Its path relative to the input folder, `/`-separated: the name it has
    /// in manifests and under the output folder.
    pub rel: String,
}

/// Something found during the walk that is not a readable input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkProblem {
    /// The relative path, as far as it is known.
    pub rel: String,
    pub reason: String,
    /// True when it is an input that failed (unreadable, dangling link), false
    /// when it is deliberately ignored (symlink loop, FIFO).
    pub is_failure: bool,
}

/// The result of a walk, both lists sorted by relative path.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub files: Vec<InputFile>,
    pub problems: Vec<WalkProblem>,
}

fn glob_set(patterns: &[String], case_insensitive: bool, what: &str) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .case_insensitive(case_insensitive)
            .build()
            .with_context(|| format!("{what} {p:?} is not a valid glob"))?;
        builder.add(glob);
    }
    Ok(builder.build()?)
}

/// The relative, `/`-separated form of `path` under `root`.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn lossy_relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// A one-line error unless `root` is a folder.
pub fn check_input_folder(root: &Path) -> Result<()> {
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such folder", root.display()),
        _ => anyhow::anyhow!("{}: cannot read: {e}", root.display()),
    })?;
    if !meta.is_dir() {
        bail!(
            "{}: is a file, not a folder (use `tolk translate` for one file)",
            root.display()
        );
    }
    Ok(())
}

/// Walks `root` and returns its inputs, sorted, so that every run (and every
/// shard) sees the same order.
pub fn discover(root: &Path, opts: &DiscoverOptions) -> Result<Discovery> {
    check_input_folder(root)?;
    let include = if opts.include.is_empty() {
        let defaults: Vec<String> = DEFAULT_GLOBS.iter().map(|s| s.to_string()).collect();
        glob_set(&defaults, true, "--glob")?
    } else {
        glob_set(&opts.include, false, "--glob")?
    };
    let exclude = glob_set(&opts.exclude, false, "--exclude")?;
    let skip_dirs: Vec<PathBuf> = opts
        .skip_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .collect();

    let walker = WalkDir::new(root)
        .follow_links(true)
        .max_depth(if opts.recursive { usize::MAX } else { 1 })
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() == 0 {
                return true;
            }
            if !opts.hidden && is_hidden(entry.file_name()) {
                return false;
            }
            if entry.file_type().is_dir() {
                if let Ok(canonical) = entry.path().canonicalize() {
                    if skip_dirs.contains(&canonical) {
                        return false;
                    }
                }
                if let Some(rel) = relative(root, entry.path()) {
                    if exclude.is_match(&rel) {
                        return false;
                    }
                }
            }
            true
        });

    let mut found = Discovery::default();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let rel = err
                    .path()
                    .map(|p| lossy_relative(root, p))
                    .unwrap_or_default();
                if let Some(ancestor) = err.loop_ancestor() {
                    found.problems.push(WalkProblem {
                        rel,
                        reason: format!(
                            "symbolic link loop back to {}: not followed again",
                            lossy_relative(root, ancestor)
                        ),
                        is_failure: false,
                    });
                } else {
                    let reason = err
                        .io_error()
                        .map(|e| format!("cannot read: {e}"))
                        .unwrap_or_else(|| err.to_string());
                    let dangling = err
                        .path()
                        .is_some_and(|p| p.is_symlink() && std::fs::metadata(p).is_err());
                    found.problems.push(WalkProblem {
                        rel,
                        reason: if dangling {
                            "dangling symbolic link".to_string()
                        } else {
                            reason
                        },
                        is_failure: true,
                    });
                }
                continue;
            }
        };
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        let Some(rel) = relative(root, entry.path()) else {
            found.problems.push(WalkProblem {
                rel: lossy_relative(root, entry.path()),
                reason: "file name is not valid UTF-8".to_string(),
                is_failure: true,
            });
            continue;
        };
        if !include.is_match(&rel) || exclude.is_match(&rel) {
            continue;
        }
        if !file_type.is_file() {
            found.problems.push(WalkProblem {
                rel,
                reason: "not a regular file (FIFO, socket or device): ignored".to_string(),
                is_failure: false,
            });
            continue;
        }
        found.files.push(InputFile {
            path: entry.into_path(),
            rel,
        });
    }
    found.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    found.problems.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

/// `--shard I/N`: the I-th (1-based) of N disjoint parts of the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// True when `rel` belongs to this shard. The choice depends only on the
    /// relative path (sha256, not a per-process randomized hash), so every
    /// machine agrees without talking to the others.
    pub fn contains(&self, rel: &str) -> bool {
        shard_of(rel, self.count) == self.index
    }

    /// The file-name tag of this shard's manifest: `shard-3-of-8`.
    pub fn tag(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

/// The 1-based shard of `rel` among `count`.
pub fn shard_of(rel: &str, count: u32) -> u32 {
    let digest = Sha256::digest(rel.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(count.max(1))) as u32 + 1
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N` with 1 ≤ I ≤ N.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("expected I/N with 1 <= I <= N (e.g. 3/8), got {s:?}");
        let (i, n) = s.trim().split_once('/').ok_or_else(err)?;
        let index: u32 = i.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index == 0 || index > count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (name, text) in [
            ("a.txt", "a"),
            ("B.TXT", "b"),
            ("notes.md", "n"),
            ("image.png", "x"),
            ("sub/c.txt", "c"),
            ("sub/deeper/d.txt", "d"),
            ("drafts/e.txt", "e"),
            (".hidden.txt", "h"),
            (".git/f.txt", "f"),
        ] {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn rels(found: &Discovery) -> Vec<&str> {
        found.files.iter().map(|f| f.rel.as_str()).collect()
    }

    #[test]
    fn defaults_take_text_and_markdown_recursively_without_hidden() {
        let dir = tree();
        let opts = DiscoverOptions {
            recursive: true,
            ..Default::default()
        };
        let found = discover(dir.path(), &opts).unwrap();
        assert_eq!(
            rels(&found),
            [
                "B.TXT",
                "a.txt",
                "drafts/e.txt",
                "notes.md",
                "sub/c.txt",
                "sub/deeper/d.txt"
            ]
        );
        assert!(found.problems.is_empty());
    }

    #[test]
    fn globs_excludes_depth_and_hidden() {
        let dir = tree();
        let opts = DiscoverOptions {
            include: vec!["*.txt".into()],
            exclude: vec!["drafts/**".into(), "sub/deeper".into()],
            recursive: true,
            hidden: true,
            ..Default::default()
        };
        let found = discover(dir.path(), &opts).unwrap();
        assert_eq!(
            rels(&found),
            [".git/f.txt", ".hidden.txt", "a.txt", "sub/c.txt"]
        );
        let flat = DiscoverOptions {
            recursive: false,
            ..Default::default()
        };
        assert_eq!(
            rels(&discover(dir.path(), &flat).unwrap()),
            ["B.TXT", "a.txt", "notes.md"]
        );
    }

    #[test]
    fn the_output_folder_inside_the_input_is_not_walked() {
        let dir = tree();
        let out = dir.path().join("sub");
        let opts = DiscoverOptions {
            recursive: true,
            skip_dirs: vec![out],
            ..Default::default()
        };
        let found = discover(dir.path(), &opts).unwrap();
        assert!(rels(&found).iter().all(|r| !r.starts_with("sub/")));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_ignored_and_dangling_links_fail() {
        let dir = tree();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing.txt"), dir.path().join("gone.txt"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("link.txt")).unwrap();
        let opts = DiscoverOptions {
            recursive: true,
            ..Default::default()
        };
        let found = discover(dir.path(), &opts).unwrap();
        assert!(rels(&found).contains(&"link.txt"));
        assert_eq!(found.problems.len(), 2, "{:?}", found.problems);
        let gone = &found.problems[0];
        assert_eq!(gone.rel, "gone.txt");
        assert!(
            gone.is_failure && gone.reason.contains("dangling"),
            "{gone:?}"
        );
        let looped = &found.problems[1];
        assert_eq!(looped.rel, "sub/loop");
        assert!(
            !looped.is_failure && looped.reason.contains("loop"),
            "{looped:?}"
        );
    }

    #[test]
    fn shards_partition_the_inputs() {
        let names: Vec<String> = (0..200).map(|i| format!("dir/{i}.txt")).collect();
        let mut counts = [0usize; 4];
        for name in &names {
            let owners: Vec<u32> = (1..=4)
                .filter(|&i| Shard { index: i, count: 4 }.contains(name))
                .collect();
            assert_eq!(owners.len(), 1, "{name} belongs to {owners:?}");
            counts[owners[0] as usize - 1] += 1;
        }
        assert!(counts.iter().all(|&c| c > 20), "{counts:?}");
        assert_eq!(shard_of("dir/7.txt", 4), shard_of("dir/7.txt", 4));
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "3/8".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 8 }
        );
        for bad in ["0/8", "9/8", "3", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}

//! Shared test helpers: a folder laid out like the HF cache, a tiny local
//! HTTP server that answers like the Hub (no real host is ever contacted),
//! and the paths of the real test models.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes one snapshot as hf-hub does: blobs under their hash (sha256 when
/// `lfs`, a made-up git sha1 otherwise) and relative symlinks to them.
pub fn add_snapshot(
    cache: &Path,
    repo: &str,
    commit: &str,
    refs: &[&str],
    files: &[(&str, &[u8], bool)],
) {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    for (name, content, lfs) in files {
        let hash = sha256_hex(content);
        let blob = if *lfs { hash } else { hash[..40].to_string() };
        std::fs::write(root.join("blobs").join(&blob), content).unwrap();
        let link = root.join("snapshots").join(commit).join(name);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.matches('/').count() + 2;
        std::os::unix::fs::symlink(format!("{}blobs/{blob}", "../".repeat(depth)), &link).unwrap();
    }
    for name in refs {
        let path = root.join("refs").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, commit).unwrap();
    }
}

/// The files of a small Marian model (contents are placeholders).
pub fn marian_files() -> Vec<(&'static str, &'static [u8], bool)> {
    vec![
        ("config.json", br#"{"model_type":"marian"}"#, false),
        ("model.safetensors", b"weights", true),
        ("source.spm", b"src-spm", true),
        ("target.spm", b"tgt-spm", true),
        ("vocab.json", br#"{"<pad>":0}"#, false),
    ]
}

/// A repository the mock Hub serves.
pub struct MockRepo {
    pub repo: String,
    pub commit: String,
    pub files: HashMap<String, Vec<u8>>,
    /// Answer every request for it with this status and X-Error-Code.
    pub refuse: Option<(u16, &'static str)>,
    /// Discussions and pull requests, numbered from 1 in this order.
    pub discussions: Vec<MockDiscussion>,
}

/// A discussion, or a pull request (`files` is then its branch `refs/pr/N`).
pub struct MockDiscussion {
    pub author: String,
    pub title: String,
    pub status: &'static str,
    /// `Some` for a pull request: the files of its branch.
    pub files: Option<HashMap<String, Vec<u8>>>,
}

/// The title and author of the Hub's safetensors conversion PRs.
pub const CONVERSION_TITLE: &str = "Adding `safetensors` variant of this model";
pub const CONVERSION_BOT: &str = "SFconvertbot";

impl MockDiscussion {
    pub fn pull_request(author: &str, title: &str, files: &[(&str, &[u8])]) -> Self {
        Self {
            author: author.to_string(),
            title: title.to_string(),
            status: "open",
            files: Some(
                files
                    .iter()
                    .map(|(name, content)| (name.to_string(), content.to_vec()))
                    .collect(),
            ),
        }
    }

    pub fn discussion(author: &str, title: &str) -> Self {
        Self {
            author: author.to_string(),
            title: title.to_string(),
            status: "open",
            files: None,
        }
    }
}

/// The commit of pull request `num` in the mock (distinct from [`COMMIT`]).
pub fn pr_commit(num: usize) -> String {
    format!("{num:0>8}{}", &COMMIT[8..])
}

/// Files Git LFS stores on the Hub (they get an `lfs` entry in the API).
fn is_lfs(name: &str) -> bool {
    [
        ".bin",
        ".safetensors",
        ".spm",
        ".ot",
        ".h5",
        ".msgpack",
        ".onnx",
        ".gguf",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

impl MockRepo {
    pub fn new(repo: &str, files: &[(&str, &[u8])]) -> Self {
        Self {
            repo: repo.to_string(),
            commit: COMMIT.to_string(),
            files: files
                .iter()
                .map(|(name, content)| (name.to_string(), content.to_vec()))
                .collect(),
            refuse: None,
            discussions: Vec::new(),
        }
    }

    /// The files and commit of a revision: `main`, the main commit,
    /// `refs/pr/N` or a PR's commit.
    fn revision(&self, revision: &str) -> Option<(String, &HashMap<String, Vec<u8>>)> {
        if revision == "main" || revision == self.commit {
            return Some((self.commit.clone(), &self.files));
        }
        self.discussions.iter().enumerate().find_map(|(i, d)| {
            let commit = pr_commit(i + 1);
            let files = d.files.as_ref()?;
            (revision == format!("refs/pr/{}", i + 1) || revision == commit)
                .then_some((commit, files))
        })
    }
}

/// `GET /api/models/{repo}/revision/{rev}[?blobs=true]`, shaped as the Hub answers.
fn model_info(
    repo: &MockRepo,
    commit: &str,
    files: &HashMap<String, Vec<u8>>,
    blobs: bool,
) -> String {
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    let siblings: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let content = &files[name.as_str()];
            if !blobs {
                return serde_json::json!({"rfilename": name});
            }
            let sha = sha256_hex(content);
            let mut sibling = serde_json::json!({
                "rfilename": name, "blobId": &sha[..40], "size": content.len()
            });
            if is_lfs(name) {
                sibling["lfs"] =
                    serde_json::json!({"sha256": sha, "size": content.len(), "pointerSize": 134});
            }
            sibling
        })
        .collect();
    let owner = repo.repo.split('/').next().unwrap_or_default();
    serde_json::json!({
        "_id": "621ffdc036468d709f17434d", "id": repo.repo, "modelId": repo.repo,
        "author": owner, "sha": commit, "lastModified": "2023-08-16T11:27:50.000Z",
        "private": false, "disabled": false, "gated": false, "downloads": 0, "likes": 0,
        "library_name": "transformers", "pipeline_tag": "translation",
        "tags": ["transformers", "pytorch", "tf", "rust", "marian", "text2text-generation", "translation", "de", "en", "license:cc-by-4.0", "endpoints_compatible", "region:us"],
        "createdAt": "2022-03-02T23:29:04.000Z", "siblings": siblings
    })
    .to_string()
}

/// `GET /api/models/{repo}/discussions?p=N`: 50 per page, as the Hub pages them.
fn discussions_page(repo: &MockRepo, page: usize) -> String {
    let all: Vec<serde_json::Value> = repo
        .discussions
        .iter()
        .enumerate()
        .rev()
        .map(|(i, d)| {
            serde_json::json!({
                "num": i + 1,
                "author": {"avatarUrl": "/avatars/0.svg", "fullname": d.author, "name": d.author,
                           "type": "user", "isPro": false, "isHf": false, "isMod": false},
                "repo": {"name": repo.repo, "type": "model"},
                "title": d.title, "status": d.status,
                "createdAt": "2023-05-08T10:05:36.000Z",
                "isPullRequest": d.files.is_some(),
                "numComments": 1, "topReactions": [], "numReactionUsers": 0, "pinned": false,
                "repoOwner": {"name": repo.repo.split('/').next().unwrap_or_default(),
                              "isParticipating": false, "type": "org", "isDiscussionAuthor": false}
            })
        })
        .collect();
    let start = page * 50;
    let slice: Vec<&serde_json::Value> = all.iter().skip(start).take(50).collect();
    let closed = repo
        .discussions
        .iter()
        .filter(|d| d.status == "closed")
        .count();
    serde_json::json!({"discussions": slice, "count": all.len(), "start": start,
                       "numClosedDiscussions": closed})
    .to_string()
}

/// `GET /api/models/{repo}/refs?include_prs=1`.
fn refs_reply(repo: &MockRepo) -> String {
    let prs: Vec<serde_json::Value> = repo
        .discussions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.files.is_some())
        .map(|(i, _)| {
            let name = format!("refs/pr/{}", i + 1);
            serde_json::json!({"name": name, "ref": name, "targetCommit": pr_commit(i + 1)})
        })
        .collect();
    serde_json::json!({
        "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}],
        "converts": [], "tags": [], "pullRequests": prs
    })
    .to_string()
}

fn json_reply(body: String) -> Reply {
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

/// One request the mock saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

/// A Hub look-alike on 127.0.0.1 serving `resolve/` downloads and the model info API.
pub struct MockHub {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl MockHub {
    pub fn start(repos: Vec<MockRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &repos, &log);
            }
        });
        Self { url, seen }
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn error_reply(status: u16, code: &str, commit: Option<&str>) -> Reply {
    let mut headers = vec![("X-Error-Code".to_string(), code.to_string())];
    if let Some(commit) = commit {
        headers.push(("X-Repo-Commit".to_string(), commit.to_string()));
    }
    Reply {
        status,
        headers,
        body: b"{\"error\":\"mock\"}".to_vec(),
    }
}

fn route(path: &str, range: Option<&str>, repos: &[MockRepo]) -> Reply {
    let find = |owner_name: &str| repos.iter().find(|r| r.repo == owner_name);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let Some(repo) = find(&format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""))) else {
            return error_reply(401, "RepoNotFound", None);
        };
        if let Some((status, code)) = repo.refuse {
            return error_reply(status, code, None);
        }
        let blobs = query
            .split('&')
            .any(|q| q == "blobs=true" || q == "blobs=1");
        return match parts.get(2).copied().unwrap_or("") {
            "discussions" => {
                let page = query
                    .split('&')
                    .find_map(|q| q.strip_prefix("p="))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                json_reply(discussions_page(repo, page))
            }
            "refs" => json_reply(refs_reply(repo)),
            "revision" => {
                let revision = parts.get(3).unwrap_or(&"").replace("%2F", "/");
                match repo.revision(&revision) {
                    Some((commit, files)) => json_reply(model_info(repo, &commit, files, blobs)),
                    None => error_reply(404, "RevisionNotFound", None),
                }
            }
            _ => json_reply(model_info(repo, &repo.commit, &repo.files, blobs)),
        };
    }
    // /{owner}/{name}/resolve/{revision}/{file}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() < 5 || parts[2] != "resolve" {
        return error_reply(404, "NotFound", None);
    }
    let Some(repo) = find(&format!("{}/{}", parts[0], parts[1])) else {
        return error_reply(401, "RepoNotFound", None);
    };
    if let Some((status, code)) = repo.refuse {
        return error_reply(status, code, None);
    }
    let Some((commit, files)) = repo.revision(&parts[3].replace("%2F", "/")) else {
        return error_reply(404, "RevisionNotFound", None);
    };
    let Some(content) = files.get(parts[4]) else {
        return error_reply(404, "EntryNotFound", Some(&commit));
    };
    let len = content.len();
    let (start, end) = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(s, e)| {
            (
                s.parse::<usize>().unwrap_or(0),
                e.parse::<usize>()
                    .map(|e| e.min(len.saturating_sub(1)))
                    .unwrap_or(len.saturating_sub(1)),
            )
        })
        .unwrap_or((0, len.saturating_sub(1)));
    let body = if len == 0 {
        Vec::new()
    } else {
        content[start..=end].to_vec()
    };
    Reply {
        status: 206,
        headers: vec![
            ("ETag".into(), format!("\"{}\"", sha256_hex(content))),
            ("X-Repo-Commit".into(), commit.clone()),
            ("Content-Range".into(), format!("bytes {start}-{end}/{len}")),
        ],
        body,
    }
}

fn answer(stream: TcpStream, repos: &[MockRepo], log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization: headers.get("authorization").cloned(),
    });
    let reply = route(&path, headers.get("range").map(String::as_str), repos);
    let mut out = stream;
    write!(out, "HTTP/1.1 {} Mock\r\n", reply.status)?;
    for (name, value) in &reply.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    )?;
    out.write_all(&reply.body)?;
    out.flush()
}

// ---- Real test models (scripts/fetch-test-models.sh) ----

/// Folder with the real test models: `$TOLK_TEST_MODELS`, else `<repo>/models/downloaded`
/// (filled by `scripts/fetch-test-models.sh`).
pub fn test_models_dir() -> PathBuf {
    match std::env::var_os("TOLK_TEST_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/downloaded"),
    }
}

/// Path of a real test model, or `None` after printing a visible `SKIPPED:` line to stderr, so a
/// test without its model returns early but never passes silently.
pub fn test_model(name: &str) -> Option<PathBuf> {
    let path = test_models_dir().join(name);
    if path.is_file() {
        Some(path)
    } else {
        // Written to the stderr handle, not with eprintln!, which the test harness captures:
        // the line must be visible in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: test model {} not found (run scripts/fetch-test-models.sh)",
            path.display()
        );
        None
    }
}

/// Path of a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// A folder like `git clone` of a 2020 opus-mt repo gives: the tiny Marian
/// model with only the legacy `pytorch_model.bin`, plus the files the Hub
/// repos carry that tolk must ignore.
pub fn legacy_marian_clone(dir: &Path) {
    for entry in std::fs::read_dir(fixture("marian-tiny")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    std::fs::copy(
        fixture("pytorch/marian-tiny-legacy.bin"),
        dir.join("pytorch_model.bin"),
    )
    .unwrap();
    std::fs::write(dir.join("rust_model.ot"), b"not read").unwrap();
    std::fs::write(dir.join("tf_model.h5"), b"not read").unwrap();
}

// ---- Running the tolk binary in isolation ----

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The endpoint every test run of tolk is given: nothing listens there.
pub const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

/// tolk with a clean environment (no token, no offline switch, no cache
/// location of the user's), a private, empty HF cache under `home` and an
/// unreachable endpoint, so no test can touch the network or the user's
/// cache: the one isolation every test that runs the binary uses.
pub fn isolated_tolk(home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tolk"));
    cmd.env_clear()
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", DEAD_ENDPOINT)
        .env("RAYON_NUM_THREADS", "2");
    // Where the dynamic loader finds shared libraries is not user
    // configuration: a CUDA build links the CUDA libraries, which a toolkit
    // from scripts/cuda-toolkit.sh puts only on this path.
    if let Some(path) = std::env::var_os("LD_LIBRARY_PATH") {
        cmd.env("LD_LIBRARY_PATH", path);
    }
    cmd
}

/// [`isolated_tolk`] as an `assert_cmd` command.
pub fn tolk(home: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(isolated_tolk(home))
}

/// The standard output of a run that must have succeeded (else its stderr
/// is the failure message).
pub fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

// ---- Running parity tests on a GPU ----

thread_local! {
    static TEST_DEVICE: std::cell::RefCell<Option<candle_core::Device>> =
        const { std::cell::RefCell::new(None) };
}

/// The device a parity test runs on: the CPU, or CUDA GPU 0 inside [`on_cuda`].
pub fn test_device() -> candle_core::Device {
    TEST_DEVICE.with(|d| d.borrow().clone().unwrap_or(candle_core::Device::Cpu))
}

/// Runs `test` with [`test_device`] set to CUDA GPU 0. Without a usable GPU
/// (no driver, no device, or a CPU build) it prints a visible
/// `SKIPPED: no CUDA device` line and returns: never a silent pass.
pub fn on_cuda(test: impl FnOnce()) {
    match candle_core::Device::new_cuda(0) {
        Ok(device) => {
            TEST_DEVICE.with(|d| *d.borrow_mut() = Some(device));
            test();
            TEST_DEVICE.with(|d| *d.borrow_mut() = None);
        }
        Err(e) => {
            let reason = e.to_string();
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no CUDA device ({})",
                reason.lines().next().unwrap_or_default()
            );
        }
    }
}

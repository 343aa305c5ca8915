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
        }
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
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let Some(repo) = find(&format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""))) else {
            return error_reply(401, "RepoNotFound", None);
        };
        if let Some((status, code)) = repo.refuse {
            return error_reply(status, code, None);
        }
        let mut names: Vec<&String> = repo.files.keys().collect();
        names.sort();
        let siblings: Vec<String> = names
            .iter()
            .map(|n| format!("{{\"rfilename\":\"{n}\"}}"))
            .collect();
        let body = format!(
            "{{\"sha\":\"{}\",\"siblings\":[{}]}}",
            repo.commit,
            siblings.join(",")
        );
        return Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into_bytes(),
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
    if parts[3] != "main" && parts[3] != repo.commit {
        return error_reply(404, "RevisionNotFound", None);
    }
    let Some(content) = repo.files.get(parts[4]) else {
        return error_reply(404, "EntryNotFound", Some(&repo.commit));
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
            ("X-Repo-Commit".into(), repo.commit.clone()),
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

// ---- Running the tolk binary in isolation ----

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// tolk with a private, empty HF cache and an unreachable endpoint, so no
/// test can touch the network or the user's cache.
pub fn isolated_tolk(home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tolk"));
    cmd.env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("RAYON_NUM_THREADS", "2");
    cmd
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

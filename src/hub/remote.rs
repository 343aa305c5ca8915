//! Talking to the Hub through hf-hub's blocking API, with its errors sorted
//! into the few cases a user can act on.

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressDrawTarget};
use std::path::{Path, PathBuf};

/// Why a request to the Hub failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The endpoint could not be reached (DNS, refused, timeout, TLS, proxy).
    Network(String),
    /// The Hub answered with an error status.
    Status {
        code: u16,
        /// The Hub's `X-Error-Code`: RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound.
        error_code: Option<String>,
        /// `X-Repo-Commit`, sent with a missing-file 404 so the absence can be cached.
        commit: Option<String>,
    },
    /// Anything else (cache not writable, unexpected reply).
    Other(String),
}

impl Failure {
    /// 401/403, or 404 naming the repository: the repo is missing, private or gated.
    pub(crate) fn is_repo_unavailable(&self) -> bool {
        match self {
            Failure::Status {
                code, error_code, ..
            } => {
                matches!(code, 401 | 403)
                    || matches!(error_code.as_deref(), Some("RepoNotFound" | "GatedRepo"))
            }
            _ => false,
        }
    }

    pub(crate) fn is_revision_missing(&self) -> bool {
        matches!(self, Failure::Status { error_code: Some(code), .. } if code == "RevisionNotFound")
    }

    /// A 404 for a file (not for the repo or revision).
    pub(crate) fn is_file_missing(&self) -> bool {
        matches!(self, Failure::Status { code: 404, .. })
            && !self.is_repo_unavailable()
            && !self.is_revision_missing()
    }

    pub(crate) fn is_gated(&self) -> bool {
        matches!(self, Failure::Status { code: 403, .. })
            || matches!(self, Failure::Status { error_code: Some(code), .. } if code == "GatedRepo")
    }

    /// A few words on the cause, for the end of an error line.
    pub(crate) fn short(&self) -> String {
        match self {
            Failure::Network(cause) | Failure::Other(cause) => cause.clone(),
            Failure::Status {
                code, error_code, ..
            } => match error_code {
                Some(error_code) => format!("HTTP {code}, {error_code}"),
                None => format!("HTTP {code}"),
            },
        }
    }
}

/// The cause of a transport error without the URL (the caller names it).
pub(crate) fn transport_cause(transport: &ureq::Transport) -> String {
    let mut cause = transport.kind().to_string();
    if let Some(message) = transport.message() {
        cause.push_str(": ");
        cause.push_str(message);
    }
    if let Some(source) = std::error::Error::source(transport) {
        cause.push_str(": ");
        cause.push_str(&source.to_string());
    }
    cause
}

fn classify(err: ApiError) -> Failure {
    match err {
        ApiError::RequestError(err) => match *err {
            ureq::Error::Status(code, response) => Failure::Status {
                code,
                error_code: response.header("x-error-code").map(str::to_string),
                commit: response.header("x-repo-commit").map(str::to_string),
            },
            ureq::Error::Transport(transport) => Failure::Network(transport_cause(&transport)),
        },
        ApiError::TooManyRetries(inner) => classify(*inner),
        ApiError::MissingHeader(header) | ApiError::InvalidHeader(header) => {
            Failure::Other(format!(
                "the reply lacks a valid `{header}` header; is HF_ENDPOINT a Hugging Face Hub?"
            ))
        }
        other => Failure::Other(other.to_string()),
    }
}

/// A connection to one Hub endpoint that downloads into one cache folder.
pub(crate) struct Remote {
    api: Api,
    progress: bool,
}

impl Remote {
    pub(crate) fn new(
        cache: &Path,
        endpoint: &str,
        token: Option<String>,
        progress: bool,
    ) -> Result<Self, Failure> {
        // `from_cache` rather than `new`/`from_env`: those panic without a home
        // folder and ignore HF_HUB_CACHE and HF_TOKEN.
        let api = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
            .with_endpoint(endpoint.to_string())
            .with_token(token)
            .with_progress(false)
            .with_retries(2)
            .with_user_agent("tolk", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(classify)?;
        Ok(Self { api, progress })
    }

    /// Downloads one file into the cache; returns its snapshot path.
    pub(crate) fn download(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<PathBuf, Failure> {
        let repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
        // indicatif draws nothing when stderr is not a terminal.
        let target = if self.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        self.api
            .repo(repo)
            .download_with_progress(file, bar)
            .map_err(classify)
    }

    /// The files of a repository at a revision (the Hub's model info API).
    pub(crate) fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<String>, Failure> {
        let repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
        let info = self.api.repo(repo).info().map_err(classify)?;
        Ok(info
            .siblings
            .into_iter()
            .map(|sibling| sibling.rfilename)
            .collect())
    }
}

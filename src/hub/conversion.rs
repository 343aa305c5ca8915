//! The Hub's safetensors conversions of PyTorch-only repositories.
//!
//! Many repos uploaded before 2023 (all Helsinki-NLP opus-mt models among
//! them) hold only `pytorch_model.bin` on `main`. The Hub's conversion bot
//! (`SFconvertbot`) opened a pull request on most of them, titled
//! "Adding `safetensors` variant of this model", whose branch `refs/pr/N`
//! adds `model.safetensors`. transformers finds that PR the same way
//! (`safetensors_conversion.get_conversion_pr_reference`): through the
//! discussions API, keeping open pull requests of the bot with that title.
//!
//! tolk takes the weights from there when the PR is open, is the bot's, has
//! `model.safetensors`, and converts the same `pytorch_model.bin` that `main`
//! has now (same LFS sha256; a PR made before the weights changed is
//! skipped). Otherwise it falls back to `pytorch_model.bin` of `main`.
//! The PR revision is cached like any other (`refs/refs/pr/N` → commit,
//! `snapshots/<commit>/model.safetensors`), so offline runs find it again.

use super::remote::{transport_cause, Failure};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The title the conversion bot gives its pull requests.
pub(crate) const CONVERSION_TITLE: &str = "Adding `safetensors` variant of this model";
/// The Hub user that opens them (the Hub compares user names case-insensitively).
pub(crate) const CONVERSION_BOT: &str = "SFconvertbot";
/// The weights a conversion adds.
pub(crate) const SAFETENSORS: &str = "model.safetensors";
/// The weights it converts.
pub(crate) const PICKLE: &str = "pytorch_model.bin";
/// Discussion pages read at most (50 per page on the Hub).
const MAX_PAGES: usize = 20;

/// The Hub's JSON API, for what hf-hub does not cover (discussions, file hashes).
pub(crate) struct HubApi {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

/// A revision's files, with the sha256 of LFS files.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepoInfo {
    pub(crate) files: BTreeMap<String, Option<String>>,
}

/// Percent-encodes a revision for a URL path (`refs/pr/4` → `refs%2Fpr%2F4`).
fn encode_revision(revision: &str) -> String {
    revision.replace('%', "%25").replace('/', "%2F")
}

impl HubApi {
    pub(crate) fn new(endpoint: &str, token: Option<String>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(30))
            .user_agent(concat!("tolk/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn get_json(&self, path_and_query: &str) -> Result<Value, Failure> {
        let mut request = self
            .agent
            .get(&format!("{}{path_and_query}", self.endpoint));
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => response
                .into_json()
                .map_err(|e| Failure::Other(format!("the Hub's reply is not JSON: {e}"))),
            Err(ureq::Error::Status(code, response)) => Err(Failure::Status {
                code,
                error_code: response.header("x-error-code").map(str::to_string),
                commit: None,
            }),
            Err(ureq::Error::Transport(transport)) => {
                Err(Failure::Network(transport_cause(&transport)))
            }
        }
    }

    /// `GET /api/models/{repo}/revision/{revision}?blobs=true`: the files of a
    /// revision, with the sha256 of each LFS file.
    pub(crate) fn model_info(&self, repo: &str, revision: &str) -> Result<RepoInfo, Failure> {
        let reply = self.get_json(&format!(
            "/api/models/{repo}/revision/{}?blobs=true",
            encode_revision(revision)
        ))?;
        Ok(parse_model_info(&reply))
    }

    /// The numbers of the open pull requests the conversion bot opened with
    /// its title, newest first (`GET /api/models/{repo}/discussions?p=N`,
    /// paged as huggingface_hub's `get_repo_discussions` reads it).
    pub(crate) fn conversion_prs(&self, repo: &str) -> Result<Vec<u64>, Failure> {
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let reply = self.get_json(&format!("/api/models/{repo}/discussions?p={page}"))?;
            let (prs, more) = parse_discussions(&reply)?;
            found.extend(prs);
            if !more {
                break;
            }
        }
        found.sort_unstable();
        found.reverse();
        Ok(found)
    }
}

fn parse_model_info(reply: &Value) -> RepoInfo {
    let files = reply
        .get("siblings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sibling| {
            let name = sibling.get("rfilename")?.as_str()?.to_string();
            let sha = sibling
                .get("lfs")
                .and_then(|lfs| lfs.get("sha256"))
                .and_then(Value::as_str)
                .map(str::to_string);
            Some((name, sha))
        })
        .collect();
    RepoInfo { files }
}

/// One page of discussions: the conversion PRs on it, and whether more pages follow.
fn parse_discussions(reply: &Value) -> Result<(Vec<u64>, bool), Failure> {
    let bad = || Failure::Other("unexpected reply from the discussions API".into());
    let discussions = reply
        .get("discussions")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    let count = reply.get("count").and_then(Value::as_u64).unwrap_or(0);
    let start = reply.get("start").and_then(Value::as_u64).unwrap_or(0);
    let prs = discussions
        .iter()
        .filter(|d| d.get("isPullRequest").and_then(Value::as_bool) == Some(true))
        .filter(|d| d.get("status").and_then(Value::as_str) == Some("open"))
        .filter(|d| d.get("title").and_then(Value::as_str) == Some(CONVERSION_TITLE))
        .filter(|d| {
            d.get("author")
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
                .is_some_and(|name| name.eq_ignore_ascii_case(CONVERSION_BOT))
        })
        .filter_map(|d| d.get("num").and_then(Value::as_u64))
        .collect();
    let more = !discussions.is_empty() && start + (discussions.len() as u64) < count;
    Ok((prs, more))
}

/// What the search for a conversion found.
#[derive(Debug)]
pub(crate) enum Conversion {
    /// Download `model.safetensors` from this revision (`refs/pr/N`).
    Found { revision: String },
    /// None to use; the reason, when a PR exists but cannot be used.
    None(Option<String>),
}

/// Looks for the conversion PR of `repo` whose `model.safetensors` converts
/// the `pytorch_model.bin` of `main` (at `main_commit`).
pub(crate) fn find(api: &HubApi, repo: &str, main_commit: &str) -> Conversion {
    let prs = match api.conversion_prs(repo) {
        Ok(prs) => prs,
        // A mirror without the discussions API: the pickle will do.
        Err(failure) => {
            return Conversion::None(Some(format!(
                "cannot list the pull requests of {repo} ({})",
                failure.short()
            )))
        }
    };
    if prs.is_empty() {
        return Conversion::None(None);
    }
    let main = match api.model_info(repo, main_commit) {
        Ok(info) => info,
        Err(failure) => {
            return Conversion::None(Some(format!(
                "cannot list the files of {repo} ({})",
                failure.short()
            )))
        }
    };
    let main_pickle = main.files.get(PICKLE).cloned().flatten();
    let mut reasons = Vec::new();
    for pr in prs {
        let revision = format!("refs/pr/{pr}");
        let info = match api.model_info(repo, &revision) {
            Ok(info) => info,
            Err(failure) => {
                reasons.push(format!("{revision}: {}", failure.short()));
                continue;
            }
        };
        if !info.files.contains_key(SAFETENSORS) {
            reasons.push(format!(
                "{revision} (the Hub's safetensors conversion) has no {SAFETENSORS}"
            ));
            continue;
        }
        let pr_pickle = info.files.get(PICKLE).cloned().flatten();
        if main_pickle.is_some() && pr_pickle.is_some() && main_pickle != pr_pickle {
            reasons.push(format!("{revision} converts an older {PICKLE} than main's"));
            continue;
        }
        return Conversion::Found { revision };
    }
    Conversion::None(Some(reasons.join("; ")))
}

/// The note printed when the weights come from a conversion PR.
pub(crate) fn origin_note(revision: &str) -> String {
    format!("using {SAFETENSORS} from {revision} (the Hub's conversion of {PICKLE})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_open_bot_conversion_prs_count() {
        let pr = |num: u64, author: &str, title: &str, status: &str, is_pr: bool| {
            json!({"num": num, "author": {"name": author, "type": "user"},
                   "repo": {"name": "o/m", "type": "model"}, "title": title,
                   "status": status, "createdAt": "2023-05-01T00:00:00.000Z",
                   "isPullRequest": is_pr, "numComments": 1, "pinned": false})
        };
        let reply = json!({"discussions": [
            pr(1, "someone", CONVERSION_TITLE, "open", true),
            pr(2, "SFconvertbot", "Update README.md", "open", true),
            pr(3, "SFconvertbot", CONVERSION_TITLE, "closed", true),
            pr(4, "SFconvertbot", CONVERSION_TITLE, "open", true),
            pr(5, "SFconvertbot", CONVERSION_TITLE, "open", false),
            pr(6, "sfconvertbot", CONVERSION_TITLE, "open", true),
            json!({"num": 7, "title": CONVERSION_TITLE, "status": "open", "isPullRequest": true}),
        ], "count": 9, "start": 0, "numClosedDiscussions": 1});
        let (prs, more) = parse_discussions(&reply).unwrap();
        assert_eq!(prs, [4, 6]);
        assert!(more, "7 of 9 seen");
        let last = json!({"discussions": [], "count": 9, "start": 50});
        assert!(!parse_discussions(&last).unwrap().1);
        assert!(parse_discussions(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn model_info_keeps_lfs_hashes() {
        let reply = json!({"sha": "abc", "siblings": [
            {"rfilename": "config.json", "blobId": "1", "size": 10},
            {"rfilename": "pytorch_model.bin", "blobId": "2", "size": 9,
             "lfs": {"sha256": "f00", "size": 9, "pointerSize": 134}}]});
        let info = parse_model_info(&reply);
        assert_eq!(info.files["config.json"], None);
        assert_eq!(info.files["pytorch_model.bin"].as_deref(), Some("f00"));
        assert_eq!(encode_revision("refs/pr/4"), "refs%2Fpr%2F4");
    }
}

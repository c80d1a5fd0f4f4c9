//! Models by Hugging Face Hub id (`owner/name`), read from the local Hub cache only — never the
//! network. The cache folder and its layout are `huggingface_hub`'s: `$HF_HUB_CACHE`, else the
//! legacy `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub` (`constants.py`); in it `models--{owner}--{name}/refs/<branch or
//! tag>` holds a commit hash and `snapshots/<hash>/` the files (`file_download.py`,
//! `snapshot_download` with `local_files_only`). The resolved commit is what provenance records
//! and cache keys hash, so a moved `main` recomputes what it feeds.
use std::path::{Path, PathBuf};

/// A resolved Hub model: the snapshot folder and its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSnapshot {
    pub id: String,
    pub commit: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("Hub model `{id}` (revision `{revision}`) is not in the local Hugging Face cache (rhx never downloads); looked in:\n{looked}\nDownload it with `hf download {id}{rev_flag}` (or `huggingface-cli download {id}{rev_flag}`), or set HF_HUB_CACHE / HF_HOME to the cache that holds it")]
    NotCached { id: String, revision: String, rev_flag: String, looked: String },
    #[error("Hub model `{id}`: {ref_file} names commit `{commit}`, but its snapshot {snapshot} does not exist (an interrupted download?); download it again with `hf download {id}{rev_flag}`")]
    MissingSnapshot { id: String, ref_file: String, commit: String, snapshot: String, rev_flag: String },
    #[error("Hub model `{id}`: {ref_file} holds `{content}`, not a 40-digit commit hash")]
    BadRef { id: String, ref_file: String, content: String },
    #[error("Hub model `{id}`: revision `{revision}` is not a branch, tag or commit name (`..` and absolute paths are refused)")]
    BadRevision { id: String, revision: String },
    #[error("Hub model `{id}`: snapshot {path} has no config.json (not a Transformers model folder)")]
    NotAModel { id: String, path: String },
}

/// `owner/name` as the Hub spells repository ids (`huggingface_hub.utils.validate_repo_id`):
/// letters, digits, `-`, `_`, `.`; no `--` or `..`; neither part starts or ends with `-` or `.`.
pub fn is_hub_id(s: &str) -> bool {
    let Some((owner, name)) = s.split_once('/') else { return false };
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.contains("--")
            && !p.contains("..")
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
    };
    part(owner) && part(name)
}

/// The Hub cache folder and the variable that chose it, with `huggingface_hub`'s precedence.
pub fn cache_dir() -> (PathBuf, &'static str) {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(|v| expand_home(Path::new(&v)));
    if let Some(d) = var("HF_HUB_CACHE") {
        return (d, "$HF_HUB_CACHE");
    }
    if let Some(d) = var("HUGGINGFACE_HUB_CACHE") {
        return (d, "$HUGGINGFACE_HUB_CACHE");
    }
    if let Some(d) = var("HF_HOME") {
        return (d.join("hub"), "$HF_HOME/hub");
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return (d.join("huggingface/hub"), "$XDG_CACHE_HOME/huggingface/hub");
    }
    (home().join(".cache/huggingface/hub"), "~/.cache/huggingface/hub (HF_HUB_CACHE, HF_HOME and XDG_CACHE_HOME unset)")
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// `os.path.expanduser` of a leading `~`.
fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// Whether `s` is a full commit hash (`REGEX_COMMIT_HASH`: 40 lowercase hex digits).
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The commit of a folder that is a Hub snapshot (`…/models--o--n/snapshots/<hash>`), so keys
/// and provenance can name it whatever way the folder was reached.
pub fn snapshot_commit(path: &Path) -> Option<String> {
    let commit = path.file_name()?.to_str()?;
    let snapshots = path.parent()?;
    let repo = snapshots.parent()?.file_name()?.to_str()?;
    (is_commit(commit) && snapshots.file_name()? == "snapshots" && repo.starts_with("models--")).then(|| commit.to_string())
}

/// Resolves `id` at `revision` (a branch or tag under `refs/`, or a commit hash; default `main`)
/// in the local cache, as `snapshot_download(local_files_only=True)` does.
pub fn resolve(id: &str, revision: Option<&str>) -> Result<HubSnapshot, HubError> {
    let (cache, why) = cache_dir();
    resolve_in(&cache, why, id, revision)
}

fn resolve_in(cache: &Path, why: &str, id: &str, revision: Option<&str>) -> Result<HubSnapshot, HubError> {
    let revision = revision.unwrap_or("main");
    let rev_flag = if revision == "main" { String::new() } else { format!(" --revision {revision}") };
    if revision.is_empty() || Path::new(revision).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(HubError::BadRevision { id: id.into(), revision: revision.into() });
    }
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let ref_file = repo.join("refs").join(revision);
    // As `snapshot_download`: a full hash is the commit itself; any other name is read from refs/.
    let snapshot_of = |c: &str| repo.join("snapshots").join(c);
    let not_cached = |looked_at: PathBuf| {
        let mut looked = vec![format!("  {} (the Hub cache, from {why})", cache.display())];
        let note = if !repo.is_dir() { " (no such folder)" } else { "" };
        looked.push(format!("  {}{note}", repo.display()));
        if repo.is_dir() {
            looked.push(format!("  {} (does not exist)", looked_at.display()));
        }
        HubError::NotCached { id: id.into(), revision: revision.into(), rev_flag: rev_flag.clone(), looked: looked.join("\n") }
    };
    let commit = if is_commit(revision) {
        if !snapshot_of(revision).is_dir() {
            return Err(not_cached(snapshot_of(revision)));
        }
        revision.to_string()
    } else if ref_file.is_file() {
        let content = std::fs::read_to_string(&ref_file).unwrap_or_default();
        let commit = content.trim().to_string();
        if !is_commit(&commit) {
            return Err(HubError::BadRef { id: id.into(), ref_file: ref_file.display().to_string(), content });
        }
        if !snapshot_of(&commit).is_dir() {
            return Err(HubError::MissingSnapshot { id: id.into(), ref_file: ref_file.display().to_string(), snapshot: snapshot_of(&commit).display().to_string(), commit, rev_flag });
        }
        commit
    } else {
        return Err(not_cached(ref_file));
    };
    let path = repo.join("snapshots").join(&commit);
    if !path.join("config.json").is_file() {
        return Err(HubError::NotAModel { id: id.into(), path: path.display().to_string() });
    }
    Ok(HubSnapshot { id: id.into(), commit, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_owner_slash_name_as_the_hub_validates_them() {
        for ok in ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B", "a/b", "HuggingFaceTB/SmolLM2-135M-Instruct"] {
            assert!(is_hub_id(ok), "{ok}");
        }
        for bad in ["Llama", "a/b/c", "./a", "../fixtures/x", "a/", "/a", "a--b/c", "a/b..c", "a/-b", "a b/c", "~/m"] {
            assert!(!is_hub_id(bad), "{bad}");
        }
    }

    #[test]
    fn snapshot_commit_reads_only_the_hub_layout() {
        let h = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(snapshot_commit(Path::new(&format!("/c/models--a--b/snapshots/{h}"))), Some(h.to_string()));
        assert_eq!(snapshot_commit(Path::new(&format!("/c/models--a--b/other/{h}"))), None);
        assert_eq!(snapshot_commit(Path::new("/c/models--a--b/snapshots/main")), None);
        assert_eq!(snapshot_commit(Path::new(&format!("/c/datasets--a--b/snapshots/{h}"))), None);
    }

    #[test]
    fn revisions_with_parent_components_are_refused() {
        let e = resolve_in(Path::new("/nonexistent"), "test", "a/b", Some("../../etc")).unwrap_err();
        assert!(matches!(e, HubError::BadRevision { .. }), "{e}");
    }
}

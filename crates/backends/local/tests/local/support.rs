use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every entry under `root`, relative and sorted, directories with a trailing `/` — dot names
/// included, so leftover temporary files show up.
pub(crate) fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            let name = rel.to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                found.push(format!("{name}/"));
                pending.push(rel);
            } else {
                found.push(name);
            }
        }
    }
    found.sort();
    found
}

/// Sets the immutable attribute on a directory for as long as it lives. Tests run as root, so
/// permissions do not stop writes; the attribute does.
pub(crate) struct Immutable(PathBuf);

impl Immutable {
    /// Why the attribute could not be set, when it could not.
    pub(crate) fn set(dir: &Path) -> Result<Self, String> {
        let status = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .map_err(|err| format!("cannot run chattr: {err}"))?;
        // Created before checking the status: if chattr half-succeeded, Drop still undoes it.
        let guard = Immutable(dir.to_owned());
        if !status.success() {
            return Err(format!("chattr +i failed: {status}"));
        }
        if fs::write(dir.join("probe"), b"x").is_ok() {
            return Err("the immutable attribute did not stop writes".to_owned());
        }
        Ok(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

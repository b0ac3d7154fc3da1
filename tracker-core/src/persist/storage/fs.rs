//! File-system steps both file kinds need, each mapped to a typed error.

use super::error::PersistError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Creates `dir` (and its parents) when missing, and syncs the parent of
/// each directory it created: like a new file's, a new directory's name
/// is only durable once its parent is synced, and a data directory lost
/// with its name would take acknowledged events with it.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), PersistError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    fs::create_dir_all(dir).map_err(|e| PersistError::io(dir, "create directory", e))?;
    // Outermost first: each name is made durable before the one inside it.
    for created in missing.iter().rev() {
        let parent = created
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes the directory's entries (a file created, renamed or removed)
/// durable: on Linux a new file's name is only safe once its directory
/// has been synced, not just the file.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    #[cfg(test)]
    DIRS_SYNCED.with_borrow_mut(|synced| synced.push(dir.to_path_buf()));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PersistError::io(dir, "fsync directory", e))
}

#[cfg(test)]
thread_local! {
    /// The directories this thread synced, in order: a test checks that a
    /// created directory's parent is among them.
    static DIRS_SYNCED: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The names in `dir` of the form `<prefix><20 digits><suffix>`, as
/// (number, path) sorted by number. Other names are ignored, so stray
/// files (and set-aside ones) never confuse recovery.
pub(crate) fn list_numbered(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(u64, PathBuf)>, PersistError> {
    let entries = fs::read_dir(dir).map_err(|e| PersistError::io(dir, "list directory", e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PersistError::io(dir, "list directory", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = parse_numbered(name, prefix, suffix) {
            found.push((n, entry.path()));
        }
    }
    found.sort_unstable_by_key(|&(n, _)| n);
    Ok(found)
}

/// `<prefix><20-digit n><suffix>`: zero-padded so that names sort like
/// their numbers in a directory listing.
pub(crate) fn numbered_name(prefix: &str, n: u64, suffix: &str) -> String {
    format!("{prefix}{n:020}{suffix}")
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each directory `ensure_dir` creates has its parent synced, outer
    /// ones first; an existing directory syncs nothing.
    #[test]
    fn created_directories_are_synced_into_their_parents() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("a").join("b").join("data");
        DIRS_SYNCED.with_borrow_mut(Vec::clear);
        ensure_dir(&inner).unwrap();
        assert!(inner.is_dir());
        let synced = DIRS_SYNCED.with_borrow_mut(std::mem::take);
        let a = root.path().join("a");
        assert_eq!(synced, [root.path().to_path_buf(), a.clone(), a.join("b")]);
        ensure_dir(&inner).unwrap();
        assert!(DIRS_SYNCED.with_borrow(Vec::is_empty));
    }

    #[test]
    fn names_round_trip_and_strays_are_ignored() {
        let name = numbered_name("log-", 42, ".seg");
        assert_eq!(name, "log-00000000000000000042.seg");
        assert_eq!(parse_numbered(&name, "log-", ".seg"), Some(42));
        assert_eq!(parse_numbered("log-42.seg", "log-", ".seg"), None);
        assert_eq!(
            parse_numbered(&(name.clone() + ".tmp"), "log-", ".seg"),
            None
        );
        assert_eq!(
            parse_numbered("log-99999999999999999999.seg", "log-", ".seg"),
            None,
            "over u64::MAX"
        );
    }
}

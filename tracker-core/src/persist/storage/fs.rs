//! File-system steps both file kinds need, each mapped to a typed error.

use super::error::PersistError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Creates `dir` (and its parents) when missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), PersistError> {
    fs::create_dir_all(dir).map_err(|e| PersistError::io(dir, "create directory", e))
}

/// Makes the directory's entries (a file created, renamed or removed)
/// durable: on Linux a new file's name is only safe once its directory
/// has been synced, not just the file.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PersistError::io(dir, "fsync directory", e))
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

//! The privacy scan the browser tests end with: none of the client
//! addresses or user agents a test used may appear in its captured logs or
//! in any file of its data directory.

use std::path::{Path, PathBuf};

/// Panics naming the first `needle` found in `logs` or under `dir`.
pub fn assert_not_written(needles: &[&str], logs: &str, dir: &Path) {
    let files = files_under(dir);
    for needle in needles {
        assert!(!logs.contains(needle), "{needle} in the logs");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                file.display()
            );
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

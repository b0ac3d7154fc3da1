//! A real tmpfs for the storage-failure tests: read-only, or tiny so that
//! it fills up. Permission bits stop nothing when the tests run as root (as in
//! CI), a read-only or full file system does.
//!
//! Mounting needs root (or CAP_SYS_ADMIN). Where it fails, a test is
//! skipped with a message, except under `CI=true`, where it fails: CI must
//! never pass by silently skipping.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `"ro"`, `"size=64k"`), or
    /// returns `None` after saying why when this machine cannot (never
    /// under `CI=true`).
    pub fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(out) if out.status.success() => return Some(Tmpfs { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let msg = format!("cannot mount a tmpfs ({options}): {}", why.trim());
        if crate::under_ci() {
            panic!("{msg}; under CI=true this test must run, not skip");
        }
        eprintln!("SKIPPED: {msg}");
        None
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that a file still open cannot keep the mount around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

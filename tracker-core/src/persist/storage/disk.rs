//! The file operations the event log's writer performs, in one place so
//! that unit tests can make them fail (a disk that fills up after N bytes,
//! an fsync that fails, a directory where nothing can be created) even when
//! running as root, where permission bits stop nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
#[cfg(test)]
use std::sync::Arc;

#[cfg(test)]
use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// Performs file operations, or, in unit tests, fails them on demand.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk {
    #[cfg(test)]
    pub(crate) faults: Option<Arc<Faults>>,
}

/// Which operations fail, for unit tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Bytes that may still be written; past them a write writes what fits
    /// and fails with `ENOSPC`, as a full disk does. `None`: unlimited.
    pub(crate) write_budget: Mutex<Option<u64>>,
    /// Every fsync fails with `EIO`.
    pub(crate) fail_sync: AtomicBool,
    /// Creating a file fails with `EROFS`.
    pub(crate) fail_create: AtomicBool,
    /// Changing a file's length fails with `EIO`.
    pub(crate) fail_set_len: AtomicBool,
    /// While true, an fsync blocks (after counting itself in
    /// `syncs_started`) until it is set false again and `sync_gate_cv`
    /// notified: so a test can look at the log while a sync is under way.
    pub(crate) hold_sync: Mutex<bool>,
    pub(crate) sync_gate_cv: Condvar,
    pub(crate) syncs_started: AtomicU64,
}

#[cfg(test)]
impl Faults {
    /// Lets held fsyncs (and later ones) through.
    pub(crate) fn release_syncs(&self) {
        *crate::sync::lock(&self.hold_sync) = false;
        self.sync_gate_cv.notify_all();
    }
}

impl Disk {
    /// Creates a file that must not exist yet.
    pub(crate) fn create_new(&self, path: &Path) -> io::Result<File> {
        #[cfg(test)]
        if let Some(f) = &self.faults
            && f.fail_create.load(Ordering::SeqCst)
        {
            return Err(io::Error::from_raw_os_error(30)); // EROFS
        }
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    /// Writes all of `bytes` at offset `at` of the file (`pwrite`: the
    /// log's writer keeps the offsets itself, since the file may extend
    /// past its last frame; see `Writer::preallocate`).
    pub(crate) fn write_all_at(&self, file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(f) = &self.faults {
            let mut budget = crate::sync::lock(&f.write_budget);
            if let Some(left) = budget.as_mut() {
                let fits = (*left).min(bytes.len() as u64) as usize;
                *left -= fits as u64;
                pwrite_all(file, &bytes[..fits], at)?;
                if fits < bytes.len() {
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
                return Ok(());
            }
        }
        pwrite_all(file, bytes, at)
    }

    /// Cuts (or extends) the file to `len` bytes.
    pub(crate) fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(f) = &self.faults
            && f.fail_set_len.load(Ordering::SeqCst)
        {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        file.set_len(len)
    }

    /// Writes zero bytes over `from..to` of the file.
    pub(crate) fn write_zeros(&self, file: &File, from: u64, to: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            self.write_all_at(file, &ZEROS[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Makes the file's data durable (`fdatasync`: the size is data too;
    /// other metadata is not needed to read the log back).
    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if let Some(f) = &self.faults
            && f.fail_sync.load(Ordering::SeqCst)
        {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        #[cfg(test)]
        if let Some(f) = &self.faults {
            f.syncs_started.fetch_add(1, Ordering::SeqCst);
            let mut held = crate::sync::lock(&f.hold_sync);
            while *held {
                held = crate::sync::wait(&f.sync_gate_cv, held);
            }
        }
        file.sync_data()
    }
}

#[cfg(unix)]
fn pwrite_all(file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

/// Elsewhere a seek and a write: only the writer thread writes the file.
#[cfg(not(unix))]
fn pwrite_all(mut file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(at))?;
    file.write_all(bytes)
}

//! The synchronisation primitives the core is built on, in one place.
//!
//! Every lock in the crate comes from here, so a test build can swap in an
//! instrumented or model-checked implementation without touching the data
//! structures. Lock poisoning is deliberately ignored: no code path in this
//! crate panics while holding a guard (all invariants are restored before
//! any call that could fail), so a poisoned lock still guards consistent
//! data and refusing to serve it would turn one bug into an outage.

pub(crate) use std::sync::RwLock;
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

/// Takes a shared lock, recovering from poisoning (see the module docs).
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes an exclusive lock, recovering from poisoning (see the module docs).
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Aligns its content to 128 bytes so that two stripes' locks never share a
/// cache line (nor the adjacent line that x86 prefetches in pairs).
///
/// Written here rather than taken from `crossbeam-utils`: it is one
/// attribute, and the crate would be our only reason to depend on it.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

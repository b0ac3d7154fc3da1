//! The synchronisation primitives the core is built on, in one place.
//!
//! Every lock, condition variable and shared atomic of the crate comes from
//! here, so that a build with the `shuttle` feature swaps them all for
//! [shuttle]'s, whose scheduler drives the threads of a check through
//! chosen interleavings, reproducibly (`tracker/shuttle_tests.rs`). The
//! data structures never name `std::sync` locks themselves. (`Arc`, and the
//! channel and thread of `background.rs`, are not synchronisation of shared
//! data and stay `std`'s.)
//!
//! Lock poisoning is deliberately ignored: no code path in this crate
//! panics while holding a guard (all invariants are restored before any
//! call that could fail), so a poisoned lock still guards consistent data
//! and refusing to serve it would turn one bug into an outage.
//!
//! [shuttle]: https://docs.rs/shuttle

use std::sync::PoisonError;
use std::time::Duration;

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLockReadGuard};
#[cfg(not(any(feature = "shuttle", feature = "lock-stats")))]
pub(crate) use std::sync::{RwLock, RwLockWriteGuard};
// With `lock-stats` (and not `shuttle`, which has its own locks), the
// reader-writer locks count their takes, waits and hold times.
#[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
pub(crate) use crate::lock_stats::{StatsLock as RwLock, StatsWriteGuard as RwLockWriteGuard};

/// Takes a shared lock, recovering from poisoning (see the module docs).
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    #[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
    return lock.read();
    #[cfg(not(all(feature = "lock-stats", not(feature = "shuttle"))))]
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes an exclusive lock, recovering from poisoning (see the module docs).
/// A held lock is retried for a while (see [`spin`](crate::backoff::spin))
/// before the thread blocks.
#[inline]
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    #[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
    return lock.write();
    #[cfg(not(any(feature = "lock-stats", feature = "shuttle")))]
    if let Some(guard) = try_write(lock) {
        return guard;
    }
    #[cfg(not(any(feature = "lock-stats", feature = "shuttle")))]
    return write_contended(lock);
    #[cfg(feature = "shuttle")]
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// [`write`] of a lock found held: out of line, so that the uncontended
/// take stays a compare-and-swap inlined in the record path.
#[cfg(not(any(feature = "lock-stats", feature = "shuttle")))]
#[cold]
#[inline(never)]
fn write_contended<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    crate::backoff::write(lock)
}

/// Takes an exclusive lock if no one holds it now (`None` otherwise),
/// recovering from poisoning (see the module docs).
#[inline]
pub(crate) fn try_write<T>(lock: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    #[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
    return lock.try_write();
    #[cfg(not(all(feature = "lock-stats", not(feature = "shuttle"))))]
    match lock.try_write() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Takes a mutex, recovering from poisoning (see the module docs).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar`, recovering from poisoning.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` for at most `timeout`, recovering from poisoning.
/// Returns the guard and whether the wait timed out.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, bool) {
    let (guard, result) = condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(PoisonError::into_inner);
    (guard, result.timed_out())
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

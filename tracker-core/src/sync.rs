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
/// A held lock is retried for a while (see [`spin`]) before the thread
/// blocks.
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
    spin(|| try_write(lock)).unwrap_or_else(|| lock.write().unwrap_or_else(PoisonError::into_inner))
}

/// Pauses (x86 `PAUSE`, about 10 ns on the machine of docs/BENCHMARKS.md)
/// after the `n`-th failed try of [`spin`]: doubling from 1 to 16, then 16
/// each (so a release is seen within about 160 ns), 1,551 in all.
#[cfg(not(feature = "shuttle"))]
const fn spin_pauses(n: u32) -> u32 {
    if n < 4 { 1 << n } else { 16 }
}

/// Failed tries [`spin`] makes before giving up: with [`spin_pauses`],
/// about 16 µs of pausing.
#[cfg(not(feature = "shuttle"))]
const SPIN_TRIES: u32 = 100;

/// Calls `try_take` until it gives a guard, pausing longer between tries
/// (exponential backoff, so that a spinning thread does not keep taking
/// the lock's cache line from its holder), for about 16 µs; `None` if the
/// lock is still held then.
///
/// Why it spins this long before blocking (issue 18): a record holds its
/// stripe's write lock for about 0.3–1 µs and nearly all of its time is
/// under it, so two threads on 8 stripes find a stripe held on about one
/// take in ten. `std`'s lock spins only about 100 pauses (~1 µs here) and
/// then sleeps on a futex, and a sleep and wake-up cost 16–64 µs on the
/// benchmark machine (a VM): the scaling bench measured half of the
/// waiting time in the few waits that slept. Almost every hold ends
/// within 16 µs (p99.9 ≤ 8 µs); a holder preempted by the scheduler does
/// not, and then the waiter sleeps as before, after wasting 16 µs.
#[cfg(not(feature = "shuttle"))]
#[inline]
pub(crate) fn spin<G>(mut try_take: impl FnMut() -> Option<G>) -> Option<G> {
    for n in 0..SPIN_TRIES {
        if let Some(guard) = try_take() {
            return Some(guard);
        }
        for _ in 0..spin_pauses(n) {
            std::hint::spin_loop();
        }
    }
    try_take()
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

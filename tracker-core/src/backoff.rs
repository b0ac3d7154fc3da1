//! Waiting for a held stripe lock: retries with backoff, then retries
//! yielding the core, before the thread sleeps. Used by `sync::write` and
//! by the `lock-stats` lock alike (a module of its own so that neither
//! imports the other's).

use std::sync::{PoisonError, RwLock, RwLockWriteGuard, TryLockError};

/// Pauses (x86 `PAUSE`, about 10 ns on the machine of docs/BENCHMARKS.md)
/// after the `n`-th failed try of [`spin`]: doubling from 1 to 16, then 16
/// each (so a release is seen within about 160 ns), 1,551 in all.
const fn spin_pauses(n: u32) -> u32 {
    if n < 4 { 1 << n } else { 16 }
}

/// Failed tries [`spin`] makes before giving up: with [`spin_pauses`],
/// about 16 µs of pausing.
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
/// within 16 µs (p99.9 ≤ 8 µs); for the others the waiter goes on
/// [`yielding`].
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

/// Takes `lock`'s write lock: at once if it is free, else retried as
/// [`spin`] does, and then by blocking; poisoning ignored (see `sync`).
/// The std lock under both `sync::write` and the `lock-stats` lock.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    spin(|| try_write(lock))
        .or_else(|| yielding(|| try_write(lock)))
        .unwrap_or_else(|| lock.write().unwrap_or_else(PoisonError::into_inner))
}

/// Tries [`yielding`] makes before giving up: on an idle core a yield
/// returns in about 0.5 µs (measured on the machine of
/// docs/BENCHMARKS.md), so about 0.5 ms in all, longer than the holds
/// that outlast the spin (a page table's growth, 32–512 µs).
const YIELD_TRIES: u32 = 1_000;

/// Calls `try_take` after yielding the core ([`std::thread::yield_now`]),
/// [`YIELD_TRIES`] times at most; `None` if the lock is still held then.
///
/// Why, after [`spin`] and before sleeping (issue 18): a waiter that
/// sleeps on the lock's futex costs twice, its own wake-up (16–64 µs on
/// the benchmark VM) and a wake call in its holder's unlock, and the
/// scaling bench's two threads still slept 0.4–0.7 times per 1,000 events
/// behind the holds longer than the spin. A yield costs a system call and
/// gives the core to whatever else is runnable, the lock's holder if it
/// was descheduled among them, so a busy machine loses no more than with
/// a sleep; on an idle one the waiter takes the lock as soon as it is
/// free. A holder that stays away longer (descheduled for a time slice)
/// still finds the waiter asleep.
#[cold]
fn yielding<G>(mut try_take: impl FnMut() -> Option<G>) -> Option<G> {
    for _ in 0..YIELD_TRIES {
        std::thread::yield_now();
        if let Some(guard) = try_take() {
            return Some(guard);
        }
    }
    None
}

/// `lock`'s write lock if no one holds it now, poisoning ignored.
#[inline]
pub(crate) fn try_write<T>(lock: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match lock.try_write() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock freed while spinning or yielding is taken; one never freed
    /// gives up after the tries, so that the caller sleeps instead.
    #[test]
    fn spins_until_taken_or_gives_up() {
        let mut tries = 0;
        assert_eq!(
            spin(|| {
                tries += 1;
                (tries == 5).then_some("guard")
            }),
            Some("guard")
        );
        assert_eq!(tries, 5);
        let mut tries = 0;
        assert_eq!(
            spin(|| {
                tries += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(tries, SPIN_TRIES + 1);
        let mut tries = 0;
        assert_eq!(
            yielding(|| {
                tries += 1;
                (tries == 3).then_some("guard")
            }),
            Some("guard")
        );
        let mut tries = 0;
        assert_eq!(
            yielding(|| {
                tries += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(tries, YIELD_TRIES);
        let pauses: u32 = (0..SPIN_TRIES).map(spin_pauses).sum();
        assert!((1_000..=2_000).contains(&pauses), "{pauses} pauses");
    }
}

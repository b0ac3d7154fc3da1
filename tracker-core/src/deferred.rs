//! Frees of large allocations moved out of a stripe's write lock.
//!
//! Giving a buffer of megabytes back to the system (`munmap`) takes about
//! a millisecond: freeing a large table's old allocation was 0.8–1.3 ms of
//! the 1.5–3.6 ms sweep step that moves its survivors into a smaller one
//! (docs/BENCHMARKS.md, "A large page past its peak"). So a sweep step
//! opens a [`Deferring`] scope on its thread before it takes the stripe's
//! lock and closes it once the lock is released. While a scope is open,
//! [`defer`] keeps a large allocation it is given in a list of the
//! thread's, and closing the scope frees the list, with no lock held;
//! otherwise `defer` drops at once. The budget has let go of the bytes
//! already: until the scope closes the heap holds that much more than the
//! budget counts, for one sweep step at most.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

/// Allocations smaller than this are freed in place: glibc serves them
/// from its heap, where a free is a few list operations, not a `munmap`.
pub(crate) const DEFER_FROM: usize = 256 * 1024;

thread_local! {
    /// How many scopes are open on this thread.
    static OPEN: Cell<u32> = const { Cell::new(0) };
    /// What [`defer`] kept while a scope was open.
    static KEPT: RefCell<Vec<Box<dyn Send>>> = const { RefCell::new(Vec::new()) };
}

/// While alive, [`defer`] on this thread keeps what it is given; dropping
/// the last one open frees it. Open it before taking a lock and drop it
/// after the guard. Not `Send`: it belongs to the thread that opened it.
#[must_use = "the scope closes, and frees what it kept, when dropped"]
pub(crate) struct Deferring(PhantomData<*const ()>);

impl Deferring {
    /// Opens a scope on this thread.
    pub(crate) fn open() -> Self {
        OPEN.with(|open| open.set(open.get() + 1));
        Deferring(PhantomData)
    }
}

impl Drop for Deferring {
    fn drop(&mut self) {
        let left = OPEN.with(|open| {
            let left = open.get() - 1;
            open.set(left);
            left
        });
        if left == 0 {
            // Out of the cell first, so that no borrow is held while the
            // values drop; the emptied list goes back for the next scope.
            let mut kept = KEPT.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
            kept.clear();
            KEPT.with(|slot| {
                let mut slot = slot.borrow_mut();
                if slot.is_empty() {
                    *slot = kept;
                }
            });
        }
    }
}

/// Drops `value`, which holds `bytes` of heap, once this thread's scope
/// closes if one is open and `bytes` is at least [`DEFER_FROM`]; at once
/// otherwise.
pub(crate) fn defer<T: Send + 'static>(value: T, bytes: usize) {
    if bytes >= DEFER_FROM && OPEN.with(Cell::get) > 0 {
        KEPT.with(|kept| kept.borrow_mut().push(Box::new(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_large_value_waits_for_the_outermost_scope() {
        let drops = Arc::new(AtomicUsize::new(0));
        let outer = Deferring::open();
        let inner = Deferring::open();
        defer(Counted(drops.clone()), DEFER_FROM);
        drop(inner);
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the outer scope is open");
        drop(outer);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // The next scope starts empty.
        drop(Deferring::open());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn small_values_and_values_outside_a_scope_drop_at_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        defer(Counted(drops.clone()), DEFER_FROM);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "no scope open");
        let scope = Deferring::open();
        defer(Counted(drops.clone()), DEFER_FROM - 1);
        assert_eq!(drops.load(Ordering::SeqCst), 2, "small");
        drop(scope);
    }

    #[test]
    fn scopes_are_per_thread() {
        let drops = Arc::new(AtomicUsize::new(0));
        let _scope = Deferring::open();
        let other = drops.clone();
        std::thread::spawn(move || defer(Counted(other), DEFER_FROM))
            .join()
            .unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "no scope on that thread");
    }
}

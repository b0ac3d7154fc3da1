//! [`Append`]: the completion handle of one append to the event log, which
//! a future can await or a thread can block on.
//!
//! Written here rather than taken from an async runtime: the core must not
//! depend on one (a `std::future::Future` driven by a `Waker` works under
//! any), and a blocking caller needs the same handle without a runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::error::PersistError;
use super::lsn::Lsn;
use crate::sync::{self, Condvar, Mutex, lock};

/// One group of appends, written (and synced) together by the log's
/// writer thread. Each group has its own lock and wake-ups, so finishing
/// one wakes exactly its appenders, never those of the next group.
///
/// # Waking a group's futures
///
/// Whoever runs first wakes the rest. The writer wakes the futures one at
/// a time, and any future of the group that is polled (or dropped) after
/// the outcome is known takes all the wakers still left and wakes them
/// itself. Why: waking an async task from the writer thread wakes its
/// runtime's worker if that worker is parked, and when the worker shares
/// a CPU with the writer the scheduler switches to it at once; the worker
/// ran that one task, found nothing else ready, parked again, and the
/// writer's next wake started over. Measured with the tracker-http server
/// pinned to one CPU, 64 connections: 27 such round trips per group of
/// about 57 (an `eventfd` write each, 30 context switches per group on
/// the writer). Now the first wake runs the worker, whose first poll
/// wakes the others from its own thread, where a wake only queues the
/// task. The writer still wakes everything it finds left, so no future
/// depends on another one being polled.
#[derive(Debug, Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    /// Blocking waiters of this group only.
    done: Condvar,
}

#[derive(Debug, Default)]
struct GroupState {
    /// Set once, when the group is written (and synced) or failed.
    outcome: Option<Result<(), PersistError>>,
    /// Appenders yet to collect a failure: the last gets the original
    /// error (with its OS error code), the others a copy.
    uncollected: usize,
    /// Futures waiting for the outcome; once it is set, those not woken
    /// yet (see "Waking a group's futures"), which the first future polled
    /// takes and wakes.
    wakers: Vec<Waker>,
    /// Whether a thread is blocked on `done`.
    blocked: bool,
}

impl Group {
    /// Sets how many appenders joined (by the writer, when it closes the
    /// group, before any outcome exists).
    pub(crate) fn close(&self, joined: usize) {
        lock(&self.state).uncollected = joined;
    }

    /// Publishes the outcome and wakes this group's waiters: the blocked
    /// threads at once, the futures one by one unless a woken one takes
    /// over (see "Waking a group's futures").
    pub(crate) fn finish(&self, outcome: Result<(), PersistError>) {
        let mut st = lock(&self.state);
        st.outcome = Some(outcome);
        let blocked = st.blocked;
        let mut next = st.wakers.pop();
        drop(st);
        if blocked {
            self.done.notify_all();
        }
        while let Some(waker) = next {
            waker.wake();
            next = lock(&self.state).wakers.pop();
        }
    }

    fn collect(st: &mut GroupState) -> Option<Result<(), PersistError>> {
        match st.outcome.as_ref()? {
            Ok(()) => Some(Ok(())),
            Err(e) => {
                st.uncollected = st.uncollected.saturating_sub(1);
                if st.uncollected == 0 {
                    // The last appender takes the original error.
                    st.outcome.take().map(|o| o.and(Ok(())))
                } else {
                    Some(Err(e.duplicate()))
                }
            }
        }
    }
}

/// The pending result of an append to an [`EventLog`](super::EventLog):
/// the position of its first event, once it is as durable as the log's
/// [`FsyncPolicy`](super::FsyncPolicy) promises, or the error that
/// stopped it.
///
/// Await it (it is a [`Future`], driven by a [`Waker`], so it works under
/// any async runtime and holds no thread while it waits), or block on it
/// with [`wait`](Self::wait). Dropping it does not cancel the append.
///
/// ```
/// use tracker_core::persist::{EventLog, LogEvent, LogOptions};
///
/// let dir = tempfile::tempdir()?;
/// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
/// let event = LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/" };
/// let pending = log.submit(std::slice::from_ref(&event));
/// let lsn = pending.wait()?; // or `pending.await` in async code
/// assert!(lsn < log.end());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "an append is acknowledged only once this completes"]
pub struct Append {
    state: AppendState,
}

#[derive(Debug)]
enum AppendState {
    Waiting {
        group: Arc<Group>,
        first: Lsn,
        /// Where this future's waker sits in the group's list.
        slot: Option<usize>,
    },
    Ready(Option<Result<Lsn, PersistError>>),
}

impl Append {
    pub(crate) fn waiting(group: Arc<Group>, first: Lsn) -> Self {
        Append {
            state: AppendState::Waiting {
                group,
                first,
                slot: None,
            },
        }
    }

    pub(crate) fn ready(result: Result<Lsn, PersistError>) -> Self {
        Append {
            state: AppendState::Ready(Some(result)),
        }
    }

    /// Blocks the calling thread until the append is done.
    pub fn wait(self) -> Result<Lsn, PersistError> {
        match self.state {
            AppendState::Ready(result) => result.unwrap_or_else(completed_twice),
            AppendState::Waiting { group, first, .. } => {
                let mut st = lock(&group.state);
                loop {
                    if let Some(outcome) = Group::collect(&mut st) {
                        return outcome.map(|()| first);
                    }
                    st.blocked = true;
                    st = sync::wait(&group.done, st);
                }
            }
        }
    }

    /// Whether the outcome is known (then [`wait`](Self::wait) does not
    /// block).
    pub fn is_done(&self) -> bool {
        match &self.state {
            AppendState::Ready(_) => true,
            AppendState::Waiting { group, .. } => lock(&group.state).outcome.is_some(),
        }
    }
}

/// What a finished append yields if asked again (`Future` forbids it;
/// an error rather than a panic all the same).
fn completed_twice() -> Result<Lsn, PersistError> {
    Err(PersistError::Failed {
        cause: "an append was awaited after it completed".into(),
    })
}

impl Future for Append {
    type Output = Result<Lsn, PersistError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            AppendState::Ready(result) => {
                Poll::Ready(result.take().unwrap_or_else(completed_twice))
            }
            AppendState::Waiting { group, first, slot } => {
                let mut st = lock(&group.state);
                if let Some(outcome) = Group::collect(&mut st) {
                    let result = outcome.map(|()| *first);
                    // Woken outside the lock: a waker may run anything.
                    let rest = std::mem::take(&mut st.wakers);
                    drop(st);
                    for waker in rest {
                        waker.wake();
                    }
                    self.state = AppendState::Ready(None);
                    return Poll::Ready(result);
                }
                match slot {
                    Some(i) if !st.wakers[*i].will_wake(cx.waker()) => {
                        st.wakers[*i] = cx.waker().clone();
                    }
                    Some(_) => {}
                    None => {
                        *slot = Some(st.wakers.len());
                        st.wakers.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wakes; the first may run `on_wake` (a future polled
    /// from inside the wake, as a runtime's worker would).
    struct Probe {
        wakes: AtomicUsize,
        on_wake: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Wake for Probe {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = lock(&self.on_wake).take() {
                f();
            }
        }
    }

    fn probe() -> Arc<Probe> {
        Arc::new(Probe {
            wakes: AtomicUsize::new(0),
            on_wake: Mutex::new(None),
        })
    }

    fn pending(group: &Arc<Group>, probe: &Arc<Probe>) -> Pin<Box<Append>> {
        let mut append = Box::pin(Append::waiting(Arc::clone(group), Lsn(7)));
        let waker = Waker::from(Arc::clone(probe));
        let polled = append.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        append
    }

    #[test]
    fn the_writer_wakes_every_future_once_when_none_is_polled() {
        let group = Arc::new(Group::default());
        let probes: Vec<_> = (0..5).map(|_| probe()).collect();
        let _appends: Vec<_> = probes.iter().map(|p| pending(&group, p)).collect();
        group.close(5);
        group.finish(Ok(()));
        for p in &probes {
            assert_eq!(p.wakes.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn the_first_future_polled_wakes_the_rest_once() {
        let group = Arc::new(Group::default());
        let probes: Vec<_> = (0..4).map(|_| probe()).collect();
        let mut appends: Vec<_> = probes.iter().map(|p| pending(&group, p)).collect();
        // The writer wakes the last registered first; its wake polls the
        // first future, which must take and wake the other two itself.
        let first = appends.remove(0);
        let polled = Arc::new(Mutex::new(None));
        let out = Arc::clone(&polled);
        *lock(&probes[3].on_wake) = Some(Box::new(move || {
            let mut first = first;
            let result = first.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            *lock(&out) = Some(result);
        }));
        group.close(4);
        group.finish(Ok(()));
        assert!(matches!(*lock(&polled), Some(Poll::Ready(Ok(Lsn(7))))));
        let wakes: Vec<_> = probes
            .iter()
            .map(|p| p.wakes.load(Ordering::SeqCst))
            .collect();
        // The first future's own waker is woken too (harmless: its task
        // finds the future done).
        assert_eq!(wakes, [1, 1, 1, 1]);
        for append in appends {
            assert!(matches!(Pin::into_inner(append).wait(), Ok(Lsn(7))));
        }
    }
}

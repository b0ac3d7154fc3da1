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
    /// Futures waiting for the outcome.
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

    /// Publishes the outcome and wakes this group's waiters.
    pub(crate) fn finish(&self, outcome: Result<(), PersistError>) {
        let mut st = lock(&self.state);
        st.outcome = Some(outcome);
        let wakers = std::mem::take(&mut st.wakers);
        let blocked = st.blocked;
        drop(st);
        if blocked {
            self.done.notify_all();
        }
        for waker in wakers {
            waker.wake();
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
                    drop(st);
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

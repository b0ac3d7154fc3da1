//! [`Periodic`]: a named thread that calls a function on a timer for as
//! long as its target lives and its handle is kept.
//!
//! The background jobs of the core (the expiry [`Sweeper`](crate::Sweeper)
//! and the [`Snapshotter`](crate::persist::Snapshotter)) share it. The
//! thread holds only a weak reference, so it never keeps its target alive;
//! dropping the handle stops and joins it, at once rather than after the
//! current wait, because the wait is on a channel the drop closes.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The handle of a running periodic thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Periodic {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts thread `name`, which calls `tick` on `target` every `every`
    /// until the handle is dropped or `target` is. If the thread cannot be
    /// spawned (the OS is out of threads), nothing runs: the jobs are
    /// housekeeping whose absence costs memory or replay time, never data.
    pub(crate) fn spawn<T, F>(name: &str, every: Duration, target: &Arc<T>, mut tick: F) -> Self
    where
        T: Send + Sync + 'static,
        F: FnMut(&T) + Send + 'static,
    {
        let target: Weak<T> = Arc::downgrade(target);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // A message or a closed channel both mean stop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let Some(target) = target.upgrade() else {
                        return;
                    };
                    tick(&target);
                }
            })
            .ok();
        Periodic {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn ticks_until_dropped_and_never_keeps_the_target() {
        let count = Arc::new(AtomicUsize::new(0));
        let periodic = Periodic::spawn("test-periodic", Duration::from_millis(1), &count, |c| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        while count.load(Ordering::Relaxed) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(periodic);
        let after = count.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(count.load(Ordering::Relaxed), after, "stopped on drop");
        assert_eq!(Arc::strong_count(&count), 1);
    }

    #[test]
    fn stops_when_the_target_is_gone() {
        let target = Arc::new(());
        let periodic = Periodic::spawn("test-periodic", Duration::from_millis(1), &target, |_| {});
        drop(target);
        // Joins promptly: the thread saw the target gone, or the drop
        // closed its channel.
        drop(periodic);
    }
}

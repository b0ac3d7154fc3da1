//! The shutdown signal shared by the server loop and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Set once, when the service starts draining; cheap to clone and check.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set first: `/readyz` answers 503 so load balancers stop sending.
    draining: AtomicBool,
    /// Set after the drain delay: the listener stops accepting.
    started: AtomicBool,
    notify: Notify,
    /// Open [`Hold`]s.
    holds: AtomicUsize,
    /// Notified when the last hold is released.
    released: Notify,
}

/// Work that the shutdown waits for before the final snapshot (see
/// [`Shutdown::hold`]), released when dropped.
#[derive(Debug)]
pub struct Hold(Arc<Inner>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.holds.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.released.notify_waiters();
        }
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Announces the shutdown: readiness turns false while the service
    /// still accepts requests, so that load balancers can stop sending
    /// before the listener closes.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the service should be taken out of rotation (draining or
    /// shutting down).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst) || self.is_triggered()
    }

    /// Starts the shutdown; later calls do nothing.
    pub fn trigger(&self) {
        if !self.inner.started.swap(true, Ordering::SeqCst) {
            self.inner.notify.notify_waiters();
        }
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has started.
    pub async fn triggered(&self) {
        let notified = self.inner.notify.notified();
        tokio::pin!(notified);
        // Register interest before checking the flag, so a trigger between
        // the check and the wait is not missed.
        notified.as_mut().enable();
        if self.is_triggered() {
            return;
        }
        notified.await;
    }

    /// Holds the shutdown back, before its final snapshot, until the
    /// [`Hold`] is dropped: for work outside the connection tasks it
    /// drains (a WebSocket's, which must finish recording its message).
    pub fn hold(&self) -> Hold {
        self.inner.holds.fetch_add(1, Ordering::SeqCst);
        Hold(self.inner.clone())
    }

    /// Resolves once no [`Hold`] is open.
    pub async fn released(&self) {
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            // Registered before the count is read, as in `triggered`.
            released.as_mut().enable();
            if self.inner.holds.load(Ordering::SeqCst) == 0 {
                return;
            }
            released.await;
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_the_trigger_wake() {
        let shutdown = Shutdown::new();
        let early = tokio::spawn({
            let s = shutdown.clone();
            async move { s.triggered().await }
        });
        tokio::task::yield_now().await;
        shutdown.trigger();
        early.await.unwrap();
        shutdown.triggered().await;
        assert!(shutdown.is_triggered());
    }

    #[tokio::test]
    async fn released_waits_for_every_hold() {
        let shutdown = Shutdown::new();
        shutdown.released().await;
        let holds = [shutdown.hold(), shutdown.hold()];
        let released = tokio::spawn({
            let s = shutdown.clone();
            async move { s.released().await }
        });
        let [first, second] = holds;
        drop(first);
        tokio::task::yield_now().await;
        assert!(!released.is_finished(), "one hold is still open");
        drop(second);
        released.await.unwrap();
    }

    #[test]
    fn draining_comes_before_the_trigger() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_draining());
        shutdown.drain();
        assert!(shutdown.is_draining());
        assert!(!shutdown.is_triggered());
        let triggered_only = Shutdown::new();
        triggered_only.trigger();
        assert!(triggered_only.is_draining());
    }
}

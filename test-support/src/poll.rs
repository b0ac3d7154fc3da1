//! Waiting for a condition with a deadline, instead of sleeping a fixed
//! time and hoping: on a loaded machine a fixed sleep is either too short
//! (the test fails at random) or too long (every run pays for it).
//!
//! Each helper checks first, then every [`INTERVAL`] until the condition
//! holds, and panics naming `what` once `limit` has passed.

use std::future::Future;
use std::time::{Duration, Instant};

/// Time between two checks.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// Waits until `check` returns `Some`, and returns its value.
///
/// ```
/// use std::time::Duration;
/// let mut tries = 0;
/// let n = test_support::poll::until_some(Duration::from_secs(5), "the third try", || {
///     tries += 1;
///     (tries == 3).then_some(tries)
/// });
/// assert_eq!(n, 3);
/// ```
pub fn until_some<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(INTERVAL);
    }
}

/// Waits until `condition` holds.
pub fn until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    until_some(limit, what, || condition().then_some(()));
}

/// [`until_some`] for async tests: sleeps on the runtime's timer, so the
/// tasks being waited for keep running.
pub async fn until_some_async<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until_ok_async(limit, what, || {
        let next = check();
        async { next.await.ok_or("none yet") }
    })
    .await
}

/// [`until_some_async`] for checks that say why they do not hold yet:
/// waits until `check` returns `Ok`, and on timeout panics with the last
/// `Err` (a status and body, say), not only `what`.
pub async fn until_ok_async<T, E, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        let why = match check().await {
            Ok(value) => return value,
            Err(why) => why,
        };
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; last: {why}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`until`] for async tests.
pub async fn until_async<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_some_async(limit, what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

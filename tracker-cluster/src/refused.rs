//! Stream events an owner refuses: counted by reason for the node's
//! metrics ([`Node::refused_events`](crate::Node::refused_events)), and
//! logged at warn at most once per [`WARN_EVERY`] with how many were
//! refused since the last warning, so that a flood of bad events cannot
//! fill the logs. Nothing of an event's content is logged (the stream is
//! a public interface: a foreign publisher's event may hold anything),
//! only its partition, stream sequence and reason.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two warnings about refused events.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A reason for an event that is not JSON or not an [`crate::EventV1`].
pub const MALFORMED: &str = "malformed";
/// A reason for an event of another [`crate::wire::EVENT_VERSION`].
pub const VERSION: &str = "version";
/// A reason for an event without a valid visitor hash.
pub const VISITOR_HASH: &str = "visitor_hash";

/// The refusals of one node, over every partition it owned.
#[derive(Debug, Default)]
pub(crate) struct Refused(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    totals: BTreeMap<&'static str, u64>,
    /// Refusals since the last warning.
    unwarned: u64,
    last_warning: Option<Instant>,
}

impl Refused {
    /// Counts one refusal; warns if none was logged in the last
    /// [`WARN_EVERY`] before `now` (this event's partition, sequence and
    /// reason, and `refused`: the refusals of any reason since the
    /// previous warning, this one included), and says whether it did.
    pub(crate) fn count(
        &self,
        partition: u32,
        sequence: u64,
        reason: &'static str,
        now: Instant,
    ) -> bool {
        let refused = {
            let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *state.totals.entry(reason).or_default() += 1;
            state.unwarned += 1;
            if state
                .last_warning
                .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
            {
                return false;
            }
            state.last_warning = Some(now);
            std::mem::take(&mut state.unwarned)
        };
        tracing::warn!(
            partition,
            sequence,
            reason,
            refused,
            "stream events refused"
        );
        true
    }

    /// Refusals so far, by reason.
    pub(crate) fn totals(&self) -> Vec<(&'static str, u64)> {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.totals.iter().map(|(&r, &n)| (r, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_by_reason_and_warned_once_per_interval() {
        let refused = Refused::default();
        let start = Instant::now();
        let mut warnings = 0;
        for i in 0..10_000u32 {
            // 10,000 refusals over 25 s.
            let now = start + Duration::from_micros(2_500 * u64::from(i));
            let reason = if i % 4 == 0 { MALFORMED } else { "memory_full" };
            warnings += usize::from(refused.count(i % 7, u64::from(i), reason, now));
        }
        assert_eq!(warnings, 3, "at 0 s, 10 s and 20 s");
        assert_eq!(
            refused.totals(),
            [("malformed", 2_500), ("memory_full", 7_500)]
        );
    }
}

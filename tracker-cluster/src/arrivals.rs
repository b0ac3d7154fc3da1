//! Events a node counts where they arrive. A browser event dropped as a
//! bot's and an event that is not a page view never reach the stream, so
//! no partition owner sees them: each node answers a statistics question
//! with its own counts of them beside its partitions' figures, and the
//! asker adds up one count per node ([`Node::stats`](crate::Node::stats)).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node's counts of the events it took in and did not publish, by
/// name, since it started.
///
/// ```
/// use tracker_cluster::arrivals::Arrivals;
///
/// let mut sum = Arrivals::default();
/// sum.dropped.insert("crawler".into(), 2);
/// let mut other = Arrivals::default();
/// other.dropped.insert("crawler".into(), 3);
/// other.custom.insert("signup".into(), 1);
/// sum.add(&other);
/// assert_eq!(sum.dropped["crawler"], 5);
/// assert_eq!(sum.custom["signup"], 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrivals {
    /// Browser events dropped as bots', by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Events that are not page views, by name.
    pub custom: BTreeMap<String, u64>,
}

impl Arrivals {
    /// Adds `other`'s counts to these, name by name.
    pub fn add(&mut self, other: &Arrivals) {
        for (mine, theirs) in [
            (&mut self.dropped, &other.dropped),
            (&mut self.custom, &other.custom),
        ] {
            for (name, n) in theirs {
                let sum = mine.entry(name.clone()).or_default();
                *sum = sum.saturating_add(*n);
            }
        }
    }
}

/// Where a node reads its current [`Arrivals`] (the service's counters),
/// to answer statistics questions with.
///
/// ```
/// use tracker_cluster::arrivals::{ArrivalFeed, Arrivals};
///
/// let feed = ArrivalFeed::new(|| Arrivals::default());
/// assert_eq!(feed.read(), Arrivals::default());
/// ```
#[derive(Clone)]
pub struct ArrivalFeed(Arc<dyn Fn() -> Arrivals + Send + Sync>);

impl ArrivalFeed {
    /// A feed that calls `read` for the counts.
    pub fn new(read: impl Fn() -> Arrivals + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    /// The counts now.
    pub fn read(&self) -> Arrivals {
        (self.0)()
    }
}

impl fmt::Debug for ArrivalFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrivalFeed").finish_non_exhaustive()
    }
}

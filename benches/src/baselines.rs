//! The designs tracker is measured against, behind one trait with tracker
//! itself, so every bench runs the same code for each of them.
//!
//! The baselines are written the way a competent engineer would write them
//! in an afternoon (no deliberate handicaps): the naive map checks for a
//! present pair before allocating, and the hashed map takes its global lock
//! only for reading once a page exists.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError, RwLock};

use dashmap::DashMap;
use tracker_core::Tracker;

/// A structure that counts distinct visitors per page, shared by threads.
pub trait DistinctCounter: Sync {
    /// Short name used in bench ids and tables.
    const NAME: &'static str;

    /// A fresh, empty structure.
    fn empty() -> Self;

    /// Records that `visitor` visited `url`.
    fn record(&self, visitor: &str, url: &str);

    /// Distinct visitors of `url`.
    fn distinct(&self, url: &str) -> u64;

    /// Distinct (page, visitor) pairs held.
    fn pairs(&self) -> u64;
}

/// The library under test, with its default settings.
impl DistinctCounter for Tracker {
    const NAME: &'static str = "tracker";

    fn empty() -> Self {
        Tracker::builder()
            .build()
            .expect("default settings are valid")
    }

    fn record(&self, visitor: &str, url: &str) {
        // The workloads only hold valid events: an error is a bench bug.
        Tracker::record(self, visitor, url).expect("valid event");
    }

    fn distinct(&self, url: &str) -> u64 {
        Tracker::distinct(self, url).expect("valid URL").visitors
    }

    fn pairs(&self) -> u64 {
        self.stats().pairs
    }
}

/// The naive design: owned strings everywhere, one lock for everything.
#[derive(Debug, Default)]
pub struct NaiveMap {
    pages: RwLock<HashMap<String, HashSet<String>>>,
}

impl DistinctCounter for NaiveMap {
    const NAME: &'static str = "naive";

    fn empty() -> Self {
        Self::default()
    }

    fn record(&self, visitor: &str, url: &str) {
        let mut pages = self.pages.write().unwrap_or_else(PoisonError::into_inner);
        match pages.get_mut(url) {
            Some(visitors) => {
                if !visitors.contains(visitor) {
                    visitors.insert(visitor.to_owned());
                }
            }
            None => {
                pages.insert(url.to_owned(), HashSet::from([visitor.to_owned()]));
            }
        }
    }

    fn distinct(&self, url: &str) -> u64 {
        let pages = self.pages.read().unwrap_or_else(PoisonError::into_inner);
        pages.get(url).map_or(0, |v| v.len() as u64)
    }

    fn pairs(&self) -> u64 {
        let pages = self.pages.read().unwrap_or_else(PoisonError::into_inner);
        pages.values().map(|v| v.len() as u64).sum()
    }
}

/// The same keyed by 64-bit hashes of the URL and visitor strings (std's
/// SipHash, as a user would reach for), with a `Mutex` per page so that
/// writers of different pages only share the outer lock in read mode.
#[derive(Debug, Default)]
pub struct HashedMutexMap {
    hasher: RandomState,
    pages: RwLock<HashMap<u64, Mutex<HashSet<u64>>>>,
}

impl HashedMutexMap {
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }
}

impl DistinctCounter for HashedMutexMap {
    const NAME: &'static str = "hashed_mutex";

    fn empty() -> Self {
        Self::default()
    }

    fn record(&self, visitor: &str, url: &str) {
        let (page, visitor) = (self.hash(url), self.hash(visitor));
        {
            let pages = self.pages.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(visitors) = pages.get(&page) {
                visitors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(visitor);
                return;
            }
        }
        // A new page: the only case that needs the outer write lock.
        let mut pages = self.pages.write().unwrap_or_else(PoisonError::into_inner);
        pages
            .entry(page)
            .or_default()
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(visitor);
    }

    fn distinct(&self, url: &str) -> u64 {
        let page = self.hash(url);
        let pages = self.pages.read().unwrap_or_else(PoisonError::into_inner);
        pages.get(&page).map_or(0, |v| {
            v.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
        })
    }

    fn pairs(&self) -> u64 {
        let pages = self.pages.read().unwrap_or_else(PoisonError::into_inner);
        pages
            .values()
            .map(|v| v.lock().unwrap_or_else(PoisonError::into_inner).len() as u64)
            .sum()
    }
}

/// What many would pick off the shelf: `dashmap` (a sharded concurrent
/// map) from URL to a set of SipHashed visitor ids.
#[derive(Debug, Default)]
pub struct DashMapHashed {
    hasher: RandomState,
    pages: DashMap<String, HashSet<u64>>,
}

impl DistinctCounter for DashMapHashed {
    const NAME: &'static str = "dashmap";

    fn empty() -> Self {
        Self::default()
    }

    fn record(&self, visitor: &str, url: &str) {
        let visitor = self.hasher.hash_one(visitor);
        // `get_mut` first: `entry` would allocate the key on every event.
        if let Some(mut visitors) = self.pages.get_mut(url) {
            visitors.insert(visitor);
            return;
        }
        self.pages
            .entry(url.to_owned())
            .or_default()
            .insert(visitor);
    }

    fn distinct(&self, url: &str) -> u64 {
        self.pages.get(url).map_or(0, |v| v.len() as u64)
    }

    fn pairs(&self) -> u64 {
        self.pages.iter().map(|e| e.value().len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_like_a_set<C: DistinctCounter>() {
        let c = C::empty();
        for (v, u) in [("a", "/x"), ("b", "/x"), ("a", "/x"), ("a", "/y")] {
            c.record(v, u);
        }
        assert_eq!(
            (c.distinct("/x"), c.distinct("/y"), c.distinct("/z")),
            (2, 1, 0)
        );
        assert_eq!(c.pairs(), 3);
    }

    #[test]
    fn every_design_counts_alike() {
        counts_like_a_set::<Tracker>();
        counts_like_a_set::<NaiveMap>();
        counts_like_a_set::<HashedMutexMap>();
        counts_like_a_set::<DashMapHashed>();
    }
}

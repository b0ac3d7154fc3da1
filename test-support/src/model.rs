//! The obvious implementation of distinct counting, which the tracker and
//! the service must agree with in the tests.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Distinct visitors per page, as a map of sets: exact, unbounded, slow.
///
/// ```
/// let mut model = test_support::model::Distinct::<String>::default();
/// assert!(model.record("alice", "/a"));
/// assert!(!model.record("alice", "/a"));
/// model.record("bob", "/a");
/// model.record("bob", "/b");
/// assert_eq!(model.count("/a"), 2);
/// assert_eq!((model.pages(), model.pairs()), (2, 3));
/// assert_eq!(model.top(1), [("/a".to_string(), 2)]);
/// ```
#[derive(Debug, Clone)]
pub struct Distinct<V = String> {
    pages: HashMap<String, HashSet<V>>,
}

impl<V> Default for Distinct<V> {
    fn default() -> Self {
        Distinct {
            pages: HashMap::new(),
        }
    }
}

impl<V: Eq + Hash> Distinct<V> {
    /// Records a visit; whether the visitor is new to the page.
    pub fn record(&mut self, visitor: impl Into<V>, url: impl Into<String>) -> bool {
        self.pages
            .entry(url.into())
            .or_default()
            .insert(visitor.into())
    }

    /// The page's distinct visitors (0 for a page never recorded).
    pub fn count(&self, url: &str) -> u64 {
        self.pages.get(url).map_or(0, |v| v.len() as u64)
    }

    /// Whether the visitor was recorded on the page.
    pub fn contains(&self, url: &str, visitor: &V) -> bool {
        self.pages.get(url).is_some_and(|v| v.contains(visitor))
    }

    /// Pages recorded.
    pub fn pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// (page, visitor) pairs recorded.
    pub fn pairs(&self) -> u64 {
        self.pages.values().map(|v| v.len() as u64).sum()
    }

    /// Every page with its count.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.pages
            .iter()
            .map(|(url, v)| (url.clone(), v.len() as u64))
            .collect()
    }

    /// The `k` pages with the most visitors, ties by URL: the order the
    /// tracker's `top` promises.
    pub fn top(&self, k: usize) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self.counts().into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(k);
        rows
    }

    /// Keeps only the pages for which `keep(url, count)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, u64) -> bool) {
        self.pages.retain(|url, v| keep(url, v.len() as u64));
    }

    /// Forgets a page, as an eviction does.
    pub fn forget(&mut self, url: &str) {
        self.pages.remove(url);
    }
}

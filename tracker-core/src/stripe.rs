//! A stripe: one lock's share of the pages.
//!
//! # Locking design
//!
//! The tracker splits its pages over a power-of-two number of stripes by
//! bits 32.. of the URL's in-memory hash (hashbrown indexes buckets by the
//! low bits and tags them with the top seven, so the stripe choice leaves
//! both uniform within a stripe). Each stripe is a `std::sync::RwLock`
//! around a hashbrown table of [`Page`]s plus the stripe's counters,
//! padded to its own cache lines so that two cores writing neighbouring
//! stripes do not bounce one line between them.
//!
//! - `record` hashes and canonicalises outside any lock, then takes exactly
//!   one stripe's write lock for one table probe and one set insert.
//! - `distinct` takes one stripe's read lock for one probe.
//! - `stats` and `top` visit the stripes one at a time, holding one read
//!   lock at a time, so they never block ingest on more than one stripe.
//! - No code path holds two stripe locks at once, so there is no lock order
//!   to respect and no deadlock to fear.
//! - The only state shared by all stripes is the tracker's byte total, an
//!   atomic touched only when an allocation grows or shrinks (a new page or
//!   a set growing), never for a visitor already present.
//!
//! Readers and writers of one page contend on its stripe only: with the
//! default 4 stripes per core, two threads recording different pages meet
//! on the same lock with probability 1/stripes.

use hashbrown::HashTable;

use crate::page::Page;
use crate::report::{Distinct, Recorded};

#[derive(Debug, Default)]
pub(crate) struct Stripe {
    pages: HashTable<Page>,
    /// Distinct pairs held by this stripe's pages.
    pairs: u64,
    /// Heap bytes held: the table's allocation plus every page's own.
    bytes: usize,
}

impl Stripe {
    /// Records `visitor` on the page `url` if the stripe has that page;
    /// returns the outcome and how many heap bytes the stripe grew by (0
    /// unless the page's set grew), or `None` for an unknown page.
    #[inline]
    pub(crate) fn record_existing(
        &mut self,
        url: &str,
        url_hash: u64,
        visitor: u64,
        tick: u32,
    ) -> Option<(Recorded, usize)> {
        let page = self.pages.find_mut(url_hash, |p| *p.url == *url)?;
        page.last_recorded = page.last_recorded.max(tick);
        let before = page.visitors.heap_bytes();
        if !page.visitors.insert(visitor) {
            return Some((Recorded::Duplicate, 0));
        }
        let grown = page.visitors.heap_bytes() - before;
        self.pairs += 1;
        self.bytes += grown;
        Some((Recorded::New, grown))
    }

    /// Records `visitor` on the page `url`, creating the page if needed.
    pub(crate) fn record(
        &mut self,
        url: &str,
        url_hash: u64,
        visitor: u64,
        tick: u32,
    ) -> (Recorded, usize) {
        if let Some(done) = self.record_existing(url, url_hash, visitor, tick) {
            return done;
        }
        let table_before = self.pages.allocation_size();
        let mut page = Page::new(url, url_hash);
        page.last_recorded = tick;
        page.visitors.insert(visitor);
        let page_bytes = page.heap_bytes();
        self.pages.insert_unique(url_hash, page, |p| p.url_hash);
        let grown = self.pages.allocation_size() - table_before + page_bytes;
        self.pairs += 1;
        self.bytes += grown;
        (Recorded::New, grown)
    }

    /// The page's count, or `None` if the stripe does not have it.
    pub(crate) fn distinct(&self, url: &str, url_hash: u64) -> Option<Distinct> {
        let page = self.pages.find(url_hash, |p| *p.url == *url)?;
        Some(Distinct::exact(page.visitors.len() as u64))
    }

    pub(crate) fn pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.iter()
    }

    pub(crate) fn page_count(&self) -> usize {
        self.pages.len()
    }

    pub(crate) fn pairs(&self) -> u64 {
        self.pairs
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_matches_a_recount() {
        let mut stripe = Stripe::default();
        let mut reported = 0;
        for page in 0..50u64 {
            let url = format!("https://example.com/{page}");
            for visitor in 1..=page * 3 + 1 {
                reported += stripe
                    .record(&url, page.wrapping_mul(0x9E37_79B9_7F4A_7C15), visitor, 0)
                    .1;
            }
        }
        let recount: usize =
            stripe.pages.allocation_size() + stripe.pages().map(Page::heap_bytes).sum::<usize>();
        assert_eq!(stripe.bytes(), recount);
        assert_eq!(reported, recount);
        assert_eq!(stripe.pairs(), (0..50).map(|p| p * 3 + 1).sum::<u64>());
    }
}

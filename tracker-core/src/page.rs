//! One tracked page: its canonical URL and its visitors.

use crate::visitor_set::VisitorSet;

/// A page record, 64 bytes inline in its stripe's table.
#[derive(Debug)]
pub(crate) struct Page {
    /// The canonical URL, exactly sized.
    pub(crate) url: Box<str>,
    /// The URL's in-memory hash, kept so the table can grow without
    /// rehashing strings.
    pub(crate) url_hash: u64,
    pub(crate) visitors: VisitorSet,
    /// When the page was last recorded (seconds since the Unix epoch); the
    /// recency that eviction will rank pages by.
    pub(crate) last_recorded: u32,
}

impl Page {
    pub(crate) fn new(url: &str, url_hash: u64) -> Self {
        Self {
            url: url.into(),
            url_hash,
            visitors: VisitorSet::default(),
            last_recorded: 0,
        }
    }

    /// Heap bytes the page owns outside its table slot.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.url.len() + self.visitors.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::Page>(), 64);
    }
}

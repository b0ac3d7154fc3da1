//! One tracked page: its canonical URL and its visitors.

use crate::set::VisitorSet;

/// A page record, 40 bytes inline in its stripe's table. Its URL's hash is
/// not stored: hashbrown's tag byte already filters lookups, and the rare
/// table resize can rehash the URL.
#[derive(Debug)]
pub(crate) struct Page {
    /// The canonical URL, exactly sized.
    pub(crate) url: Box<str>,
    /// Its visitors, and when it was last recorded.
    pub(crate) visitors: VisitorSet,
}

impl Page {
    pub(crate) fn new(url: &str, tick: u32) -> Self {
        Self {
            url: url.into(),
            visitors: VisitorSet::new(tick),
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
    fn page_is_40_bytes() {
        assert_eq!(std::mem::size_of::<super::Page>(), 40);
    }
}

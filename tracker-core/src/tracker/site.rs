//! Sites and page listings: the distinct visitors of every page of one
//! host together, the top pages of a host, and every page, a page of
//! results at a time.
//!
//! A **site** is a host: a page belongs to the site of its canonical
//! URL's host, whatever its scheme and port (`http://example.com/` and
//! `https://example.com:8443/a` are both pages of `example.com`). Pages
//! recorded without a `scheme://host` (bare paths such as `/pricing`)
//! belong to no site. Site names are compared after trimming and ASCII
//! lowercasing, as hosts are canonicalised.
//!
//! A site's visitors are a **union**, never a sum of its pages' counts: a
//! visitor of two pages counts once. Exact pages contribute their hashes
//! to a transient buffer built for the query, bounded under a budget
//! (the crate docs' "Memory budget"; `union_hashes`).
//! Sketched pages are merged into one sketch (merging loses nothing),
//! into which the exact hashes then go, and the answer is an estimate.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::canonical_url::{origin_of, split_authority};
use crate::error::{Field, TrackerError};
use crate::report::{Distinct, PageCount};
use crate::set::page::Page;
use crate::set::union::Union;
use crate::sync;

use super::Tracker;

/// The longest site name: a DNS name's limit.
pub const MAX_SITE_LEN: usize = 253;

/// What [`Tracker::pages`] lists: pages of one site and/or with one URL
/// prefix, after a cursor, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Only pages of this site (see [`Tracker::site_distinct`]).
    pub site: Option<String>,
    /// Only pages whose canonical URL starts with this (its scheme and
    /// host read as a page URL's are, in any case); a prefix that
    /// starts with `/` is matched against the page's path (with its query)
    /// instead, so that `site` and `prefix: "/blog"` list a site's blog.
    pub prefix: Option<String>,
    /// Only pages after this one: the `next_cursor` of the previous page
    /// of results (or any page URL or path: the listing goes on in URL
    /// order after it; anything else is [`TrackerError::InvalidCursor`]).
    pub cursor: Option<String>,
    /// At most this many pages (at least 1 is listed).
    pub limit: usize,
}

/// One page of [`Tracker::pages`] results.
#[derive(Debug, Clone, PartialEq)]
pub struct PageList {
    /// The pages, by canonical URL ascending, each with its count.
    pub pages: Vec<PageCount>,
    /// The cursor for the next page of results; `None` on the last.
    pub next_cursor: Option<String>,
}

impl Tracker {
    /// The distinct visitors of every page of `site` together (a union:
    /// a visitor of several of its pages counts once; with a TTL, the
    /// live ones). Exact when every page of the site is; else an estimate
    /// with its relative standard error. An unknown site has 0.
    ///
    /// A site is a host: a page belongs to the site of its canonical
    /// URL's host, whatever its scheme and port; pages recorded as bare
    /// paths (`/pricing`) belong to none. `site` is compared after
    /// trimming and lowercasing (as page hosts are); a URL or `host:port` given in its
    /// place stands for its host; an empty one, or one longer than
    /// [`MAX_SITE_LEN`], is an error.
    ///
    /// Visits every page (one stripe lock at a time) and builds a set of
    /// the site's visitors: meant for dashboards, not for every request.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// tracker.record("alice", "https://example.com/")?;
    /// tracker.record("alice", "https://example.com/pricing")?;
    /// tracker.record("bob", "http://EXAMPLE.com:8080/docs")?;
    /// tracker.record("carol", "https://other.org/")?;
    /// let site = tracker.site_distinct("example.com")?;
    /// assert_eq!((site.visitors, site.exact), (2, true)); // alice once, bob
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn site_distinct(&self, site: &str) -> Result<Distinct, TrackerError> {
        let site = site_name(site)?;
        // Bounded, as a ranged site answer is (see `union_hashes`).
        let union = Union::counting(0..0, self.union_hashes);
        Ok(union
            .count_with(|union| self.gather_site_now(&site, union))
            .0)
    }

    /// Calls `f` on every page of `site` (as [`site_name`] gives it), one
    /// stripe's read lock at a time.
    pub(crate) fn for_site_pages(&self, site: &str, mut f: impl FnMut(&Page)) {
        for stripe in self.stripes.iter() {
            let stripe = sync::read(stripe);
            for page in stripe
                .pages()
                .filter(|page| host_of(&page.url) == Some(site))
            {
                f(page);
            }
        }
    }

    /// The `k` pages of `site` with the most distinct visitors, ordered as
    /// [`top`](Self::top) orders them.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// for (visitor, url) in [("a", "https://a.com/x"), ("b", "https://a.com/x"), ("a", "https://b.com/y")] {
    ///     tracker.record(visitor, url)?;
    /// }
    /// let top = tracker.top_of_site(5, "b.com")?;
    /// assert_eq!(top.len(), 1);
    /// assert_eq!(top[0].url, "https://b.com/y");
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn top_of_site(&self, k: usize, site: &str) -> Result<Vec<PageCount>, TrackerError> {
        let site = site_name(site)?;
        Ok(self.top_matching(k, |url| host_of(url) == Some(&*site)))
    }

    /// Every page, `query.limit` at a time, by canonical URL ascending,
    /// each with its distinct visitors (with a TTL, pages with no live
    /// visitor are left out). Pass each answer's `next_cursor` as the next
    /// query's `cursor` until it is `None`.
    ///
    /// The cursor is the last URL listed, and each listing continues with
    /// the URLs after it, so a page that exists from the first query to
    /// the last is listed exactly once however many events, new pages or
    /// evictions arrive meanwhile (pages added during the listing are
    /// listed if they sort after the cursor). Each query visits every page
    /// (one stripe lock at a time) and keeps the `limit` smallest URLs
    /// after the cursor: O(pages · log limit).
    ///
    /// ```
    /// use tracker_core::{PageQuery, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// for url in ["https://a.com/1", "https://a.com/2", "https://a.com/3", "https://b.com/"] {
    ///     tracker.record("v", url)?;
    /// }
    /// let mut query = PageQuery { site: Some("a.com".into()), limit: 2, ..PageQuery::default() };
    /// let first = tracker.pages(&query)?;
    /// assert_eq!(first.pages.len(), 2);
    /// query.cursor = first.next_cursor;
    /// let second = tracker.pages(&query)?;
    /// assert_eq!(second.pages[0].url, "https://a.com/3");
    /// assert_eq!(second.next_cursor, None);
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn pages(&self, query: &PageQuery) -> Result<PageList, TrackerError> {
        let site = query.site.as_deref().map(site_name).transpose()?;
        // Any position in URL order would do to continue after, but one
        // that no page can have is a client's mistake (a cursor mangled,
        // or another parameter's value), not a place a listing stopped.
        // Empty is the start, as no cursor.
        if let Some(cursor) = query.cursor.as_deref()
            && !(cursor.is_empty()
                || cursor.starts_with('/')
                || cursor.starts_with("http://")
                || cursor.starts_with("https://"))
        {
            return Err(TrackerError::InvalidCursor);
        }
        let prefix = query.prefix.as_deref().map(canonical_prefix);
        let limit = query.limit.max(1);
        let expiry = self.expiry_now();
        // A max-heap of the smallest `limit + 1` URLs so far (one more
        // than listed tells whether another page of results follows).
        let mut smallest: BinaryHeap<(String, Reverse<Counted>)> = BinaryHeap::new();
        for stripe in self.stripes.iter() {
            let stripe = sync::read(stripe);
            for page in stripe.pages() {
                let url = &*page.url;
                if query.cursor.as_deref().is_some_and(|after| url <= after)
                    || prefix.as_deref().is_some_and(|p| !has_prefix(url, p))
                    || site.as_deref().is_some_and(|s| host_of(url) != Some(s))
                    || smallest.peek().is_some_and(|(largest, _)| {
                        smallest.len() > limit && url >= largest.as_str()
                    })
                {
                    continue;
                }
                let distinct = page.visitors.count(expiry);
                if distinct.visitors == 0 {
                    continue; // every visitor expired; the sweep removes it
                }
                smallest.push((url.to_owned(), Reverse(Counted(distinct))));
                // Saturating: `usize::MAX` is a caller's "all of them".
                if smallest.len() > limit.saturating_add(1) {
                    smallest.pop();
                }
            }
        }
        let mut pages: Vec<PageCount> = smallest
            .into_sorted_vec()
            .into_iter()
            .map(|(url, Reverse(Counted(distinct)))| PageCount { url, distinct })
            .collect();
        let next_cursor = if pages.len() > limit {
            pages.truncate(limit);
            pages.last().map(|page| page.url.clone())
        } else {
            None
        };
        Ok(PageList { pages, next_cursor })
    }
}

/// `prefix` spelt as canonical URLs start: an `http(s)` URL's scheme and
/// host read as a page URL's ([`origin_of`]: lowercased, user info and
/// default port dropped; `HTTPS://Shop.example:443/cart` lists the pages
/// under `https://shop.example/cart`); its path as given. A host not yet
/// complete (nothing after it) is lowercased, or, if not ASCII, read as a
/// whole host; a path, or anything else, is matched as given.
fn canonical_prefix(prefix: &str) -> Cow<'_, str> {
    let Some(scheme) = prefix.find("://") else {
        return Cow::Borrowed(prefix);
    };
    if !is_web_scheme(&prefix[..scheme]) {
        return Cow::Borrowed(prefix);
    }
    let host = scheme + 3;
    match prefix[host..].find(['/', '?', '#']) {
        Some(end) if prefix.as_bytes()[host + end] == b'/' => {
            let (root, path) = prefix.split_at(host + end);
            match origin_of(prefix) {
                Some(origin) if origin != root => Cow::Owned(format!("{origin}{path}")),
                _ => Cow::Borrowed(prefix),
            }
        }
        Some(_) => Cow::Borrowed(prefix),
        // Pages keep a Unicode host in punycode, which a part of a label
        // has no prefix of: such a host is read as complete.
        None if !prefix[host..].is_ascii() => origin_of(prefix).unwrap_or(Cow::Borrowed(prefix)),
        None if prefix.chars().any(char::is_uppercase) => {
            Cow::Owned(prefix.chars().flat_map(char::to_lowercase).collect())
        }
        None => Cow::Borrowed(prefix),
    }
}

/// Whether `scheme` is `http` or `https`, in any case: the only schemes a
/// page URL, and so a site or a prefix given as a URL, may have.
fn is_web_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// A count carried through the heap, which orders by URL alone.
struct Counted(Distinct);

impl PartialEq for Counted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Counted {}

impl PartialOrd for Counted {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Counted {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A site name as given, checked and in the form hosts are stored in: a
/// host, or the host of a URL or `host:port` given in its place (a site
/// is every page of one host, whatever its scheme and port). The site
/// queries compare this form, and answers echo it.
///
/// ```
/// use tracker_core::site_name;
///
/// assert_eq!(site_name(" https://Example.com:8443/blog").as_deref(), Ok("example.com"));
/// assert!(site_name("https://").is_err());
/// ```
pub fn site_name(site: &str) -> Result<String, TrackerError> {
    let site = site.trim();
    if site.is_empty() {
        return Err(TrackerError::Empty { field: Field::Site });
    }
    if site.len() > MAX_SITE_LEN {
        return Err(TrackerError::TooLong {
            field: Field::Site,
            len: site.len(),
            max: MAX_SITE_LEN,
        });
    }
    // `https:example.com` and `https:\\example.com` are URLs too (the URL
    // Standard reads a web scheme's `:` with any run of `/` and `\` after
    // it as `://`), not the host `https` with a port.
    let web = site
        .split_once(':')
        .is_some_and(|(scheme, _)| is_web_scheme(scheme));
    let (url, web) = if web || site.contains("://") {
        (Cow::Borrowed(site), web)
    } else {
        // A `host:port` site never carries user info: with an `@` before
        // its path, `mailto:someone@example.com` would read as user info
        // `mailto:someone` at `example.com`.
        let authority = site.split(['/', '?', '#']).next().unwrap_or(site);
        if authority.contains('@') {
            return Err(TrackerError::InvalidSite);
        }
        (Cow::Owned(format!("http://{site}")), true)
    };
    // No host (`https://`, `:80`) is no site, rather than a bad one.
    let no_host = |(authority, _): (&str, &str)| {
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        host.is_empty() || host.starts_with(':')
    };
    if web && split_authority(&url).is_some_and(no_host) {
        return Err(TrackerError::Empty { field: Field::Site });
    }
    // The host as the page rules write it (`canonical_url`), so that a
    // site is spelled as its pages' hosts are: `javascript:alert(1)` read
    // as `host:port` has a port that is not a number, and is refused.
    let origin = origin_of(&url).ok_or(TrackerError::InvalidSite)?;
    Ok(host_of(&origin).unwrap_or_default().to_owned())
}

/// Whether the canonical `url` starts with `prefix`, or its path does
/// when `prefix` is a path (starts with `/`).
fn has_prefix(url: &str, prefix: &str) -> bool {
    if prefix.starts_with('/') {
        path_of(url).starts_with(prefix)
    } else {
        url.starts_with(prefix)
    }
}

/// The path (and query) of a canonical URL: what follows its authority,
/// `/` for none; a page recorded as a path is its own path.
fn path_of(url: &str) -> &str {
    if url.starts_with('/') {
        return url;
    }
    match split_authority(url) {
        Some((_, rest)) if rest.starts_with('/') => rest,
        Some(_) => "/",
        None => url,
    }
}

/// The host of a canonical URL: its authority without user info and
/// port; `None` for a URL without `scheme://`.
pub(crate) fn host_of(url: &str) -> Option<&str> {
    let (authority, _) = split_authority(url)?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.starts_with('[') {
        // An IPv6 literal: the port can only follow the bracket.
        return Some(host.find(']').map_or(host, |close| &host[..=close]));
    }
    Some(host.rfind(':').map_or(host, |colon| &host[..colon]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site with more distinct visitors than a union holds at once (64
    /// here) is counted in passes: its answers, all-time and over ranges,
    /// equal a set's count, and with a sketched page they stay estimates
    /// within their error.
    #[test]
    fn site_answers_count_in_passes() {
        use std::collections::HashSet;
        use std::sync::Arc;
        use std::time::Duration;

        use crate::time::clock::{ManualClock, Timestamp};

        let day = Duration::from_secs(86_400);
        // 2026-11-02T00:00:00Z, and `days` days on.
        let at = |days: u64, secs: u64| Timestamp::from_secs(1_793_577_600 + days * 86_400 + secs);
        let start = at(0, 0);
        let clock = Arc::new(ManualClock::new(at(3, 0)));
        let mut tracker = Tracker::builder().clock(clock).build().unwrap();
        tracker.union_hashes = 64;
        let mut state = 11;
        // (visitor, page, day): pages 0..9 on a.com, 9..12 on b.com.
        let mut events = Vec::new();
        for _ in 0..3_000 {
            let mut draw = |n: u64| test_support::xorshift(&mut state) % n;
            let event = (draw(700), draw(12), draw(3));
            let site = if event.1 < 9 { "a.com" } else { "b.com" };
            let time = at(event.2, draw(86_400));
            tracker
                .record_at(
                    &format!("v{}", event.0),
                    &format!("https://{site}/{}", event.1),
                    time,
                )
                .unwrap();
            events.push(event);
        }
        // c.com: few visitors, whose series fits in one scan.
        for i in 0..40 {
            let event = (i % 10, 12 + i % 2, i % 3);
            tracker
                .record_at(
                    &format!("v{}", event.0),
                    &format!("https://c.com/{}", event.1),
                    at(event.2, 60),
                )
                .unwrap();
            events.push(event);
        }
        let expect = |pages: std::ops::Range<u64>, days: std::ops::Range<u64>| {
            let visitors = events
                .iter()
                .filter(|e| pages.contains(&e.1) && days.contains(&e.2));
            visitors.map(|e| e.0).collect::<HashSet<_>>().len() as u64
        };
        assert!(expect(0..9, 0..3) > 4 * 64);
        assert_eq!(
            tracker.site_distinct("a.com"),
            Ok(Distinct::exact(expect(0..9, 0..3)))
        );
        assert_eq!(
            tracker.site_distinct("b.com"),
            Ok(Distinct::exact(expect(9..12, 0..3)))
        );
        let all = tracker.site_distinct_between("a.com", None, None).unwrap();
        assert_eq!(all.distinct, Distinct::exact(expect(0..9, 0..3)));
        for (site, pages) in [("a.com", 0..9), ("c.com", 12..14)] {
            let days = tracker
                .site_series(site, Some(start), Some(at(3, 0)), day)
                .unwrap();
            assert_eq!(days.points.len(), 3);
            for (d, point) in days.points.iter().enumerate() {
                let d = d as u64;
                let want = Distinct::exact(expect(pages.clone(), d..d + 1));
                assert_eq!(point.distinct, want, "{site} day {d}");
            }
        }

        // A large page of a.com, sketched: the answers become estimates.
        for v in 0..3_000 {
            tracker
                .record_at(&format!("w{v}"), "https://a.com/big", start)
                .unwrap();
        }
        let hash = tracker.url_hasher.hash_one("https://a.com/big");
        let freed = sync::write(tracker.stripe(hash)).sketch_page(hash, None);
        assert!(freed.is_some(), "sketched");
        let site = tracker.site_distinct("a.com").unwrap();
        let truth = (expect(0..9, 0..3) + 3_000) as f64;
        assert!(!site.exact);
        let error = (site.visitors as f64 - truth).abs() / truth;
        assert!(
            error < 5.0 * site.relative_error.unwrap(),
            "{site:?} against {truth}"
        );
    }

    #[test]
    fn hosts_of_canonical_urls() {
        for (url, host) in [
            ("https://example.com/", Some("example.com")),
            ("http://example.com:8080/a?b", Some("example.com")),
            ("https://user:pw@example.com/x", Some("example.com")),
            ("https://example.com?q", Some("example.com")),
            ("http://[::1]:8080/", Some("[::1]")),
            ("http://[::1]/", Some("[::1]")),
            ("mailto:someone", None),
            ("/pricing", None),
            ("/x://y/", None),
            ("://y/", None),
            ("https://a.com:8080@b.com/", Some("b.com")),
        ] {
            assert_eq!(host_of(url), host, "{url}");
        }
    }

    #[test]
    fn a_path_prefix_matches_the_path() {
        for (url, prefix, matches) in [
            ("https://example.com/blog/a", "/blog", true),
            (
                "https://example.com/blog/a",
                "https://example.com/blog",
                true,
            ),
            ("https://example.com/shop/blog", "/blog", false),
            ("https://example.com/", "/", true),
            ("https://example.com?q", "/", true),
            ("https://user:pw@example.com/blog", "/blog", true),
            ("http://[::1]:8080/blog?x", "/blog?x", true),
            ("/blog/x://y/", "/blog", true),
            ("/pricing", "/blog", false),
            ("https://example.com/blog", "example", false),
        ] {
            assert_eq!(has_prefix(url, prefix), matches, "{url} {prefix}");
        }
    }

    #[test]
    fn site_names_are_checked() {
        assert_eq!(site_name(" Example.COM "), Ok("example.com".into()));
        for given in [
            "https://Example.com",
            "https://example.com/blog?x",
            "example.com:8443",
            "http://user@example.com:80/",
        ] {
            assert_eq!(site_name(given), Ok("example.com".into()), "{given}");
        }
        assert_eq!(site_name("[::1]:8080"), Ok("[::1]".into()));
        assert_eq!(site_name("https://[::1]/"), Ok("[::1]".into()));
        assert_eq!(site_name("HTTP://Example.com:/"), Ok("example.com".into()));
        assert_eq!(site_name("Example.COM:8080/"), Ok("example.com".into()));
        assert_eq!(site_name("example.com:"), Ok("example.com".into()));
        // A URL that is not a web page's is refused, as a page's is; before,
        // `javascript:alert(1)` was read as the host `javascript`.
        for given in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "ftp://example.com/",
            "https://example.com:http/",
            "example.com:80x",
            "[::1]x",
            "mailto:someone@example.com",
            "javascript:x@example.com",
        ] {
            assert_eq!(site_name(given), Err(TrackerError::InvalidSite), "{given}");
        }
        assert_eq!(
            site_name("https://BÜCHER.de/"),
            Ok("xn--bcher-kva.de".into())
        );
        assert_eq!(site_name("bücher.de"), Ok("xn--bcher-kva.de".into()));
        // A web scheme without `//` is still a URL, as a browser reads it
        // (before, `https:\\x` was the host `https`).
        for given in [
            r"https:\\Example.com\blog",
            "https:example.com/a",
            "HTTP:/example.com",
        ] {
            assert_eq!(site_name(given), Ok("example.com".into()), "{given}");
        }
        assert_eq!(site_name("https:"), Err(TrackerError::InvalidSite));
        // As the page rules read a host: one site however it is spelled,
        // and what they refuse is refused.
        assert_eq!(site_name("127.1"), Ok("127.0.0.1".into()));
        assert_eq!(site_name("https://[0::1]:8080/"), Ok("[::1]".into()));
        assert_eq!(site_name("EX%41MPLE.com"), Ok("example.com".into()));
        for given in ["1.2.3.999", "example.com:99999", "a b.example", "[::g]"] {
            assert_eq!(site_name(given), Err(TrackerError::InvalidSite), "{given}");
        }
        assert_eq!(
            site_name("https://"),
            Err(TrackerError::Empty { field: Field::Site })
        );
        assert_eq!(
            site_name(" "),
            Err(TrackerError::Empty { field: Field::Site })
        );
        assert!(matches!(
            site_name(&"a".repeat(254)),
            Err(TrackerError::TooLong {
                field: Field::Site,
                len: 254,
                ..
            })
        ));
    }
}

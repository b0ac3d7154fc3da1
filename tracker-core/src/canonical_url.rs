//! URL canonicalisation: one page, one key, however the URL was spelled.
//!
//! Applied identically when recording and when querying. The rules:
//! - as the URL Standard (WHATWG) reads any URL: leading and trailing C0
//!   controls and spaces (U+0000 to U+0020, not other white space) are
//!   stripped, and every ASCII tab and newline (`\t \n \r`) anywhere is
//!   removed (`ht\tps://ex\nample.com/` is `https://example.com/`); the
//!   fragment (`#...`) is dropped;
//! - in `http` and `https` URLs, and in paths, a `\` before the query is
//!   a `/` (`https:\\example.com\a` is `https://example.com/a`), and any
//!   run of `/` and `\` after the scheme's `:` (none, one, three) is its
//!   `//` (`https:example.com`); a `\` in the query stays as it is;
//! - the scheme is lowercased, user info (`user:pw@`) is dropped
//!   (credentials are not part of a page, and must not be kept or
//!   listed), and an empty path becomes `/`;
//! - the host and port follow the URL Standard (WHATWG) for `http` and
//!   `https`, as a browser's `new URL()` does, and what it refuses is
//!   [`TrackerError::InvalidUrl`]: the port is ASCII digits of value at
//!   most 65535, its leading zeros dropped, and dropped when empty or the
//!   scheme's default (`:80` for http, `:443` for https); an IPv6 literal
//!   (`[...]`) must parse, and is written in the standard's shortest form
//!   (`[0:0:0:0:0:0:0:1]` is `[::1]`); any other host is percent-decoded,
//!   refused if it then holds a forbidden code point (controls, white
//!   space, `# % / : < > ? @ [ \ ] ^ |`, or bytes that are not UTF-8),
//!   and lowercased; a host whose last label is a number (digits, or
//!   `0x` hex) is an IPv4 address, in any of the forms a browser reads
//!   (`127.1`, `0x7f.0.0.1`, `0177.0.0.1`, `2130706433`), written in dotted
//!   decimal (`127.0.0.1`), or refused if it is none (`1.2.3.999`,
//!   `example.0x`). A name that is not ASCII, or has a punycode label
//!   (`xn--...`), goes through the standard's domain to ASCII (UTS 46
//!   mapping, punycode): `BÜCHER.de` is `xn--bcher-kva.de`, as browsers
//!   send it;
//! - in the path, `.` and `..` segments (also `%2e`, either case: `.%2E`)
//!   are resolved as the URL Standard does: `/a/../b` and `/a/./b` are
//!   `/b` and `/a/b`, a `..` at the root stays there (`/../a` is `/a`),
//!   a last `.` or `..` leaves a trailing `/` (`/a/b/..` is `/a/`); a
//!   path without a host that then starts with `//` is written `/.//`, as
//!   the standard writes such a path (Chromium's `new URL("/a/..//b",
//!   page)` is the page's origin then `//b`), since `//b` would be a
//!   scheme-relative URL;
//! - in the path and query, bytes are escaped as Chromium's `new URL()`
//!   escapes them: in the path non-ASCII, controls, space and
//!   `" < > ^ \` { | }`, in the query non-ASCII, controls, space and
//!   `" < > '` (the special-query set); `café` and `caf%C3%A9` are one
//!   page. Three deliberate differences, each making spellings a server
//!   reads as one page one key where Chromium keeps them as given:
//!   escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`), and in the
//!   query those of `` ` { } `` (which it keeps raw there, and earlier
//!   versions and server-side encoders write escaped), are decoded; other
//!   escapes get upper-case hex digits (`%2f` and `%2F` are the same
//!   bytes to a server, RFC 3986 6.2.2.1, and pages linked both ways would
//!   otherwise split); and a `%` that starts no escape is written `%25`
//!   (Chromium keeps it bare, which a decoded escape after it could turn
//!   into a new escape on a second pass: `%4%41`);
//! - the query is kept (an empty one dropped), stripped, or reduced to an
//!   allowlist of parameter names, per [`QueryPolicy`]; kept parameters keep
//!   their order.
//!
//! A page is an `http://` or `https://` URL with a host, or a path starting
//! with `/` or `\` (`/pricing`, which gets the path and query rules only); any
//! other scheme (`javascript:`, `data:`, `file:`, ...) or relative text is
//! [`TrackerError::InvalidUrl`]. A scheme-relative URL (`//host/path`,
//! `\\host`, `/\host`) is [`TrackerError::SchemeRelativeUrl`]: a browser
//! reads it as `https://host/path` on an `https` page and `http://...` on
//! an `http` one, and without that page it is neither a URL nor a path of
//! this tracker's. Where a route knows the page's origin, it resolves the
//! reference first ([`relative_reference`]).
//!
//! Browser rules on top: query parameters named in
//! [`UrlOptions::drop_params`] (by default the tracking parameters in
//! [`TRACKING_PARAMS`]) are dropped whatever the query policy, and with
//! [`UrlOptions::fold_trailing_slash`] trailing slashes of the path are,
//! once its dot segments are resolved (`/docs/` and `/docs/.` are
//! `/docs`; the root `/` stays).
//!
//! A URL that is already canonical comes back borrowed. The common shape
//! (browsers already send canonical URLs) is proved canonical by one scan
//! with no rewriting (`is_canonical`); any other URL takes the full rules,
//! whose output is built lazily and only allocates at the first byte that
//! differs from the input.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use crate::error::{Field, TrackerError};

/// Default longest URL, in bytes.
pub const DEFAULT_MAX_URL_LEN: usize = 2048;
/// The largest URL limit a tracker accepts.
pub const URL_LEN_CEILING: usize = 1024 * 1024;

/// What canonicalisation does with a URL's query string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryPolicy {
    /// Keep it: `?a=1` and `?a=2` are different pages.
    #[default]
    Keep,
    /// Drop it: every query of a path is one page.
    Strip,
    /// Keep only the parameters with these names (case sensitive, escapes
    /// normalised: `é` and `%C3%A9` are one name), in their original order.
    Allow(Vec<String>),
}

/// How URLs are turned into page keys (the rules are in the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlOptions {
    /// What happens to the query string.
    pub query: QueryPolicy,
    /// The longest URL accepted, in bytes, as sent and once canonical.
    pub max_len: usize,
    /// Query parameters dropped from page identity whatever the policy:
    /// names, or prefixes ending in `*` (`utm_*`), matched ignoring ASCII
    /// case. Default: [`TRACKING_PARAMS`].
    pub drop_params: Vec<String>,
    /// Fold trailing slashes of the path: `/docs/` and `/docs` are one
    /// page (the root `/` stays). Default: off.
    pub fold_trailing_slash: bool,
}

impl Default for UrlOptions {
    fn default() -> Self {
        Self {
            query: QueryPolicy::Keep,
            max_len: DEFAULT_MAX_URL_LEN,
            drop_params: TRACKING_PARAMS.iter().map(|p| p.to_string()).collect(),
            fold_trailing_slash: false,
        }
    }
}

/// Query parameters that identify a campaign or a click, not a page:
/// dropped from page identity by default. Entries ending in `*` are
/// prefixes.
pub const TRACKING_PARAMS: &[&str] = &[
    "utm_*",
    "fbclid",
    "gclid",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "yclid",
    "igshid",
    "twclid",
    "ttclid",
    "li_fat_id",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
];

/// The site of a page URL as canonicalisation spells it: its host (with a
/// non-default port), or `""` for a path or a URL that is not a page. Used
/// to keep derived visitor ids of different sites apart, so every spelling
/// of a host must give one site.
///
/// ```
/// assert_eq!(tracker_core::site_of("https://Shop.example:443/cart"), "shop.example");
/// assert_eq!(tracker_core::site_of("http://shop.example:8080/cart"), "shop.example:8080");
/// assert_eq!(tracker_core::site_of("/cart"), "");
/// ```
pub fn site_of(url: &str) -> Cow<'_, str> {
    // The common case, a plain lowercase host, is its own canonical form:
    // no need to canonicalise the whole URL.
    let trimmed = strip(url);
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    if let Some(rest) = rest {
        let end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let host = &rest[..end];
        let scan = scan_host(host.as_bytes());
        if !host.is_empty() && scan.len == host.len() && !scan.numeric && !scan.ace {
            return Cow::Borrowed(host);
        }
    }
    let options = UrlOptions {
        max_len: URL_LEN_CEILING,
        drop_params: Vec::new(),
        ..UrlOptions::default()
    };
    match canonicalize(url, &options) {
        Ok(Cow::Borrowed(canonical)) => Cow::Borrowed(authority_host(canonical)),
        Ok(Cow::Owned(canonical)) => Cow::Owned(authority_host(&canonical).to_string()),
        Err(_) => Cow::Borrowed(""),
    }
}

/// The origin (`scheme://host[:port]`) of an `http(s)` URL, or of an
/// origin, as page keys spell it (the [module docs](self)' rules: user
/// info dropped, host and port as a browser reads them), or `None` for anything else: a
/// path, another scheme, an authority the rules refuse. What turns a
/// request's `Origin` or `Referer`, or a configured site, into the origin
/// a path is a page of, so that it cannot disagree with the page rules.
/// Borrowed when the URL's own start is that form.
///
/// ```
/// use tracker_core::origin_of;
///
/// assert_eq!(origin_of("https://Shop.example:443/cart?x").as_deref(), Some("https://shop.example"));
/// assert_eq!(origin_of("http://u@127.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
/// assert_eq!(origin_of("https://shop.example:99999/"), None);
/// assert_eq!(origin_of("null"), None);
/// ```
pub fn origin_of(url: &str) -> Option<Cow<'_, str>> {
    let url = strip(url);
    let bytes = url.as_bytes();
    let has_scheme = |scheme: &[u8]| {
        bytes
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    let start = if has_scheme(b"https://") {
        8
    } else if has_scheme(b"http://") {
        7
    } else {
        bytes.len()
    };
    let end = bytes[start..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'\\' | b'\t' | b'\n' | b'\r'))
        .map_or(bytes.len(), |i| start + i);
    // The common shape, `http(s)://authority` then its end: only its start
    // is canonicalised. Anything else (a `\`, a tab or a newline where the
    // authority may be, other slashes, another scheme, a path) the page
    // rules read in full.
    match bytes.get(end) {
        _ if end == start => {}
        Some(b'/') => {
            // `scheme://authority/` is the URL's own start: borrowed (and
            // no allocation) when it is canonical, as browsers send it.
            return match canonicalize(&url[..=end], &ORIGIN_OPTIONS).ok()? {
                Cow::Borrowed(form) => Some(Cow::Borrowed(&form[..form.len() - 1])),
                Cow::Owned(mut form) => {
                    form.pop();
                    Some(Cow::Owned(form))
                }
            };
        }
        None | Some(b'?' | b'#') => {
            let mut form = canonicalize(&format!("{}/", &url[..end]), &ORIGIN_OPTIONS)
                .ok()?
                .into_owned();
            form.pop();
            return Some(Cow::Owned(form));
        }
        Some(_) => {}
    }
    let form = canonicalize(url, &ORIGIN_OPTIONS).ok()?;
    let (_, rest) = split_authority(&form)?;
    let end = form.len() - rest.len();
    Some(match form {
        Cow::Borrowed(form) => Cow::Borrowed(&form[..end]),
        Cow::Owned(mut form) => {
            form.truncate(end);
            Cow::Owned(form)
        }
    })
}

/// The options [`origin_of`] canonicalises under: only the scheme and
/// authority matter, and they take none.
static ORIGIN_OPTIONS: UrlOptions = UrlOptions {
    query: QueryPolicy::Keep,
    max_len: URL_LEN_CEILING,
    drop_params: Vec::new(),
    fold_trailing_slash: false,
};

/// What a reference without a scheme is on a page of an `http(s)` origin
/// (see [`relative_reference`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relative {
    /// A path (`/docs`, `\docs`): the origin goes in front.
    Path,
    /// A scheme-relative URL (`//host/docs`, `\\host`, `/\host`): the
    /// origin's scheme and `:` go in front.
    SchemeRelative,
}

impl Relative {
    /// What a browser puts in front of a reference of this kind on a
    /// page of `origin` (`scheme://host[:port]`, as [`origin_of`] writes
    /// it).
    ///
    /// ```
    /// use tracker_core::canonical_url::Relative;
    ///
    /// assert_eq!(Relative::Path.base("http://site.test:8080"), "http://site.test:8080");
    /// assert_eq!(Relative::SchemeRelative.base("http://site.test:8080"), "http:");
    /// ```
    pub fn base(self, origin: &str) -> &str {
        match self {
            Relative::Path => origin,
            Relative::SchemeRelative => origin.find(':').map_or(origin, |colon| &origin[..=colon]),
        }
    }
}

/// How a browser reads `reference` as a link on a page of an `http(s)`
/// origin, if it is a path or a scheme-relative URL (after the URL
/// Standard's stripping: C0 controls and spaces before it, tabs and
/// newlines anywhere): its [`Relative`] kind, and the reference without
/// what is stripped before it, to put [`Relative::base`] in front of.
/// `None` for anything else (a URL with a scheme, or text the page rules
/// judge as it is).
///
/// ```
/// use tracker_core::canonical_url::{Relative, relative_reference};
///
/// assert_eq!(relative_reference(" /docs"), Some((Relative::Path, "/docs")));
/// assert_eq!(relative_reference("\\docs"), Some((Relative::Path, "\\docs")));
/// assert_eq!(relative_reference("//cdn.test/x"), Some((Relative::SchemeRelative, "//cdn.test/x")));
/// assert_eq!(relative_reference("/\t\\cdn.test"), Some((Relative::SchemeRelative, "/\t\\cdn.test")));
/// assert_eq!(relative_reference("https://site.test/"), None);
/// assert_eq!(relative_reference("docs"), None);
/// ```
pub fn relative_reference(reference: &str) -> Option<(Relative, &str)> {
    let reference = reference.trim_start_matches(|c: char| c <= ' ');
    let mut bytes = reference.bytes().filter(|&b| !is_tab_or_newline(b));
    match (bytes.next(), bytes.next()) {
        (Some(first), second) if is_slash(first) => {
            let kind = if second.is_some_and(is_slash) {
                Relative::SchemeRelative
            } else {
                Relative::Path
            };
            Some((kind, reference))
        }
        _ => None,
    }
}

/// The host (and port) of a canonical URL (which has no user info); `""`
/// for a path.
fn authority_host(canonical: &str) -> &str {
    split_authority(canonical).map_or("", |(authority, _)| authority)
}

/// How a page key written by an earlier version (in a snapshot, an event
/// log or a cluster's stream) is taken now, when the rules have changed
/// since: see "Legacy pages" in `tracker/snapshot.rs`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoredKey {
    /// Canonical under today's rules.
    Canonical,
    /// Today's rules write it another way, as a key they also write: user
    /// info dropped, a host spelled another way (`https://127.1/x`), a
    /// path's `\` a `/` (`https://x/a\b`), dot segments resolved
    /// (`https://x/a/../b`), bytes escaped or escapes decoded as the
    /// escape sets have changed (`https://x/a^b?c'd` is
    /// `https://x/a%5Eb?c%27d`, `?a=%7B` is `?a={`). Its canonical form.
    Rekey(String),
    /// Today's rules refuse it, or turn it into a key they would refuse
    /// (`https://x:99999/x`, `/\x`, which is `//x`, or one over the length
    /// limit once escaped), for its authority or the slashes or escapes of
    /// its path and query: kept as it was stored.
    Kept,
}

/// What `key`, a page key read back from storage, is under today's rules
/// ([`StoredKey`]), or `None` for one no version wrote (damage): an
/// `http(s)` URL with a host, or a path, whose path and query were
/// canonical when it was written.
pub(crate) fn stored_key(key: &str, options: &UrlOptions) -> Option<StoredKey> {
    if canonicalize(key, options).is_ok_and(|form| form == key) {
        return Some(StoredKey::Canonical);
    }
    // Read as the version that wrote it did: its authority up to its path
    // or query (a `\` was a byte of the host or user info then, and of the
    // path, never a separator).
    let (origin, rest) = match split_authority(key) {
        Some((authority, rest)) => {
            let scheme = &key[..key.len() - rest.len() - authority.len() - 3];
            if !matches!(scheme, "http" | "https") || authority.is_empty() {
                return None;
            }
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            // A host today's rules would cut or change before reading it
            // is one they refuse.
            let origin = (!host.bytes().any(|b| is_slash(b) || is_tab_or_newline(b)))
                .then(|| origin_of(&format!("{scheme}://{host}/")).map(Cow::into_owned))
                .flatten();
            (origin, rest)
        }
        None => (Some(String::new()), key),
    };
    // Every version wrote a path (a page's, or a page that is a path).
    if !rest.starts_with('/') {
        return None;
    }
    // Its path and query were canonical then, read after a host (a path
    // key's own `\` is no scheme-relative URL's), whose bytes do not
    // count against the limit.
    let then = format!("https://h{rest}");
    let wide = UrlOptions {
        max_len: options.max_len + "https://h".len(),
        ..options.clone()
    };
    if !canonicalize_under(&then, &wide, &BEFORE_URLS8).is_ok_and(|form| form == then) {
        return None;
    }
    let Some(origin) = origin else {
        return Some(StoredKey::Kept);
    };
    // A path key is read as a path now, which writes `/.//` for a path
    // that starts with `//` once resolved.
    let form = if origin.is_empty() {
        canonicalize(rest, options).ok().map(Cow::into_owned)
    } else {
        canonicalize(&then, &wide)
            .ok()
            .map(|now| format!("{origin}{}", &now["https://h".len()..]))
    };
    Some(match form {
        Some(form) if canonicalize(&form, options).is_ok_and(|again| again == form) => {
            StoredKey::Rekey(form)
        }
        _ => StoredKey::Kept,
    })
}

/// Which page keys a record takes: today's canonical forms (`Live`), or
/// also the [`StoredKey::Kept`] keys of earlier versions (`Stored`, for a
/// replay of what was accepted then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// An event sent now.
    Live,
    /// An event replayed from a log or a stream.
    Stored,
}

/// The page key of `url` under `options`: its canonical form, or with
/// [`Keys::Stored`] a kept legacy key as it is.
pub(crate) fn page_key<'a>(
    url: &'a str,
    options: &UrlOptions,
    keys: Keys,
) -> Result<Cow<'a, str>, TrackerError> {
    match canonicalize(url, options) {
        // `TooLong`: a key within the limit when written that today's
        // escapes lengthen past it (`stored_key` keeps it).
        Err(
            TrackerError::InvalidUrl
            | TrackerError::SchemeRelativeUrl
            | TrackerError::TooLong { .. },
        ) if keys == Keys::Stored && stored_key(url, options) == Some(StoredKey::Kept) => {
            Ok(Cow::Borrowed(url))
        }
        other => other,
    }
}

/// A canonical URL's authority and what follows it (its path and query),
/// or `None` for one without `scheme://` (a path). Byte loops rather than
/// substring searches: listings and site queries call it for every page.
pub(crate) fn split_authority(url: &str) -> Option<(&str, &str)> {
    let bytes = url.as_bytes();
    let scheme_end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    if scheme_end == 0 || !bytes[scheme_end..].starts_with(b"://") {
        return None;
    }
    let start = scheme_end + 3;
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(bytes.len(), |i| start + i);
    Some((&url[start..end], &url[end..]))
}

/// Canonicalises `raw` under `options`, or says why it cannot be a page key.
pub(crate) fn canonicalize<'a>(
    raw: &'a str,
    options: &UrlOptions,
) -> Result<Cow<'a, str>, TrackerError> {
    if is_canonical(raw, options) {
        return Ok(Cow::Borrowed(raw));
    }
    canonicalize_in_full(raw, options)
}

/// Whether `raw` is certainly its own canonical form under `options`:
/// one scan of the common shape (a lowercase `http(s)://` host with no
/// userinfo, an optional non-default port, a path, a query kept whole),
/// no allocation. `false` only means "not proven": then
/// [`canonicalize_in_full`] decides (a proptest holds the two equal).
/// Browsers send canonical URLs, so a page's first event (the only one
/// that canonicalises) nearly always ends here.
fn is_canonical(raw: &str, options: &UrlOptions) -> bool {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > options.max_len {
        return false;
    }
    let path_start = if bytes[0] == b'/' {
        // `//host/...` is no path (the full rules refuse it).
        if bytes.get(1) == Some(&b'/') {
            return false;
        }
        0
    } else {
        let (authority, default) = if let Some(rest) = bytes.strip_prefix(b"https://") {
            (rest, 443)
        } else if let Some(rest) = bytes.strip_prefix(b"http://") {
            (rest, 80)
        } else {
            return false;
        };
        let PlainHost {
            len: host,
            numeric,
            ace,
        } = scan_host(authority);
        let mut end = host;
        if authority.get(end) == Some(&b':') {
            let digits = authority[end + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let port = &authority[end + 1..end + 1 + digits];
            // Leading zeros, an empty or default port are rewritten.
            if !(1..=5).contains(&digits)
                || port[0] == b'0'
                || port_value(port) == default
                || port_value(port) > MAX_PORT
            {
                return false;
            }
            end += 1 + digits;
        }
        // An empty host is refused, an empty path becomes `/`, a host
        // ending in a number is an IPv4 address, canonical only as a
        // dotted quad (and one ending in `.` is left to the full rules
        // whatever its last label), punycode is checked.
        if host == 0
            || authority.get(end) != Some(&b'/')
            || (numeric && !is_dotted_quad(&authority[..host]))
            || ace
        {
            return false;
        }
        bytes.len() - authority.len() + end
    };
    // The query, if any: where it starts, and where the name of the
    // parameter being scanned starts (until its `=`).
    let mut query_start = None;
    let mut name_start = None;
    let dropped = |start: usize, end: usize| is_dropped(&raw[start..end], &options.drop_params);
    let mut i = path_start;
    let (mut kept, mut decoded) = (&KEPT_PATH, &NOW.path.decoded);
    loop {
        while i < bytes.len() && kept[usize::from(bytes[i])] {
            i += 1;
        }
        match bytes.get(i) {
            None => break,
            Some(b'?') if query_start.is_none() => {
                // An empty query is dropped; other policies rewrite it.
                if options.query != QueryPolicy::Keep || i + 1 == bytes.len() {
                    return false;
                }
                query_start = Some(i);
                name_start = Some(i + 1);
                (kept, decoded) = (&KEPT_QUERY, &NOW.query.decoded);
            }
            // Only a path's `.` stops the scan.
            Some(b'.') => {
                if is_dot_segment(bytes, i) {
                    return false;
                }
            }
            Some(b'&') => {
                if name_start.is_some_and(|start| dropped(start, i)) {
                    return false;
                }
                name_start = Some(i + 1);
            }
            Some(b'=') => {
                if name_start.take().is_some_and(|start| dropped(start, i)) {
                    return false;
                }
            }
            Some(b'%') if is_canonical_escape(bytes.get(i + 1..i + 3), decoded) => i += 2,
            // `#`, a `%` to rewrite, a byte to escape, a path's `\`.
            Some(_) => return false,
        }
        i += 1;
    }
    if name_start.is_some_and(|start| dropped(start, bytes.len())) {
        return false;
    }
    let path_end = query_start.unwrap_or(bytes.len());
    !(options.fold_trailing_slash && path_end > path_start + 1 && bytes[path_end - 1] == b'/')
}

/// What [`scan_host`] found of a host of plain bytes.
struct PlainHost {
    /// How many bytes of plain labels and dots the scan passed.
    len: usize,
    /// Its last label starts with a digit, or is empty (a trailing dot):
    /// it may end in a number (see [`ends_in_number`]), canonical only as
    /// a dotted quad.
    numeric: bool,
    /// A label is punycode (`xn--`), which only the full rules check.
    ace: bool,
}

/// The host of lowercase labels (letters, digits, `-`) and dots at the
/// start of `authority`, label by label: the fast paths' one scan of it.
#[inline]
fn scan_host(authority: &[u8]) -> PlainHost {
    let (mut len, mut label) = (0, 0);
    let mut ace = authority.starts_with(b"xn--");
    loop {
        while len < authority.len() && LABEL[usize::from(authority[len])] {
            len += 1;
        }
        if authority.get(len) != Some(&b'.') {
            break;
        }
        len += 1;
        label = len;
        ace |= authority[len..].starts_with(b"xn--");
    }
    let numeric = label == len || authority[label].is_ascii_digit();
    PlainHost { len, numeric, ace }
}

/// Whether `host` is an IPv4 address as the URL Standard writes it: four
/// decimal numbers of at most 255, without leading zeros.
fn is_dotted_quad(host: &[u8]) -> bool {
    let mut parts = 0;
    host.split(|&b| b == b'.').all(|part| {
        parts += 1;
        (1..=3).contains(&part.len())
            && part.iter().all(u8::is_ascii_digit)
            && (part[0] != b'0' || part.len() == 1)
            && port_value(part) <= 255
    }) && parts == 4
}

/// Whether the two bytes after a `%` make an escape canonicalisation
/// keeps: upper-case hex of a byte that is not `decoded` there.
fn is_canonical_escape(hex: Option<&[u8]>, decoded: &[bool; 256]) -> bool {
    let upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    match hex {
        Some(&[hi, lo]) if upper_hex(hi) && upper_hex(lo) => {
            let value = hex_value(hi).unwrap_or(0) << 4 | hex_value(lo).unwrap_or(0);
            !decoded[usize::from(value)]
        }
        _ => false,
    }
}

/// Whether the `.` at `i` (in a path, after its first byte) starts a
/// segment that is `.` or `..`, which the full rules resolve.
fn is_dot_segment(bytes: &[u8], i: usize) -> bool {
    let ends = |j: usize| matches!(bytes.get(j), None | Some(b'/' | b'?'));
    bytes[i - 1] == b'/' && (ends(i + 1) || (bytes.get(i + 1) == Some(&b'.') && ends(i + 2)))
}

/// The value of 0 to 5 ASCII digits (a port, a part of an IPv4 address).
fn port_value(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |value, &d| value * 10 + u32::from(d - b'0'))
}

/// [`canonicalize`] without the fast path: every rule applied.
fn canonicalize_in_full<'a>(
    raw: &'a str,
    options: &UrlOptions,
) -> Result<Cow<'a, str>, TrackerError> {
    canonicalize_under(raw, options, &NOW)
}

/// [`canonicalize_in_full`] with the path and query rules of `rules`.
fn canonicalize_under<'a>(
    raw: &'a str,
    options: &UrlOptions,
    rules: &Rules,
) -> Result<Cow<'a, str>, TrackerError> {
    let trimmed = strip(raw);
    let too_long = |len| TrackerError::TooLong {
        field: Field::Url,
        len,
        max: options.max_len,
    };
    if trimmed.len() > options.max_len {
        return Err(too_long(trimmed.len()));
    }
    if trimmed.bytes().any(is_tab_or_newline) {
        // The URL Standard removes them before it reads anything (rare:
        // the copy costs nothing to URLs without them).
        let removed: String = trimmed
            .chars()
            .filter(|&c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        return canonicalize_under(&removed, options, rules)
            .map(|form| Cow::Owned(form.into_owned()));
    }
    let src = match trimmed.find('#') {
        Some(end) => &trimmed[..end],
        None => trimmed,
    };
    if src.is_empty() {
        return Err(TrackerError::Empty { field: Field::Url });
    }
    let mut out = Lazy::new(src);
    let bytes = src.as_bytes();

    // Where the path starts in `src`, and in what is written.
    let (mut path_start, mut path_at) = (0, 0);
    match scheme_end(bytes) {
        Some(colon) => {
            let scheme = &bytes[..colon];
            let web = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
            if !web {
                return Err(TrackerError::InvalidUrl);
            }
            push_lowercase(&mut out, src, 0, colon);
            out.push_str("://");
            // The standard skips any run of `/` and `\` before the
            // authority, which ends at the first of them or at the query.
            let after = colon
                + 1
                + bytes[colon + 1..]
                    .iter()
                    .take_while(|&&b| is_slash(b))
                    .count();
            let authority_end = bytes[after..]
                .iter()
                .position(|&b| is_slash(b) || b == b'?')
                .map_or(bytes.len(), |p| after + p);
            let default_port = default_port(&bytes[..colon]);
            authority(&mut out, src, after, authority_end, default_port)?;
            path_start = authority_end;
            path_at = out.len();
            let path_is_empty = bytes.get(path_start).is_none_or(|&b| b == b'?');
            if path_is_empty {
                out.push_byte(b'/');
            }
        }
        None if bytes.get(1).is_some_and(|&b| is_slash(b)) && is_slash(bytes[0]) => {
            return Err(TrackerError::SchemeRelativeUrl);
        }
        None if is_slash(bytes[0]) => {}
        None => return Err(TrackerError::InvalidUrl),
    }

    let query_start = bytes[path_start..]
        .iter()
        .position(|&b| b == b'?')
        .map(|p| path_start + p);
    let path_end = query_start.unwrap_or(bytes.len());
    normalize_escapes(&mut out, src, path_start, path_end, &rules.path);
    let hostless = path_start == 0;
    tidy_path(&mut out, path_at, rules.dot_segments, options, hostless);
    if let Some(q) = query_start {
        query(&mut out, src, q + 1, options, &rules.query);
    }

    let canonical = out.finish();
    if canonical.is_empty() {
        return Err(TrackerError::Empty { field: Field::Url });
    }
    if canonical.len() > options.max_len {
        return Err(too_long(canonical.len()));
    }
    Ok(canonical)
}

/// The index of the `:` that ends a scheme (`ALPHA *(ALPHA / DIGIT / + - .)`),
/// if the input starts with one.
fn scheme_end(bytes: &[u8]) -> Option<usize> {
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    (bytes[end] == b':').then_some(end)
}

/// Rewrites the path written from `at` on (it starts with `/`): with
/// `dots`, its dot segments resolved as the URL Standard's path parser
/// does (a `..` removes the segment before it, if any; a last `.` or `..`
/// leaves a trailing `/`), then its trailing slashes folded if the
/// options say so (the first `/` stays). A path of a key without a host
/// that then starts with `//` is written `/.//...`, as the standard
/// serialises a path without a host, so that it is not read as a
/// scheme-relative URL.
fn tidy_path(out: &mut Lazy<'_>, at: usize, dots: bool, options: &UrlOptions, hostless: bool) {
    let path = &out.written()[at..];
    let mut form = Cow::Borrowed(path);
    if dots && path.contains("/.") && path.split('/').any(|s| s == "." || s == "..") {
        let mut segments = Vec::new();
        let mut parts = path[1..].split('/').peekable();
        while let Some(segment) = parts.next() {
            let last = parts.peek().is_none();
            match segment {
                ".." => {
                    segments.pop();
                    if last {
                        segments.push("");
                    }
                }
                "." if last => segments.push(""),
                "." => {}
                _ => segments.push(segment),
            }
        }
        form = Cow::Owned(format!("/{}", segments.join("/")));
    }
    if options.fold_trailing_slash {
        let len = form.trim_end_matches('/').len().max(1);
        match &mut form {
            Cow::Borrowed(path) => *path = &path[..len],
            Cow::Owned(path) => path.truncate(len),
        }
    }
    if hostless && form.starts_with("//") {
        form = Cow::Owned(format!("/.{form}"));
    }
    if form != path {
        let form = form.into_owned();
        out.replace_from(at, &form);
    }
}

/// What the URL Standard strips from both ends of a URL: C0 controls
/// and spaces (U+0000 to U+0020), and nothing else (a browser keeps, and
/// then escapes or refuses, other white space such as U+00A0).
fn strip(raw: &str) -> &str {
    match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (Some(&first), Some(&last)) if first > b' ' && last > b' ' => raw,
        _ => raw.trim_matches(|c: char| c <= ' '),
    }
}

/// An ASCII tab or newline, which the URL Standard removes from a URL
/// wherever it is.
fn is_tab_or_newline(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\r')
}

/// A `/`, or a `\`, which `http`, `https` and paths read as one.
fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// `str::trim`, minus its Unicode table walk when both ends are plainly
/// not white space (nearly always): the bot rules' trim of a user agent.
pub(crate) fn trim(raw: &str) -> &str {
    match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => raw,
        _ => raw.trim(),
    }
}

/// Emits `src[start..end]` (a scheme, host or port) lowercased, with white
/// space and control characters percent-encoded (so that no canonical URL
/// can end in white space that a second pass would trim); copies it whole
/// when nothing changes.
fn push_lowercase(out: &mut Lazy<'_>, src: &str, start: usize, end: usize) {
    let part = &src[start..end];
    if !part
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic())
    {
        out.take(start, end);
        return;
    }
    for c in part.chars() {
        if c.is_whitespace() || c.is_control() {
            for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                out.push_str(&escape(b));
            }
        } else if c.is_ascii() {
            out.push_byte((c as u8).to_ascii_lowercase());
        } else {
            for lower in c.to_lowercase() {
                out.push_str(lower.encode_utf8(&mut [0; 4]));
            }
        }
    }
}

fn default_port(scheme: &[u8]) -> Option<u32> {
    const DEFAULTS: [(&[u8], u32); 2] = [(b"http", 80), (b"https", 443)];
    DEFAULTS
        .iter()
        .find(|(name, _)| scheme.eq_ignore_ascii_case(name))
        .map(|&(_, port)| port)
}

/// Emits `src[start..end]`, an authority, under the URL Standard's rules
/// for a special scheme's host and port (see the module docs): user info
/// dropped, host parsed ([`parse_host`]), port checked and normalised.
/// Errors: [`TrackerError::InvalidUrl`] for what a browser refuses.
fn authority(
    out: &mut Lazy<'_>,
    src: &str,
    start: usize,
    end: usize,
    default: Option<u32>,
) -> Result<(), TrackerError> {
    let bytes = src.as_bytes();
    let host_start = bytes[start..end]
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(start, |at| start + at + 1);
    // The host ends at the first ':' outside an IPv6 literal's brackets;
    // after a literal's `]` only a port may follow.
    let host_end = if bytes.get(host_start) == Some(&b'[') {
        bytes[host_start..end]
            .iter()
            .position(|&b| b == b']')
            .map(|close| host_start + close + 1)
            .ok_or(TrackerError::InvalidUrl)?
    } else {
        bytes[host_start..end]
            .iter()
            .position(|&b| b == b':')
            .map_or(end, |colon| host_start + colon)
    };
    let port = match bytes.get(host_end) {
        _ if host_end == end => "",
        Some(b':') => &src[host_end + 1..end],
        _ => return Err(TrackerError::InvalidUrl),
    };
    let port = port_of(port)?;
    match parse_host(&src[host_start..host_end]).ok_or(TrackerError::InvalidUrl)? {
        Cow::Borrowed(_) => out.take(host_start, host_end),
        Cow::Owned(host) => out.push_str(&host),
    }
    if let Some(port) = port.filter(|&port| Some(port) != default) {
        out.push_byte(b':');
        out.push_str(&port.to_string());
    }
    Ok(())
}

/// A port's value (`None` for an empty one). Leading zeros are allowed
/// (`:0080` is 80). Errors: [`TrackerError::InvalidUrl`] for what a
/// browser refuses, anything but ASCII digits or a value above 65535.
fn port_of(port: &str) -> Result<Option<u32>, TrackerError> {
    if port.is_empty() {
        return Ok(None);
    }
    let digits = port.trim_start_matches('0');
    if !port.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 5 {
        return Err(TrackerError::InvalidUrl);
    }
    let value = port_value(digits.as_bytes());
    if value > MAX_PORT {
        return Err(TrackerError::InvalidUrl);
    }
    Ok(Some(value))
}

/// The largest port a browser accepts.
const MAX_PORT: u32 = 65_535;

/// A host as the URL Standard's host parser (for `http`/`https`) writes
/// it, or `None` for one a browser refuses: an IPv6 literal in its
/// shortest form, an IPv4 address (any host whose last label is a number)
/// in dotted decimal, else a name percent-decoded, lowercased and (when
/// it is not ASCII or has a punycode label) put through UTS 46, with no
/// forbidden code point. Borrowed when the host is its own form.
fn parse_host(host: &str) -> Option<Cow<'_, str>> {
    if let Some(literal) = host.strip_prefix('[') {
        let address: Ipv6Addr = literal.strip_suffix(']')?.parse().ok()?;
        let form = ipv6_form(address);
        return Some(if form == host {
            Cow::Borrowed(host)
        } else {
            Cow::Owned(form)
        });
    }
    // The common case: ASCII with nothing to decode, lowercase or map.
    let plain = |b: u8| {
        b.is_ascii_graphic() && !b.is_ascii_uppercase() && !FORBIDDEN_IN_HOST[usize::from(b)]
    };
    let name: Cow<'_, str> = if host.bytes().all(plain) && !has_ace_label(host.as_bytes()) {
        Cow::Borrowed(host)
    } else {
        let decoded = percent_decode(host)?;
        let name = if decoded.is_ascii() && !has_ace_label(decoded.as_bytes()) {
            let forbidden = |b: u8| !b.is_ascii_graphic() || FORBIDDEN_IN_HOST[usize::from(b)];
            if decoded.bytes().any(forbidden) {
                return None;
            }
            decoded.to_ascii_lowercase()
        } else {
            // The standard's "domain to ASCII": UTS 46 mapping and
            // punycode, refusing forbidden code points.
            idna::domain_to_ascii_cow(decoded.as_bytes(), idna::AsciiDenyList::URL)
                .ok()?
                .into_owned()
        };
        if name == host {
            Cow::Borrowed(host)
        } else {
            Cow::Owned(name)
        }
    };
    if name.is_empty() {
        return None;
    }
    if !ends_in_number(&name) {
        return Some(name);
    }
    let [a, b, c, d] = ipv4(&name)?.to_be_bytes();
    let form = format!("{a}.{b}.{c}.{d}");
    Some(if form == host {
        Cow::Borrowed(host)
    } else {
        Cow::Owned(form)
    })
}

/// Whether a label of `host` starts with `xn--` (any case): punycode,
/// which the standard decodes and checks, so the fast paths leave it to
/// the full rules.
fn has_ace_label(host: &[u8]) -> bool {
    host.split(|&b| b == b'.').any(|label| {
        label
            .get(..4)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"xn--"))
    })
}

/// ASCII code points a host may not hold (the URL Standard's forbidden
/// domain code points, less the controls and space, which
/// `is_ascii_graphic` rules out): `# % / : < > ? @ [ \ ] ^ |`.
static FORBIDDEN_IN_HOST: [bool; 128] = {
    let mut table = [false; 128];
    let mut forbidden = b"#%/:<>?@[\\]^|".as_slice();
    while let [b, rest @ ..] = forbidden {
        table[*b as usize] = true;
        forbidden = rest;
    }
    table
};

/// `host` with its percent-escapes decoded, or `None` if the bytes are
/// not UTF-8. A `%` that starts no escape stays (and is then refused).
fn percent_decode(host: &str) -> Option<Cow<'_, str>> {
    if !host.contains('%') {
        return Some(Cow::Borrowed(host));
    }
    let bytes = host.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?));
        match escape {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

/// The URL Standard's "ends in a number": whether the last label (a
/// trailing empty one aside) is digits or an IPv4 number (`0x7f`, `0x`),
/// which makes the host an IPv4 address or nothing.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or_default();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// The URL Standard's IPv4 parser: up to four numbers (decimal, octal
/// with a leading `0`, hex with `0x`), the last filling the bytes the
/// others leave (`127.1` is 127.0.0.1); `None` if it fails.
fn ipv4(host: &str) -> Option<u32> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        *numbers.get_mut(count)? = ipv4_number(part)?;
        count += 1;
    }
    let (last, rest) = numbers[..count].split_last()?;
    if rest.iter().any(|&n| n > 255) || *last >= 1 << (8 * (5 - count)) {
        return None;
    }
    let high = rest
        .iter()
        .enumerate()
        .fold(0, |address, (i, &n)| address | n << (8 * (3 - i)));
    u32::try_from(high | last).ok()
}

/// The URL Standard's IPv4 number parser; values too large for a `u64`
/// come out as `u64::MAX` (too large for any part of an address).
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if part.len() >= 2 && (part.starts_with("0x") || part.starts_with("0X")) {
        (&part[2..], 16)
    } else if part.len() >= 2 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    digits.chars().try_fold(0u64, |value, c| {
        let digit = c.to_digit(radix)?;
        Some(
            value
                .checked_mul(u64::from(radix))
                .and_then(|v| v.checked_add(u64::from(digit)))
                .unwrap_or(u64::MAX),
        )
    })
}

/// An IPv6 address as the URL Standard serialises it, in brackets: lower
/// case hex pieces without leading zeros, the first longest run of two or
/// more zero pieces written `::`, no dotted IPv4 tail.
fn ipv6_form(address: Ipv6Addr) -> String {
    let pieces = address.segments();
    // The first longest run of at least two zero pieces.
    let (mut compress, mut longest, mut i) = (None, 1, 0);
    while i < 8 {
        let start = i;
        while i < 8 && pieces[i] == 0 {
            i += 1;
        }
        if i - start > longest {
            (compress, longest) = (Some(start), i - start);
        }
        i = i.max(start + 1);
    }
    let mut form = String::from("[");
    let mut i = 0;
    while i < 8 {
        if compress == Some(i) {
            form.push_str(if i == 0 { "::" } else { ":" });
            i += longest;
            continue;
        }
        form.push_str(&format!("{:x}", pieces[i]));
        if i != 7 {
            form.push(':');
        }
        i += 1;
    }
    form.push(']');
    form
}

/// Emits the query that starts at `start` (just after `?`) under the query
/// policy, without the dropped parameters.
fn query(out: &mut Lazy<'_>, src: &str, start: usize, options: &UrlOptions, rules: &Escaping) {
    let end = src.len();
    let dropped = |name: &str| is_dropped(name, &options.drop_params);
    let keep_all = match &options.query {
        QueryPolicy::Strip => return,
        QueryPolicy::Keep => !src[start..]
            .split('&')
            .any(|p| dropped(param_name(p, rules).as_ref())),
        QueryPolicy::Allow(_) => false,
    };
    if keep_all {
        if start < end {
            out.push_byte(b'?');
            normalize_escapes(out, src, start, end, rules);
        }
        return;
    }
    let mut first = true;
    let mut param_start = start;
    for param in src[start..].split('&') {
        let param_end = param_start + param.len();
        // Names are compared in canonical form, so `é`, `%C3%A9` and
        // `%c3%a9` in the URL or the allowlist all mean one name.
        let name = param_name(param, rules);
        let allowed = match &options.query {
            QueryPolicy::Allow(names) => names
                .iter()
                .any(|allowed| normalized(allowed, rules) == name),
            _ => true,
        };
        if !param.is_empty() && allowed && !dropped(&name) {
            out.push_byte(if first { b'?' } else { b'&' });
            first = false;
            normalize_escapes(out, src, param_start, param_end, rules);
        }
        param_start = param_end + 1;
    }
}

/// A query parameter's name, escapes normalised.
fn param_name<'a>(param: &'a str, rules: &Escaping) -> Cow<'a, str> {
    normalized(param.split('=').next().unwrap_or_default(), rules)
}

/// Whether `name` is in `drop` (names, or prefixes ending in `*`),
/// ignoring ASCII case.
fn is_dropped(name: &str, drop: &[String]) -> bool {
    drop.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
        None => name.eq_ignore_ascii_case(pattern),
    })
}

/// Emits `src[start..end]` (a path or query) with percent-escapes
/// normalised and bytes to escape escaped under `rules`, and a `\` that
/// is not plain there (a path's, today) as a `/`; unchanged runs are
/// copied whole.
fn normalize_escapes(out: &mut Lazy<'_>, src: &str, start: usize, end: usize, rules: &Escaping) {
    let bytes = src.as_bytes();
    let mut run = start;
    let mut i = start;
    loop {
        // The common case: a run of bytes that stay as they are.
        while i < end && rules.plain[usize::from(bytes[i])] {
            i += 1;
        }
        if i >= end {
            break;
        }
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|_| i + 3 <= end);
            if let Some(&[hi, lo]) = hex
                && let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo))
            {
                let value = h << 4 | l;
                if rules.decoded[usize::from(value)] {
                    out.take(run, i);
                    out.push_byte(value);
                    run = i + 3;
                } else if hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    out.take(run, i);
                    out.push_str(&escape(value));
                    run = i + 3;
                }
                i += 3;
                continue;
            }
            // A '%' that starts no escape is escaped itself; left bare, it
            // could join with what a decoded escape puts after it and make
            // a new escape on a second pass (`%4%41` -> `%4A`).
            out.take(run, i);
            out.push_str("%25");
            run = i + 1;
        } else if b == b'\\' {
            out.take(run, i);
            out.push_byte(b'/');
            run = i + 1;
        } else {
            out.take(run, i);
            out.push_str(&escape(b));
            run = i + 1;
        }
        i += 1;
    }
    out.take(run, end);
}

/// A query piece (a parameter's name) with its escapes normalised.
fn normalized<'a>(piece: &'a str, rules: &Escaping) -> Cow<'a, str> {
    let mut out = Lazy::new(piece);
    normalize_escapes(&mut out, piece, 0, piece.len(), rules);
    out.finish()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// How a path or a query is normalised.
struct Escaping {
    /// Bytes left as they are: any other is an escape's `%`, a path's `\`
    /// (a `/`), or a byte to escape.
    plain: [bool; 256],
    /// Bytes whose escape (`%XX`, either case) is written as the byte.
    decoded: [bool; 256],
}

/// The path and query rules of one version of the canonicaliser.
struct Rules {
    path: Escaping,
    query: Escaping,
    /// Whether `.` and `..` path segments are resolved.
    dot_segments: bool,
}

/// Today's rules (the module docs): Chromium's escape sets, the path's
/// (`" < > ^ ` { | }`, space, controls, non-ASCII) and the special
/// query's (`" < > '`, space, controls, non-ASCII); escapes of unreserved
/// bytes decoded, and in the query those of `` ` { } ``, which it keeps
/// raw.
static NOW: Rules = Rules {
    path: Escaping {
        plain: graphic_except(b"%\"<>\\^`{|}"),
        decoded: unreserved_and(b""),
    },
    query: Escaping {
        plain: graphic_except(b"%\"<>'"),
        decoded: unreserved_and(b"`{}"),
    },
    dot_segments: true,
};

/// The rules every version before this one wrote page keys under (read
/// by [`stored_key`]): one escape set for path and query (`" < > ` { }`,
/// space, controls, non-ASCII), a path's `\` a byte (it was before
/// urls7, and urls7 wrote none), dot segments kept.
static BEFORE_URLS8: Rules = Rules {
    path: Escaping {
        plain: graphic_except(b"%\"<>`{}"),
        decoded: unreserved_and(b""),
    },
    query: Escaping {
        plain: graphic_except(b"%\"<>`{}"),
        decoded: unreserved_and(b""),
    },
    dot_segments: false,
};

/// Printable ASCII but `except`.
const fn graphic_except(except: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = b'!';
    while b <= b'~' {
        table[b as usize] = true;
        b += 1;
    }
    with(table, except, false)
}

/// The unreserved bytes (`A-Z a-z 0-9 - . _ ~`) and `extra`.
const fn unreserved_and(extra: &[u8]) -> [bool; 256] {
    let unreserved = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    with(with([false; 256], unreserved, true), extra, true)
}

/// Bytes [`is_canonical`] passes over in a path: today's plain ones but
/// `#` (a fragment), `?` (the query's start) and `.` (which may start a
/// dot segment).
static KEPT_PATH: [bool; 256] = with(NOW.path.plain, b"#?.", false);

/// Bytes [`is_canonical`] passes over in a query: today's plain ones but
/// `#`, and `&`, `=` (where parameters and their names end).
static KEPT_QUERY: [bool; 256] = with(NOW.query.plain, b"#&=", false);

/// `table` with the entries of `bytes` set to `value`.
const fn with(mut table: [bool; 256], bytes: &[u8], value: bool) -> [bool; 256] {
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = value;
        i += 1;
    }
    table
}

/// Bytes of a host's label [`is_canonical`] accepts: those of lowercase
/// names and IPv4 addresses, the dots between labels aside (anything
/// else, such as `@`, `[` or upper case, takes the full path).
static LABEL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-';
        b += 1;
    }
    table
};

/// `%XX` with upper-case hex digits. Always ASCII.
fn escape(b: u8) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let chars = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
    chars.iter().map(|&c| c as char).collect()
}

/// An output that stays a borrow of its source for as long as what is
/// written equals the source, and becomes an owned string at the first
/// byte that differs.
struct Lazy<'a> {
    src: &'a str,
    /// While borrowed: how much of `src` has been written.
    pos: usize,
    owned: Option<String>,
}

impl<'a> Lazy<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            owned: None,
        }
    }

    fn owned(&mut self) -> &mut String {
        let (src, pos) = (self.src, self.pos);
        self.owned.get_or_insert_with(|| {
            let mut s = String::with_capacity(src.len() + 8);
            s.push_str(&src[..pos]);
            s
        })
    }

    /// Writes `src[start..end]`: free when it continues what was written.
    fn take(&mut self, start: usize, end: usize) {
        if self.owned.is_none() && start == self.pos {
            self.pos = end;
        } else if start < end {
            let piece = &self.src[start..end];
            self.owned().push_str(piece);
        }
    }

    fn push_byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        if self.owned.is_none() && self.src.as_bytes().get(self.pos) == Some(&b) {
            self.pos += 1;
        } else {
            self.owned().push(b as char);
        }
    }

    fn push_str(&mut self, s: &str) {
        if self.owned.is_none() && self.src.as_bytes()[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
        } else {
            self.owned().push_str(s);
        }
    }

    /// How many bytes have been written.
    fn len(&self) -> usize {
        self.owned.as_ref().map_or(self.pos, String::len)
    }

    /// What has been written.
    fn written(&self) -> &str {
        self.owned.as_deref().unwrap_or(&self.src[..self.pos])
    }

    /// Replaces what was written from byte `at` on with `with`.
    fn replace_from(&mut self, at: usize, with: &str) {
        match &mut self.owned {
            Some(owned) => {
                owned.truncate(at);
                owned.push_str(with);
            }
            // Borrowed, what was written is `src[..pos]`.
            None => {
                self.pos = at;
                self.push_str(with);
            }
        }
    }

    fn finish(self) -> Cow<'a, str> {
        match self.owned {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(&self.src[..self.pos]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{Just, Strategy, any, prop_oneof};

    fn canon(raw: &str) -> String {
        canon_with(raw, QueryPolicy::Keep)
    }

    /// `raw`'s canonical form is `canonical`, which is its own.
    fn assert_canonical(raw: &str, canonical: &str) {
        assert_eq!(canon(raw), canonical, "{raw:?}");
        assert_eq!(canon(canonical), canonical, "{canonical:?}");
    }

    fn assert_refused(raw: &str) {
        let refused = canonicalize(raw, &UrlOptions::default());
        assert_eq!(refused, Err(TrackerError::InvalidUrl), "{raw}");
    }

    fn canon_with(raw: &str, query: QueryPolicy) -> String {
        let options = UrlOptions {
            query,
            ..UrlOptions::default()
        };
        canonicalize(raw, &options).unwrap().into_owned()
    }

    #[test]
    fn canonical_input_is_borrowed() {
        let options = UrlOptions::default();
        for raw in [
            "https://example.com/",
            "https://example.com/a/b?x=1&y=%2F",
            "/pricing",
        ] {
            assert!(matches!(canonicalize(raw, &options), Ok(Cow::Borrowed(s)) if s == raw));
        }
        // Trimming and dropping a fragment shorten the input: still borrowed.
        assert!(matches!(
            canonicalize("  https://example.com/a#top ", &options),
            Ok(Cow::Borrowed("https://example.com/a"))
        ));
    }

    #[test]
    fn scheme_host_and_port() {
        assert_eq!(
            canon("HTTPS://Example.COM/Path"),
            "https://example.com/Path"
        );
        assert_eq!(canon("https://example.com:443/a"), "https://example.com/a");
        assert_eq!(canon("http://example.com:80"), "http://example.com/");
        assert_eq!(canon("http://example.com:8080"), "http://example.com:8080/");
        assert_eq!(canon("http://example.com:0080/"), "http://example.com/");
        assert_eq!(
            canon("http://example.com:08080/"),
            "http://example.com:8080/"
        );
        assert_eq!(canon("https://example.com:/"), "https://example.com/");
        assert_eq!(canon("https://example.com?q"), "https://example.com/?q");
        assert_eq!(canon("http://[::1]:80/"), "http://[::1]/");
        assert_eq!(canon("http://[::1]:81/"), "http://[::1]:81/");
        assert_eq!(canon("http://[::1]/"), "http://[::1]/");
        assert_eq!(canon("https://BÜCHER.de/"), "https://xn--bcher-kva.de/");
        assert_eq!(
            canon("https://example.com:65535/"),
            "https://example.com:65535/"
        );
        assert_eq!(canon("https://example.com:0/"), "https://example.com:0/");
        assert_eq!(
            canon("https://example.com:000000000443/"),
            "https://example.com/"
        );
    }

    /// The URL Standard's host and port rules, as `new URL()` applies them.
    #[test]
    fn hosts_and_ports_as_a_browser_parses_them() {
        for (raw, canonical) in [
            ("https://127.1/", "https://127.0.0.1/"),
            ("https://0x7f.1/", "https://127.0.0.1/"),
            ("https://0177.0.0.1/", "https://127.0.0.1/"),
            ("https://2130706433/", "https://127.0.0.1/"),
            ("https://1.2.3.4./", "https://1.2.3.4/"),
            ("https://0x/", "https://0.0.0.0/"),
            ("https://1.2.3.0X4/", "https://1.2.3.4/"),
            ("https://ex%41mple.com/", "https://example.com/"),
            ("https://caf%C3%A9.example/", "https://xn--caf-dma.example/"),
            ("https://Café.example/", "https://xn--caf-dma.example/"),
            (
                "https://XN--CAF-DMA.example/",
                "https://xn--caf-dma.example/",
            ),
            ("https://ＥＸＡＭＰＬＥ.com/", "https://example.com/"),
            ("https://１２７.1/", "https://127.0.0.1/"),
            ("https://example.com./", "https://example.com./"),
            ("https://3com.example/", "https://3com.example/"),
            ("https://example.3com/", "https://example.3com/"),
            ("https://[0:0:0:0:0:0:0:1]/", "https://[::1]/"),
            (
                "https://[2001:DB8:0:0:1:0:0:1]:8443/",
                "https://[2001:db8::1:0:0:1]:8443/",
            ),
            ("https://[1:0:0:2:0:0:3:4]/", "https://[1::2:0:0:3:4]/"),
            ("https://[1:0:0:2::3]/", "https://[1:0:0:2::3]/"),
            ("https://[1:0:2:3:4:5:6:7]/", "https://[1:0:2:3:4:5:6:7]/"),
            ("https://[::ffff:1.2.3.4]/", "https://[::ffff:102:304]/"),
            ("https://[1::]/", "https://[1::]/"),
            ("https://[::]/", "https://[::]/"),
            ("http://x:0080/", "http://x/"),
        ] {
            assert_canonical(raw, canonical);
        }
        for bad in [
            "https://x:99999/",
            "https://x:65536/",
            "https://x:123456/",
            "https://x:abc/",
            "https://x:-1/",
            "https://x:+1/",
            "https://x:1:2/",
            "https://a b/",
            "https://a%20b/",
            "https://a<b/",
            "https://a>b/",
            "https://a^b/",
            "https://a|b/",
            "https://a%b/",
            "https://a%25b/",
            "https://a%zzb/",
            "https://a%00b/",
            "https://a%2Fb/",
            "https://a%5Cb/",
            "https://a%09b/",
            "https://a\u{a0}b/",
            "https://a%FFb/",
            "https://bü cher.de/",
            "https://bü<cher.de/",
            "https://xn--a.example/",
            "https://\u{fffd}.example/",
            "https://[::g]/",
            "https://[1:2]/",
            "https://[::1/",
            "https://[::1]x/",
            "https://[::1]:x/",
            "https://[::1%25eth0]/",
            "https://[1.2.3.4]/",
            "https://1.2.3.999/",
            "https://1.2.3.4.5/",
            "https://256.1/",
            "https://1.16777216/",
            "https://example.0x/",
            "https://example.1/",
            "https://1..2/",
            "https://0x1g.2/",
            "https://99999999999999999999999/",
            "https://u@:443/",
        ] {
            assert_refused(bad);
        }
    }

    /// The URL Standard's reading of any URL before its parts: C0 controls
    /// and spaces stripped from both ends (only those), ASCII tabs and
    /// newlines removed anywhere, and in `http(s)` a `\` read as a `/`
    /// outside the query, any run of slashes after the scheme as `//`.
    /// Each pair is what `new URL(raw).href` gave in headless Chromium 156
    /// (`chromium --headless --dump-dom` of a page printing it).
    #[test]
    fn c0_tabs_newlines_and_backslashes_as_chromium_reads_them() {
        for (raw, chromium) in [
            (
                " \u{0}\u{1f} https://example.com/a \u{1} ",
                "https://example.com/a",
            ),
            ("https://example.com/a\u{a0}", "https://example.com/a%C2%A0"),
            (
                "https://example.com/a\u{3000}",
                "https://example.com/a%E3%80%80",
            ),
            ("https://example.com/\u{0}x", "https://example.com/%00x"),
            (
                "ht\ttps://exa\nmple.com/a\rb?q\t=1",
                "https://example.com/ab?q=1",
            ),
            // Chromium keeps `%2f`; escapes get upper-case hex here.
            ("https://example.com/%2\tf", "https://example.com/%2F"),
            ("https://example.com:8\n080/", "https://example.com:8080/"),
            ("https://\texample.com/", "https://example.com/"),
            ("https://example.com\t/", "https://example.com/"),
            (
                "https:\\\\example.com\\a\\b?c\\d",
                "https://example.com/a/b?c\\d",
            ),
            ("https:/\\example.com/a", "https://example.com/a"),
            ("https:example.com/a", "https://example.com/a"),
            ("https:/example.com/a", "https://example.com/a"),
            ("https:///example.com/a", "https://example.com/a"),
            ("http:\\\\\\\\example.com\\", "http://example.com/"),
            ("https://u\\p@example.com/a", "https://u/p@example.com/a"),
            (
                "https://example.com\\@x.com/",
                "https://example.com/@x.com/",
            ),
            ("https://a\\b/", "https://a/b/"),
            ("https://example.com:81\\a", "https://example.com:81/a"),
            ("https://example.com/a\\", "https://example.com/a/"),
            ("https://example.com/a?b\\c", "https://example.com/a?b\\c"),
        ] {
            assert_canonical(raw, chromium);
        }
        // Paths are read as a browser reads them on an `https` page
        // (Chromium: `new URL("\\a\\b", "https://page.example/")` is
        // `https://page.example/a/b`).
        assert_eq!(canon("\\a\\b"), "/a/b");
        assert_eq!(canon("/a\\b?c\\d"), "/a/b?c\\d");
        assert_eq!(canon(" \t/a\n"), "/a");
        // Chromium: "Invalid URL" for each.
        for refused in [
            "\u{a0}https://example.com/a",
            "https://a%09b/",
            "https://",
            "https:",
        ] {
            assert_refused(refused);
        }
        let fold = UrlOptions {
            fold_trailing_slash: true,
            ..UrlOptions::default()
        };
        let folded = canonicalize("https://example.com/docs\\/\\", &fold).unwrap();
        assert_eq!(folded, "https://example.com/docs");
        assert_eq!(site_of("\u{1}https://X.example\\a"), "x.example");
        assert_eq!(site_of("\u{a0}https://x.example/a"), "");
        for (url, origin) in [
            ("https://x.test\\y", "https://x.test"),
            ("https:\\\\X.test\\y", "https://x.test"),
            ("ht\ttps://x.test/", "https://x.test"),
            ("https://x.t\nest:0443/", "https://x.test"),
            ("https:///x.test", "https://x.test"),
            (" https://x.test ", "https://x.test"),
        ] {
            assert_eq!(origin_of(url).as_deref(), Some(origin), "{url:?}");
        }
        assert_eq!(origin_of("\u{a0}https://x.test"), None);
    }

    /// Every printable ASCII byte in a path and in a query, as
    /// `new URL("https://x.test/a" + c + "b?q" + c + "r").href` gave it in
    /// headless Chromium 156 (the path's percent-encode set, and the
    /// special query's). The one deliberate difference: a `%` that starts
    /// no escape, which Chromium keeps and we write `%25` (see the module
    /// docs).
    #[test]
    fn printable_ascii_is_escaped_as_chromium_escapes_it() {
        let path_escaped = b" \"<>^`{|}";
        let query_escaped = b" \"<>'";
        for c in b' '..=b'~' {
            let raw = format!("https://x.test/a{}b?q{}r", c as char, c as char);
            let piece = |escaped: &[u8]| {
                if escaped.contains(&c) {
                    format!("%{c:02X}")
                } else {
                    (c as char).to_string()
                }
            };
            let chromium = match c {
                b'#' => "https://x.test/a".to_string(),
                b'?' => "https://x.test/a?b?q?r".to_string(),
                b'\\' => "https://x.test/a/b?q\\r".to_string(),
                b'%' => "https://x.test/a%25b?q%25r".to_string(),
                _ => format!(
                    "https://x.test/a{}b?q{}r",
                    piece(path_escaped),
                    piece(query_escaped)
                ),
            };
            assert_canonical(&raw, &chromium);
        }
        // Chromium keeps an escape as it is given. We decode those of
        // unreserved bytes, and in the query those of the bytes it keeps
        // raw there (`` ` { } ``), and write hex digits upper case: each
        // spelling a server reads as one is one key.
        for (raw, canonical) in [
            (
                "https://x.test/%2f%7e%41%c3%a9?%2f%7e%41%c3%a9",
                "https://x.test/%2F~A%C3%A9?%2F~A%C3%A9",
            ),
            ("https://x.test/?a=%7B%60%7d", "https://x.test/?a={`}"),
            ("https://x.test/%7B%60%7D", "https://x.test/%7B%60%7D"),
            ("https://x.test/a^|?'", "https://x.test/a%5E%7C?%27"),
            ("https://x.test/a%5e%7c?%27", "https://x.test/a%5E%7C?%27"),
        ] {
            assert_eq!(canon(raw), canonical, "{raw:?}");
        }
        let allow = QueryPolicy::Allow(vec!["{'}".into()]);
        assert_eq!(
            canon_with("/p?%7B%27%7D=1&x=2", allow),
            "/p?{%27}=1",
            "allowlisted names under the same rules"
        );
    }

    /// `.` and `..` segments (also `%2e`, either case), as Chromium 156's
    /// `new URL(raw).href` resolved them.
    #[test]
    fn dot_segments_are_resolved_as_chromium_resolves_them() {
        for (raw, chromium) in [
            ("https://x/a/../b", "https://x/b"),
            ("https://x/a/./b", "https://x/a/b"),
            ("https://x/a/%2e%2E/b", "https://x/b"),
            ("https://x/a/.%2e/b", "https://x/b"),
            ("https://x/a/%2E./b", "https://x/b"),
            ("https://x/a/%2e/b", "https://x/a/b"),
            ("https://x/..", "https://x/"),
            ("https://x/../../a", "https://x/a"),
            ("https://x/a/..", "https://x/"),
            ("https://x/a/.", "https://x/a/"),
            ("https://x/a/.%2E", "https://x/"),
            ("https://x/a/b/..?q", "https://x/a/?q"),
            ("https://x/a/b/%2e%2e?x", "https://x/a/?x"),
            ("https://x/./", "https://x/"),
            ("https://x/.//a", "https://x//a"),
            ("https://x/a//../b", "https://x/a/b"),
            ("https://x/a\\..\\b", "https://x/b"),
            ("https://x/a/..\\b", "https://x/b"),
            ("https://x/a/..#f", "https://x/"),
            ("https://x/?q=.&..", "https://x/?q=.&.."),
            ("https://x/a/..%2f/b", "https://x/a/..%2F/b"),
            ("https://x/a/.../b", "https://x/a/.../b"),
            ("https://x/a/.a/b", "https://x/a/.a/b"),
            ("https://x/a/%2e%2e%2e/b", "https://x/a/.../b"),
            ("https://x/a/.%09./b", "https://x/a/.%09./b"),
            ("https://x/a/.\t./b", "https://x/b"),
        ] {
            assert_canonical(raw, chromium);
        }
        // A path is read as on a page (Chromium: `new URL("/a/../b",
        // "https://p.test/d/e")` is `https://p.test/b`); one that then
        // starts with `//` is written as the URL Standard writes a path
        // without a host, `/.//`, not as a scheme-relative URL.
        for (raw, canonical) in [
            ("/a/../b", "/b"),
            ("/..", "/"),
            ("/a/.", "/a/"),
            ("/./a", "/a"),
            ("\\a\\..\\b", "/b"),
            ("/a/%2e%2e", "/"),
            ("/.//a", "/.//a"),
            ("/a/..//b/", "/.//b/"),
        ] {
            assert_canonical(raw, canonical);
        }
        let fold = UrlOptions {
            fold_trailing_slash: true,
            ..UrlOptions::default()
        };
        for (raw, folded) in [
            ("https://x/docs/.", "https://x/docs"),
            ("https://x/docs/a/..//", "https://x/docs"),
            ("https://x/..", "https://x/"),
            ("/a/..//b/", "/.//b"),
            ("/a/..//", "/"),
        ] {
            assert_eq!(canonicalize(raw, &fold).unwrap(), folded, "{raw:?}");
        }
    }

    #[test]
    fn user_info_is_dropped() {
        for raw in [
            "https://user:pw@example.com/x",
            "https://User@Example.com/x",
            "https://@example.com/x",
            "https://a@b:c@example.com:443/x",
            "https://u%40x:p%3A@example.com/x",
        ] {
            assert_eq!(canon(raw), "https://example.com/x", "{raw}");
        }
        assert_eq!(canon("http://u:p@[::1]:81"), "http://[::1]:81/");
        assert_eq!(canon("http://u:p@h:8080?q"), "http://h:8080/?q");
        // The host and port rules apply to what follows the last `@`.
        assert_eq!(canon("https://u:p@127.1:0443/x"), "https://127.0.0.1/x");
        assert_eq!(
            canon("https://a%20b:c@EX%41MPLE.com/x"),
            "https://example.com/x"
        );
        assert_eq!(
            canonicalize("https://u@x:99999/x", &UrlOptions::default()),
            Err(TrackerError::InvalidUrl)
        );
    }

    #[test]
    fn fragment_and_empty_query() {
        assert_eq!(canon("https://example.com/a#b#c"), "https://example.com/a");
        assert_eq!(canon("https://example.com/a?"), "https://example.com/a");
        assert_eq!(canon("https://example.com/a?#x"), "https://example.com/a");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            canon("https://example.com/café"),
            "https://example.com/caf%C3%A9"
        );
        assert_eq!(
            canon("https://example.com/caf%c3%a9"),
            "https://example.com/caf%C3%A9"
        );
        assert_eq!(
            canon("https://example.com/%7Euser/%41"),
            "https://example.com/~user/A"
        );
        assert_eq!(
            canon("https://example.com/a b?q=a b"),
            "https://example.com/a%20b?q=a%20b"
        );
        assert_eq!(
            canon("https://example.com/100%"),
            "https://example.com/100%25"
        );
        assert_eq!(
            canon("https://example.com/%zz%4"),
            "https://example.com/%25zz%254"
        );
        assert_eq!(canon("https://example.com/%2f"), "https://example.com/%2F");
    }

    #[test]
    fn query_policies() {
        let url = "https://example.com/p?utm_source=x&id=7&&ref=y";
        assert_eq!(canon_with(url, QueryPolicy::Strip), "https://example.com/p");
        let allow =
            |names: &[&str]| QueryPolicy::Allow(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            canon_with(url, allow(&["id"])),
            "https://example.com/p?id=7"
        );
        assert_eq!(
            canon_with(url, allow(&["ref", "id"])),
            "https://example.com/p?id=7&ref=y"
        );
        assert_eq!(canon_with(url, allow(&["none"])), "https://example.com/p");
        assert_eq!(
            canon_with("https://example.com/p?id", allow(&["id"])),
            "https://example.com/p?id"
        );
    }

    #[test]
    fn only_web_urls_and_paths_are_pages() {
        let options = UrlOptions::default();
        for bad in [
            "javascript:alert(1)",
            "JavaScript://%0aalert(1)",
            "data:text/html,<b>x</b>",
            "file:///etc/passwd",
            "mailto:someone@example.com",
            "ftp://example.com/",
            "custom://host/x",
            "https://",
            "https:",
            "https:\\\\",
            "http://@:/x",
            // No host once the port is taken off (found by the fixed-point
            // proptest: `http://:80?` became `http:///`).
            "http://:80?",
            "https://user@:443/x",
            "pricing",
            "example.com/pricing",
            "?q=1",
        ] {
            assert_refused(bad);
        }
        for good in [
            "/",
            "/a",
            "\\a",
            "http://h",
            "HTTPS://H/",
            "http://[::1]:8080/x",
            "http://u@h:81",
        ] {
            assert!(canonicalize(good, &options).is_ok(), "{good}");
        }
    }

    /// Chromium 156: `new URL("//example.com/a")` is "Invalid URL", and
    /// `https://example.com/a` with the base `https://page.example/dir/p`
    /// (`http://example.com/a` with `http://page.example:8080/`), as is
    /// every spelling below. Without that base it is no page, and not the
    /// path `//example.com/a` of some other site either.
    #[test]
    fn a_scheme_relative_url_is_refused_with_its_own_error() {
        for raw in [
            "//example.com/a",
            "\\\\example.com\\a",
            "/\\example.com/a",
            "\\/example.com/a",
            "/\t/example.com/a",
            " //example.com/a",
            "///example.com/a",
            "//",
        ] {
            let refused = canonicalize(raw, &UrlOptions::default());
            assert_eq!(refused, Err(TrackerError::SchemeRelativeUrl), "{raw:?}");
            let (kind, rest) = relative_reference(raw).unwrap();
            assert_eq!(kind, Relative::SchemeRelative, "{raw:?}");
            // With an `https` page's scheme in front, the page's URL.
            let resolved = format!("{}{rest}", kind.base("https://page.example"));
            if raw != "//" {
                assert_eq!(canon(&resolved), "https://example.com/a", "{raw:?}");
            }
        }
        assert_eq!(site_of("//example.com/a"), "");
        assert_eq!(origin_of("//example.com/a"), None);
        for (raw, path) in [("/a", "/a"), ("\\a\\b", "/a/b"), (" \t/a", "/a")] {
            let (kind, rest) = relative_reference(raw).unwrap();
            assert_eq!(kind, Relative::Path, "{raw:?}");
            let resolved = format!("{}{rest}", kind.base("https://page.example"));
            assert_eq!(canon(&resolved), format!("https://page.example{path}"));
        }
        for other in [
            "https://example.com/",
            "https:x",
            "a/b",
            "?q",
            "#f",
            "",
            " ",
        ] {
            assert_eq!(relative_reference(other), None, "{other:?}");
        }
    }

    /// Keys an earlier version stored, read as it wrote them ("Legacy
    /// pages" in `tracker/snapshot.rs`); what none wrote is damage.
    #[test]
    fn stored_keys_are_read_as_the_version_that_wrote_them() {
        let options = UrlOptions::default();
        let rekey = |form: &str| Some(StoredKey::Rekey(form.to_string()));
        for (key, taken) in [
            ("https://x/a", Some(StoredKey::Canonical)),
            ("https://x/q\\r?c\\d", rekey("https://x/q/r?c\\d")),
            ("/a\\b", rekey("/a/b")),
            ("https://127.1/a\\b", rekey("https://127.0.0.1/a/b")),
            ("https://a\\@example.com/u", rekey("https://example.com/u")),
            ("https://a\\b/x", Some(StoredKey::Kept)),
            ("https://x:99999/a\\b", Some(StoredKey::Kept)),
            // Dot segments and the escape sets before urls8.
            ("https://x/a/../b", rekey("https://x/b")),
            ("https://u@x/a/./b/..", rekey("https://x/a/")),
            ("/a/..//b", rekey("/.//b")),
            ("https://x/a^b|?c'd", rekey("https://x/a%5Eb%7C?c%27d")),
            ("https://x/?a=%7B%60%7D", rekey("https://x/?a={`}")),
            ("https://x/%7B%60%7D", Some(StoredKey::Canonical)),
            ("https://x:99999/a/../b^", Some(StoredKey::Kept)),
            ("https://x/?a={", Some(StoredKey::Canonical)),
            ("https://x/a{", None),
            ("https://x/a/%2E", None),
            ("https://x/a%5e", None),
            ("//c.d/p", Some(StoredKey::Kept)),
            ("/\\x", Some(StoredKey::Kept)),
            ("https://x/a b", None),
            ("https://x:99999/a b", None),
            ("https://x:99999", None),
            ("https:///x", None),
            ("ftp://x/p", None),
            (":8080/x", None),
            ("x", None),
        ] {
            assert_eq!(stored_key(key, &options), taken, "{key:?}");
        }
    }

    #[test]
    fn tracking_parameters_are_dropped() {
        let options = UrlOptions::default();
        let canon = |raw| canonicalize(raw, &options).unwrap().into_owned();
        assert_eq!(
            canon(
                "https://example.com/p?utm_source=x&id=7&UTM_Medium=y&fbclid=1&gclid=2&msclkid=3&mc_cid=4&mc_eid=5&_ga=6"
            ),
            "https://example.com/p?id=7"
        );
        assert_eq!(canon("/p?utm_campaign=a"), "/p");
        assert_eq!(
            canon("/p?%75tm_source=a&b=1"),
            "/p?b=1",
            "escaped names too"
        );
        assert_eq!(canon("/p?utmost=1&x=&&"), "/p?utmost=1&x=&&", "kept as is");
        assert_eq!(canon("/p?a=1&&fbclid=2"), "/p?a=1");
        let configured = UrlOptions {
            drop_params: vec!["ref".into(), "session*".into()],
            ..UrlOptions::default()
        };
        assert_eq!(
            canonicalize("/p?ref=hn&sessionid=9&utm_source=x", &configured).unwrap(),
            "/p?utm_source=x"
        );
        let allow = UrlOptions {
            query: QueryPolicy::Allow(vec!["id".into(), "gclid".into()]),
            ..UrlOptions::default()
        };
        assert_eq!(
            canonicalize("/p?gclid=1&id=2", &allow).unwrap(),
            "/p?id=2",
            "dropped even when allowed"
        );
    }

    #[test]
    fn trailing_slash_folding() {
        let fold = UrlOptions {
            fold_trailing_slash: true,
            ..UrlOptions::default()
        };
        let canon = |raw| canonicalize(raw, &fold).unwrap().into_owned();
        assert_eq!(
            canon("https://example.com/docs/"),
            "https://example.com/docs"
        );
        assert_eq!(
            canon("https://example.com/docs//?a=1"),
            "https://example.com/docs?a=1"
        );
        assert_eq!(canon("https://example.com/"), "https://example.com/");
        assert_eq!(canon("https://example.com"), "https://example.com/");
        assert_eq!(canon("https://example.com//"), "https://example.com/");
        assert_eq!(canon("/"), "/");
        assert_eq!(
            canon("/a/%2F"),
            "/a/%2F",
            "an escaped slash is not a separator"
        );
        let keep = UrlOptions::default();
        assert_eq!(canonicalize("/docs/", &keep).unwrap(), "/docs/");
    }

    #[test]
    fn sites() {
        for (url, site) in [
            ("https://user@Example.com:8080/x?y#z", "example.com:8080"),
            ("https://example.com:8080/x", "example.com:8080"),
            ("  HTTPS://EXAMPLE.com:0443/x", "example.com"),
            ("http://example.com:80", "example.com"),
            ("http://h?x", "h"),
            ("http://h#x", "h"),
            ("http://[::1]:81/", "[::1]:81"),
            ("https://BÜCHER.de/", "xn--bcher-kva.de"),
            ("https://XN--BCHER-KVA.de/", "xn--bcher-kva.de"),
            ("https://127.1/", "127.0.0.1"),
            ("/x", ""),
            ("javascript:alert(1)", ""),
            ("mailto:a@b.c", ""),
        ] {
            assert_eq!(site_of(url), site, "{url}");
        }
        // Every spelling of one page's URL gives one site.
        for url in [
            "https://Example.com/a",
            "https://example.com:443/a",
            " https://u@example.com/a",
        ] {
            assert_eq!(site_of(url), "example.com", "{url}");
        }
    }

    #[test]
    fn errors() {
        let options = UrlOptions {
            max_len: 20,
            ..UrlOptions::default()
        };
        let empty = Err(TrackerError::Empty { field: Field::Url });
        assert_eq!(canonicalize("", &options), empty);
        assert_eq!(canonicalize(" \t\n", &options), empty);
        assert_eq!(canonicalize("#only-a-fragment", &options), empty);
        assert_eq!(
            canonicalize("https://example.com/abcdef", &options),
            Err(TrackerError::TooLong {
                field: Field::Url,
                len: 26,
                max: 20
            })
        );
        // Over the limit as sent, a fragment included, though the page
        // would drop it: the limit is on the input.
        assert_eq!(
            canonicalize("/a#0123456789012345678", &options),
            Err(TrackerError::TooLong {
                field: Field::Url,
                len: 22,
                max: 20
            })
        );
        // Within the limit as sent, over it once escaped.
        assert_eq!(
            canonicalize("/ééééééé", &options),
            Err(TrackerError::TooLong {
                field: Field::Url,
                len: 43,
                max: 20
            })
        );
    }

    #[test]
    fn the_fast_path_proves_common_urls_canonical() {
        let options = UrlOptions::default();
        for canonical in [
            "https://shop.example.com/help/12345-item-ec9ee8?ref=email_digest",
            "http://example.com:8080/a%2Fb?x=%C3%A9&&y",
            "https://127.0.0.1/",
            "https://10.0.255.1:65535/",
            "https://a1.example/",
            "/pricing?plan=pro",
            "https://example.com/?a\\b",
            "https://x/a.b/.c/..d/...?x=/./&y=..",
            "https://x/?q=%27{`}^|[]",
        ] {
            assert!(is_canonical(canonical, &options), "{canonical}");
        }
        for other in [
            "https://Example.com/",
            "https://example.com:443/",
            "https://example.com:0080/",
            "https://example.com",
            "https://example.com?q",
            "https://u@example.com/",
            "http://[::1]:8080/x",
            "https://127.1/",
            "https://1.2.3.999/",
            "https://01.2.3.4/",
            "https://1.2.3.4./",
            "https://example.1/",
            "https://example.0x/",
            "https://x:65536/",
            "https://x:99999/",
            "https://xn--bcher-kva.de/",
            "https://example.com/a#top",
            "https://example.com/?",
            "https://example.com/%7e",
            "https://example.com/%2f",
            "https://example.com/?utm_source=x",
            "https://example.com/?a=1&gclid&b",
            "/?UTM_x",
            "https://example.com/caf\u{e9}",
            " https://example.com/",
            "https://example.com/a\\b",
            "https://example.com\\a",
            "https://example.com/\ta",
            "/a\\b",
            "\\a",
            "//cdn.example/x",
            "https://x/a/./b",
            "https://x/a/../b",
            "https://x/a/..",
            "https://x/.?q",
            "https://x/a/..?q",
            "https://x/a^",
            "https://x/a|",
            "https://x/a?'",
            "https://x/?%7B",
            "/.//a",
        ] {
            assert!(!is_canonical(other, &options), "{other}");
        }
    }

    /// URL-shaped strings from the pieces the fast path looks at, and the
    /// options that change what is canonical.
    fn url_and_options() -> impl Strategy<Value = (String, UrlOptions)> {
        // Canonical starts weigh more: the rest then decides alone.
        let scheme = prop_oneof![
            1 => Just(""),
            2 => Just("http://"),
            2 => Just("https://"),
            1 => Just("HTTPS://"),
            1 => Just("ftp://"),
            1 => Just("http:"),
            1 => Just("https:\\\\"),
            1 => Just("http:/\\/"),
            1 => Just("h\ttp\n://"),
            1 => Just(" \u{1}https://"),
            4 => Just("https://a.example/"),
            4 => Just("/"),
            1 => Just("\\"),
            1 => Just("/\\"),
        ];
        let user_info = prop_oneof![
            6 => Just(""),
            1 => Just("user:pw@"),
            1 => Just("U@"),
            1 => Just("@"),
            1 => Just("a@b:c@"),
            1 => Just("%41:%3A@"),
        ];
        let host = prop_oneof![
            4 => "[a-z0-9.-]{0,6}",
            1 => "[A-Za-z0-9.@-]{0,6}",
            2 => "([0-9]{1,3}\\.){0,4}[0-9]{1,4}\\.?",
            1 => "(0x?[0-9a-f]{0,3}\\.){0,3}0x?[0-9]{0,3}",
            1 => "[a-z%0-9 <|^]{1,6}",
            1 => Just("[::1]".to_string()),
            1 => Just("[2001:DB8::1]".to_string()),
            1 => Just("[0:0::1]".to_string()),
            1 => Just("[::g]".to_string()),
        ];
        let port = prop_oneof![
            Just(""),
            Just(":"),
            Just(":80"),
            Just(":443"),
            Just(":8080"),
            Just(":0"),
            Just(":08"),
            Just(":123456"),
            Just(":65535"),
            Just(":65536"),
            Just(":99999"),
            Just(":x"),
        ];
        // The path's first `/`, mostly there.
        let lead = prop_oneof![3 => Just("/"), 1 => Just("")];
        let piece = prop_oneof![
            "[a-zA-Z0-9._~-]{1,4}",
            "[ -~]",
            Just("/".to_string()),
            Just("?".to_string()),
            Just("&".to_string()),
            Just("=".to_string()),
            Just("#".to_string()),
            Just("%".to_string()),
            Just("%2F".to_string()),
            Just("%2f".to_string()),
            Just("%41".to_string()),
            Just("%C3%A9".to_string()),
            Just("\u{e9}".to_string()),
            Just(" ".to_string()),
            Just("\\".to_string()),
            Just("\t".to_string()),
            Just("\r\n".to_string()),
            Just("\u{0}".to_string()),
            Just("\u{a0}".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("/.".to_string()),
            Just("/..".to_string()),
            Just("./".to_string()),
            Just("%2e".to_string()),
            Just("%2E.".to_string()),
            Just("'".to_string()),
            Just("^|".to_string()),
            Just("{`}".to_string()),
            Just("%7B".to_string()),
            Just("%60".to_string()),
            Just("%5e".to_string()),
            Just("utm_source=a".to_string()),
            Just("UTM_x".to_string()),
            Just("fbclid=b".to_string()),
            Just("gclid&".to_string()),
            Just("id=3".to_string()),
        ];
        let query = prop_oneof![
            Just(QueryPolicy::Keep),
            Just(QueryPolicy::Strip),
            Just(QueryPolicy::Allow(vec!["id".into()])),
        ];
        (
            (
                scheme,
                user_info,
                host,
                port,
                lead,
                proptest::collection::vec(piece, 0..8),
            ),
            (query, any::<bool>(), any::<bool>(), 8usize..40),
        )
            .prop_map(
                |(
                    (scheme, user_info, host, port, lead, pieces),
                    (query, fold, own_drop, max_len),
                )| {
                    let options = UrlOptions {
                        query,
                        max_len,
                        drop_params: if own_drop {
                            vec!["id".into(), "*".into()]
                        } else {
                            UrlOptions::default().drop_params
                        },
                        fold_trailing_slash: fold,
                    };
                    (
                        format!("{scheme}{user_info}{host}{port}{lead}{}", pieces.concat()),
                        options,
                    )
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 4000,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// The fast path answers exactly what the full rules do, for
        /// arbitrary URLs and for their canonical forms (which it should
        /// prove), and canonicalising twice is canonicalising once.
        #[test]
        fn the_fast_path_agrees_with_the_full_rules((url, options) in url_and_options()) {
            proptest::prop_assert_eq!(
                canonicalize(&url, &options),
                canonicalize_in_full(&url, &options)
            );
            if let Ok(canonical) = canonicalize_in_full(&url, &options) {
                proptest::prop_assert_eq!(
                    canonicalize(&canonical, &options),
                    canonicalize_in_full(&canonical, &options)
                );
                let again = canonicalize_in_full(&canonical, &options);
                proptest::prop_assert_eq!(again.as_deref(), Ok(&*canonical));
                proptest::prop_assert_eq!(
                    stored_key(&canonical, &options),
                    Some(StoredKey::Canonical)
                );
            }
            // A key an earlier version wrote is read back, as the same key
            // or one today's rules write (its path started with `/`, not
            // with a `\\` those rules keep).
            if let Ok(old) = canonicalize_under(&url, &options, &BEFORE_URLS8)
                && split_authority(&old).map_or(&*old, |(_, rest)| rest).starts_with('/')
            {
                match stored_key(&old, &options) {
                    Some(StoredKey::Rekey(form)) => {
                        let again = canonicalize(&form, &options);
                        proptest::prop_assert_eq!(again.as_deref(), Ok(&*form));
                    }
                    Some(_) => {}
                    None => proptest::prop_assert!(false, "{old:?} refused"),
                }
            }
        }
    }
}

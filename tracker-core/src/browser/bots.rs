//! Which events come from bots rather than people, by user agent.
//!
//! The rules are a list of our own, by kind ([`BotReason`]), rather than a
//! crate: the Rust crates for this (`isbot` 0.1, last released 2022;
//! `voight_kampff`, 2020) are unmaintained, give a yes/no without the
//! reason operators need in `/stats`, and pull in a regex engine. The
//! tokens follow the categories the maintained JavaScript `isbot` list
//! and the big trackers filter on: self-declared crawlers and link
//! previewers, headless browsers and automation drivers, and, in the
//! [strict](BotFilter::strict) filter only, HTTP libraries, command-line
//! clients and requests with no user agent. Those last are left out by
//! default because a backend or a script posting page views with `curl`
//! or an HTTP library, without a visitor id, is a legitimate sender the
//! operator chose; crawlers, headless browsers and automation never are
//! people. Matching is one pass over the lowercased user agent (its first
//! 512 bytes) for all tokens at once (Aho-Corasick), after a cheaper test
//! that lets through the common browser shapes, which contain no token
//! (`common_browser`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Why an event was taken for a bot's and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// The request had no (or an empty) `User-Agent`: browsers always send
    /// one. Strict filter only.
    NoUserAgent,
    /// A self-declared crawler, spider, link previewer or monitor
    /// (`Googlebot`, `facebookexternalhit`, `Pingdom`, ...).
    Crawler,
    /// An HTTP library or command-line client (`curl/`, `python-requests`,
    /// `Go-http-client`, ...). Strict filter only.
    HttpClient,
    /// A headless browser (`HeadlessChrome`, `PhantomJS`, ...).
    Headless,
    /// A browser driven by automation (`Selenium`, `Puppeteer`,
    /// `Lighthouse`, ...).
    Automation,
    /// The page's script flagged itself as automated (GoatCounter's `b`
    /// parameter, 150 and above).
    ClientFlag,
}

impl BotReason {
    /// Every reason, in a stable order (for counters).
    pub const ALL: [BotReason; 6] = [
        BotReason::NoUserAgent,
        BotReason::Crawler,
        BotReason::HttpClient,
        BotReason::Headless,
        BotReason::Automation,
        BotReason::ClientFlag,
    ];

    /// The reason's name in `/stats` and `/metrics` (`"crawler"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BotReason::NoUserAgent => "no_user_agent",
            BotReason::Crawler => "crawler",
            BotReason::HttpClient => "http_client",
            BotReason::Headless => "headless",
            BotReason::Automation => "automation",
            BotReason::ClientFlag => "client_flag",
        }
    }
}

/// Tokens matched anywhere in a user agent, case-insensitively. `None`
/// marks an exception: real browsers whose user agent contains a bot token
/// (leftmost-first matching lets the longer exception win where both
/// start).
const TOKENS: &[(&str, Option<BotReason>)] = &[
    // Phones and browsers that merely contain "bot".
    ("cubot", None),
    // Headless browsers.
    ("headlesschrome", Some(BotReason::Headless)),
    ("headless", Some(BotReason::Headless)),
    ("phantomjs", Some(BotReason::Headless)),
    ("slimerjs", Some(BotReason::Headless)),
    ("htmlunit", Some(BotReason::Headless)),
    // Automation drivers and audit tools.
    ("selenium", Some(BotReason::Automation)),
    ("webdriver", Some(BotReason::Automation)),
    ("puppeteer", Some(BotReason::Automation)),
    ("playwright", Some(BotReason::Automation)),
    ("cypress", Some(BotReason::Automation)),
    ("nightmare", Some(BotReason::Automation)),
    ("lighthouse", Some(BotReason::Automation)),
    ("pagespeed", Some(BotReason::Automation)),
    ("gtmetrix", Some(BotReason::Automation)),
    ("prerender", Some(BotReason::Automation)),
    // WebPageTest appends `PTST/<version>` to a real browser's.
    ("ptst/", Some(BotReason::Automation)),
    // Crawlers, previewers and monitors.
    ("bot", Some(BotReason::Crawler)),
    ("crawl", Some(BotReason::Crawler)),
    ("spider", Some(BotReason::Crawler)),
    ("slurp", Some(BotReason::Crawler)),
    ("scrap", Some(BotReason::Crawler)),
    ("archiver", Some(BotReason::Crawler)),
    ("facebookexternalhit", Some(BotReason::Crawler)),
    ("facebookcatalog", Some(BotReason::Crawler)),
    ("mediapartners", Some(BotReason::Crawler)),
    ("feedfetcher", Some(BotReason::Crawler)),
    ("bingpreview", Some(BotReason::Crawler)),
    ("skypeuripreview", Some(BotReason::Crawler)),
    ("whatsapp", Some(BotReason::Crawler)),
    ("embedly", Some(BotReason::Crawler)),
    ("yandex", Some(BotReason::Crawler)),
    ("pingdom", Some(BotReason::Crawler)),
    ("uptime", Some(BotReason::Crawler)),
    ("monitor", Some(BotReason::Crawler)),
    ("validator", Some(BotReason::Crawler)),
    // Google's fetchers that name no "bot": `Google-InspectionTool`
    // (Search Console's URL inspection), `GoogleOther` (its research
    // crawler), `Google-PageRenderer` (page previews).
    ("inspectiontool", Some(BotReason::Crawler)),
    ("googleother", Some(BotReason::Crawler)),
    ("pagerenderer", Some(BotReason::Crawler)),
    // HTTP libraries and command-line clients (strict filter only).
    ("curl/", Some(BotReason::HttpClient)),
    ("wget/", Some(BotReason::HttpClient)),
    ("httpie/", Some(BotReason::HttpClient)),
    ("python-requests", Some(BotReason::HttpClient)),
    ("python-urllib", Some(BotReason::HttpClient)),
    ("python-httpx", Some(BotReason::HttpClient)),
    ("aiohttp", Some(BotReason::HttpClient)),
    ("go-http-client", Some(BotReason::HttpClient)),
    ("okhttp", Some(BotReason::HttpClient)),
    ("axios/", Some(BotReason::HttpClient)),
    ("node-fetch", Some(BotReason::HttpClient)),
    ("undici", Some(BotReason::HttpClient)),
    ("libwww-perl", Some(BotReason::HttpClient)),
    ("java/", Some(BotReason::HttpClient)),
    ("apache-httpclient", Some(BotReason::HttpClient)),
    ("postmanruntime", Some(BotReason::HttpClient)),
    ("reqwest", Some(BotReason::HttpClient)),
];

/// Drops events from bots by their user agent (see the module docs for
/// the rules), or lets everything through when off. The default filter
/// drops crawlers, headless browsers and automation; the strict one also
/// HTTP libraries and requests without a user agent.
///
/// ```
/// use tracker_core::browser::{BotFilter, BotReason};
///
/// let filter = BotFilter::new(true);
/// let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";
/// assert_eq!(filter.check(Some(chrome)), None);
/// assert_eq!(filter.check(Some(&chrome.replace("Chrome/", "HeadlessChrome/"))), Some(BotReason::Headless));
/// assert_eq!(filter.check(Some("Googlebot/2.1 (+http://www.google.com/bot.html)")), Some(BotReason::Crawler));
/// assert_eq!(filter.check(Some("curl/8.5.0")), None);
/// assert_eq!(filter.check(None), None);
/// let strict = BotFilter::strict();
/// assert_eq!(strict.check(Some("curl/8.5.0")), Some(BotReason::HttpClient));
/// assert_eq!(strict.check(None), Some(BotReason::NoUserAgent));
/// assert_eq!(BotFilter::new(false).check(Some(&chrome.replace("Chrome/", "HeadlessChrome/"))), None);
/// ```
#[derive(Debug, Clone)]
pub struct BotFilter {
    /// `None` when filtering is off.
    matcher: Option<AhoCorasick>,
    /// Whether HTTP libraries and missing user agents are dropped too.
    strict: bool,
}

impl BotFilter {
    /// The default filter (crawlers, headless browsers, automation), on or
    /// off.
    pub fn new(enabled: bool) -> Self {
        let matcher = enabled.then(|| {
            // Case-sensitive over a lowercased copy of the user agent: that
            // keeps the SIMD prefilter (Teddy) on, which case-insensitive
            // matching turns off, and runs several times faster.
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostFirst)
                .build(TOKENS.iter().map(|(token, _)| token))
                // A fixed list of short literals always builds.
                .expect("the bot tokens build an automaton")
        });
        Self {
            matcher,
            strict: false,
        }
    }

    /// The strict filter: the default one, plus HTTP libraries, command-line
    /// clients and requests without a user agent.
    pub fn strict() -> Self {
        Self {
            strict: true,
            ..Self::new(true)
        }
    }

    /// Whether the filter is on.
    pub fn enabled(&self) -> bool {
        self.matcher.is_some()
    }

    /// Why an event with this user agent is a bot's, or `None` to count
    /// it. The most specific reason wins: headless or automation over a
    /// generic crawler token.
    pub fn check(&self, user_agent: Option<&str>) -> Option<BotReason> {
        let matcher = self.matcher.as_ref()?;
        let user_agent = crate::canonical_url::trim(user_agent.unwrap_or(""));
        if user_agent.is_empty() {
            return self.strict.then_some(BotReason::NoUserAgent);
        }
        if common_browser(user_agent.as_bytes()) {
            return None;
        }
        Self::full_check(matcher, self.strict, user_agent)
    }

    /// Whether the rules are on and `user_agent`, a header's bytes as
    /// sent, has one of the common browser shapes that [`check`](Self::check)
    /// lets through before the token rules. Such a user agent is ASCII, so
    /// its bytes are its text: a caller can skip the UTF-8 check.
    ///
    /// ```
    /// let bots = tracker_core::browser::BotFilter::new(true);
    /// let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    /// assert!(bots.lets_through(firefox.as_bytes()));
    /// assert_eq!(bots.check(Some(firefox)), None);
    /// assert!(!bots.lets_through(b"curl/8.5.0"));
    /// ```
    pub fn lets_through(&self, user_agent: &[u8]) -> bool {
        self.matcher.is_some() && common_browser(user_agent)
    }

    /// The token rules alone, for a non-empty trimmed user agent (HTTP
    /// clients only if `strict`).
    fn full_check(matcher: &AhoCorasick, strict: bool, user_agent: &str) -> Option<BotReason> {
        // User agents are ~100-200 bytes; longer ones are cut (a bot token
        // past 512 bytes is not worth an allocation per event).
        let mut lower = [0u8; 512];
        let len = user_agent.len().min(lower.len());
        for (out, b) in lower.iter_mut().zip(&user_agent.as_bytes()[..len]) {
            *out = b.to_ascii_lowercase();
        }
        matcher
            .find_iter(&lower[..len])
            .filter_map(|m| TOKENS[m.pattern().as_usize()].1)
            .filter(|&reason| strict || reason != BotReason::HttpClient)
            .min_by_key(|reason| match reason {
                BotReason::Headless => 0,
                BotReason::Automation => 1,
                _ => 2,
            })
    }
}

/// The common shapes of browser user agents, as literal pieces with a
/// non-empty run of digits, `.` and `_` between two pieces (a version).
/// No bot token contains those bytes, nor the separators `; ` and `) `, nor
/// occurs in a piece (tests check all three), so a user agent of exactly
/// these shapes matches no token: [`common_browser`] answers for most real
/// traffic with a few slice comparisons instead of the lowercased copy
/// and the automaton (~900 instructions per event).
const PREFIX: &[u8] = b"Mozilla/5.0 (";
/// One `; `-separated part of the parenthesised platform comment, sorted
/// by first byte (looked up by it); longer shapes first where one is a
/// prefix of another.
const COMMENT_PARTS: &[&[&[u8]]] = &[
    &[b"Android ", b""],
    &[b"CPU iPhone OS ", b" like Mac OS X"],
    &[b"CPU OS ", b" like Mac OS X"],
    &[b"Intel Mac OS X ", b""],
    &[b"K"],
    &[b"Linux x86_64"],
    &[b"Linux"],
    &[b"Macintosh"],
    &[b"Ubuntu"],
    &[b"Windows NT ", b""],
    &[b"Win64"],
    &[b"WOW64"],
    &[b"X11"],
    &[b"iPhone"],
    &[b"iPad"],
    &[b"rv:", b""],
    &[b"x64"],
];
/// The range of [`COMMENT_PARTS`] starting with each ASCII byte.
const PARTS_BY_FIRST_BYTE: [(u8, u8); 128] = {
    let mut table = [(0, 0); 128];
    let mut i = 0;
    while i < COMMENT_PARTS.len() {
        let first = COMMENT_PARTS[i][0][0] as usize;
        if table[first].1 == 0 {
            table[first].0 = i as u8;
        }
        table[first].1 = i as u8 + 1;
        i += 1;
    }
    table
};

/// What follows the comment and `) `, to the end.
const TAILS: &[&[&[u8]]] = &[
    &[b"Gecko/", b" Firefox/", b""],
    &[
        b"AppleWebKit/",
        b" (KHTML, like Gecko) Chrome/",
        b" Safari/",
        b"",
    ],
    &[
        b"AppleWebKit/",
        b" (KHTML, like Gecko) Chrome/",
        b" Safari/",
        b" Edg/",
        b"",
    ],
    &[
        b"AppleWebKit/",
        b" (KHTML, like Gecko) Chrome/",
        b" Mobile Safari/",
        b"",
    ],
    &[
        b"AppleWebKit/",
        b" (KHTML, like Gecko) Version/",
        b" Safari/",
        b"",
    ],
    &[
        b"AppleWebKit/",
        b" (KHTML, like Gecko) Version/",
        b" Mobile/",
        b"E",
        b" Safari/",
        b"",
    ],
];

fn is_version_byte(b: u8) -> bool {
    b.is_ascii_digit() || b == b'.' || b == b'_'
}

/// The rest of `input` after `shape` (its pieces, a version run between
/// two), or `None` if `input` does not start with it.
fn strip_shape<'a>(mut input: &'a [u8], shape: &[&[u8]]) -> Option<&'a [u8]> {
    for (i, piece) in shape.iter().enumerate() {
        if i > 0 {
            let run = input.iter().take_while(|&&b| is_version_byte(b)).count();
            if run == 0 {
                return None;
            }
            input = &input[run..];
        }
        // The first byte inline: most shapes tried are not the one, and
        // are told apart there without a `memcmp` call.
        if piece.first().is_some_and(|b| input.first() != Some(b)) {
            return None;
        }
        input = input.strip_prefix(*piece)?;
    }
    Some(input)
}

/// Whether `user_agent` has one of the common browser shapes above, and so
/// matches no bot token.
fn common_browser(user_agent: &[u8]) -> bool {
    let Some(mut rest) = user_agent.strip_prefix(PREFIX) else {
        return false;
    };
    loop {
        // Only the shapes of the part's first byte are tried.
        let first = usize::from(rest.first().copied().unwrap_or(0));
        let (from, to) = PARTS_BY_FIRST_BYTE.get(first).copied().unwrap_or((0, 0));
        let Some(after) = COMMENT_PARTS[usize::from(from)..usize::from(to)]
            .iter()
            .filter_map(|shape| strip_shape(rest, shape))
            .find(|after| after.starts_with(b"; ") || after.starts_with(b") "))
        else {
            return false;
        };
        if let Some(next) = after.strip_prefix(b"; ") {
            rest = next;
            continue;
        }
        let tail = &after[2..];
        return TAILS
            .iter()
            .filter(|shape| shape[0].first() == tail.first())
            .any(|shape| strip_shape(tail, shape).is_some_and(<[u8]>::is_empty));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";

    #[test]
    fn what_lets_through_passes_check_and_is_ascii() {
        let f = BotFilter::new(true);
        for ua in [FIREFOX, SAFARI, CHROME] {
            assert!(f.lets_through(ua.as_bytes()), "{ua}");
            assert_eq!(f.check(Some(ua)), None, "{ua}");
        }
        let headless = CHROME.replace("Chrome/", "HeadlessChrome/");
        for ua in [&headless, &format!(" {FIREFOX}"), &format!("{FIREFOX} ")] {
            assert!(!f.lets_through(ua.as_bytes()), "{ua}");
        }
        assert!(!f.lets_through(b"Mozilla/5.0 (X11\xff; Linux x86_64; rv:1) Gecko/1 Firefox/1"));
        assert!(!BotFilter::new(false).lets_through(FIREFOX.as_bytes()));
    }

    #[test]
    fn each_rule() {
        let f = BotFilter::new(true);
        let cases: &[(&str, Option<BotReason>)] = &[
            (FIREFOX, None),
            (SAFARI, None),
            (CHROME, None),
            (
                "Mozilla/5.0 (Linux; Android 12; CUBOT X30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
                None,
            ),
            ("", None),
            ("   ", None),
            (
                &CHROME.replace("Chrome/", "HeadlessChrome/"),
                Some(BotReason::Headless),
            ),
            (
                "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
                Some(BotReason::Headless),
            ),
            (
                &format!("{CHROME} Chrome-Lighthouse"),
                Some(BotReason::Automation),
            ),
            (&format!("{FIREFOX} Selenium"), Some(BotReason::Automation)),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                Some(BotReason::Crawler),
            ),
            (
                "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                Some(BotReason::Crawler),
            ),
            (
                "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
                Some(BotReason::Crawler),
            ),
            ("curl/8.5.0", None),
            ("python-requests/2.32", None),
            ("Go-http-client/1.1", None),
            (
                "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
                Some(BotReason::Crawler),
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot) HeadlessChrome/120",
                Some(BotReason::Headless),
            ),
            (
                "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
                Some(BotReason::Crawler),
            ),
            (
                &format!("{CHROME} (compatible; GoogleOther)"),
                Some(BotReason::Crawler),
            ),
            (
                &format!(
                    "{CHROME} (compatible; Google-PageRenderer; Google (+https://developers.google.com/+/web/snippet/))"
                ),
                Some(BotReason::Crawler),
            ),
            (
                &format!("{CHROME} PTST/231208.152614"),
                Some(BotReason::Automation),
            ),
        ];
        let strict = BotFilter::strict();
        for (ua, want) in cases {
            assert_eq!(f.check(Some(ua)), *want, "{ua}");
            // The strict filter drops all the default one does, and more.
            if want.is_some() {
                assert_eq!(strict.check(Some(ua)), *want, "strict: {ua}");
            }
        }
        let strict_only: &[(&str, BotReason)] = &[
            ("", BotReason::NoUserAgent),
            ("   ", BotReason::NoUserAgent),
            ("curl/8.5.0", BotReason::HttpClient),
            ("python-requests/2.32", BotReason::HttpClient),
            ("Go-http-client/1.1", BotReason::HttpClient),
            ("Wget/1.21.4", BotReason::HttpClient),
        ];
        for (ua, want) in strict_only {
            assert_eq!(f.check(Some(ua)), None, "{ua}");
            assert_eq!(strict.check(Some(ua)), Some(*want), "strict: {ua}");
        }
        assert_eq!(strict.check(None), Some(BotReason::NoUserAgent));
        assert_eq!(strict.check(Some(CHROME)), None);
        let off = BotFilter::new(false);
        assert!(!off.enabled());
        assert_eq!(off.check(Some("curl/8.5.0")), None);
        assert_eq!(off.check(None), None);
    }
}

#[cfg(test)]
mod fast_path {
    use proptest::prelude::*;

    use super::*;

    /// Every shape piece and separator, for the token checks.
    fn pieces() -> Vec<&'static [u8]> {
        let mut all = vec![PREFIX, b"; ".as_slice(), b") ".as_slice()];
        all.extend(
            COMMENT_PARTS
                .iter()
                .chain(TAILS)
                .flat_map(|s| s.iter().copied()),
        );
        all
    }

    /// Why the fast path is sound: no token spans a version run or a
    /// separator, and none occurs inside a piece.
    #[test]
    fn no_token_fits_a_shape() {
        for shape in COMMENT_PARTS.iter().chain(TAILS) {
            assert!(!shape[0].is_empty(), "a shape starts with a literal byte");
        }
        assert!(COMMENT_PARTS.is_sorted_by_key(|shape| shape[0][0]));
        for (token, _) in TOKENS {
            assert!(
                !token
                    .bytes()
                    .any(|b| is_version_byte(b) || b" ;()".contains(&b)),
                "{token}"
            );
            for piece in pieces() {
                let piece = String::from_utf8(piece.to_ascii_lowercase()).unwrap();
                assert!(!piece.contains(token), "{token} in {piece}");
            }
        }
    }

    /// Real user agents of today's browsers take the fast path.
    #[test]
    fn common_browsers_take_it() {
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36",
        ] {
            assert!(common_browser(ua.as_bytes()), "{ua}");
        }
        // Bots dressed as browsers do not.
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0 Selenium",
            "Mozilla/5.0 (Linux; Android 12; CUBOT X30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
        ] {
            assert!(!common_browser(ua.as_bytes()), "{ua}");
        }
    }

    /// A user agent built from the shapes' pieces, versions and tokens,
    /// shuffled enough to hit near misses.
    fn user_agent() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            proptest::sample::select(pieces()).prop_map(|p| String::from_utf8(p.to_vec()).unwrap()),
            "[0-9._]{1,4}",
            proptest::sample::select(TOKENS.iter().map(|(t, _)| *t).collect::<Vec<_>>())
                .prop_map(|t| t.to_ascii_uppercase()),
            "[ -~]{1,3}",
        ];
        let versions =
            proptest::sample::select(TAILS.iter().chain(COMMENT_PARTS).collect::<Vec<_>>());
        prop_oneof![
            proptest::collection::vec(piece, 1..12).prop_map(|v| v.concat()),
            // A real shape with its version runs, then maybe a piece spliced in.
            (
                versions,
                "[0-9._]{1,4}",
                proptest::option::of(("[ -~]{0,8}", 0usize..200))
            )
                .prop_map(|(shape, version, splice)| {
                    let mut ua = String::from_utf8(PREFIX.to_vec()).unwrap();
                    ua.push_str("X11) ");
                    for (i, piece) in shape.iter().enumerate() {
                        if i > 0 {
                            ua.push_str(&version);
                        }
                        ua.push_str(std::str::from_utf8(piece).unwrap());
                    }
                    if let Some((text, at)) = splice {
                        let at = (0..=at.min(ua.len()))
                            .rev()
                            .find(|&i| ua.is_char_boundary(i))
                            .unwrap_or(0);
                        ua.insert_str(at, &text);
                    }
                    ua
                }),
        ]
    }

    proptest! {
        /// The fast path never lets through what the token rules drop.
        #[test]
        fn agrees_with_the_token_rules(ua in user_agent()) {
            for filter in [BotFilter::new(true), BotFilter::strict()] {
                let full = match ua.trim() {
                    "" => filter.strict.then_some(BotReason::NoUserAgent),
                    trimmed => BotFilter::full_check(
                        filter.matcher.as_ref().unwrap(),
                        filter.strict,
                        trimmed,
                    ),
                };
                prop_assert_eq!(filter.check(Some(&ua)), full);
                if common_browser(ua.trim().as_bytes()) {
                    prop_assert_eq!(full, None);
                }
            }
        }
    }
}

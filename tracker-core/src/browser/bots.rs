//! Which events come from bots rather than people, by user agent.
//!
//! The rules are a list of our own, by kind ([`BotReason`]), rather than a
//! crate: the Rust crates for this (`isbot` 0.1, last released 2022;
//! `voight_kampff`, 2020) are unmaintained, give a yes/no without the
//! reason operators need in `/stats`, and pull in a regex engine. The
//! tokens follow the categories the maintained JavaScript `isbot` list
//! and the big trackers filter on: self-declared crawlers and link
//! previewers, HTTP libraries and command-line clients, headless browsers
//! and automation drivers. Matching is one pass over the lowercased user
//! agent (its first 512 bytes) for all tokens at once (Aho-Corasick).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Why an event was taken for a bot's and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// The request had no (or an empty) `User-Agent`: browsers always send
    /// one.
    NoUserAgent,
    /// A self-declared crawler, spider, link previewer, monitor or HTTP
    /// library (`Googlebot`, `facebookexternalhit`, `curl/`, ...).
    Crawler,
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
    pub const ALL: [BotReason; 5] = [
        BotReason::NoUserAgent,
        BotReason::Crawler,
        BotReason::Headless,
        BotReason::Automation,
        BotReason::ClientFlag,
    ];

    /// The reason's name in `/stats` and `/metrics` (`"crawler"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BotReason::NoUserAgent => "no_user_agent",
            BotReason::Crawler => "crawler",
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
    // Crawlers, previewers, monitors and HTTP libraries.
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
    ("curl/", Some(BotReason::Crawler)),
    ("wget/", Some(BotReason::Crawler)),
    ("httpie/", Some(BotReason::Crawler)),
    ("python-requests", Some(BotReason::Crawler)),
    ("python-urllib", Some(BotReason::Crawler)),
    ("python-httpx", Some(BotReason::Crawler)),
    ("aiohttp", Some(BotReason::Crawler)),
    ("go-http-client", Some(BotReason::Crawler)),
    ("okhttp", Some(BotReason::Crawler)),
    ("axios/", Some(BotReason::Crawler)),
    ("node-fetch", Some(BotReason::Crawler)),
    ("undici", Some(BotReason::Crawler)),
    ("libwww-perl", Some(BotReason::Crawler)),
    ("java/", Some(BotReason::Crawler)),
    ("apache-httpclient", Some(BotReason::Crawler)),
    ("postmanruntime", Some(BotReason::Crawler)),
    ("reqwest", Some(BotReason::Crawler)),
];

/// Drops events from bots by their user agent (see the module docs for
/// the rules), or lets everything through when off.
///
/// ```
/// use tracker_core::browser::{BotFilter, BotReason};
///
/// let filter = BotFilter::new(true);
/// let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";
/// assert_eq!(filter.check(Some(chrome)), None);
/// assert_eq!(filter.check(Some(&chrome.replace("Chrome/", "HeadlessChrome/"))), Some(BotReason::Headless));
/// assert_eq!(filter.check(Some("Googlebot/2.1 (+http://www.google.com/bot.html)")), Some(BotReason::Crawler));
/// assert_eq!(filter.check(None), Some(BotReason::NoUserAgent));
/// assert_eq!(BotFilter::new(false).check(None), None);
/// ```
#[derive(Debug, Clone)]
pub struct BotFilter {
    /// `None` when filtering is off.
    matcher: Option<AhoCorasick>,
}

impl BotFilter {
    /// The filter, on or off.
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
        Self { matcher }
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
        let user_agent = user_agent.unwrap_or("").trim();
        if user_agent.is_empty() {
            return Some(BotReason::NoUserAgent);
        }
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
            .min_by_key(|reason| match reason {
                BotReason::Headless => 0,
                BotReason::Automation => 1,
                _ => 2,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";

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
            ("", Some(BotReason::NoUserAgent)),
            ("   ", Some(BotReason::NoUserAgent)),
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
            ("curl/8.5.0", Some(BotReason::Crawler)),
            ("python-requests/2.32", Some(BotReason::Crawler)),
            ("Go-http-client/1.1", Some(BotReason::Crawler)),
            (
                "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
                Some(BotReason::Crawler),
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot) HeadlessChrome/120",
                Some(BotReason::Headless),
            ),
        ];
        for (ua, want) in cases {
            assert_eq!(f.check(Some(ua)), *want, "{ua}");
        }
        let off = BotFilter::new(false);
        assert!(!off.enabled());
        assert_eq!(off.check(Some("curl/8.5.0")), None);
        assert_eq!(off.check(None), None);
    }
}

//! Counts over time: `GET /series`, and the ranged forms of `GET
//! /distinct` and `GET /top` (with `from` and/or `till`).
//!
//! Only translation happens here: `from`, `till` and `step` are read by
//! the core ([`Timestamp::parse`] against the tracker's clock,
//! [`Timestamp::parse_duration`]), which also aligns the range to its
//! buckets and refuses reversed ranges, bad steps and series over the
//! point limit; every answer echoes the range the core says it covers.
//! With `--nats` the same questions go to the cluster node: a page's to
//! its owner, a site's and the top pages gathered from every owner.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use serde::Serialize;
use tracker_core::{RangeDistinct, TimeRange, Timestamp, Tracker, site_name};

use crate::error::AppError;
use crate::query::{DistinctBody, Fresh, optional_param, param};
use crate::state::AppState;
use crate::store::Store;

/// The step of `GET /series` when none is given: one day (a whole
/// number of buckets whatever `--bucket` is, since buckets divide a day).
pub const DEFAULT_STEP: Duration = Duration::from_secs(86_400);

/// `from` and `till` of a query string, read against the tracker's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// The start, if given (else open: everything retained).
    pub from: Option<Timestamp>,
    /// The end, excluded, if given (else open: the current bucket's end).
    pub till: Option<Timestamp>,
}

impl Window {
    /// The window of `query`, or `None` if it gives neither `from` nor
    /// `till`. A parameter given empty is not given: an open end.
    pub fn of(query: &str, tracker: &Tracker) -> Result<Option<Window>, AppError> {
        let (from, till) = (
            optional_param(query, "from")?,
            optional_param(query, "till")?,
        );
        if from.is_none() && till.is_none() {
            return Ok(None);
        }
        let now = tracker.config().clock.now();
        let read = |text: Option<Cow<'_, str>>| {
            text.map(|t| Timestamp::parse(&offset_sign(t), now))
                .transpose()
                .map_err(|e| AppError::Tracker(e.into()))
        };
        Ok(Some(Window {
            from: read(from)?,
            till: read(till)?,
        }))
    }
}

/// A time parameter with its `+` offset sign back: sent unencoded
/// (`...T10:30:00+01:00`), form decoding turned it into a space. A space
/// is a time's date/time separator only at byte 10; one past the minutes
/// (byte 16 on, the seconds being optional) and before a digit can only
/// have been that `+`. Counted from the first non-blank byte, as the
/// time is read.
fn offset_sign(text: Cow<'_, str>) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let start = bytes.len() - text.trim_start().len();
    let sign = (start + 16..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b' ' && bytes[i + 1].is_ascii_digit());
    match sign {
        None => text,
        Some(i) => {
            let mut text = text.into_owned();
            text.replace_range(i..=i, "+");
            Cow::Owned(text)
        }
    }
}

/// What a count is of: one page (by canonical URL) or one site.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// A page's canonical URL.
    Url(String),
    /// A site: the host it names ([`site_name`]).
    Site(String),
}

impl Subject {
    /// The subject of a query's `url` or `site` (exactly one of them).
    fn of(query: &str, tracker: &Tracker) -> Result<Subject, AppError> {
        match (param(query, "url")?, optional_param(query, "site")?) {
            (Some(url), None) => Ok(Subject::Url(tracker.canonicalize(&url)?.into_owned())),
            (None, Some(site)) => Ok(Subject::Site(site_name(&site)?)),
            (Some(_), Some(_)) => Err(AppError::InvalidQuery(
                "give `url` or `site`, not both".into(),
            )),
            (None, None) => Err(AppError::InvalidQuery(
                "the `url` or `site` parameter is required".into(),
            )),
        }
    }
}

/// The range an answer covers, in RFC 3339 UTC.
#[derive(Debug, Serialize)]
pub struct RangeBody {
    /// Its start, a bucket boundary.
    pub from: String,
    /// Its end, excluded, a bucket boundary.
    pub till: String,
}

impl From<TimeRange> for RangeBody {
    fn from(range: TimeRange) -> Self {
        RangeBody {
            from: range.from().to_rfc3339(),
            till: range.till().to_rfc3339(),
        }
    }
}

/// A count over a range: the answer of a ranged `GET /distinct` (with
/// its subject) and a point of `GET /series`.
#[derive(Debug, Serialize)]
pub struct PointBody {
    /// The range the count covers.
    #[serde(flatten)]
    pub range: RangeBody,
    /// Distinct visitors seen in it.
    pub distinct_visitors: u64,
    /// Whether the count is exact rather than an estimate.
    pub exact: bool,
    /// For an estimate, its relative standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
}

impl From<RangeDistinct> for PointBody {
    fn from(point: RangeDistinct) -> Self {
        PointBody {
            range: point.range.into(),
            distinct_visitors: point.distinct.visitors,
            exact: point.distinct.exact,
            error: point.distinct.relative_error,
        }
    }
}

/// The answer of `GET /distinct?url=|site=&from=&till=`.
#[derive(Debug, Serialize)]
pub struct RangedDistinctBody {
    /// `"url"` or `"site"`.
    #[serde(flatten)]
    pub subject: Subject,
    /// The count and the range it covers.
    #[serde(flatten)]
    pub point: PointBody,
}

/// The ranged form of `GET /distinct` (the query has `from` or `till`).
pub async fn distinct(
    store: &Store,
    query: &str,
    window: Window,
) -> Result<Fresh<RangedDistinctBody>, AppError> {
    let tracker = store.tracker();
    let subject = Subject::of(query, tracker)?;
    let Window { from, till } = window;
    let (counted, freshness) = match (store.cluster(), &subject) {
        (None, Subject::Url(url)) => (tracker.distinct_between(url, from, till)?, None),
        (None, Subject::Site(site)) => (tracker.site_distinct_between(site, from, till)?, None),
        (Some(node), Subject::Url(url)) => {
            let (_, counted, fresh) = node.distinct_between(url, from, till).await?;
            (counted, Some(fresh))
        }
        (Some(node), Subject::Site(site)) => {
            let (counted, fresh) = node.site_distinct_between(site, from, till).await?;
            (counted, Some(fresh))
        }
    };
    let body = RangedDistinctBody {
        subject,
        point: counted.into(),
    };
    Ok(Fresh::maybe(body, freshness))
}

/// The answer of `GET /series`.
#[derive(Debug, Serialize)]
pub struct SeriesBody {
    /// `"url"` or `"site"`.
    #[serde(flatten)]
    pub subject: Subject,
    /// The whole range, extended to whole steps.
    #[serde(flatten)]
    pub range: RangeBody,
    /// The step, in the largest unit that divides it (`1d`, `4h`, `90m`).
    pub step: String,
    /// One count per step, in order.
    pub points: Vec<PointBody>,
}

/// `GET /series?url=U|site=HOST&from=&till=&step=`: distinct visitors
/// per step (default one day) over the range.
pub async fn series(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Fresh<SeriesBody>>, AppError> {
    let query = request.uri().query().unwrap_or("");
    let store = state.store()?;
    let tracker = store.tracker();
    let subject = Subject::of(query, tracker)?;
    let Window { from, till } = Window::of(query, tracker)?.unwrap_or_default();
    let step = match optional_param(query, "step")? {
        None => DEFAULT_STEP,
        Some(text) => Timestamp::parse_duration(&text).map_err(|e| AppError::Tracker(e.into()))?,
    };
    let (counted, freshness) = match (store.cluster(), &subject) {
        (None, Subject::Url(url)) => (tracker.series(url, from, till, step)?, None),
        (None, Subject::Site(site)) => (tracker.site_series(site, from, till, step)?, None),
        (Some(node), Subject::Url(url)) => {
            let (_, counted, fresh) = node.series(url, from, till, step).await?;
            (counted, Some(fresh))
        }
        (Some(node), Subject::Site(site)) => {
            let (counted, fresh) = node.site_series(site, from, till, step).await?;
            (counted, Some(fresh))
        }
    };
    let body = SeriesBody {
        subject,
        range: counted.series.range().into(),
        step: duration_text(counted.series.step()),
        points: counted.points.into_iter().map(PointBody::from).collect(),
    };
    Ok(Json(Fresh::maybe(body, freshness)))
}

/// The answer of `GET /top`: with a range, the range it covers too.
#[derive(Debug, Serialize)]
pub struct TopBody<'a> {
    /// The pages with most distinct visitors, most first.
    pub pages: Vec<DistinctBody<'a>>,
    /// With `from` or `till`: the range the counts cover.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeBody>,
}

/// The ranged form of `GET /top`: the `limit` pages (of `site`, if
/// given) with most distinct visitors in the window.
pub async fn top(
    store: &Store,
    limit: usize,
    site: Option<&str>,
    window: Window,
) -> Result<Fresh<TopBody<'static>>, AppError> {
    let Window { from, till } = window;
    let tracker = store.tracker();
    let (top, freshness) = match (store.cluster(), site) {
        (None, None) => (tracker.top_between(limit, from, till)?, None),
        (None, Some(site)) => (tracker.top_of_site_between(limit, site, from, till)?, None),
        (Some(node), site) => {
            let (top, fresh) = node.top_between(limit, site, from, till).await?;
            (top, Some(fresh))
        }
    };
    let body = TopBody {
        pages: top
            .pages
            .into_iter()
            .map(|row| DistinctBody::new(row.url.into(), row.distinct))
            .collect(),
        range: Some(top.range.into()),
    };
    Ok(Fresh::maybe(body, freshness))
}

/// A whole number of seconds in the largest of `d`, `h`, `m`, `s` that
/// divides it, as [`Timestamp::parse_duration`] reads it back.
fn duration_text(step: Duration) -> String {
    let secs = step.as_secs();
    let (unit, name) = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")]
        .into_iter()
        .find(|(unit, _)| secs.is_multiple_of(*unit))
        .unwrap_or((1, "s"));
    format!("{}{name}", secs / unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_sign_is_found_after_leading_spaces() {
        let sign = |t: &'static str| offset_sign(Cow::Borrowed(t)).into_owned();
        assert_eq!(sign("2026-11-01T10:30 01:00"), "2026-11-01T10:30+01:00");
        // Before, the search began at byte 16 of the untrimmed text: the
        // space in the middle of the time was taken for the sign.
        assert_eq!(
            sign("      2026-11-01 10:30 01:00"),
            "      2026-11-01 10:30+01:00"
        );
        assert_eq!(sign("   2026-11-01 10:30:00"), "   2026-11-01 10:30:00");
    }

    #[test]
    fn steps_are_echoed_in_their_largest_whole_unit() {
        for (secs, text) in [
            (86_400, "1d"),
            (7 * 86_400, "7d"),
            (4 * 3_600, "4h"),
            (5_400, "90m"),
            (90, "90s"),
            (0, "0d"),
        ] {
            let step = Duration::from_secs(secs);
            assert_eq!(duration_text(step), text);
            if secs > 0 {
                assert_eq!(Timestamp::parse_duration(text), Ok(step));
            }
        }
    }
}

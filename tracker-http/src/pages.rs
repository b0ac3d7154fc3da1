//! `GET /pages`: every page with its distinct visitors, a page of results
//! at a time (cursor pagination, never offsets).

use axum::Json;
use axum::extract::{Request, State};
use serde::Serialize;
use tracker_core::PageQuery;

use crate::error::AppError;
use crate::query::{DistinctBody, Fresh, optional_param};
use crate::state::AppState;

/// Pages `GET /pages` lists when no `limit` is given.
pub const DEFAULT_PAGES: usize = 100;
/// The largest `limit` `GET /pages` accepts.
pub const MAX_PAGES: usize = 1000;

/// The answer of `GET /pages`.
#[derive(Debug, Serialize)]
pub struct PagesBody {
    /// The pages, by canonical URL ascending.
    pub pages: Vec<DistinctBody<'static>>,
    /// What to pass as `cursor` for the next pages; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /pages?site=&prefix=&cursor=&limit=`: pages of one host (`site`)
/// and/or whose canonical URL starts with `prefix`, after `cursor` (the
/// previous answer's `next_cursor`, percent-encoded like any parameter),
/// at most `limit` (1 to 1000, default 100) of them. A page that exists
/// throughout a listing is listed exactly once, even while events arrive
/// (see `Tracker::pages`).
pub async fn pages(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Fresh<PagesBody>>, AppError> {
    let query = request.uri().query().unwrap_or("");
    let limit = match optional_param(query, "limit")? {
        None => DEFAULT_PAGES,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGES).contains(n))
            .ok_or_else(|| {
                AppError::InvalidQuery(
                    format!("`limit` must be a whole number from 1 to {MAX_PAGES}").into(),
                )
            })?,
    };
    let owned = |name| optional_param(query, name).map(|value| value.map(|v| v.into_owned()));
    let page_query = PageQuery {
        site: owned("site")?,
        prefix: owned("prefix")?,
        cursor: owned("cursor")?,
        limit,
    };
    let store = state.store()?;
    // In a cluster the gate (no pages) still checks the query.
    let mut listing = store.tracker().pages(&page_query)?;
    let mut freshness = None;
    if let Some(node) = store.cluster() {
        let (merged, fresh) = node.pages(&page_query).await?;
        (listing, freshness) = (merged, Some(fresh));
    }
    let body = PagesBody {
        pages: listing
            .pages
            .into_iter()
            .map(|row| DistinctBody::new(row.url.into(), row.distinct))
            .collect(),
        next_cursor: listing.next_cursor,
    };
    Ok(Json(match freshness {
        None => Fresh::local(body),
        Some(f) => Fresh::of(body, f),
    }))
}

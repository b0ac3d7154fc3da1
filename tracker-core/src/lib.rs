//! tracker-core: how many distinct visitors navigated to this page?
//!
//! TODO crate docs
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod canonical_url;
mod clock;
mod config;
mod error;
mod page;
mod report;
pub mod sketch;
mod stripe;
mod sync;
mod tracker;
mod visitor_hash;
mod visitor_set;
mod visitor_table;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{
    DEFAULT_MAX_URL_LEN, DEFAULT_MAX_VISITOR_LEN, QueryPolicy, TrackerBuilder, TrackerConfig,
    URL_LEN_CEILING, UrlOptions, VISITOR_LEN_CEILING,
};
pub use error::{ConfigError, Field, TrackerError};
pub use report::{Distinct, PageCount, Recorded, Stats};
pub use tracker::Tracker;

//! What counting real browsers needs beyond [`Tracker`](crate::Tracker):
//! visitor ids derived from a request when the page sent none
//! ([`VisitorIds`]), and the rules that drop bots ([`BotFilter`]).
//!
//! The URL rules browsers need (only `http`/`https` URLs and paths, tracking
//! parameters dropped, optional trailing-slash folding) are part of URL
//! canonicalisation itself (see [`UrlOptions`](crate::UrlOptions)), so
//! they hold on every route and at query time alike.

mod bots;
mod salts;

pub use bots::{BotFilter, BotReason};
pub use salts::{
    SALT_FILE, SaltError, SaltFeed, SaltForgetting, SaltKey, SaltRotation, VisitorId, VisitorIds,
};

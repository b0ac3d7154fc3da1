//! Helpers shared by the integration tests of this workspace, as a
//! dev-only crate (never published) so that each test crate uses them as
//! a dependency instead of including files from another crate's `tests/`.
//!
//! - [`poll`]: wait for a condition with a deadline, never a fixed sleep;
//! - [`tmpfs`]: real read-only or tiny file systems for storage failures;
//! - [`process`]: the `tracker-http` binary as a child process;
//! - [`nats`]: a JetStream `nats-server` for the cluster tests;
//! - [`model`]: the obvious implementations the tracker is checked against;
//! - [`xorshift`]: a small seeded generator, so failures reproduce.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod model;
pub mod nats;
pub mod poll;
pub mod process;
pub mod tmpfs;

/// A small deterministic generator (xorshift64), so that a failure
/// reproduces from its seed. `state` must not be 0.
///
/// ```
/// let mut rng = 0x9e37_79b9_7f4a_7c15;
/// let (a, b) = (test_support::xorshift(&mut rng), test_support::xorshift(&mut rng));
/// assert_ne!(a, b);
/// ```
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Whether this run is CI (`CI=true`), where a test that cannot run its
/// real component must fail rather than skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

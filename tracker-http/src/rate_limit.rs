//! A per-client-IP token bucket.
//!
//! Buckets live in a fixed number of shards, each a `Mutex<HashMap>`
//! chosen by the IP's hash, so concurrent clients rarely wait on the same
//! lock and no lock is global. Each shard holds a bounded number of
//! clients: when full it forgets the buckets that have refilled (they are
//! equivalent to a new client), and if every bucket is still draining it
//! starts over, which briefly lets those clients burst again. Memory is
//! thus bounded at `SHARDS * MAX_PER_SHARD` buckets.
//!
//! An IPv6 client is limited by its /64 network, not its address: one
//! subscriber gets a whole /64 and can pick a fresh address per request.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
const MAX_PER_SHARD: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Allows each IP `rate` requests per second on average and `burst` at
/// once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Bucket>>]>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second with bursts of `burst`.
    /// Both must be positive and finite (the config checks them).
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes a token for `ip` at `now`, or says how long until one is
    /// available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = client_key(ip);
        let shard = &self.shards[self.hasher.hash_one(ip) as usize % SHARDS];
        // A panic elsewhere cannot leave a bucket half-updated (updates are
        // single assignments), so a poisoned lock is safe to reuse.
        let mut buckets = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_PER_SHARD && !buckets.contains_key(&ip) {
            self.forget_refilled(&mut buckets, now);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // A rate so low that the wait overflows a `Duration` (the
            // config takes any positive rate) waits for ever.
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    fn forget_refilled(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
        });
        if buckets.len() >= MAX_PER_SHARD {
            buckets.clear();
        }
    }
}

/// The key a client is limited by: its IPv4 address, or the /64 network
/// of its IPv6 address (an IPv4-mapped IPv6 address counts as IPv4).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_ip() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(limiter.check(b, t0).is_ok(), "other clients are unaffected");
        assert!(limiter.check(a, t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check(a, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_rate_too_low_for_a_duration_waits_for_ever() {
        let limiter = RateLimiter::new(1e-30, 1.0);
        let (a, t0) = (IpAddr::from([10, 0, 0, 1]), Instant::now());
        assert!(limiter.check(a, t0).is_ok());
        assert_eq!(limiter.check(a, t0), Err(Duration::MAX));
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64() {
        let limiter = RateLimiter::new(1.0, 2.0);
        let t0 = Instant::now();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let rotated: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        let neighbour: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(first, t0).is_ok());
        assert!(limiter.check(rotated, t0).is_ok());
        assert!(
            limiter.check(first, t0).is_err(),
            "the same /64 shares a bucket"
        );
        assert!(
            limiter.check(neighbour, t0).is_ok(),
            "another /64 has its own"
        );
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        let v4: IpAddr = [10, 0, 0, 9].into();
        assert!(limiter.check(mapped, t0).is_ok());
        assert!(limiter.check(v4, t0).is_ok());
        assert!(
            limiter.check(v4, t0).is_err(),
            "IPv4-mapped is the IPv4 client"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::new(1.0, 1.0);
        let now = Instant::now();
        for i in 0..(SHARDS * MAX_PER_SHARD * 2) as u32 {
            let _ = limiter.check(IpAddr::from(i.to_be_bytes()), now);
        }
        let held: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS * MAX_PER_SHARD);
    }
}

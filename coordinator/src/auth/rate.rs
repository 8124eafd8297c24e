//! Per-client rate limits: a token bucket per caller, so one runaway
//! script or a flood of bad requests cannot starve everyone else.
//!
//! A caller is its token or certificate when it has one, else its
//! connection (with authentication off there is no identity to go by).
//! The worker service is limited per connection even for authenticated
//! workers: a fleet usually shares one worker token or certificate, and
//! must not share one bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained with a burst of twice that; `None` for 0
    /// (no limit).
    pub fn per_second(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Rate {
            per_second: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
        })
    }
}

/// Callers tracked at most; past it, buckets idle for a minute (full
/// again anyway) are dropped, so made-up identities cannot grow the map.
const CALLERS_MAX: usize = 10_000;

/// How long a bucket is kept without use.
const IDLE: Duration = Duration::from_secs(60);

/// One limit over many callers.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// A limiter allowing `rate` per caller.
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one request from `caller`'s bucket at `now`; when it is empty,
    /// how long until it holds one again.
    pub fn check(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            // A panic elsewhere poisoned the lock: limiting is not worth
            // refusing service over.
            return Ok(());
        };
        if buckets.len() >= CALLERS_MAX && !buckets.contains_key(caller) {
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
            if buckets.len() >= CALLERS_MAX {
                buckets.clear();
            }
        }
        let rate = self.rate;
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_sustained_rate_and_callers_are_apart() {
        let limiter = Limiter::new(Rate::per_second(10).unwrap());
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(limiter.check("a", t0).is_ok(), "request {i} of the burst");
        }
        let wait = limiter.check("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller has its own bucket.
        assert!(limiter.check("b", t0).is_ok());
        // A tenth of a second refills one request, not more.
        let later = t0 + Duration::from_millis(100);
        assert!(limiter.check("a", later).is_ok());
        assert!(limiter.check("a", later).is_err());
        // A long pause refills only up to the burst.
        let much_later = t0 + Duration::from_secs(3600);
        let passed = (0..100)
            .filter(|_| limiter.check("a", much_later).is_ok())
            .count();
        assert_eq!(passed, 20);
    }

    #[test]
    fn made_up_callers_cannot_grow_the_map_without_bound() {
        let limiter = Limiter::new(Rate::per_second(1).unwrap());
        let t0 = Instant::now();
        for i in 0..(CALLERS_MAX * 2) {
            let _ = limiter.check(&format!("caller-{i}"), t0);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= CALLERS_MAX);
        assert!(Rate::per_second(0).is_none());
    }
}

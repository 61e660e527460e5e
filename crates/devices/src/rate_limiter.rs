//! Token-bucket rate limiting of a device's bandwidth and operations (Firecracker's model):
//! each bucket holds `size` tokens, refills at `size` per `refill_time_ms`, and may grant a
//! one-time burst first. A device asks before doing I/O; when refused, it stops serving its
//! queue and the limiter's timer tells it (through the event loop) when to try again.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

use crate::virtio::config::{RateLimitConfig, TokenBucketConfig};

/// One bucket.
#[derive(Debug)]
pub struct TokenBucket {
    size: u64,
    refill_time: Duration,
    /// Tokens available now (steady part).
    budget: u64,
    /// What is left of the one-time burst.
    burst: u64,
    last_refill: Instant,
}

impl TokenBucket {
    pub fn new(cfg: &TokenBucketConfig) -> Option<TokenBucket> {
        if cfg.size == 0 || cfg.refill_time_ms == 0 {
            return None;
        }
        Some(TokenBucket {
            size: cfg.size,
            refill_time: Duration::from_millis(cfg.refill_time_ms),
            budget: cfg.size,
            burst: cfg.one_time_burst,
            last_refill: Instant::now(),
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let new = (elapsed.as_nanos() * self.size as u128 / self.refill_time.as_nanos()) as u64;
        if new > 0 {
            self.budget = (self.budget + new).min(self.size);
            // Advance by exactly the time the granted tokens took, so fractions aren't lost.
            let used = Duration::from_nanos(
                (new as u128 * self.refill_time.as_nanos() / self.size as u128) as u64,
            );
            self.last_refill += used;
            if self.budget == self.size {
                self.last_refill = now;
            }
        }
    }

    /// Takes `tokens` if they are there (an operation larger than the bucket may take a full
    /// bucket, or it could never run). Returns false, taking nothing, otherwise.
    pub fn consume(&mut self, tokens: u64, now: Instant) -> bool {
        self.refill(now);
        let tokens = tokens.min(self.size + self.burst);
        if self.burst >= tokens {
            self.burst -= tokens;
            return true;
        }
        let rest = tokens - self.burst;
        if self.budget >= rest {
            self.burst = 0;
            self.budget -= rest;
            return true;
        }
        false
    }

    /// How long until `tokens` could be taken.
    pub fn wait_for(&self, tokens: u64) -> Duration {
        let tokens = tokens.min(self.size + self.burst);
        let missing = tokens.saturating_sub(self.budget + self.burst);
        Duration::from_nanos(
            (missing as u128 * self.refill_time.as_nanos() / self.size as u128) as u64 + 1,
        )
    }
}

/// A device's two buckets and the timer that wakes it when it was refused.
#[derive(Debug)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    timer: TimerFd,
    blocked: bool,
}

impl RateLimiter {
    /// `None` when the configuration limits nothing.
    pub fn new(cfg: &RateLimitConfig) -> std::io::Result<Option<RateLimiter>> {
        let bandwidth = cfg.bandwidth.as_ref().and_then(TokenBucket::new);
        let ops = cfg.ops.as_ref().and_then(TokenBucket::new);
        if bandwidth.is_none() && ops.is_none() {
            return Ok(None);
        }
        Ok(Some(RateLimiter { bandwidth, ops, timer: TimerFd::new()?, blocked: false }))
    }

    /// Asks for one operation of `bytes`. When refused, the limiter is blocked and its timer
    /// fires when the operation would fit; the device should stop and retry then.
    pub fn consume(&mut self, bytes: u64) -> bool {
        if self.blocked {
            return false;
        }
        let now = Instant::now();
        // Take from both or neither.
        let ops_ok = self.ops.as_mut().is_none_or(|b| b.consume(1, now));
        if !ops_ok {
            let wait = self.ops.as_ref().map_or(Duration::ZERO, |b| b.wait_for(1));
            self.block(wait);
            return false;
        }
        if let Some(b) = self.bandwidth.as_mut() {
            if !b.consume(bytes, now) {
                let wait = b.wait_for(bytes);
                // Give the operation token back.
                if let Some(o) = self.ops.as_mut() {
                    o.budget = (o.budget + 1).min(o.size);
                }
                self.block(wait);
                return false;
            }
        }
        true
    }

    fn block(&mut self, wait: Duration) {
        self.blocked = true;
        let _ = self.timer.reset(wait.max(Duration::from_micros(100)), None);
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The timer's file descriptor, to register with the event loop.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// The timer fired: the device may try again.
    pub fn timer_fired(&mut self) {
        let _ = self.timer.wait();
        self.blocked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(size: u64, burst: u64, ms: u64) -> TokenBucket {
        TokenBucket::new(&TokenBucketConfig { size, one_time_burst: burst, refill_time_ms: ms })
            .unwrap()
    }

    #[test]
    fn a_bucket_grants_its_size_then_refills_at_its_rate() {
        let mut b = bucket(1000, 0, 1000);
        let t0 = b.last_refill;
        assert!(b.consume(600, t0));
        assert!(b.consume(400, t0));
        assert!(!b.consume(1, t0), "empty");
        assert!(!b.consume(200, t0 + Duration::from_millis(100)), "only 100 refilled");
        assert!(b.consume(200, t0 + Duration::from_millis(200)));
        assert!(b.consume(1000, t0 + Duration::from_secs(10)), "refill caps at the size");
        assert!(!b.consume(1, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn the_burst_comes_first_and_only_once() {
        let mut b = bucket(100, 500, 1000);
        let t0 = b.last_refill;
        assert!(b.consume(550, t0), "burst 500 + 50 of the budget");
        assert!(b.consume(50, t0));
        assert!(!b.consume(1, t0));
    }

    #[test]
    fn wait_for_says_when_tokens_suffice() {
        let mut b = bucket(1000, 0, 1000);
        let t0 = b.last_refill;
        assert!(b.consume(1000, t0));
        let w = b.wait_for(250);
        assert!(w >= Duration::from_millis(249) && w <= Duration::from_millis(251), "{w:?}");
    }

    #[test]
    fn a_limiter_refuses_and_blocks_until_its_timer_fires() {
        let cfg = RateLimitConfig {
            bandwidth: Some(TokenBucketConfig {
                size: 4096,
                one_time_burst: 0,
                // Long enough that a loaded machine can't refill the bucket between the
                // consumes below.
                refill_time_ms: 1000,
            }),
            ops: None,
        };
        let mut rl = RateLimiter::new(&cfg).unwrap().unwrap();
        assert!(rl.consume(4096));
        assert!(!rl.consume(4096));
        assert!(rl.is_blocked());
        assert!(!rl.consume(1), "blocked until the timer fires");
        rl.timer_fired(); // blocks in timerfd read until the refill time has passed
        assert!(rl.consume(4096));
    }

    #[test]
    fn unlimited_configs_give_no_limiter() {
        assert!(RateLimiter::new(&RateLimitConfig::default()).unwrap().is_none());
    }
}

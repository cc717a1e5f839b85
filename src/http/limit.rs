//! Adaptive concurrency: how many requests a client keeps in flight when the
//! server throttles (ConnectWise answers 429 when a partner's instance is busy).
//!
//! [`ConcurrencyRule`] is the pure rule (halve on a 429, grow by one after a run
//! of answers, between 1 and the configured maximum), unit-tested by feeding it
//! outcomes; [`AdaptiveLimit`] applies it to a semaphore the requests pass.

use std::sync::{Mutex, MutexGuard};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Answers in a row (at the current limit) after which the limit grows by one.
pub const GROW_AFTER: u32 = 20;

/// What one attempt came back with, as far as the limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// 429: the server is busy; send fewer at once.
    Throttled,
    /// Any other answer below 500: the server kept up.
    Answered,
    /// A 5xx or a transport failure: says nothing about the limit, but ends a run
    /// of answers.
    Failed,
}

/// The limit's rule. Each decrease starts a new "epoch"; an attempt reports the
/// epoch it was sent in, so a burst of 429s to requests that were all sent at the
/// old limit halves it once, not once per request (which would drop it to 1), and
/// only answers at the current limit count towards growing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyRule {
    max: usize,
    limit: usize,
    lowest: usize,
    streak: u32,
    epoch: u64,
    throttled: u64,
}

impl ConcurrencyRule {
    /// Starts at `max` (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            limit: max,
            lowest: max,
            streak: 0,
            epoch: 0,
            throttled: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The lowest limit so far.
    pub fn lowest(&self) -> usize {
        self.lowest
    }

    /// 429s seen so far, every one counted.
    pub fn throttled(&self) -> u64 {
        self.throttled
    }

    /// The epoch a request sent now belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes the outcome of an attempt sent in `sent_in` (an [`Self::epoch`]).
    pub fn record(&mut self, sent_in: u64, attempt: Attempt) {
        let current = sent_in == self.epoch;
        match attempt {
            Attempt::Throttled => {
                self.throttled += 1;
                if current {
                    self.limit = (self.limit / 2).max(1);
                    self.lowest = self.lowest.min(self.limit);
                    self.streak = 0;
                    self.epoch += 1;
                }
            }
            Attempt::Answered if current => {
                self.streak += 1;
                if self.streak >= GROW_AFTER {
                    self.streak = 0;
                    self.limit = (self.limit + 1).min(self.max);
                }
            }
            Attempt::Answered => {}
            Attempt::Failed => self.streak = 0,
        }
    }
}

/// What a client's limit went through: for the run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleStats {
    /// 429s answered.
    pub throttled: u64,
    /// The lowest number of requests in flight allowed.
    pub lowest_concurrency: usize,
}

/// A semaphore whose size follows a [`ConcurrencyRule`]. Shrinking cannot take
/// back permits that are held, so the shortfall is `owed`: permits given back
/// while something is owed are forgotten instead of returned.
#[derive(Debug)]
pub struct AdaptiveLimit {
    permits: Semaphore,
    state: Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    rule: ConcurrencyRule,
    owed: usize,
}

/// Leave to send one request, until dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    limit: &'a AdaptiveLimit,
    permit: Option<SemaphorePermit<'a>>,
    epoch: u64,
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        let rule = ConcurrencyRule::new(max);
        Self {
            permits: Semaphore::new(rule.limit()),
            state: Mutex::new(LimitState { rule, owed: 0 }),
        }
    }

    /// Waits until fewer requests than the limit are in flight (first come, first
    /// served: tokio's semaphore is fair).
    pub async fn acquire(&self) -> Slot<'_> {
        // The semaphore is never closed, so acquiring cannot fail; if it did,
        // the request would go unlimited rather than not at all.
        let permit = self.permits.acquire().await.ok();
        let epoch = self.lock().rule.epoch();
        Slot {
            limit: self,
            permit,
            epoch,
        }
    }

    /// Takes the outcome of the attempt `slot` was for, resizing the semaphore.
    pub fn record(&self, slot: &Slot<'_>, attempt: Attempt) {
        let mut state = self.lock();
        let before = state.rule.limit();
        state.rule.record(slot.epoch, attempt);
        let after = state.rule.limit();
        if after < before {
            let available = self.permits.forget_permits(before - after);
            state.owed += before - after - available;
        } else if after > before {
            let repaid = state.owed.min(after - before);
            state.owed -= repaid;
            self.permits.add_permits(after - before - repaid);
        }
    }

    pub fn stats(&self) -> ThrottleStats {
        let state = self.lock();
        ThrottleStats {
            throttled: state.rule.throttled(),
            lowest_concurrency: state.rule.lowest(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().rule.limit()
    }

    fn lock(&self) -> MutexGuard<'_, LimitState> {
        // Never held across an await or a panic-prone call; a poisoned lock
        // still holds consistent numbers.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.limit.lock();
        if state.owed > 0 {
            state.owed -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn answered(rule: &mut ConcurrencyRule, times: u32) {
        for _ in 0..times {
            rule.record(rule.epoch(), Attempt::Answered);
        }
    }

    #[test]
    fn starts_at_the_setting() {
        let rule = ConcurrencyRule::new(8);
        assert_eq!((rule.limit(), rule.lowest(), rule.throttled()), (8, 8, 0));
        assert_eq!(ConcurrencyRule::new(0).limit(), 1);
    }

    #[test]
    fn a_429_halves_the_limit_never_below_one() {
        let mut rule = ConcurrencyRule::new(8);
        for want in [4, 2, 1, 1] {
            rule.record(rule.epoch(), Attempt::Throttled);
            assert_eq!(rule.limit(), want);
        }
        assert_eq!((rule.lowest(), rule.throttled()), (1, 4));
        let mut odd = ConcurrencyRule::new(5);
        odd.record(0, Attempt::Throttled);
        assert_eq!(odd.limit(), 2);
    }

    #[test]
    fn a_burst_of_429s_sent_at_the_old_limit_halves_once() {
        let mut rule = ConcurrencyRule::new(8);
        let sent_in = rule.epoch();
        for _ in 0..6 {
            rule.record(sent_in, Attempt::Throttled);
        }
        assert_eq!(rule.limit(), 4);
        assert_eq!(rule.throttled(), 6, "every 429 is counted");
    }

    #[test]
    fn grows_by_one_after_a_run_of_answers_up_to_the_setting() {
        let mut rule = ConcurrencyRule::new(4);
        rule.record(0, Attempt::Throttled);
        rule.record(1, Attempt::Throttled);
        assert_eq!(rule.limit(), 1);
        answered(&mut rule, GROW_AFTER - 1);
        assert_eq!(rule.limit(), 1, "not before the run is complete");
        answered(&mut rule, 1);
        assert_eq!(rule.limit(), 2);
        answered(&mut rule, GROW_AFTER * 10);
        assert_eq!(rule.limit(), 4, "never above the setting");
        assert_eq!(rule.lowest(), 1);
    }

    #[test]
    fn a_failure_or_a_429_ends_the_run_of_answers() {
        let mut rule = ConcurrencyRule::new(4);
        rule.record(0, Attempt::Throttled);
        answered(&mut rule, GROW_AFTER - 1);
        rule.record(rule.epoch(), Attempt::Failed);
        answered(&mut rule, GROW_AFTER - 1);
        assert_eq!(rule.limit(), 2);
        rule.record(rule.epoch(), Attempt::Throttled);
        answered(&mut rule, GROW_AFTER - 1);
        assert_eq!(rule.limit(), 1);
    }

    #[test]
    fn answers_to_requests_sent_before_a_decrease_do_not_grow_it() {
        let mut rule = ConcurrencyRule::new(8);
        let old = rule.epoch();
        rule.record(old, Attempt::Throttled);
        for _ in 0..GROW_AFTER * 2 {
            rule.record(old, Attempt::Answered);
        }
        assert_eq!(rule.limit(), 4);
    }

    #[tokio::test]
    async fn the_gate_keeps_to_the_limit_after_a_429() {
        let limit = AdaptiveLimit::new(4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(limit.acquire().await);
        }
        assert!(limit.acquire().now_or_never().is_none(), "four in flight");
        limit.record(&held[0], Attempt::Throttled);
        assert_eq!(limit.limit(), 2);
        held.truncate(2);
        assert!(
            limit.acquire().now_or_never().is_none(),
            "two in flight: the limit"
        );
        held.pop();
        let third = limit.acquire().now_or_never();
        assert!(third.is_some(), "one in flight: room for one more");
        assert!(limit.acquire().now_or_never().is_none());
        let stats = limit.stats();
        assert_eq!((stats.throttled, stats.lowest_concurrency), (1, 2));
    }

    #[tokio::test]
    async fn the_gate_grows_back() {
        let limit = AdaptiveLimit::new(2);
        let first = limit.acquire().await;
        limit.record(&first, Attempt::Throttled);
        drop(first);
        assert_eq!(limit.limit(), 1);
        for _ in 0..GROW_AFTER {
            let slot = limit.acquire().await;
            limit.record(&slot, Attempt::Answered);
        }
        assert_eq!(limit.limit(), 2);
        let _a = limit.acquire().await;
        let b = limit.acquire().now_or_never();
        assert!(b.is_some(), "two in flight again");
    }
}

//! Virtual time: a queue of events by due time.
//!
//! Events due at the same millisecond run in the order they were
//! scheduled (a sequence number breaks ties), so a run never depends on
//! anything but the order of calls, which the seed fixes.

use std::collections::BTreeMap;

/// The event queue and the virtual clock.
#[derive(Debug)]
pub struct Scheduler<E> {
    /// Virtual milliseconds since the run started.
    now_ms: u64,
    /// Ties between events due at the same time go by this counter.
    next_seq: u64,
    /// Pending events by (due time, sequence).
    queue: BTreeMap<(u64, u64), E>,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Self {
            now_ms: 0,
            next_seq: 0,
            queue: BTreeMap::new(),
        }
    }
}

impl<E> Scheduler<E> {
    /// An empty queue at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current virtual time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Schedules `event` at `at_ms` (never in the past).
    pub fn at(&mut self, at_ms: u64, event: E) {
        let at_ms = at_ms.max(self.now_ms);
        self.queue.insert((at_ms, self.next_seq), event);
        self.next_seq += 1;
    }

    /// Schedules `event` `delay_ms` from now.
    pub fn after(&mut self, delay_ms: u64, event: E) {
        self.at(self.now_ms + delay_ms, event);
    }

    /// Takes the next event and moves the clock to its time.
    pub fn pop(&mut self) -> Option<E> {
        let ((at_ms, _), event) = self.queue.pop_first()?;
        self.now_ms = at_ms;
        Some(event)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut s = Scheduler::new();
        s.at(10, "b");
        s.at(5, "a");
        s.at(10, "c");
        assert_eq!(s.pop(), Some("a"));
        assert_eq!(s.now_ms(), 5);
        s.after(0, "now");
        assert_eq!(s.pop(), Some("now"));
        assert_eq!(s.pop(), Some("b"));
        assert_eq!(s.pop(), Some("c"));
        assert_eq!(s.now_ms(), 10);
        assert!(s.pop().is_none());
    }
}

//! The loop's one table of timers, and its clock.
//!
//! Each source of deadlines keeps its own fine-grained order (the core's schedule of process
//! deadlines, the HTTP server's connection deadlines, the probes' schedule, held logs in the
//! order they were held), and files its earliest one here after every wakeup. The poll sleeps
//! until the earliest entry of the table; after it returns, the clock is read once and what is
//! due is dispatched.

use std::time::{Duration, Instant, SystemTime};

/// The time of one wakeup: read once after the poll returns, used by everything it does.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn read() -> Clock {
        Clock { mono: Instant::now(), wall: SystemTime::now() }
    }
}

/// The sources of deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A process's startsecs, backoff, stopwaitsecs, restart delay or the restart limit.
    Core,
    /// Connection timeouts of the control servers.
    Http,
    /// The next TICK_* event a listener pool subscribes to.
    Tick,
    /// `ready_check=` / `health_check=` probes to start or time out.
    Probes,
    /// Logs held open across bursts of output, to close.
    HeldLogs,
    /// The buffer for floods of output, to unmap.
    FloodBuf,
    /// The next look at the memory of programs with `memory_limit=` (only while one runs).
    Memory,
    /// The deadline of an upgrade's pre-flight run of the new binary.
    Upgrade,
}

const SOURCES: usize = 8;

#[derive(Debug, Default)]
pub struct Timers {
    at: [Option<Instant>; SOURCES],
}

impl Timers {
    pub fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at;
    }

    /// Whether `timer`'s deadline has come.
    pub fn due(&self, timer: Timer, now: Instant) -> bool {
        self.at[timer as usize].is_some_and(|at| at <= now)
    }

    /// How long the poll may sleep: until the earliest entry, rounded up to the next
    /// millisecond so that a deadline is never missed by a wakeup a little early (which would
    /// spin); `None` (sleep until an event) when the table is empty.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let earliest = self.at.iter().flatten().min()?;
        let left = earliest.saturating_duration_since(now);
        Some(Duration::from_millis(left.as_micros().div_ceil(1000) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_sleeps_until_the_earliest_entry_rounded_up() {
        let now = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.timeout(now), None, "an idle daemon sleeps until an event");
        t.set(Timer::Http, Some(now + Duration::from_secs(30)));
        t.set(Timer::Core, Some(now + Duration::from_micros(1500)));
        assert_eq!(t.timeout(now), Some(Duration::from_millis(2)));
        assert!(!t.due(Timer::Core, now));
        assert!(t.due(Timer::Core, now + Duration::from_millis(2)));
        t.set(Timer::Core, None);
        assert_eq!(t.timeout(now), Some(Duration::from_secs(30)));
        t.set(Timer::Tick, Some(now - Duration::from_secs(1)));
        assert_eq!(t.timeout(now), Some(Duration::ZERO), "a deadline passed wakes at once");
    }
}

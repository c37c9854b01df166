//! TICK_5 / TICK_60 / TICK_3600 (reference 6.1), with the clock as an argument.
//!
//! Supervisor checks on every pass of its main loop whether the wall clock has moved into
//! another time slice (`now - now % period`) since the last check, and if so emits one TICK
//! whose `when:` is the new slice's start. The first check only records the slice it falls in,
//! so the slice in which the daemon starts never produces a TICK. Several boundaries crossed
//! between two checks give one TICK (the latest); a clock that moves back gives one too.
//!
//! minisv does not wake up every second: the loop calls `check` on every wakeup and sleeps until
//! `next_deadline`, which is `None` unless some pool wants a TICK.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::types::{Event, EventType};

const TICKS: [EventType; 3] = [EventType::Tick5, EventType::Tick60, EventType::Tick3600];

fn period(kind: EventType) -> u64 {
    kind.tick_period().unwrap_or(1)
}

fn since_epoch(now: SystemTime) -> Duration {
    now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Supervisor's `timeslice(period, when)`.
fn timeslice(period: u64, now: SystemTime) -> u64 {
    let secs = since_epoch(now).as_secs();
    secs - secs % period
}

/// The last slice seen for each TICK period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ticker {
    last: Option<[u64; 3]>,
}

impl Ticker {
    pub fn new() -> Ticker {
        Ticker { last: None }
    }

    /// Call on every wakeup (before handling the wakeup's inputs, so that a pool added by them
    /// does not get a TICK for a boundary that passed before it existed). Returns the TICK events
    /// to offer to the pools, TICK_5 first.
    pub fn check(&mut self, now: SystemTime) -> Vec<Event> {
        let current = TICKS.map(|k| timeslice(period(k), now));
        let Some(last) = self.last.replace(current) else {
            return Vec::new(); // just started: record the slice, emit nothing
        };
        TICKS
            .iter()
            .zip(current.iter().zip(last.iter()))
            .filter(|(_, (cur, last))| cur != last)
            .map(|(&kind, (&cur, _))| Event::tick(kind, cur))
            .collect()
    }

    /// How long the loop may sleep before the next TICK that someone wants is due: `None` when
    /// `wanted` accepts none of the three types (then ticks cost no wakeups at all).
    pub fn next_deadline(&self, now: SystemTime, wanted: impl Fn(EventType) -> bool) -> Option<Duration> {
        let now_d = since_epoch(now);
        TICKS
            .iter()
            .enumerate()
            .filter(|(_, &k)| wanted(k))
            .map(|(i, &k)| {
                let p = period(k);
                let cur = timeslice(p, now);
                match self.last {
                    // Not checked yet, or the slice already changed (a clock step either way):
                    // check at once.
                    None => Duration::ZERO,
                    Some(last) if last[i] != cur => Duration::ZERO,
                    Some(_) => Duration::from_secs(cur + p).saturating_sub(now_d),
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    fn ticks(t: &mut Ticker, secs: f64) -> Vec<String> {
        t.check(at(secs))
            .into_iter()
            .map(|e| format!("{} {}", e.kind.name(), String::from_utf8_lossy(&e.payload)))
            .collect()
    }

    #[test]
    fn the_slice_the_daemon_starts_in_is_skipped() {
        let mut t = Ticker::new();
        assert!(ticks(&mut t, 1003.0).is_empty()); // 1000 is not announced
        assert!(ticks(&mut t, 1004.9).is_empty());
        assert_eq!(ticks(&mut t, 1005.2), ["TICK_5 when:1005"]);
        assert!(ticks(&mut t, 1009.99).is_empty());
        assert_eq!(ticks(&mut t, 1010.0), ["TICK_5 when:1010"]);
    }

    #[test]
    fn when_is_the_boundary_and_shared_boundaries_come_shortest_period_first() {
        let mut t = Ticker::new();
        ticks(&mut t, 3599.5);
        assert_eq!(ticks(&mut t, 3600.4), ["TICK_5 when:3600", "TICK_60 when:3600", "TICK_3600 when:3600"]);
        assert!(ticks(&mut t, 3604.0).is_empty());
        assert_eq!(ticks(&mut t, 3660.0), ["TICK_5 when:3660", "TICK_60 when:3660"]);
    }

    #[test]
    fn several_boundaries_between_checks_give_one_tick_with_the_latest() {
        let mut t = Ticker::new();
        ticks(&mut t, 1071.0);
        assert_eq!(ticks(&mut t, 1097.0), ["TICK_5 when:1095", "TICK_60 when:1080"]);
    }

    #[test]
    fn a_clock_stepping_back_gives_a_tick_for_the_earlier_slice() {
        let mut t = Ticker::new();
        ticks(&mut t, 1012.0);
        assert_eq!(ticks(&mut t, 1001.0), ["TICK_5 when:1000"]);
    }

    #[test]
    fn no_deadline_unless_a_tick_is_wanted() {
        let mut t = Ticker::new();
        t.check(at(1003.0));
        assert_eq!(t.next_deadline(at(1003.0), |_| false), None);
        assert_eq!(t.next_deadline(at(1003.0), |_| true), Some(Duration::from_secs(2)));
        assert_eq!(t.next_deadline(at(1003.0), |k| k == EventType::Tick60), Some(Duration::from_secs(17)));
        assert_eq!(t.next_deadline(at(1003.0), |k| k == EventType::Tick3600), Some(Duration::from_secs(2597)));
        let d = t.next_deadline(at(1003.75), |k| k == EventType::Tick5);
        assert_eq!(d, Some(Duration::from_millis(1250)));
    }

    #[test]
    fn deadline_is_now_when_unchecked_or_overdue() {
        let t = Ticker::new();
        assert_eq!(t.next_deadline(at(1003.0), |_| true), Some(Duration::ZERO));
        let mut t = Ticker::new();
        t.check(at(1003.0));
        assert_eq!(t.next_deadline(at(1006.0), |_| true), Some(Duration::ZERO));
    }

    #[test]
    fn sleeping_until_each_deadline_ticks_every_boundary() {
        let mut t = Ticker::new();
        let mut now = 1001.5;
        t.check(at(now));
        let mut seen = Vec::new();
        while now < 1130.0 {
            let Some(d) = t.next_deadline(at(now), |k| k == EventType::Tick5 || k == EventType::Tick60) else {
                panic!("a deadline is expected");
            };
            now += d.as_secs_f64();
            seen.extend(ticks(&mut t, now));
        }
        let fives = seen.iter().filter(|s| s.starts_with("TICK_5 ")).count();
        assert_eq!(fives, 26); // 1005 ..= 1130
        assert_eq!(
            seen.iter().filter(|s| s.starts_with("TICK_60 ")).collect::<Vec<_>>(),
            ["TICK_60 when:1020", "TICK_60 when:1080"]
        );
    }
}

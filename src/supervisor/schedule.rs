//! When each process next needs its `Tick`, kept up to date as processes change, so that a
//! wakeup steps the processes that are due and no others.
//!
//! Supervisor runs `transition()` over every process on every loop turn. Here a process is
//! looked at when its deadline has come (startsecs, backoff, stopwaitsecs, a restart delay),
//! or when something may have changed for it (it got an input, a process it depends on or that
//! depends on it changed state, its group was added): it is then "dirty". A `Tick` with nothing
//! of this is a no-op, since it decides from the process's state, the daemon's mood, its
//! dependencies and the time, and each of those either marks it dirty or is its deadline.

use std::collections::BTreeSet;
use std::time::Instant;

use super::ProcId;

#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// Deadlines, earliest first.
    due: BTreeSet<(Instant, ProcId)>,
    /// The deadline each process is filed under in `due` (by slot).
    filed: Vec<Option<Instant>>,
    /// Processes to step at the next tick, whatever their deadline.
    dirty: BTreeSet<ProcId>,
    /// Processes whose automatic restart waits for `restart_limit`.
    held: BTreeSet<ProcId>,
    /// Each slot's place in the start order (group priority, then config order).
    rank: Vec<usize>,
}

impl Schedule {
    /// Files `id` under `deadline` (none: it waits for an input), or as waiting for the restart
    /// limit when `held`.
    pub(super) fn file(&mut self, id: ProcId, deadline: Option<Instant>, held: bool) {
        if self.filed.len() <= id.0 {
            self.filed.resize(id.0 + 1, None);
        }
        let deadline = if held { None } else { deadline };
        if let Some(old) = std::mem::replace(&mut self.filed[id.0], deadline) {
            self.due.remove(&(old, id));
        }
        if let Some(at) = deadline {
            self.due.insert((at, id));
        }
        if held {
            self.held.insert(id);
        } else {
            self.held.remove(&id);
        }
    }

    /// A process that is gone.
    pub(super) fn forget(&mut self, id: ProcId) {
        self.file(id, None, false);
        self.dirty.remove(&id);
    }

    /// `id` is stepped at the next tick.
    pub(super) fn mark(&mut self, id: ProcId) {
        self.dirty.insert(id);
    }

    /// Every process waiting for the restart limit is stepped at the next tick.
    pub(super) fn mark_held(&mut self) {
        self.dirty.extend(self.held.iter().copied());
    }

    pub(super) fn any_held(&self) -> bool {
        !self.held.is_empty()
    }

    pub(super) fn any_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// The processes to step now: the dirty ones and those whose deadline has come, in start
    /// order. They are no longer dirty; stepping them files them again.
    pub(super) fn take(&mut self, now: Instant) -> Vec<ProcId> {
        let mut ids: Vec<ProcId> = std::mem::take(&mut self.dirty).into_iter().collect();
        for (at, id) in &self.due {
            if *at > now {
                break;
            }
            ids.push(*id);
        }
        ids.sort_by_key(|id| (self.rank.get(id.0).copied().unwrap_or(usize::MAX), *id));
        ids.dedup();
        ids
    }

    /// The start order changed (a group was added, removed or replaced).
    pub(super) fn set_order(&mut self, order: impl Iterator<Item = ProcId>) {
        self.rank.clear();
        for (rank, id) in order.enumerate() {
            if self.rank.len() <= id.0 {
                self.rank.resize(id.0 + 1, usize::MAX);
            }
            self.rank[id.0] = rank;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn due_and_dirty_processes_come_out_in_start_order_each_once() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set_order([ProcId(2), ProcId(0), ProcId(1)].into_iter());
        s.file(ProcId(0), Some(t0 + Duration::from_secs(1)), false);
        s.file(ProcId(1), Some(t0 + Duration::from_secs(5)), false);
        s.mark(ProcId(2));
        s.mark(ProcId(0));
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.take(t0), vec![ProcId(2), ProcId(0)]);
        assert_eq!(s.take(t0), vec![], "no longer dirty, not yet due");
        assert_eq!(s.take(t0 + Duration::from_secs(1)), vec![ProcId(0)]);
        s.file(ProcId(0), None, false);
        assert_eq!(s.take(t0 + Duration::from_secs(9)), vec![ProcId(1)]);
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(5)));
        s.forget(ProcId(1));
        assert_eq!(s.next(), None);
    }

    #[test]
    fn a_held_process_has_no_deadline_until_the_limit_frees() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.set_order([ProcId(0)].into_iter());
        s.file(ProcId(0), Some(t0), true);
        assert_eq!(s.next(), None);
        assert!(s.any_held());
        assert_eq!(s.take(t0), vec![]);
        s.mark_held();
        assert_eq!(s.take(t0), vec![ProcId(0)]);
        s.file(ProcId(0), None, false);
        assert!(!s.any_held());
    }
}

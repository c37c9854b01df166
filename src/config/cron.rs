//! `schedule=`: cron expressions, and the next time one is due, in UTC or local time.
//!
//! Five fields (minute hour day-of-month month day-of-week) as cron has them, or six with
//! seconds first as Quartz has them (`*/2 * * * * *`: every two seconds); `*`, `?` (as `*`),
//! lists, ranges, steps, month and day names; `@yearly` (`@annually`), `@monthly`, `@weekly`,
//! `@daily` (`@midnight`), `@hourly`. As in cron, when both day fields are restricted a day
//! matching either is due.
//!
//! Time zones are behind [`Zone`], so the rules are tested with a fake zone: when a local
//! time is skipped by a daylight saving jump forward, what was due in the gap runs at the
//! first instant after it (once); when an hour is repeated going back, a time in it runs once,
//! the first time (Vixie cron does the same for jobs at fixed times).

/// A civil (wall clock) time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// How epoch seconds map to civil times.
pub trait Zone {
    /// The civil time of an instant.
    fn civil(&self, t: i64) -> Civil;
    /// The instants whose civil time is `c`: none in a gap, two in a repeated hour (earliest
    /// first).
    fn instants(&self, c: Civil) -> Vec<i64>;
}

/// UTC.
pub struct Utc;

impl Zone for Utc {
    fn civil(&self, t: i64) -> Civil {
        civil_of(t)
    }

    fn instants(&self, c: Civil) -> Vec<i64> {
        vec![epoch_of(c)]
    }
}

/// The daemon's local time (the TZ environment variable, /etc/localtime), through libc.
pub struct Local;

impl Zone for Local {
    fn civil(&self, t: i64) -> Civil {
        // SAFETY: an all-zero tm is valid; localtime_r fills it from a valid time_t.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // musl marks time_t deprecated on 32-bit targets (it will become 64-bit there).
        #[allow(deprecated)]
        let tt = t as libc::time_t;
        // SAFETY: both pointers are valid for the call.
        if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
            return civil_of(t);
        }
        Civil {
            year: tm.tm_year as i64 + 1900,
            month: tm.tm_mon as u32 + 1,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
        }
    }

    fn instants(&self, c: Civil) -> Vec<i64> {
        let mut out = Vec::new();
        for isdst in [1, 0] {
            // SAFETY: an all-zero tm is valid; mktime reads and normalizes it.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (c.year - 1900) as libc::c_int;
            tm.tm_mon = c.month as libc::c_int - 1;
            tm.tm_mday = c.day as libc::c_int;
            tm.tm_hour = c.hour as libc::c_int;
            tm.tm_min = c.minute as libc::c_int;
            tm.tm_sec = c.second as libc::c_int;
            tm.tm_isdst = isdst;
            // SAFETY: tm is a valid, initialized struct.
            let t = unsafe { libc::mktime(&mut tm) } as i64;
            if t != -1 && self.civil(t) == c && !out.contains(&t) {
                out.push(t);
            }
        }
        out.sort_unstable();
        out
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// The UTC civil time of epoch seconds.
pub fn civil_of(t: i64) -> Civil {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    Civil { year, month, day, hour: (secs / 3600) as u32, minute: (secs / 60 % 60) as u32, second: (secs % 60) as u32 }
}

/// Epoch seconds of a UTC civil time.
pub fn epoch_of(c: Civil) -> i64 {
    days_from_civil(c.year, c.month, c.day) * 86_400 + (c.hour * 3600 + c.minute * 60 + c.second) as i64
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// 0 = Sunday.
fn weekday(y: i64, m: u32, d: u32) -> u32 {
    (days_from_civil(y, m, d) + 4).rem_euclid(7) as u32
}

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// The day fields as written were `*`: (day-of-month, day-of-week).
    any_day: (bool, bool),
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field as a bit set over `lo..=hi`; `names` are the values from `lo` on.
fn field(text: &str, lo: u32, hi: u32, names: &[&str], what: &str) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(lo + i as u32);
        }
        s.parse::<u32>().map_err(|_| format!("'{s}' is not a {what}"))
    };
    let mut bits = 0u64;
    let star = text == "*" || text == "?";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("'{s}' is not a step"))?)
            }
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        // Day of week 7 is Sunday, as in cron.
        let (a, b) = if what == "day of the week" { (a.min(7), b.min(7)) } else { (a, b) };
        if a < lo || b > hi.max(if what == "day of the week" { 7 } else { hi }) || a > b {
            return Err(format!("'{part}' is out of range for the {what} ({lo}-{hi})"));
        }
        let mut v = a;
        while v <= b {
            let v7 = if what == "day of the week" && v == 7 { 0 } else { v };
            bits |= 1 << (v7 - lo.min(v7));
            v += step;
        }
    }
    Ok((bits, star))
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            t if t.starts_with('@') => return Err(format!("'{text}' is not a known @name")),
            _ => text.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(format!("{n} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)")),
        };
        let (seconds, _) = field(sec, 0, 59, &[], "second")?;
        let (minutes, _) = field(rest[0], 0, 59, &[], "minute")?;
        let (hours, _) = field(rest[1], 0, 23, &[], "hour")?;
        let (days, dom_star) = field(rest[2], 1, 31, &[], "day of the month")?;
        let (months, _) = field(rest[3], 1, 12, &MONTHS, "month")?;
        let (weekdays, dow_star) = field(rest[4], 0, 6, &DAYS, "day of the week")?;
        Ok(Cron {
            seconds,
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            any_day: (dom_star, dow_star),
        })
    }

    fn day_matches(&self, y: i64, m: u32, d: u32) -> bool {
        let dom = self.days & (1 << (d - 1)) != 0;
        let dow = self.weekdays & (1 << weekday(y, m, d)) != 0;
        match self.any_day {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            // Both restricted: either, as cron does.
            (false, false) => dom || dow,
        }
    }

    /// The first matching time of day at or after h:m:s.
    fn time_from(&self, h0: u32, m0: u32, s0: u32) -> Option<(u32, u32, u32)> {
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m_start = if h == h0 { m0 } else { 0 };
            for m in m_start..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s_start = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = (s_start..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Some((h, m, s));
                }
            }
        }
        None
    }

    /// The civil times that match, from `from` (included) on, in order; None past ~5 years.
    fn next_civil(&self, from: Civil) -> Option<Civil> {
        let mut c = from;
        // Bounded: each round moves on at least a day, a month or matches.
        for _ in 0..(5 * 366 + 100) {
            if self.months & (1 << (c.month - 1)) == 0 {
                c = Civil { month: c.month + 1, day: 1, hour: 0, minute: 0, second: 0, ..c };
                if c.month > 12 {
                    c = Civil { year: c.year + 1, month: 1, ..c };
                }
                continue;
            }
            if c.day > days_in_month(c.year, c.month) || !self.day_matches(c.year, c.month, c.day) {
                c = Civil { day: c.day + 1, hour: 0, minute: 0, second: 0, ..c };
                if c.day > days_in_month(c.year, c.month) {
                    c = Civil { month: c.month + 1, day: 1, ..c };
                    if c.month > 12 {
                        c = Civil { year: c.year + 1, month: 1, ..c };
                    }
                }
                continue;
            }
            let found = self.time_from(c.hour, c.minute, c.second);
            match found {
                Some((hour, minute, second)) => return Some(Civil { hour, minute, second, ..c }),
                None => {
                    c = Civil { day: c.day + 1, hour: 0, minute: 0, second: 0, ..c };
                    if c.day > days_in_month(c.year, c.month) {
                        c = Civil { month: c.month + 1, day: 1, ..c };
                        if c.month > 12 {
                            c = Civil { year: c.year + 1, month: 1, ..c };
                        }
                    }
                }
            }
        }
        None
    }

    /// The first instant after `t` (epoch seconds) at which the expression is due in `zone`.
    pub fn next_after(&self, t: i64, zone: &dyn Zone) -> Option<i64> {
        let mut from = zone.civil(t + 1);
        for _ in 0..1000 {
            let c = self.next_civil(from)?;
            let instants = zone.instants(c);
            match instants.first() {
                // The first of a repeated hour: runs once.
                Some(&at) if at > t => return Some(at),
                Some(_) => {}
                None => {
                    // In a gap: at the first instant after it (the first whose civil time is
                    // past c), as cron runs what the jump skipped. The instant is within a day
                    // or two of c read as UTC, whatever the zone's offset.
                    let (mut lo, mut hi) = ((t + 1).max(epoch_of(c) - 2 * 86_400), epoch_of(c) + 2 * 86_400);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if zone.civil(mid) < c {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    if lo > t {
                        return Some(lo);
                    }
                }
            }
            // The next second after c.
            let next = epoch_of(c) + 1;
            from = civil_of(next);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        // "YYYY-MM-DD HH:MM:SS" in UTC.
        let n: Vec<i64> = s.split(['-', ' ', ':']).map(|x| x.parse().expect("number")).collect();
        epoch_of(Civil {
            year: n[0],
            month: n[1] as u32,
            day: n[2] as u32,
            hour: n[3] as u32,
            minute: n[4] as u32,
            second: n[5] as u32,
        })
    }

    fn show(t: i64) -> String {
        let c = civil_of(t);
        format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", c.year, c.month, c.day, c.hour, c.minute, c.second)
    }

    fn next(expr: &str, from: &str) -> String {
        show(Cron::parse(expr).expect("parses").next_after(at(from), &Utc).expect("due"))
    }

    #[test]
    fn fields_as_cron_reads_them() {
        assert_eq!(next("*/15 * * * *", "2026-12-07 10:07:30"), "2026-12-07 10:15:00");
        assert_eq!(next("0 9 * * mon-fri", "2026-12-05 12:00:00"), "2026-12-07 09:00:00", "Saturday to Monday");
        assert_eq!(next("30 2 1 * *", "2026-12-07 00:00:00"), "2027-01-01 02:30:00");
        assert_eq!(next("0 0 29 feb *", "2026-03-01 00:00:00"), "2028-02-29 00:00:00");
        assert_eq!(next("@hourly", "2026-12-07 10:00:00"), "2026-12-07 11:00:00", "strictly after");
        assert_eq!(next("@daily", "2026-12-31 23:59:59"), "2027-01-01 00:00:00");
        assert_eq!(next("@weekly", "2026-12-07 00:00:00"), "2026-12-13 00:00:00", "Sunday");
        assert_eq!(next("0 12 * * 7", "2026-12-07 00:00:00"), "2026-12-13 12:00:00", "7 is Sunday too");
        // Both day fields restricted: either day.
        assert_eq!(next("0 0 13 * fri", "2026-12-07 00:00:00"), "2026-12-11 00:00:00");
        assert_eq!(next("0 0 1,15 jan,jul *", "2026-12-07 00:00:00"), "2027-01-01 00:00:00");
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(next("*/2 * * * * *", "2026-12-07 10:00:00"), "2026-12-07 10:00:02");
        assert_eq!(next("*/2 * * * * *", "2026-12-07 10:00:01"), "2026-12-07 10:00:02");
        assert_eq!(next("30 0 * * * *", "2026-12-07 10:00:31"), "2026-12-07 11:00:30");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert_eq!(
            Cron::parse("* * *"),
            Err("3 fields; expected 5 (minute hour day month weekday) or 6 (seconds first)".into())
        );
        assert_eq!(Cron::parse("61 * * * *"), Err("'61' is out of range for the minute (0-59)".into()));
        assert_eq!(Cron::parse("* * * foo *"), Err("'foo' is not a month".into()));
        assert_eq!(Cron::parse("*/0 * * * *"), Err("'0' is not a step".into()));
        assert_eq!(Cron::parse("@sometimes"), Err("'@sometimes' is not a known @name".into()));
        assert!(Cron::parse("0 0 31 2 *").expect("parses").next_after(0, &Utc).is_none(), "never due");
    }

    /// A zone one hour ahead of UTC, two ahead in "summer" (from 2026-03-29 01:00 UTC to
    /// 2026-10-25 01:00 UTC), as central Europe.
    struct Fake;

    const SPRING: i64 = 1_774_746_000; // 2026-03-29 01:00:00 UTC
    const AUTUMN: i64 = 1_792_890_000; // 2026-10-25 01:00:00 UTC

    impl Fake {
        fn offset(t: i64) -> i64 {
            if (SPRING..AUTUMN).contains(&t) {
                7200
            } else {
                3600
            }
        }
    }

    impl Zone for Fake {
        fn civil(&self, t: i64) -> Civil {
            civil_of(t + Fake::offset(t))
        }

        fn instants(&self, c: Civil) -> Vec<i64> {
            let local = epoch_of(c);
            let mut out: Vec<i64> = [local - 7200, local - 3600].into_iter().filter(|t| self.civil(*t) == c).collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }

    fn next_local(expr: &str, from_utc: i64) -> String {
        let t = Cron::parse(expr).expect("parses").next_after(from_utc, &Fake).expect("due");
        let c = Fake.civil(t);
        format!("{} = {:02}:{:02} local", show(t), c.hour, c.minute)
    }

    #[test]
    fn daylight_saving_jumps_are_handled_as_cron_does() {
        assert_eq!(SPRING, at("2026-03-29 01:00:00"));
        assert_eq!(AUTUMN, at("2026-10-25 01:00:00"));
        // Spring: 02:00-02:59 local does not exist; a job at 02:30 runs at 03:00 local, once.
        assert_eq!(next_local("30 2 * * *", SPRING - 600), "2026-03-29 01:00:00 = 03:00 local");
        assert_eq!(next_local("30 2 * * *", SPRING), "2026-03-30 00:30:00 = 02:30 local");
        // Jobs outside the gap are untouched.
        assert_eq!(next_local("0 4 * * *", SPRING - 600), "2026-03-29 02:00:00 = 04:00 local");
        // Autumn: 02:00-02:59 local comes twice; a job at 02:30 runs once, the first time.
        let first = Cron::parse("30 2 * * *").expect("parses").next_after(AUTUMN - 7200, &Fake).expect("due");
        assert_eq!(show(first), "2026-10-25 00:30:00");
        let after = Cron::parse("30 2 * * *").expect("parses").next_after(first, &Fake).expect("due");
        assert_eq!(show(after), "2026-10-26 01:30:00", "not again in the repeated hour");
        // An hourly job runs each real hour (as cron's wildcard-hour jobs do).
        assert_eq!(next_local("0 * * * *", SPRING - 1), "2026-03-29 01:00:00 = 03:00 local");
    }

    #[test]
    fn local_time_round_trips_through_libc() {
        let now = 1_796_000_000;
        let c = Local.civil(now);
        assert!(Local.instants(c).contains(&now), "{c:?}");
    }
}

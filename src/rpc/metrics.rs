//! `GET /metrics`: the Prometheus text exposition format 0.0.4, and the `/proc` readings behind
//! the memory and CPU figures.
//!
//! Metric names follow Prometheus conventions: a `minisv_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters. The daemon's own figures use the standard names every
//! client library exports (`process_resident_memory_bytes`, `process_open_fds`, ...).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One metric family: its `# HELP`, `# TYPE` and samples.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    pub fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

/// The exposition text. Families without samples are left out.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(*value));
        }
    }
    out
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Memory and CPU of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// The fields of `/proc/<pid>/stat` after the command name, so `fields[0]` is field 3 (state).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // The state letter is not a number; keep positions by mapping it to 0.
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

const UTIME: usize = 14 - 3;
const STIME: usize = 15 - 3;
const CUTIME: usize = 16 - 3;
const CSTIME: usize = 17 - 3;
const STARTTIME: usize = 22 - 3;
const RSS: usize = 24 - 3;

/// Resident pages from `/proc/<pid>/statm`. The RSS field of `stat` is, since Linux 6.2, a
/// per-CPU approximation that reads low for a small process and 0 for one that has just
/// exec'd; `statm` (like VmRSS in `status`) gives the sum.
fn resident_pages(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn usage_of(pid: &str, fields: &[u64], with_children: bool, ticks: f64, page: u64) -> Usage {
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let mut cpu = get(UTIME) + get(STIME);
    if with_children {
        cpu += get(CUTIME) + get(CSTIME);
    }
    let pages = resident_pages(pid).unwrap_or_else(|| get(RSS));
    Usage { rss_bytes: pages * page, cpu_seconds: cpu as f64 / ticks }
}

/// The children of every thread of `pid` (needs `/proc/<pid>/task/<tid>/children`, present
/// since Linux 4.2 with CONFIG_PROC_CHILDREN; without it only the process itself counts).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// A supervised process together with its live descendants: the sum of their resident memory,
/// and their CPU time plus the CPU time of the children the process itself has reaped. A
/// descendant reaped by another descendant drops out of the sum, so the CPU figure can step
/// back; Prometheus's `rate()` treats that as a counter reset. None if `pid` is gone.
pub fn tree_usage(pid: u32) -> Option<Usage> {
    let (ticks, page) = (crate::sys::clock_ticks() as f64, crate::sys::page_size());
    let root = stat_fields(&pid.to_string())?;
    let mut total = usage_of(&pid.to_string(), &root, true, ticks, page);
    let mut todo = children(pid);
    let mut seen = 0;
    // Bounded: a fork bomb under one program must not stall the event loop.
    while let Some(c) = todo.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        if let Some(f) = stat_fields(&c.to_string()) {
            let u = usage_of(&c.to_string(), &f, false, ticks, page);
            total.rss_bytes += u.rss_bytes;
            total.cpu_seconds += u.cpu_seconds;
            todo.extend(children(c));
        }
    }
    Some(total)
}

/// The daemon's own figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfUsage {
    pub usage: Usage,
    pub open_fds: u64,
    /// Seconds since the epoch.
    pub start_time: f64,
}

pub fn self_usage() -> SelfUsage {
    let (ticks, page) = (crate::sys::clock_ticks() as f64, crate::sys::page_size());
    let fields = stat_fields("self").unwrap_or_default();
    let usage = usage_of("self", &fields, false, ticks, page);
    // Minus the directory handle read_dir itself holds.
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count().saturating_sub(1) as u64).unwrap_or(0);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())));
    let start_time = match (boot, fields.get(STARTTIME)) {
        (Some(b), Some(&st)) => b as f64 + st as f64 / ticks,
        _ => 0.0,
    };
    SelfUsage { usage, open_fds, start_time }
}

pub fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
pub mod parse {
    //! A checker for the text format 0.0.4, strict enough to catch what Prometheus rejects:
    //! metric and label names, label escapes, values, HELP/TYPE placement and duplicates.

    use std::collections::HashSet;

    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
    }

    /// (metric name, labels, value).
    pub type Sample = (String, Vec<(String, String)>, f64);

    /// Parses `text`; returns every sample or the first error with its line.
    pub fn check(text: &str) -> Result<Vec<Sample>, String> {
        let mut out = Vec::new();
        let mut typed: HashSet<String> = HashSet::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut current = String::new();
        let mut series = HashSet::new();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the text must end with a newline".into());
        }
        for (n, line) in text.lines().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, arg) = (parts.next(), parts.next().unwrap_or(""), parts.next());
                if !matches!(kw, Some("HELP" | "TYPE")) {
                    continue;
                }
                if !is_name(name, true) {
                    return Err(err("bad metric name"));
                }
                if name != current {
                    if finished.contains(name) {
                        return Err(err("family appears twice"));
                    }
                    finished.insert(std::mem::replace(&mut current, name.to_string()));
                }
                if kw == Some("TYPE") {
                    if !matches!(arg, Some("counter" | "gauge" | "histogram" | "summary" | "untyped")) {
                        return Err(err("bad type"));
                    }
                    if !typed.insert(name.to_string()) {
                        return Err(err("second TYPE"));
                    }
                } else if !helped.insert(name.to_string()) {
                    return Err(err("second HELP"));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            if !is_name(name, true) {
                return Err(err("bad metric name"));
            }
            if name != current {
                if finished.contains(name) || typed.contains(name) {
                    return Err(err("samples of a family are not together"));
                }
                finished.insert(std::mem::replace(&mut current, name.to_string()));
            }
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut r = r;
                loop {
                    if let Some(after) = r.strip_prefix('}') {
                        r = after;
                        break;
                    }
                    let eq = r.find('=').ok_or_else(|| err("no ="))?;
                    let lname = &r[..eq];
                    if !is_name(lname, false) || lname.starts_with("__") {
                        return Err(err("bad label name"));
                    }
                    r = r[eq + 1..].strip_prefix('"').ok_or_else(|| err("no opening quote"))?;
                    let mut value = String::new();
                    let mut chars = r.char_indices();
                    let end = loop {
                        match chars.next() {
                            None => return Err(err("unterminated label value")),
                            Some((i, '"')) => break i,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, '\\')) => value.push('\\'),
                                Some((_, '"')) => value.push('"'),
                                Some((_, 'n')) => value.push('\n'),
                                _ => return Err(err("bad escape")),
                            },
                            Some((_, c)) => value.push(c),
                        }
                    };
                    if labels.iter().any(|(k, _): &(String, String)| k == lname) {
                        return Err(err("duplicate label"));
                    }
                    labels.push((lname.to_string(), value));
                    r = &r[end + 1..];
                    r = r.strip_prefix(',').unwrap_or(r);
                }
                rest = r;
            }
            let mut fields = rest.split(' ').filter(|f| !f.is_empty());
            let value = match fields.next() {
                Some("NaN") => f64::NAN,
                Some("+Inf") => f64::INFINITY,
                Some("-Inf") => f64::NEG_INFINITY,
                Some(v) => v.parse::<f64>().map_err(|_| err("bad value"))?,
                None => return Err(err("no value")),
            };
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
            }
            if fields.next().is_some() {
                return Err(err("trailing text"));
            }
            let mut key = labels.clone();
            key.sort();
            if !series.insert((name.to_string(), format!("{key:?}"))) {
                return Err(err("duplicate series"));
            }
            out.push((name.to_string(), labels, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_escaped_labels() {
        let mut f = Family::new("minisv_process_up", Kind::Gauge, "Whether it runs.");
        f.add(vec![("name", "a\"b\\c\nd".into()), ("group", "g".into())], 1.0);
        f.add(vec![("name", "x".into()), ("group", "g".into())], 0.5);
        let empty = Family::new("minisv_nothing", Kind::Counter, "left out");
        let text = render(&[f, empty]);
        assert_eq!(
            text,
            "# HELP minisv_process_up Whether it runs.\n# TYPE minisv_process_up gauge\n\
             minisv_process_up{name=\"a\\\"b\\\\c\\nd\",group=\"g\"} 1\nminisv_process_up{name=\"x\",group=\"g\"} 0.5\n"
        );
        let parsed = parse::check(&text).expect("valid");
        assert_eq!(parsed[0].1[0].1, "a\"b\\c\nd");
    }

    #[test]
    fn the_checker_rejects_what_prometheus_rejects() {
        for bad in [
            "1abc 1\n",
            "a{b=\"c} 1\n",
            "a{b=\"\\x\"} 1\n",
            "a{__b=\"c\"} 1\n",
            "a one\n",
            "a 1\nb 1\na 2\n",
            "a 1\na 1\n",
            "# TYPE a gauge\n# TYPE a gauge\n",
            "# TYPE a nonsense\n",
            "a 1",
        ] {
            assert!(parse::check(bad).is_err(), "accepted {bad:?}");
        }
        assert!(parse::check(
            "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total{b=\"c\",d=\"e\"} 2 1700000000\n"
        )
        .is_ok());
    }

    #[test]
    fn values_are_formatted_for_prometheus() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }

    #[test]
    fn resident_memory_is_the_exact_sum_not_the_per_cpu_estimate() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        // Once it sleeps in nanosleep (after exec and the dynamic loader) its memory is still.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let settled = || {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            wchan.contains("nanosleep") && exe.ends_with("sleep")
        };
        while !settled() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let was_settled = settled();
        let usage = tree_usage(pid).expect("sleep is alive");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let vm_rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        // Every kill goes through sys::kill and its pid guard.
        let _ = crate::sys::kill(pid, libc::SIGKILL, false);
        let _ = child.wait();
        assert!(was_settled, "sleep {pid} did not reach nanosleep within 10 s");
        assert_eq!(usage.rss_bytes, vm_rss_kib * 1024);
    }

    #[test]
    fn usage_of_this_process() {
        let me = tree_usage(std::process::id()).expect("this process is alive");
        assert!(me.rss_bytes > 0 && me.cpu_seconds >= 0.0);
        let s = self_usage();
        assert!(s.open_fds >= 3 && s.start_time > 1e9 && s.start_time <= now_epoch());
    }
}

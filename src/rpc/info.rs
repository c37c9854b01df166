//! The one place that formats process info: `getProcessInfo` structs and their `description`
//! (reference 4.5, quirk Q16: clients parse it, so it is copied exactly), and the file reads
//! behind `readLog`/`readProcess*Log`/`tailProcess*Log`.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::faults::{self, RpcError};
use super::xmlrpc::Value;
use crate::supervisor::{Process, ProcessState};

/// Seconds since the epoch, as Supervisor's `capped_int(time)`: an int within ±2^31-1.
pub fn epoch(t: Option<SystemTime>) -> i64 {
    let Some(t) = t else { return 0 };
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    secs.clamp(-(i32::MAX as i64), i32::MAX as i64)
}

/// Python's `str(timedelta(seconds=n))` for n >= 0: `H:MM:SS`, `1 day, H:MM:SS`, `2 days, ...`.
pub fn timedelta(secs: i64) -> String {
    let secs = secs.max(0);
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let hms = format!("{}:{:02}:{:02}", rest / 3600, (rest % 3600) / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// `strftime('%b %d %I:%M %p')` of a local time, in the C locale.
pub fn short_local_time(epoch: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let tm = crate::sys::localtime(epoch);
    let hour12 = match tm.tm_hour % 12 {
        0 => 12,
        h => h,
    };
    let ampm = if tm.tm_hour < 12 { "AM" } else { "PM" };
    format!("{} {:02} {:02}:{:02} {}", MONTHS[tm.tm_mon.clamp(0, 11) as usize], tm.tm_mday, hour12, tm.tm_min, ampm)
}

/// Supervisor's `_interpretProcessInfo`.
pub fn description(
    state: ProcessState,
    pid: u32,
    start: i64,
    stop: i64,
    now: i64,
    spawnerr: &str,
    name: &str,
) -> String {
    match state {
        ProcessState::Running => format!("pid {}, uptime {}", pid, timedelta(now - start)),
        ProcessState::Fatal | ProcessState::Backoff => {
            if spawnerr.is_empty() {
                format!("unknown error (try \"tail {name}\")")
            } else {
                spawnerr.to_string()
            }
        }
        ProcessState::Stopped | ProcessState::Exited => {
            if start != 0 {
                short_local_time(stop)
            } else {
                "Not started".to_string()
            }
        }
        ProcessState::Starting | ProcessState::Stopping | ProcessState::Unknown => String::new(),
    }
}

/// minisv: when a scheduled program runs next (`schedule=`), after its status.
fn with_next_run(description: String, p: &Process) -> String {
    match p.next_run {
        Some((wall, _)) if p.config.schedule.is_some() => {
            let next = short_local_time(epoch(Some(wall)));
            if description.is_empty() {
                format!("next run {next}")
            } else {
                format!("{description}; next run {next}")
            }
        }
        _ => description,
    }
}

/// minisv: what a program said last with STATUS= (notify protocol), while it starts or runs.
fn with_status_text(description: String, p: &Process) -> String {
    match (&p.status_text, p.state) {
        (Some(text), ProcessState::Starting) if description.is_empty() => text.clone(),
        (Some(text), ProcessState::Starting | ProcessState::Running) => format!("{description}, {text}"),
        _ => description,
    }
}

/// minisv: after a `health_check` restart, the status says why (until a start or stop by hand).
fn with_health(description: String, p: &Process) -> String {
    match (&p.health_failure, p.state) {
        (Some(why), ProcessState::Stopping) => format!("unhealthy: {why}"),
        (Some(why), ProcessState::Starting | ProcessState::Running) if description.is_empty() => {
            format!("restarted: unhealthy: {why}")
        }
        (Some(why), ProcessState::Starting | ProcessState::Running) => {
            format!("{description} (restarted: unhealthy: {why})")
        }
        _ => description,
    }
}

/// The getProcessInfo struct, fields in Supervisor's order.
pub fn process_info(p: &Process, stdout_log: Option<&Path>, stderr_log: Option<&Path>, now: SystemTime) -> Value {
    let start = epoch(p.start_wall);
    let stop = epoch(p.stop_wall);
    let now = epoch(Some(now));
    let spawnerr = p.spawnerr.clone().unwrap_or_default();
    let path = |p: Option<&Path>| Value::String(p.map(|p| p.display().to_string()).unwrap_or_default());
    Value::structure([
        ("name", Value::from(p.config.name.as_str())),
        ("group", Value::from(p.group.as_str())),
        ("start", Value::Int(start)),
        ("stop", Value::Int(stop)),
        ("now", Value::Int(now)),
        ("state", Value::Int(p.state.code() as i64)),
        ("statename", Value::from(p.state.name())),
        ("spawnerr", Value::from(spawnerr.as_str())),
        ("exitstatus", Value::Int(p.exitstatus.unwrap_or(0) as i64)),
        ("logfile", path(stdout_log)),
        ("stdout_logfile", path(stdout_log)),
        ("stderr_logfile", path(stderr_log)),
        ("pid", Value::Int(p.pid as i64)),
        (
            "description",
            Value::from(with_next_run(
                with_health(
                    with_status_text(description(p.state, p.pid, start, stop, now, &spawnerr, &p.config.name), p),
                    p,
                ),
                p,
            )),
        ),
    ])
}

/// XML 1.0 text from log bytes: invalid UTF-8 (including a sequence cut by the read window)
/// is replaced, as are characters XML forbids (done by the encoder). Fix of Q17.
pub fn log_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Supervisor's `readFile(filename, offset, length)` (4.5).
pub fn read_file(path: &Path, offset: i64, length: i64) -> Result<Vec<u8>, RpcError> {
    if offset < 0 && length != 0 {
        return Err(RpcError::new(faults::BAD_ARGUMENTS));
    }
    if length < 0 {
        return Err(RpcError::new(faults::BAD_ARGUMENTS));
    }
    let read = || -> io::Result<Vec<u8>> {
        let mut f = crate::sys::open_regular(path)?;
        let size = f.metadata()?.len() as i64;
        let (from, len) = if offset < 0 {
            let from = (size + offset).max(0);
            (from, size - from)
        } else if length == 0 {
            (offset.min(size), (size - offset).max(0))
        } else {
            (offset.min(size), length.min((size - offset).max(0)))
        };
        f.seek(SeekFrom::Start(from as u64))?;
        let mut buf = Vec::with_capacity(len.max(0) as usize);
        f.take(len.max(0) as u64).read_to_end(&mut buf)?;
        Ok(buf)
    };
    read().map_err(|e| RpcError::with(faults::FAILED, e.to_string()))
}

/// Supervisor's `tailFile(filename, offset, length)`: (bytes, new offset, overflow).
pub fn tail_file(path: &Path, offset: i64, length: i64) -> (Vec<u8>, i64, bool) {
    let Ok(mut f) = crate::sys::open_regular(path) else { return (Vec::new(), 0, false) };
    let Ok(meta) = f.metadata() else { return (Vec::new(), 0, false) };
    let sz = meta.len() as i64;
    let (mut offset, mut length) = (offset, length);
    let overflow = sz > offset.saturating_add(length);
    if overflow {
        offset = sz - 1;
    }
    if offset.saturating_add(length) > sz {
        if offset > sz - 1 {
            length = 0;
        }
        offset = sz - length;
    }
    offset = offset.max(0);
    length = length.max(0);
    let mut data = Vec::new();
    if length > 0 && f.seek(SeekFrom::Start(offset as u64)).is_ok() {
        let _ = (&mut f).take(length as u64).read_to_end(&mut data);
    }
    (data, sz, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedelta_prints_like_python() {
        assert_eq!(timedelta(62), "0:01:02");
        assert_eq!(timedelta(86_400 + 3661), "1 day, 1:01:01");
        assert_eq!(timedelta(3 * 86_400), "3 days, 0:00:00");
        assert_eq!(timedelta(-5), "0:00:00");
    }

    #[test]
    fn descriptions_follow_supervisor() {
        assert_eq!(description(ProcessState::Running, 4413, 100, 162, 162, "", "a"), "pid 4413, uptime 0:01:02");
        assert_eq!(description(ProcessState::Fatal, 0, 1, 0, 5, "", "web"), "unknown error (try \"tail web\")");
        assert_eq!(
            description(ProcessState::Backoff, 0, 1, 0, 5, "Exited too quickly (process log may have details)", "a"),
            "Exited too quickly (process log may have details)"
        );
        assert_eq!(description(ProcessState::Stopped, 0, 0, 0, 5, "", "a"), "Not started");
        assert_eq!(description(ProcessState::Starting, 5, 1, 0, 5, "", "a"), "");
        let stopped = description(ProcessState::Exited, 0, 1, 1_795_476_000, 5, "", "a");
        assert_eq!(stopped.len(), "Nov 23 11:16 PM".len(), "{stopped}");
    }

    fn file_with(content: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("minisv-info-{}-{}", std::process::id(), content.len()));
        std::fs::write(&p, content).expect("write");
        p
    }

    #[test]
    fn tail_file_matches_supervisors_examples() {
        // The VERIFIED 22-byte examples of 4.5.
        let p = file_with(b"0123456789012345-out\n\n");
        assert_eq!(tail_file(&p, 0, 5), (b"out\n\n".to_vec(), 22, true));
        assert_eq!(tail_file(&p, 0, 100).1, 22);
        assert!(!tail_file(&p, 0, 100).2);
        assert_eq!(tail_file(&p, 30, 100), (Vec::new(), 22, false));
        assert_eq!(tail_file(&p, 10, 5), (b"out\n\n".to_vec(), 22, true));
        assert_eq!(tail_file(Path::new("/nonexistent/x"), 0, 5), (Vec::new(), 0, false));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn read_file_offsets() {
        let p = file_with(b"abcdefghij");
        assert_eq!(read_file(&p, 2, 3).unwrap(), b"cde");
        assert_eq!(read_file(&p, 7, 0).unwrap(), b"hij");
        assert_eq!(read_file(&p, -4, 0).unwrap(), b"ghij");
        assert_eq!(read_file(&p, -400, 0).unwrap(), b"abcdefghij");
        assert_eq!(read_file(&p, 40, 0).unwrap(), b"");
        assert_eq!(read_file(&p, -1, 2).unwrap_err().code, faults::BAD_ARGUMENTS);
        assert_eq!(read_file(&p, 1, -2).unwrap_err().code, faults::BAD_ARGUMENTS);
        let _ = std::fs::remove_file(&p);
    }
}

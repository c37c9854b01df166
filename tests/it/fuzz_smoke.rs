//! The fuzz targets as a short test that needs neither nightly nor cargo-fuzz (issue 7).
//!
//! Each target of `fuzz/src/targets.rs` is fed (a) every file of its seed corpus
//! `fuzz/corpus/<target>/`, then (b) deterministic mutations of them (byte flips, insertions,
//! deletions, splices, boundary values) until its share of the time budget is spent. Every call
//! runs on a worker thread: a panic fails the test with the input printed, and so does a call
//! that takes longer than `HANG_LIMIT` (the hang guard). Inputs are capped at
//! `targets::MAX_INPUT` bytes, and the targets themselves check that outputs stay bounded.
//!
//! `MINISV_FUZZ_SECONDS` sets the total budget (default 30, shared by all targets; 0 runs the
//! corpus only) and `MINISV_FUZZ_SEED` the mutation seed (default 1), so a failure seen once can
//! be replayed exactly.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One call taking longer than this is a hang.
const HANG_LIMIT: Duration = Duration::from_secs(1);

fn budget_per_target() -> Duration {
    let total: f64 = std::env::var("MINISV_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    Duration::from_secs_f64(total.max(0.0) / targets::TARGETS.len() as f64)
}

fn seed() -> u64 {
    std::env::var("MINISV_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// xorshift64*: small, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, salt: &str) -> Rng {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in salt.bytes() {
            s = (s ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
        Rng(s | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens worth inserting whole: the syntax of the formats under test and boundary values.
const DICTIONARY: &[&[u8]] = &[
    b"[",
    b"]",
    b"=",
    b":",
    b";",
    b"#",
    b" ;",
    b" #",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b"  ",
    b"[DEFAULT]\n",
    b"[program:x]\n",
    b"[supervisord]\n",
    b"[include]\nfiles=inc.conf\n",
    b"%(",
    b")s",
    b"%%",
    b"%(here)s",
    b"%(process_num)02d",
    b"%(ENV_HOME)s",
    b"<value>",
    b"</value>",
    b"<struct>",
    b"<member>",
    b"<name>",
    b"<array><data>",
    b"</data></array>",
    b"<int>",
    b"<string>",
    b"<base64>",
    b"<double>",
    b"<nil/>",
    b"&amp;",
    b"&#13;",
    b"&#x10FFFF;",
    b"&#0;",
    b"<?xml version='1.0'?>",
    b"<!--",
    b"-->",
    b"\x1b[",
    b"\x1b[31m",
    b"'",
    b"\"",
    b"\\",
    b"0",
    b"-1",
    b"2147483648",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"0o777",
    b"1_000",
    b"KB",
    b"GB",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x80\xa8",
    b"\x00",
    b"\xef\xbf\xbf",
    b"HTTP/1.1 200 OK\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"0\r\n\r\n",
    b"Basic ",
    b"dXNlcjpwYXNzd29yZA==",
    b"=",
    b"%2F",
    b"%",
    b"/logtail/",
    b"/RPC2",
    b"/mainlogtail",
    b"/ok.html",
];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let pos = rng.below(out.len() + 1);
        match rng.below(9) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0, 0x7f, 0x80, 0xff, b'%', b'<', b'\n', b' '][rng.below(8)];
            }
            2 => out.insert(pos, rng.next() as u8),
            3 if !out.is_empty() => {
                let len = 1 + rng.below(16.min(out.len() - pos.min(out.len() - 1)));
                let start = pos.min(out.len() - 1);
                out.drain(start..(start + len).min(out.len()));
            }
            4 | 5 => {
                let token = DICTIONARY[rng.below(DICTIONARY.len())];
                out.splice(pos..pos, token.iter().copied());
            }
            6 if !corpus.is_empty() => {
                // Splice: a piece of another corpus entry.
                let other = &corpus[rng.below(corpus.len())];
                let a = rng.below(other.len() + 1);
                let b = a + rng.below(other.len() - a + 1);
                out.splice(pos..pos, other[a..b].iter().copied());
            }
            7 if !out.is_empty() => {
                // Repeat a piece: long runs, deep nesting.
                let a = rng.below(out.len());
                let b = (a + 1 + rng.below(32)).min(out.len());
                let piece = out[a..b].to_vec();
                for _ in 0..rng.below(64) {
                    out.splice(pos..pos, piece.iter().copied());
                }
            }
            _ => {
                let digits = ["0", "1", "255", "256", "65535", "65536", "4294967296", "99999999999999999999"];
                out.splice(pos..pos, digits[rng.below(digits.len())].bytes());
            }
        }
        out.truncate(targets::MAX_INPUT);
    }
    out
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus file"))
        .filter(|d| d.len() <= targets::MAX_INPUT)
        .collect()
}

/// Where the input being run is kept, so that an abort (an allocation failure cannot be caught
/// as a panic) leaves it behind.
fn last_input_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-smoke-{name}.last"))
}

fn show(input: &[u8]) -> String {
    format!("{} bytes: {:?}", input.len(), String::from_utf8_lossy(input))
}

/// Runs `target` on each input on a worker thread, failing on a panic or a slow call.
fn run(name: &str, target: fn(&[u8])) {
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seed files");
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>();
    let (out_tx, out_rx) = mpsc::channel::<Result<(), String>>();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            for input in in_rx {
                let r = std::panic::catch_unwind(|| target(&input)).map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                });
                if out_tx.send(r).is_err() {
                    return;
                }
            }
        })
        .expect("spawn the fuzz worker");
    let mut slowest = Duration::ZERO;
    let last = last_input_path(name);
    // Straight to stderr, past the test harness's capture: an abort loses captured output.
    let _ = writeln!(std::io::stderr(), "fuzz_smoke {name}: if the process aborts, its input is in {}", last.display());
    let mut call = |input: Vec<u8>| {
        let _ = std::fs::write(&last, &input);
        let shown = show(&input);
        let started = Instant::now();
        in_tx.send(input).expect("worker alive");
        match out_rx.recv_timeout(HANG_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => panic!("fuzz target {name} panicked: {msg}\ninput: {shown}"),
            Err(_) => panic!("fuzz target {name}: one call took more than {HANG_LIMIT:?}\ninput: {shown}"),
        }
        slowest = slowest.max(started.elapsed());
    };
    for s in &seeds {
        call(s.clone());
    }
    let mut rng = Rng::new(seed(), name);
    let deadline = Instant::now() + budget_per_target();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let base = &seeds[rng.below(seeds.len())];
        call(mutate(&mut rng, base, &seeds));
        runs += 1;
    }
    drop(in_tx);
    let _ = worker.join();
    eprintln!("fuzz_smoke {name}: {} seeds, {runs} mutations, slowest call {slowest:?}", seeds.len());
}

macro_rules! smoke {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (n, f) = targets::TARGETS
                    .iter()
                    .find(|(n, _)| *n == stringify!($name))
                    .expect("target listed in targets::TARGETS");
                run(n, *f);
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test() {
            let tested = [$(stringify!($name)),*];
            for (n, _) in targets::TARGETS {
                assert!(tested.contains(n), "add {n} to smoke! in fuzz_smoke.rs");
            }
        }
    };
}

smoke!(
    ini,
    expand,
    types,
    config_load,
    xmlrpc_call,
    xmlrpc_response,
    xmlrpc_roundtrip,
    base64,
    shlex,
    output,
    ctl_transport,
    http_server,
);

// ---------------------------------------------------------------------------------------------
// Bugs found by fuzzing, now fixed: their reproducers. They run the real binary, so
// an abort or a hang fails the test instead of killing the test process.

/// Runs `minisv check -c <conf>` with a deadline; `None` if it was still running then.
fn check_config(name: &str, conf_text: &str, setup: impl FnOnce(&std::path::Path)) -> Option<std::process::Output> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-bug-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    setup(&dir);
    let conf = dir.join("supervisord.conf");
    std::fs::write(&conf, conf_text.replace("{dir}", &dir.display().to_string())).expect("write conf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minisv"));
    // SAFETY: setrlimit is async-signal-safe; the limit keeps a runaway allocation from
    // filling the machine's memory (it fails at 1 GiB instead).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .args(["check", "-c"])
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run minisv check");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Bug (src/config/expand.rs, `pad` via `convert`/`format`): a width or precision in a
/// `%(name)s` format is used as given, so `%(program_name)99999999999s` in any expanded value
/// makes the loader allocate ~100 GB and abort ("memory allocation of N bytes failed"), and a
/// width near `usize::MAX` panics with "capacity overflow". Python answers "width too big"
/// for widths past `sys.maxsize` and a MemoryError below it; the loader should report a config
/// error instead (found by the `expand` fuzz target on `\0\x01%(program_name)4294967299s`).
#[test]

fn bug_expand_huge_width_aborts() {
    for spec in
        ["%(program_name)99999999999s", "%(process_num).99999999999d", "%(program_name)99999999999999999999999s"]
    {
        let conf =
            format!("[supervisord]\nlogfile={{dir}}/log\npidfile={{dir}}/pid\n[program:a]\ncommand=/bin/echo {spec}\n");
        let out = check_config("width", &conf, |_| {}).expect("minisv check finishes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: want a config error (exit 2), got {:?}\n{stderr}", out.status);
    }
}

/// Bug (src/config/sections.rs, `read_file`): included files are read whole with
/// `std::fs::read`, whatever they are, so `[include] files=` naming a FIFO blocks the loader
/// forever and one naming /dev/zero grows memory without bound. Python's supervisord behaves the
/// same; bounding the read (regular files only, or a size cap) would turn both into errors.
#[test]

fn bug_include_fifo_hangs() {
    let conf = "[supervisord]\nlogfile={dir}/log\npidfile={dir}/pid\n[include]\nfiles={dir}/fifo.conf\n";
    let out = check_config("fifo", conf, |dir| {
        let fifo = std::ffi::CString::new(dir.join("fifo.conf").to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    });
    assert!(out.is_some(), "minisv check was still reading the FIFO after 5 s");
}

/// Bug (src/config/include.rs, `fnmatch`): a naive recursion tried every split for every `*`,
/// so `[include] files=inc.****...x` (40 stars) against a directory of files took exponential
/// time and the loader never finished (found by the `config_load` fuzz target).
#[test]
fn bug_include_pattern_of_many_stars_hangs() {
    let stars = "*".repeat(40);
    let conf = format!("[supervisord]\nlogfile={{dir}}/log\npidfile={{dir}}/pid\n[include]\nfiles=inc.{stars}x\n");
    let out = check_config("stars", &conf, |dir| {
        std::fs::write(dir.join("inc.confconfconfconfconfconfconfconf"), "").expect("file");
    });
    let out = out.expect("minisv check was still matching the pattern after 5 s");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Differential: mutated INI seeds read by our reader and by Python's configparser.

/// Mutations of the `ini` seeds must read the same in Python's configparser and in ours.
/// Python is the venv's (the compatibility tests' Python, made on first use). `MINISV_FUZZ_SECONDS`
/// does not apply: 1000 cases, one Python process.
#[test]
fn ini_differential_against_python() {
    let python = crate::pyenv::python_supervisor().join("python");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-ini-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let seeds = corpus("ini");
    let mut rng = Rng::new(seed(), "ini-differential");
    let mut cases = Vec::new();
    for i in 0..1000 {
        let base = &seeds[rng.below(seeds.len())];
        let mutated = mutate(&mut rng, base, &seeds);
        // Python reads text: give both sides the same valid UTF-8. NUL bytes are left out
        // (argv and Python's error texts handle them differently, not the reader).
        let text = String::from_utf8_lossy(&mutated).replace('\0', "");
        let path = dir.join(format!("case{i}.conf"));
        std::fs::write(&path, &text).expect("write case");
        cases.push((path, text));
    }
    let output = Command::new(&python)
        .args(["-c", minisv::config::ini::differential::PYTHON])
        .args(cases.iter().map(|(p, _)| p))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("python output is UTF-8");
    let expected: Vec<&str> = stdout.split('\0').collect();
    let mut mismatches = Vec::new();
    for ((path, text), python) in cases.iter().zip(&expected) {
        let ours = minisv::config::ini::differential::dump([(text.as_str(), path.as_path())]);
        if ours != *python {
            mismatches.push(format!("input {text:?}\n--- python\n{python}--- ours\n{ours}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(mismatches.is_empty(), "{} of {} cases differ, first:\n{}", mismatches.len(), cases.len(), mismatches[0]);
}

/// Bug (src/config/ini.rs `py_repr`, and its copy in src/daemon/spawn.rs): Python's `repr()`
/// escapes every character that `str.isprintable()` rejects (`'\u2028'`, `'\xa0'`,
/// `'\u200b'`), ours writes them raw, so parse-error texts differ from Supervisor's for lines
/// holding such characters. Found by `ini_differential_against_python` on a line `St\u{2028}] ; c`.
#[test]

fn bug_py_repr_leaves_unprintable_characters_raw() {
    use minisv::config::ini::py_repr;
    assert_eq!(py_repr("a\u{2028}b"), "'a\\u2028b'");
    assert_eq!(py_repr("\u{a0}"), "'\\xa0'");
    assert_eq!(py_repr("\u{200b}"), "'\\u200b'");
}

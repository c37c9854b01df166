//! Logs for small disks (issue 22, point 4): compressed backups, JSON lines on the daemon's
//! stdout. (Rotation by time is tested with a fake clock in the log file's unit tests.)

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn gzip_t(path: &Path) -> bool {
    Command::new("gzip").arg("-t").arg(path).status().is_ok_and(|s| s.success())
}

fn gunzip(path: &Path) -> Vec<u8> {
    Command::new("gzip").arg("-dc").arg(path).output().expect("gzip -dc").stdout
}

/// Incompressible bytes, so that the compressed backups need the budget to be enforced.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn compressed_backups_are_gz_files_that_stay_under_maxbytes_times_backups() {
    let dir = TempDir::new("logs-gz");
    let data = random_bytes(400_000);
    fs::write(dir.join("data"), &data).expect("data");
    // Written 4000 bytes at a time, paced so that the daemon reads about that much at once (a
    // burst would be read in one piece, and rotated once: a backup is cut after a write).
    dir.write(
        "writer.py",
        "import os, sys, time\nd = open(sys.argv[1], 'rb').read()\nfor i in range(0, len(d), 4000):\n    os.write(1, d[i:i + 4000])\n    time.sleep(0.003)\ntime.sleep(1000)\n",
    );
    let programs = format!(
        "[program:w]\ncommand=python3 {d}/writer.py {d}/data\nstdout_logfile={d}/w.log\n\
         stdout_logfile_maxbytes=40KB\nstdout_logfile_backups=3\nstdout_logfile_compress=true\n",
        d = dir.path().display()
    );
    let d = Daemon::start_in(dir, &programs, &[]);
    let log = d.path("w.log");
    let budget = 3 * 40 * 1024;
    let backup = |n: u32, gz: bool| d.path(&format!("w.log.{n}{}", if gz { ".gz" } else { "" }));
    // Every byte logged, every backup compressed and the oldest removed past the budget.
    let total = wait_for(30.0, "the output logged and its backups compressed within the budget", || {
        let logged: u64 = fs::metadata(&log).ok()?.len();
        let gz: Vec<u64> = (1..=3).filter_map(|n| fs::metadata(backup(n, true)).ok().map(|m| m.len())).collect();
        // A backup still being compressed (w.log.rotated-N, then its .gz) is not in place yet.
        let pending = fs::read_dir(d.dir.path())
            .ok()?
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("w.log.rotated")));
        let plain = pending || (1..=3).any(|n| backup(n, false).exists());
        let total: u64 = gz.iter().sum();
        let all_in = gz.len() >= 2 && logged > 0 && !plain && total <= budget;
        // The end of the data is in the file: nothing is left to rotate.
        (all_in && data.ends_with(&fs::read(&log).ok()?)).then_some(total)
    });
    let mut tail = Vec::new();
    for n in (1..=3).rev() {
        let gz = backup(n, true);
        if gz.exists() {
            assert!(gzip_t(&gz), "gzip -t {}", gz.display());
            tail.extend(gunzip(&gz));
        }
    }
    tail.extend(fs::read(&log).expect("current"));
    assert!(
        data.ends_with(&tail),
        "the backups and the file are the newest output, in order ({total} bytes of backups)"
    );
    assert!(!backup(4, true).exists());
    assert!(!d.log().contains("reaped unknown pid"), "{}", d.log());
}

#[test]
fn without_gzip_on_path_the_backups_stay_plain_and_it_is_said_once() {
    let dir = TempDir::new("logs-nogz");
    fs::create_dir(dir.join("empty")).expect("empty dir");
    let programs = format!(
        "[program:w]\ncommand=/bin/sh -c 'i=0; while [ $i -lt 3000 ]; do echo \"line $i of the output\"; i=$((i+1)); done; exec sleep 1000'\n\
         stdout_logfile={d}/w.log\nstdout_logfile_maxbytes=10KB\nstdout_logfile_backups=3\nstdout_logfile_compress=true\n",
        d = dir.path().display()
    );
    let conf = dir.write("sv.conf", &format!("{}{}", base_config(dir.path()), programs));
    let empty = dir.join("empty");
    let d = Daemon::start_env(dir, conf, &[], &[("PATH", empty.to_str().expect("utf-8"))]);
    wait_for(30.0, "three plain backups and the last line", || {
        let last = read_lossy(&d.path("w.log")).contains("line 2999 of the output\n");
        (last && (1..=3).all(|n| d.path(&format!("w.log.{n}")).exists())).then_some(())
    });
    assert!((1..=3).all(|n| !d.path(&format!("w.log.{n}.gz")).exists()));
    assert_eq!(d.count_log("gzip is not on PATH"), 1, "{}", d.log());
}

#[test]
fn log_format_json_gives_one_parsable_object_per_line_on_the_daemons_stdout() {
    let dir = TempDir::new("logs-json");
    // Quotes, a backslash, a tab, a control character, UTF-8 and a byte that is not UTF-8.
    dir.write(
        "out.sh",
        "printf 'plain\\n\"quoted\" back\\\\slash\\ttab \\001 caf\\303\\251 \\377\\nlast\\n'\nexec sleep 1000\n",
    );
    let programs = format!(
        "[program:j]\ncommand=/bin/sh {d}/out.sh\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n\
         stderr_logfile={d}/j.err\n",
        d = dir.path().display()
    );
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}{}",
            base_config(dir.path()).replace("[supervisord]\n", "[supervisord]\nlog_format=json\n"),
            programs
        ),
    );
    let mut d = Daemon::start_with(dir, conf, &[]);
    let stdout = d.path("stdout.txt");
    wait_for(10.0, "the program's last line on stdout", || {
        read_lossy(&stdout).contains("\"line\":\"last\"").then_some(())
    });
    d.stop();
    let check = r#"
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
out, logs = [], []
for l in lines:
    o = json.loads(l)
    if "program" in o:
        assert sorted(o) == ["channel", "line", "program", "time"], o
        assert o["program"] == "j" and o["channel"] == "stdout", o
        out.append(o["line"])
    else:
        assert sorted(o) == ["level", "message", "time"], o
        logs.append(o["level"] + " " + o["message"])
    assert o["time"].endswith("Z") and "T" in o["time"], o
assert out == ["plain", '"quoted" back\\slash\ttab \x01 caf\u00e9 \ufffd', "last"], out
assert any(m.startswith("info spawned: 'j'") for m in logs), logs
print(len(lines))
"#;
    let py = Command::new("python3").arg("-c").arg(check).arg(&stdout).output().expect("python3");
    assert!(
        py.status.success(),
        "python3: {}\nstdout.txt:\n{}",
        String::from_utf8_lossy(&py.stderr),
        read_lossy(&stdout)
    );
    // The main log file keeps Supervisor's text format.
    assert!(d.log().contains(" INFO spawned: 'j' with pid "), "{}", d.log());
}

//! Faults the daemon survives (issue 7): it keeps supervising, stays responsive and says what
//! happened in one clear line.

use std::fs;
use std::process::Command;

use crate::harness::*;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallFs> {
        fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        ok.is_ok_and(|s| s.success()).then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_log_disk_drops_output_with_a_count_and_recovers() {
    if !is_root() {
        eprintln!("skipping: mounting a small tmpfs needs root");
        return;
    }
    let dir = TempDir::new("diskfull");
    let Some(_fs) = SmallFs::mount(&dir.join("small"), "256k") else {
        eprintln!("skipping: cannot mount tmpfs here");
        return;
    };
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:writer]\ncommand=sh -c 'while :; do seq -f \"line %%g\" 1 500; sleep 0.01; done'\n\
             stdout_logfile=%(here)s/small/w.log\nstdout_logfile_maxbytes=0\nstartsecs=0\n\
             [program:other]\ncommand=sleep 1000\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_log("writer: cannot write stdout log", 20.0);
    assert!(d.log().contains("No space left on device"), "{}", d.log());
    assert_eq!(d.count_log("writer: cannot write stdout log"), 1, "said once, not once per write");
    // Still supervising and answering.
    assert_eq!(d.state("other"), "RUNNING");
    assert_eq!(d.state("writer"), "RUNNING", "the writer is not blocked");
    // Space comes back: logging resumes and the loss is reported with a byte count.
    d.rpc("supervisor.clearProcessLogs", &[minisv::rpc::xmlrpc::Value::from("writer")]).expect("clear");
    d.wait_log("writer: writing ", 20.0);
    let log = d.log();
    let line = log.lines().find(|l| l.contains("works again;")).expect("recovery line");
    let lost: u64 =
        line.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("count");
    assert!(lost > 0, "{line}");
    wait_for(10.0, "new output", || fs::read_to_string(d.path("small/w.log")).ok().filter(|s| s.contains("line ")));
}

//! The clone path end to end: which fds a child gets, lanes in flight at once, the CLONE_VFORK
//! and no-slots fallbacks, children with their stdio on /dev/null.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::*;
use crate::daemon::spawn::child::STEP_CHDIR;
use crate::daemon::spawn::lanes::{Forced, LANES};

/// Reads `fd` (non-blocking) to EOF, waiting at most 10 s in all.
fn read_to_eof(fd: &OwnedFd) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no EOF within 10 s (a write end is still open somewhere): {out:?}");
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        // SAFETY: read into a buffer we own.
        match unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } {
            0 => return String::from_utf8_lossy(&out).into_owned(),
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            _ => {}
        }
    }
}

/// `sh -c script` with no settings but these.
fn sh_plan(base: &Rc<BaseEnv>, script: &str, redirect_stderr: bool, ready_fd: Option<i32>) -> SpawnPlan {
    SpawnPlan {
        program: PathBuf::from("/bin/sh"),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        base: Rc::clone(base),
        env: Vec::new(),
        directory: None,
        umask: None,
        user: None,
        redirect_stderr,
        stdin_socket: None,
        ready_fd,
        listen: Vec::new(),
        limits: Default::default(),
        cgroup: None,
    }
}

#[test]
fn a_child_takes_only_its_own_fds_through_the_slots_which_are_idle_again_after() {
    let (sp, note) = Spawner::new();
    assert_eq!(note, None);
    let slots: Vec<[RawFd; 4]> = sp
        .lanes
        .slots
        .as_ref()
        .expect("reserved")
        .fds
        .iter()
        .map(|lane| lane.each_ref().map(|f| f.as_raw_fd()))
        .collect();
    assert!(slots.iter().flatten().all(|&fd| fd >= 3), "{slots:?}");
    // Finishes the child; then no slot holds an end of its pipes any more.
    let finish_idle = |child: InFlight| -> Spawned {
        let spawned = finish(child).expect("exec'd");
        let link = |fd: RawFd| fs::read_link(format!("/proc/self/fd/{fd}")).expect("open fd");
        let ours = [Some(&spawned.stdout), spawned.stderr.as_ref(), spawned.stdin.as_ref(), spawned.ready.as_ref()];
        let pipes: Vec<PathBuf> = ours.into_iter().flatten().map(|fd| link(fd.as_raw_fd())).collect();
        for slot in slots.iter().flatten() {
            assert!(!pipes.contains(&link(*slot)), "slot {slot} still holds {:?}", link(*slot));
        }
        spawned
    };
    // Fds of ours, not close-on-exec: none may reach the child.
    let ours: Vec<_> = (0..32).map(|_| sys::pipe().expect("pipe")).collect();
    for (r, _) in &ours {
        // SAFETY: clearing FD_CLOEXEC on an fd we own.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, 0) };
    }
    let base = Rc::new(BaseEnv::new(std::env::vars_os()));
    let script = "ls /proc/$$/fd; readlink /proc/$$/fd/3; echo to-stderr >&2; cat; echo ready >&3";
    let plan = sh_plan(&base, script, false, Some(3));
    let child = finish_idle(sp.spawn(plan, "slots").expect("cloned"));
    let stdin = child.stdin.expect("stdin pipe");
    assert_eq!(sys::write_nonblocking(&stdin, b"from-stdin\n").expect("write"), 11);
    drop(stdin);
    let out = read_to_eof(&child.stdout);
    let err = read_to_eof(child.stderr.as_ref().expect("stderr pipe"));
    let ready = read_to_eof(child.ready.as_ref().expect("ready pipe"));
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["0", "1", "2", "3"], "only 0-2 and the readiness fd: {out}");
    assert!(lines[4].starts_with("pipe:["), "{out}");
    assert_eq!(lines[5..], ["from-stdin"], "{out}");
    assert_eq!((err.as_str(), ready.as_str()), ("to-stderr\n", "ready\n"));
    assert_eq!(status, 0);

    // A child with fewer ends (stderr to stdout, no readiness fd) leaves the slots idle too.
    let plan = sh_plan(&base, "echo out; echo err >&2", true, None);
    let child = finish_idle(sp.spawn(plan, "slots2").expect("cloned"));
    assert!(child.stderr.is_none() && child.ready.is_none());
    assert_eq!(read_to_eof(&child.stdout), "out\nerr\n");
    // SAFETY: waitpid on our own child.
    assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);

    // On a kernel without close_range the child copies the whole shared table with
    // unshare(CLONE_FILES); without slots (none could be reserved) it copies the whole table
    // too. Either way exec leaves it only its own fds, and the slots are idle.
    for (forced, name) in [
        (Forced { without_close_range: true, ..Forced::default() }, "unshare"),
        (Forced { without_slots: true, ..Forced::default() }, "noslots"),
    ] {
        sp.force(forced);
        let plan = sh_plan(&base, "ls /proc/$$/fd; readlink /proc/$$/fd/3", true, Some(3));
        let child = finish_idle(sp.spawn(plan, name).expect("cloned"));
        sp.force(Forced::default());
        let out = read_to_eof(&child.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["0", "1", "2", "3"], "{name}: {out}");
        assert!(lines[4].starts_with("pipe:["), "{name}: {out}");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
    }
    drop(ours);
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(value: i32) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = value };
}

/// A child that fails at chdir: it exits 127, and `finish` says why and reaps it.
fn failing_child(sp: &Spawner, base: &Rc<BaseEnv>) -> InFlight {
    let mut plan = sh_plan(base, "echo never", true, None);
    plan.directory = Some("/nonexistent-minisv-dir".into());
    sp.spawn(plan, "fails").expect("cloned")
}

fn assert_fails_at_chdir_and_is_reaped(child: InFlight) {
    let pid = child.pid;
    let message = finish(child).err().expect("a failed start");
    assert_eq!(message, "couldn't chdir to /nonexistent-minisv-dir: ENOENT");
    let mut status = 0;
    // SAFETY: waitpid with a valid status pointer; the pid was ours.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    assert_eq!((r, errno()), (-1, libc::ECHILD), "finish reaped the failed child");
}

#[test]
fn children_go_to_exec_several_at_once_each_with_its_own_fds() {
    let (sp, note) = Spawner::new();
    assert_eq!(note, None);
    let base = Rc::new(BaseEnv::new(std::env::vars_os()));
    let script = |i: usize| format!("echo child-{i}; ls /proc/$$/fd");
    // LANES children started before any is finished, each on its own lane (where the
    // architecture has raw system calls: elsewhere each is waited for in clone).
    let children: Vec<InFlight> =
        (0..LANES).map(|i| sp.spawn(sh_plan(&base, &script(i), true, None), "lanes").expect("cloned")).collect();
    let lanes: std::collections::HashSet<usize> = children.iter().filter_map(|c| c.lane).collect();
    assert_eq!(
        lanes.len(),
        if crate::daemon::spawn::raw::AVAILABLE { LANES } else { 0 },
        "children in flight on distinct lanes"
    );
    let mut pids = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let child = finish(child).expect("exec'd");
        let out = read_to_eof(&child.stdout);
        assert_eq!(out.lines().collect::<Vec<_>>(), [format!("child-{i}").as_str(), "0", "1", "2"], "{out}");
        pids.push(child.pid as libc::pid_t);
    }
    for pid in pids {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0);
    }

    // A child that fails while the daemon goes on reports through `finish`, and writes
    // nothing of the daemon's thread: it runs on its thread-local storage, errno included.
    // (Set before the clone: a child that wrote its ENOENT there at any time is seen.)
    set_errno(libc::EDOM);
    let child = failing_child(&sp, &base);
    // SAFETY: waitid on our own child with a valid siginfo; WNOWAIT leaves it for finish.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let waited =
        unsafe { libc::waitid(libc::P_PID, child.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(waited, 0);
    assert_ne!(errno(), libc::ENOENT, "the failing child wrote the daemon's errno");
    assert_fails_at_chdir_and_is_reaped(child);
}

#[test]
fn the_clone_vfork_fallback_starts_children_and_reports_failures_the_same_way() {
    let (sp, _) = Spawner::new();
    let base = Rc::new(BaseEnv::new(std::env::vars_os()));
    sp.force(Forced { with_vfork: true, ..Forced::default() });
    let child = sp.spawn(sh_plan(&base, "echo vfork; ls /proc/$$/fd", true, None), "vfork").expect("cloned");
    let failing = failing_child(&sp, &base);
    sp.force(Forced::default());
    assert!(child.lane.is_none() && failing.lane.is_none(), "waited for in clone");
    assert_eq!(failing.spec.failed_step.load(Ordering::Acquire), STEP_CHDIR, "failed before clone returned");
    assert_fails_at_chdir_and_is_reaped(failing);
    let child = finish(child).expect("exec'd");
    assert_eq!(read_to_eof(&child.stdout), "vfork\n0\n1\n2\n");
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
}

#[test]
fn a_quiet_child_has_its_stdio_on_dev_null_and_starts_while_every_lane_is_taken() {
    let (sp, _) = Spawner::new();
    let base = Rc::new(BaseEnv::new(std::env::vars_os()));
    let busy: Vec<InFlight> =
        (0..LANES).map(|_| sp.spawn(sh_plan(&base, "exit 0", true, None), "busy").expect("cloned")).collect();
    let mut plan = sh_plan(&base, "", false, None);
    (plan.program, plan.argv) = crate::daemon::spawn::resolve_command("sleep 1000", None).expect("sleep");
    let pid = sp.spawn_quiet(plan, "quiet").expect("exec'd");
    // It has exec'd: its fds are sleep's. The dynamic loader may still be opening and closing
    // libraries, and sleep its locale files: an fd listed and gone before it is read was one of
    // those, and a system file open now is sleep's own, not one of the daemon's.
    let fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| {
            let e = e.expect("fd");
            let target = fs::read_link(e.path()).ok()?;
            Some(format!("{} {}", e.file_name().to_string_lossy(), target.display()))
        })
        .filter(|f| !f.contains(".so") && !f.contains(" /usr/") && !f.contains(" /lib"))
        .collect();
    kill_and_reap(pid);
    let mut fds = fds;
    fds.sort();
    assert_eq!(fds, ["0 /dev/null", "1 /dev/null", "2 /dev/null"]);
    let mut status = 0;
    for child in busy {
        let child = finish(child).expect("exec'd");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
    }
    // A failure says why, as for any child, and the child is reaped.
    let mut plan = sh_plan(&base, "exit 0", false, None);
    plan.directory = Some("/nonexistent-minisv-dir".into());
    assert_eq!(sp.spawn_quiet(plan, "quiet"), Err("couldn't chdir to /nonexistent-minisv-dir: ENOENT".into()));
}

//! `environment_file=` and `credentials=` (issue 21, point 4): read at every spawn, in their
//! place in the order of environments, never in a log or in getAllConfigInfo; a bad file fails
//! the start (not the daemon) with file:line.

use std::fs;

use minisv::rpc::xmlrpc::Value;

use crate::harness::{base_config, wait_for, Daemon, TempDir};

/// The base config at loglevel=debug with `settings` added to `[supervisord]`.
fn config(dir: &TempDir, settings: &str, programs: &str) -> std::path::PathBuf {
    let base =
        base_config(dir.path()).replace("[supervisord]\n", &format!("[supervisord]\nloglevel=debug\n{settings}"));
    dir.write("sv.conf", &format!("{base}{programs}"))
}

/// Everything the daemon says about its programs: the debug log and getAllConfigInfo.
fn daemon_says(d: &Daemon) -> String {
    let info = d.rpc("supervisor.getAllConfigInfo", &[]).expect("getAllConfigInfo");
    format!("{}\n{info:?}", d.log())
}

#[test]
fn environment_files_are_read_at_each_spawn_in_their_order() {
    let dir = TempDir::new("envfile");
    // One variable per boundary of the order: daemon file < [supervisord] environment <
    // program file < program environment.
    dir.write("daemon.env", "# shared settings\nexport K1=daemon-file\nK4='daemon file only'\n");
    dir.write("app.env", "K1=app-file\nK2=app-file\nK3=\"app file\"\n\nK5=\"s3cr3t-one\" # the secret\n");
    let conf = config(
        &dir,
        "environment_file=%(here)s/daemon.env\nenvironment=K1=\"sd-env\",K2=\"sd-env\"\n",
        "[program:app]\nenvironment_file=%(here)s/app.env\nenvironment=K3=\"prog-env\"\n\
         command=sh -c 'printf \"%%s|%%s|%%s|%%s|%%s\\n\" \"$K1\" \"$K2\" \"$K3\" \"$K4\" \"$K5\" > %(here)s/seen.tmp; \
         mv %(here)s/seen.tmp %(here)s/seen; exec sleep 1000'\nstartsecs=0\n",
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let seen = || fs::read_to_string(d.path("seen")).ok();
    let first = wait_for(10.0, "the program's report", seen);
    assert_eq!(first, "app-file|app-file|prog-env|daemon file only|s3cr3t-one\n");
    // A changed file needs only a restart.
    fs::remove_file(d.path("seen")).expect("remove the report");
    fs::write(d.path("app.env"), "K1=app-file\nK2=app-file\nK5=s3cr3t-two\n").expect("rewrite app.env");
    let out = d.ctl(&["restart", "app"]);
    assert!(out.status.success(), "{out:?}");
    let second = wait_for(10.0, "the report after the restart", seen);
    assert_eq!(second, "app-file|app-file|prog-env|daemon file only|s3cr3t-two\n");
    let said = daemon_says(&d);
    assert!(said.contains("spawned: 'app'"), "the debug log is read: {said}");
    for secret in ["s3cr3t", "daemon file only", "app file"] {
        assert!(!said.contains(secret), "{secret:?} must not appear in the log or getAllConfigInfo:\n{said}");
    }
}

#[test]
fn a_bad_environment_file_fails_the_start_with_file_and_line() {
    let dir = TempDir::new("envfile-bad");
    let env = dir.write("app.env", "A=1\nthis line holds hunter2 but no equals sign\n");
    let conf = config(
        &dir,
        "",
        "[program:app]\nenvironment_file=%(here)s/app.env\ncommand=sh -c 'echo \"$A\" > %(here)s/seen; exec sleep 1000'\n\
         startsecs=0\nstartretries=0\n\n\
         [program:other]\nenvironment_file=%(here)s/missing.env\ncommand=sleep 1000\nstartsecs=0\nstartretries=0\n\n\
         [program:fine]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let info = d.wait_state("app", "FATAL", 10.0);
    let want = format!("environment_file {}:2: expected KEY=VALUE", env.display());
    assert_eq!(info.str_of("spawnerr"), want);
    d.wait_log(&format!("spawnerr: {want}"), 5.0);
    let info = d.wait_state("other", "FATAL", 10.0);
    assert_eq!(
        info.str_of("spawnerr"),
        format!("environment_file {}: no such file or directory", d.path("missing.env").display())
    );
    // The daemon and its other programs go on.
    d.wait_state("fine", "RUNNING", 10.0);
    let state = d.rpc("supervisor.getState", &[]).expect("getState");
    assert_eq!(state.str_of("statename"), "RUNNING");
    assert!(!daemon_says(&d).contains("hunter2"), "the text of a bad line is never repeated");
    // Fixed, it starts.
    fs::write(d.path("app.env"), "A=fixed\n").expect("fix app.env");
    d.rpc("supervisor.startProcess", &[Value::from("app")]).expect("start app");
    d.wait_state("app", "RUNNING", 10.0);
    assert_eq!(
        wait_for(10.0, "the report", || fs::read_to_string(d.path("seen")).ok().filter(|s| s.ends_with('\n'))),
        "fixed\n"
    );
}

#[test]
fn credentials_are_copied_into_a_private_directory_for_each_run() {
    let dir = TempDir::new("creds");
    dir.write("token.src", "tok-3141592\n");
    let conf = config(
        &dir,
        "credentials_directory=%(here)s/creds\n",
        "[program:app]\ncredentials=token:%(here)s/token.src\n\
         command=sh -c 'cat \"$CREDENTIALS_DIRECTORY/token\" > %(here)s/tok; env > %(here)s/env; \
         echo \"$CREDENTIALS_DIRECTORY\" > %(here)s/dir; exec sleep 1000'\nstartsecs=0\n",
    );
    let d = Daemon::start_with(dir, conf, &[]);
    // The shell creates the file before writing it: wait for the whole line.
    let read = |p: &str| fs::read_to_string(d.path(p)).ok().filter(|s| s.ends_with('\n'));
    assert_eq!(wait_for(10.0, "the program's copy", || read("tok")), "tok-3141592\n");
    let cred_dir =
        wait_for(10.0, "the directory's path", || fs::read_to_string(d.path("dir")).ok().filter(|s| s.ends_with('\n')));
    let cred_dir = std::path::PathBuf::from(cred_dir.trim_end());
    assert_eq!(cred_dir, d.path("creds/app:app"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&cred_dir), 0o700);
    assert_eq!(mode(&cred_dir.join("token")), 0o400);
    assert_eq!(mode(&d.path("creds")), 0o711);
    let env = wait_for(10.0, "the program's environment", || read("dir").and(fs::read_to_string(d.path("env")).ok()));
    assert!(!env.contains("tok-3141592"), "the secret is not in the environment");
    // Removed when the program exits.
    d.rpc("supervisor.stopProcess", &[Value::from("app")]).expect("stop app");
    wait_for(10.0, "the credentials to be removed", || (!cred_dir.exists()).then_some(()));
    assert!(!daemon_says(&d).contains("tok-3141592"));
    // An unreadable source fails the start with its path.
    fs::remove_file(d.path("token.src")).expect("remove the source");
    let _ = d.rpc("supervisor.startProcess", &[Value::from("app")]);
    let info = d.info("app");
    assert_eq!(
        info.str_of("spawnerr"),
        format!("credentials: cannot read {}: no such file or directory", d.path("token.src").display())
    );
}

/// As root with `user=`: the copy belongs to the program's user, who can read it, while the
/// source stays readable by root only.
#[test]
#[ignore = "needs root: user= and useradd; .ci/run runs it"]
fn credentials_belong_to_the_programs_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (uid, gid) = crate::daemon::test_user().expect("the test user's uid and gid");
    let dir = TempDir::new("creds-user");
    let src = dir.write("key.src", "k-2718281828\n");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).expect("chmod the source");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("out dir");
    std::os::unix::fs::chown(&out, Some(uid), Some(gid)).expect("chown out");
    let conf = config(
        &dir,
        "credentials_directory=%(here)s/creds\n",
        "[program:app]\nuser=minisvtest\ncredentials=key:%(here)s/key.src\n\
         command=sh -c 'cat \"$CREDENTIALS_DIRECTORY/key\" > %(here)s/out/key; cat %(here)s/key.src > %(here)s/out/src 2>&1; \
         exec sleep 1000'\nstartsecs=0\n",
    );
    let d = Daemon::start_with(dir, conf, &[]);
    // The shell creates the file before writing it: wait for the whole line.
    let read = |p: &str| fs::read_to_string(d.path(p)).ok().filter(|s| s.ends_with('\n'));
    assert_eq!(wait_for(10.0, "the program's read", || read("out/key")), "k-2718281828\n");
    let cred_dir = d.path("creds/app:app");
    for p in [cred_dir.clone(), cred_dir.join("key")] {
        let meta = fs::metadata(&p).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{} belongs to the program's user", p.display());
    }
    let src_read = wait_for(10.0, "the program's try at the source", || {
        fs::read_to_string(d.path("out/src")).ok().filter(|s| !s.is_empty())
    });
    assert!(src_read.contains("Permission denied"), "the source stays root's: {src_read}");
}

//! The man pages document everything the code accepts: every config key (from the tables in
//! `config/options.rs`), every daemon option (from the daemon's usage text), every `minisv ctl`
//! option and command. Each page must also format without warnings when groff is installed.

use std::path::PathBuf;
use std::process::Command;

use minisv::config::options::{self, Key};

fn page(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The page with roff's escaped hyphen turned into a plain one, so `\-\-configuration` reads
/// `--configuration`.
fn plain(text: &str) -> String {
    text.replace("\\-", "-")
}

/// The first text line of every `.TP` paragraph: the term being described.
fn entries(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end() == ".TP" || line.starts_with(".TP ") {
            // Skip comments between the macro and its term.
            if let Some(term) = lines[i + 1..].iter().find(|l| !l.starts_with(".\\\"")) {
                out.push(term.to_string());
            }
        }
    }
    out
}

/// The text of the part that starts with the header line `.SS <title>` (or `.SH`), up to the
/// next header of either kind.
fn part(text: &str, title: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let header = line.starts_with(".SH") || line.starts_with(".SS");
        if header {
            let name = line[3..].trim().trim_matches('"');
            inside = name == title;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "the page has no part titled {title:?}");
    out
}

/// The entry terms of `text` that start with `\fB<name>\fR`.
fn has_entry(entries: &[String], name: &str) -> bool {
    let want = format!("\\fB{name}\\fR");
    entries.iter().any(|e| e.starts_with(&want))
}

#[test]
fn config_page_documents_every_key_in_its_section() {
    let text = plain(&page("minisv.conf.5"));
    let tables: &[(&str, &[Key])] = &[
        ("[supervisord]", options::SUPERVISORD),
        ("[unix_http_server]", options::UNIX_HTTP_SERVER),
        ("[inet_http_server]", options::INET_HTTP_SERVER),
        ("[supervisorctl]", options::SUPERVISORCTL),
        ("[program:x]", options::PROGRAM),
        ("[eventlistener:x]", options::EVENTLISTENER_EXTRA),
        ("[fcgi-program:x]", options::FCGI_EXTRA),
        ("[group:x]", options::GROUP),
        ("[include]", options::INCLUDE),
        ("[rpcinterface:x]", options::RPCINTERFACE),
    ];
    let mut missing = Vec::new();
    for (section, keys) in tables {
        let found = entries(&part(&text, section));
        for key in keys.iter() {
            if !has_entry(&found, key.name) {
                missing.push(format!("{section} {}", key.name));
            }
        }
    }
    assert!(missing.is_empty(), "minisv.conf.5 lacks entries (.TP then \\fBkey\\fR) for: {missing:?}");
}

#[test]
fn config_page_lists_every_event_type() {
    let text = plain(&page("minisv.conf.5"));
    let missing: Vec<&str> = options::EVENT_TYPES.iter().copied().filter(|e| !text.contains(e)).collect();
    assert!(missing.is_empty(), "minisv.conf.5 does not name these event types: {missing:?}");
}

/// The daemon's options as its `-h` text lists them: (short, long).
fn daemon_options() -> Vec<(Option<String>, String)> {
    let usage = minisv::cli::usage("minisv");
    let options = usage.split("\nOptions:\n").nth(1).expect("usage has an Options: part");
    let options = options.split("\n\n").next().unwrap_or("");
    let mut out = Vec::new();
    for line in options.lines() {
        let names = line.split(" -- ").next().unwrap_or("").split(' ').next().unwrap_or("");
        match names.split_once('/') {
            Some((short, long)) => out.push((Some(short.to_string()), long.to_string())),
            None => out.push((None, names.to_string())),
        }
    }
    assert!(out.len() >= 20, "could not read the options from the usage text: {out:?}");
    out
}

#[test]
fn daemon_page_documents_every_option() {
    let text = plain(&page("minisv.8"));
    let found = entries(&part(&text, "OPTIONS"));
    let mut missing = Vec::new();
    for (short, long) in daemon_options() {
        let mut names = vec![long.clone()];
        names.extend(short);
        let documented = found.iter().any(|e| names.iter().all(|n| e.contains(&format!("\\fB{n}\\fR"))));
        if !documented {
            missing.push(names.join(" "));
        }
    }
    assert!(missing.is_empty(), "minisv.8 OPTIONS lacks entries for: {missing:?}");
}

#[test]
fn daemon_page_has_its_sections() {
    let text = page("minisv.8");
    for title in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SUBCOMMANDS",
        "CONFIG FILE SEARCH",
        "SIGNALS",
        "PROCESS STATES",
        "LOGGING",
        "EXIT STATUS",
        "FILES",
        "DIFFERENCES FROM SUPERVISOR",
        "SEE ALSO",
    ] {
        let header = format!(".SH \"{title}\"");
        let bare = format!(".SH {title}");
        assert!(text.lines().any(|l| l == header || l == bare), "minisv.8 has no section {title}");
    }
    let text = plain(&text);
    let states = plain(&part(&text, "PROCESS STATES"));
    for (state, code) in [
        ("STOPPED", 0),
        ("STARTING", 10),
        ("RUNNING", 20),
        ("BACKOFF", 30),
        ("STOPPING", 40),
        ("EXITED", 100),
        ("FATAL", 200),
        ("UNKNOWN", 1000),
    ] {
        let found = entries(&states);
        let want = format!("\\fB{state}\\fR ({code})");
        assert!(found.iter().any(|e| e.starts_with(&want)), "PROCESS STATES lacks {want}");
    }
}

/// supervisorctl's commands, fixed by compatibility.
const CTL_COMMANDS: [&str; 22] = [
    "add", "avail", "clear", "exit", "fg", "help", "maintail", "open", "pid", "quit", "reload", "remove", "reread",
    "restart", "shutdown", "signal", "start", "status", "stop", "tail", "update", "version",
];

/// supervisorctl's options, fixed by compatibility.
const CTL_OPTIONS: [(&str, &str); 7] = [
    ("-c", "--configuration"),
    ("-h", "--help"),
    ("-i", "--interactive"),
    ("-s", "--serverurl"),
    ("-u", "--username"),
    ("-p", "--password"),
    ("-r", "--history_file"),
];

#[test]
fn ctl_page_documents_every_command_and_option() {
    let text = plain(&page("minisv-ctl.1"));
    let commands = entries(&part(&text, "COMMANDS"));
    let missing: Vec<&str> = CTL_COMMANDS.iter().copied().filter(|c| !has_entry(&commands, c)).collect();
    assert!(missing.is_empty(), "minisv-ctl.1 COMMANDS lacks entries for: {missing:?}");
    let opts = entries(&part(&text, "OPTIONS"));
    let missing: Vec<&str> = CTL_OPTIONS
        .iter()
        .filter(|(s, l)| {
            !opts.iter().any(|e| e.contains(&format!("\\fB{s}\\fR")) && e.contains(&format!("\\fB{l}\\fR")))
        })
        .map(|(s, _)| *s)
        .collect();
    assert!(missing.is_empty(), "minisv-ctl.1 OPTIONS lacks entries for: {missing:?}");
    let settings = entries(&part(&text, "CONFIGURATION"));
    let missing: Vec<&str> =
        options::SUPERVISORCTL.iter().map(|k| k.name).filter(|k| !has_entry(&settings, k)).collect();
    assert!(missing.is_empty(), "minisv-ctl.1 CONFIGURATION lacks entries for: {missing:?}");
}

/// `groff -man -ww -z` on one page: `None` when groff is not installed, else its warnings.
fn groff_warnings(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    let out = Command::new("groff").args(["-man", "-ww", "-z"]).arg(&path).env("LC_ALL", "C").output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("(groff exited with {})", out.status));
    }
    Some(text)
}

/// `man --warnings -l` formats as a reader would see it; `None` when man is not installed.
fn man_warnings(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&path)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    if !out.status.success() && out.stdout.is_empty() {
        // A man without a formatter behind it: nothing to judge.
        return None;
    }
    Some(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn pages_format_without_warnings() {
    for name in ["minisv.8", "minisv.conf.5", "minisv-ctl.1"] {
        match groff_warnings(name) {
            Some(w) => assert!(w.trim().is_empty(), "groff warns about {name}:\n{w}"),
            None => eprintln!("groff is not installed: {name} not checked for formatting warnings"),
        }
        match man_warnings(name) {
            Some(w) => assert!(w.trim().is_empty(), "man --warnings warns about {name}:\n{w}"),
            None => eprintln!("man is not usable here: {name} not checked with man --warnings"),
        }
    }
}

#[test]
fn pages_speak_of_the_project_only() {
    for name in ["minisv.8", "minisv.conf.5", "minisv-ctl.1"] {
        let text = page(name);
        for word in ["/work/", "/home/", "/root/"] {
            assert!(!text.contains(word), "{name} mentions a path of a build machine: {word}");
        }
    }
}

/// The README tells a newcomer how to install (issue 20, point 8): `cargo install`, where each
/// man page goes, and the paths the files in `packaging/` expect, each checked against them;
/// and the quick start keeps its two set-up commands.
#[test]
fn readme_says_how_to_install() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
    let readme = read("README.md");
    let install = part_md(&readme, "## Install");
    assert!(install.contains("cargo install --path ."), "{install}");
    for (page, section) in [("minisv.8", 8), ("minisv-ctl.1", 1), ("minisv.conf.5", 5)] {
        assert!(install.contains(&format!("man/{page} /usr/local/share/man/man{section}/{page}")), "{page}");
    }
    assert!(install.contains("packaging/build-static"));
    for (file, path) in [
        ("packaging/minisv.service", "/usr/bin/minisv"),
        ("packaging/minisv.service", "/etc/minisv.conf"),
        ("packaging/openwrt/minisv.init", "/usr/bin/minisv"),
        ("packaging/sysvinit/minisv", "/etc/default/minisv"),
        ("packaging/Dockerfile", "/etc/minisv.conf"),
    ] {
        assert!(read(file).contains(path), "{file} no longer uses {path}: the README says it does");
        assert!(install.contains(path), "the README's install part does not name {path}");
    }
    let quick = part_md(&readme, "## Quick start");
    let first_block = quick.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let commands: Vec<&str> = first_block.lines().map(|l| l.split('#').next().unwrap_or("").trim()).collect();
    assert_eq!(commands, ["cargo run --release -- -n -c examples/minisv.conf", "cargo test"]);
    // What the root tests do to the machine is said.
    for needle in ["useradd", "tmpfs", "unshare", "qemu-aarch64-static", "rustup target add"] {
        assert!(quick.contains(needle), "the quick start does not say {needle}");
    }
}

/// The text of a Markdown part from its `## ` header to the next one.
fn part_md(text: &str, header: &str) -> String {
    let start = text.find(&format!("\n{header}\n")).unwrap_or_else(|| panic!("no part {header}"));
    let rest = &text[start + header.len() + 2..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

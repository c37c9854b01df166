//! minisv's config reading against Supervisor 4.3.0's: the options table, key by key (that
//! minisv's parser uses the table is a unit test, `config::defaults_tests`), and Supervisor's
//! own sample config.

use std::io::Write;
use std::process::{Command, Stdio};

use minisv::config::options::{self, Key};

use crate::harness::TempDir;
use crate::pyenv::python_supervisor;

/// Where minisv's default differs from Supervisor's on purpose, and why.
const ON_PURPOSE: &[(&str, &str, &str)] =
    &[("SUPERVISORCTL", "prompt", "minisv's shell names itself; the prompt is not part of any output scripts read")];

/// The section (in `CONFIG`) each table's keys are written in.
const TABLES: &[(&str, &[Key], &str)] = &[
    ("SUPERVISORD", options::SUPERVISORD, "supervisord"),
    ("UNIX_HTTP_SERVER", options::UNIX_HTTP_SERVER, "unix_http_server"),
    ("INET_HTTP_SERVER", options::INET_HTTP_SERVER, "inet_http_server"),
    ("SUPERVISORCTL", options::SUPERVISORCTL, "supervisorctl"),
    ("PROGRAM", options::PROGRAM, "program:p"),
    ("EVENTLISTENER_EXTRA", options::EVENTLISTENER_EXTRA, "eventlistener:l"),
    ("EVENTLISTENER_POOL", options::EVENTLISTENER_POOL, "eventlistener:l"),
    ("FCGI_EXTRA", options::FCGI_EXTRA, "fcgi-program:f"),
    ("GROUP", options::GROUP, "group:g"),
];

/// Every kind of section with only its required keys; `{d}` is the temp dir.
const CONFIG: &str = "[supervisord]
[unix_http_server]
file={d}/s.sock
[inet_http_server]
port=127.0.0.1:9001
[supervisorctl]
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = {factory}
[program:p]
command=/bin/true
[eventlistener:l]
command=/bin/cat
events=TICK_5
[fcgi-program:f]
command=/bin/true
socket=unix://{d}/f.sock
[group:g]
programs=q
[program:q]
command=/bin/true
";

/// Reads lines `table \t section \t key \t value` and prints `OK`, `DIFF ...` or `UNKNOWN ...`
/// for each: whether Supervisor parses the config with `key=value` added to `section` as it
/// parses the config without it. The pool's priority is compared with the pool's alone.
const PYTHON: &str = r#"
import inspect, os, sys, tempfile
import supervisor.options as so
from supervisor.options import ServerOptions, ClientOptions

base_text = open(sys.argv[1]).read()
source = inspect.getsource(so)

def norm(v):
    if v is None or isinstance(v, (str, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, type):
        return 'class ' + v.__name__
    if callable(v) and hasattr(v, '__name__'):
        return 'function %s:%s' % (v.__module__, v.__name__)
    if hasattr(v, '__dict__'):
        return {type(v).__name__: {k: norm(x) for k, x in sorted(vars(v).items()) if k != 'options'}}
    return repr(v)

def parse(text):
    path = os.path.join(os.path.dirname(sys.argv[1]), 'case.conf')
    with open(path, 'w') as f:
        f.write(text)
    server = ServerOptions()
    server.configfile = path
    server.process_config(do_usage=False)
    client = ClientOptions()
    client.configfile = path
    client.process_config(do_usage=False)
    root = server.configroot.supervisord
    groups = {g.name: g for g in root.process_group_configs}
    return norm({'supervisord': root, 'supervisorctl': client.configroot.supervisorctl}), groups

def flat(tree, prefix=''):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, prefix + '/' + k))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(flat(v, prefix + '/' + str(i)))
        return out
    return {prefix: tree}

base, base_groups = parse(base_text)
base_flat = flat(base)
for line in sys.stdin.read().splitlines():
    table, section, key, value = line.split('\t')
    if "'%s'" % key not in source:
        print('UNKNOWN %s %s: not an option of Supervisor 4.3 (say "minisv:" in its doc)' % (table, key))
        continue
    if table == 'EVENTLISTENER_POOL':
        got = base_groups['l'].priority
        print('OK' if got == int(value) else 'DIFF %s %s: Supervisor %r, minisv %r' % (table, key, got, value))
        continue
    text = base_text.replace('[%s]\n' % section, '[%s]\n%s=%s\n' % (section, key, value), 1)
    try:
        tree, _ = parse(text)
    except Exception as e:
        print('DIFF %s %s: Supervisor refuses %s=%s: %s' % (table, key, key, value, str(e).replace('\n', ' ')))
        continue
    changed = sorted(set(flat(tree).items()) ^ set(base_flat.items()))
    if changed:
        print('DIFF %s %s: Supervisor finds %s=%r differs from its default: %s' % (table, key, key, value, changed))
    else:
        print('OK')
"#;

#[test]
fn table_matches_supervisor_4_3() {
    let bin = python_supervisor();
    let dir = TempDir::new("defaults");
    let factory = options::RPCINTERFACE[0].default;
    let config = CONFIG.replace("{d}", &dir.path().display().to_string()).replace("{factory}", factory);
    let base = dir.write("base.conf", &config);
    // Only the options the two share: minisv's own say so in their doc; an empty default is
    // "not set" in both; a required key has no default.
    let mut lines = String::new();
    let mut compared = Vec::new();
    for (table, keys, section) in TABLES {
        for key in keys.iter().filter(|k| !k.doc.starts_with("minisv:") && !k.default.is_empty()) {
            lines.push_str(&format!("{table}\t{section}\t{}\t{}\n", key.name, key.default));
            compared.push((*table, key.name));
        }
    }
    let mut child = Command::new(bin.join("python"))
        .arg("-c")
        .arg(PYTHON)
        .arg(&base)
        .env_remove("TMPDIR") // childlogdir's default is $TMPDIR in both: compare /tmp
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write keys");
    let out = child.wait_with_output().expect("python output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), compared.len(), "one answer per key:\n{stdout}");
    let mut wrong = Vec::new();
    for ((table, key), answer) in compared.iter().zip(&answers) {
        let on_purpose = ON_PURPOSE.iter().any(|(t, k, _)| t == table && k == key);
        match (*answer == "OK", on_purpose) {
            (true, false) | (false, true) => {}
            (true, true) => wrong.push(format!("{table} {key}: listed as different on purpose, but is the same")),
            (false, false) => wrong.push(answer.to_string()),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} defaults differ from Supervisor 4.3's:\n{}",
        wrong.len(),
        compared.len(),
        wrong.join("\n")
    );
    assert!(compared.len() > 40, "{compared:?}");
}

#[test]
fn stock_sample_config_loads_with_commented_keys_staying_comments() {
    // Supervisor's own sample, generated at test time; its text is not part of this repository.
    let tool = python_supervisor().join("echo_supervisord_conf");
    let out = Command::new(&tool).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(out.status.success(), "{}: {}", tool.display(), String::from_utf8_lossy(&out.stderr));
    let dir = TempDir::new("sample");
    let sock = dir.join("sample.sock");
    let text = String::from_utf8_lossy(&out.stdout).replace("/tmp/supervisor.sock", &sock.display().to_string());
    assert!(text.contains(";chmod=0700"), "the sample has commented-out keys:\n{text}");
    let conf = dir.write("supervisord.conf", &text);
    let config = match minisv::config::load(&conf, &Default::default()) {
        Ok(c) => c,
        Err(e) => panic!("Supervisor's sample does not load: {e:#?}"),
    };
    assert_eq!(config.unix_http_servers[0].chmod, 0o700);
    assert_eq!(config.unix_http_servers[0].auth, None);
    assert!(config.groups.is_empty());
    assert!(config.rpcinterface_supervisor);
    let serverurl = format!("unix://{}", sock.display());
    assert_eq!(config.supervisorctl.as_ref().map(|c| c.serverurl.as_str()), Some(serverurl.as_str()));
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings, Vec::<String>::new());
}

//! Running many hosts: the files under `packaging/kubernetes`, `packaging/prometheus`,
//! `packaging/grafana` and `packaging/ansible`, each checked by the tool that reads it, and run
//! against the real daemon.
//!
//! Tools: `kubernetes-validate` (Kubernetes' JSON schemas) and `ansible` (with the
//! community.general collection) from PyPI, in a venv under `target/fleetvenv` made once;
//! `promtool` from PATH, or else extracted from Debian's `prometheus` package
//! (`apt-get download`, nothing installed) into `target/fleet-tools`. Without them the tests
//! fail and say what is missing.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::packaging::{packaging, read, root, run, show};
use crate::pyenv::Lock;

fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or_else(|| root().join("target"))
}

fn assert_success(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{}", show(what, out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the venv holds, as pip is asked for it. ansible 12 is the last series that runs on
/// Python 3.11; it bundles community.general.
const VENV_PACKAGES: &[&str] = &["kubernetes-validate==1.37.0", "ansible==12.3.0"];

/// The bin dir of the venv with `kubernetes-validate`, `ansible-playbook` and PyYAML.
fn fleet_venv() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir();
        let _ = fs::create_dir_all(&target);
        let venv = target.join("fleetvenv");
        let bin = venv.join("bin");
        let done = venv.join(format!(".{}-installed", VENV_PACKAGES.join("-")));
        let _lock = Lock::take(&target.join("fleetvenv.lock"));
        if !done.exists() {
            let _ = fs::remove_dir_all(&venv);
            assert_success(
                "creating a Python venv (python3 -m venv; the tests need Python 3.11 or later with venv)",
                &run(Command::new("python3").args(["-m", "venv"]).arg(&venv)),
            );
            assert_success(
                &format!("pip install {} (kubernetes-validate and ansible, from PyPI)", VENV_PACKAGES.join(" ")),
                &run(Command::new(bin.join("pip")).args(["install", "--quiet"]).args(VENV_PACKAGES)),
            );
            File::create(&done).unwrap_or_else(|e| panic!("cannot create {}: {e}", done.display()));
        }
        bin
    })
    .clone()
}

/// `promtool`: the one on PATH, or the one in Debian's `prometheus` package, downloaded with
/// `apt-get download` and unpacked under `target/fleet-tools` (the package is not installed:
/// it would start a Prometheus server).
fn promtool() -> PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        if Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()) {
            return PathBuf::from("promtool");
        }
        let dir = target_dir().join("fleet-tools");
        let tool = dir.join("usr/bin/promtool");
        let _ = fs::create_dir_all(&dir);
        let _lock = Lock::take(&target_dir().join("fleet-tools.lock"));
        if !tool.exists() {
            let download = || run(Command::new("apt-get").args(["download", "prometheus"]).current_dir(&dir));
            let mut out = download();
            // SAFETY: geteuid cannot fail.
            if !out.status.success() && unsafe { libc::geteuid() } == 0 {
                // A machine whose package lists were never fetched.
                run(Command::new("apt-get").args(["update", "-qq"]));
                out = download();
            }
            assert_success(
                "promtool is needed: it is on no PATH, and `apt-get download prometheus` (Debian's package, \
                 which has it) failed; install Debian's prometheus package or put promtool on PATH",
                &out,
            );
            let deb = fs::read_dir(&dir)
                .expect("read fleet-tools")
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .expect("the downloaded prometheus .deb");
            assert_success("dpkg-deb -x prometheus.deb", &run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir)));
            let _ = fs::remove_file(&deb);
        }
        assert!(tool.exists(), "{} missing after unpacking Debian's prometheus package", tool.display());
        tool
    })
    .clone()
}

// ---- Kubernetes ----------------------------------------------------------------------------

const POD: &str = "kubernetes/minisv-pod.yaml";

/// What the test reads from a Pod manifest, through PyYAML: the ConfigMap's minisv.conf, then
/// `key=value` lines for the Pod's settings.
const POD_FACTS: &str = r#"
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
open(sys.argv[2], "w").write(docs["ConfigMap"]["data"]["minisv.conf"])
spec = docs["Pod"]["spec"]
c = spec["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
print("grace=%s" % spec["terminationGracePeriodSeconds"])
print("restartPolicy=%s" % spec["restartPolicy"])
print("command=%s" % " ".join(c["command"]))
print("configmount=%s" % [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "config"][0])
for kind in ("liveness", "readiness"):
    g = c[kind + "Probe"]["httpGet"]
    port = ports.get(g["port"], g["port"])
    auth = [h["value"] for h in g.get("httpHeaders", []) if h["name"] == "Authorization"]
    print("%s=%s %s %s" % (kind, port, g["path"], auth[0] if auth else ""))
"#;

struct PodFacts {
    conf: String,
    facts: Vec<(String, String)>,
}

impl PodFacts {
    fn get(&self, key: &str) -> &str {
        self.facts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key}"))
    }
}

fn pod_facts(dir: &TempDir) -> PodFacts {
    let conf = dir.join("pod.conf");
    let out = run(Command::new(fleet_venv().join("python")).arg("-c").arg(POD_FACTS).arg(packaging(POD)).arg(&conf));
    let text = assert_success("reading the Pod manifest with PyYAML", &out);
    let facts = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
    PodFacts { conf: fs::read_to_string(&conf).expect("pod.conf"), facts }
}

/// `[section] key=value` of an INI text, as Supervisor reads it for these simple files (no
/// continuation lines; `;` comments at line start).
fn ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn ini_get<'a>(entries: &'a [(String, String, String)], section: &str, key: &str) -> Option<&'a str> {
    entries.iter().find(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str())
}

/// The Pod's config made runnable here: its run directory (an emptyDir in the Pod) in `dir`,
/// the inet server on loopback at `port`, and BusyBox's applets (`sh`, `sleep`) from PATH.
fn pod_config_here(conf: &str, dir: &Path, port: u16) -> String {
    assert!(conf.contains("/run/minisv/") && conf.contains("port=*:9001") && conf.contains("/bin/busybox "));
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // As another user, minisv cannot switch to root (the container runs as root).
    let conf = if root { conf.to_string() } else { conf.replace("\nuser=root\n", "\n") };
    conf.replace("/run/minisv/", &format!("{}/", dir.display()))
        .replace("port=*:9001", &format!("port=127.0.0.1:{port}"))
        .replace("/bin/busybox ", "")
}

fn kubernetes_validate(file: &Path) -> Output {
    run(Command::new(fleet_venv().join("kubernetes-validate")).args(["--strict", "-k", "1.32"]).arg(file))
}

#[test]
fn fleet_kubernetes_manifest_passes_kubernetes_validate() {
    let out = kubernetes_validate(&packaging(POD));
    let text = assert_success("kubernetes-validate --strict -k 1.32 packaging/kubernetes/minisv-pod.yaml", &out);
    for kind in ["configmap/minisv-config", "pod/minisv-demo", "networkpolicy/minisv-demo-http"] {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("passed for resource {kind}"))
                || text.contains(&format!("passed for resource {kind}")),
            "{kind} not validated\n{}",
            show("kubernetes-validate", &out)
        );
    }
    // The validator does reject a broken Pod: a string where an integer belongs, and a field
    // that does not exist.
    let dir = TempDir::new("k8sbad");
    for (from, to) in [
        ("terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: forty"),
        ("      livenessProbe:", "      livenesProbe:"),
    ] {
        let manifest = read(POD);
        assert!(manifest.contains(from), "{from}");
        let bad = dir.write("bad.yaml", &manifest.replace(from, to));
        let out = kubernetes_validate(&bad);
        assert!(!out.status.success(), "a Pod with {to:?} passed\n{}", show("kubernetes-validate", &out));
    }
}

#[test]
fn fleet_kubernetes_pod_config_passes_minisv_check_and_fits_the_pod() {
    let dir = TempDir::new("k8sconf");
    let pod = pod_facts(&dir);
    let conf = dir.write("minisv.conf", &pod_config_here(&pod.conf, dir.path(), 9001));
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8 path")], dir.path());
    let text = assert_success("minisv check on the Pod's config", &out);
    assert!(text.contains("OK (2 groups, 2 processes)"), "{text}");

    // The container runs minisv in the foreground on the mounted config.
    assert_eq!(pod.get("command"), format!("/minisv -n -c {}/minisv.conf", pod.get("configmount")));
    assert_eq!(pod.get("restartPolicy"), "Always");

    let ini = ini(&pod.conf);
    let programs: Vec<&str> =
        ini.iter().filter_map(|(s, _, _)| s.strip_prefix("program:")).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(programs, ["app", "worker"]);
    // Every program logs to the container's stdout, after its own prefix.
    for p in &programs {
        let s = format!("program:{p}");
        assert_eq!(ini_get(&ini, &s, "stdout_logfile"), Some("/dev/stdout"), "{p}");
        assert_eq!(ini_get(&ini, &s, "stdout_logfile_maxbytes"), Some("0"), "{p}: /dev/stdout cannot rotate");
        assert_eq!(ini_get(&ini, &s, "redirect_stderr"), Some("true"), "{p}");
        assert!(ini_get(&ini, &s, "log_prefix").is_some_and(|v| !v.is_empty()), "{p} has a log_prefix");
    }
    assert_eq!(ini_get(&ini, "supervisord", "logfile"), Some("/dev/stdout"));
    assert_eq!(ini_get(&ini, "supervisord", "silent"), Some("true"), "the main log once on stdout, not twice");
    // The main program ends the container with its status; the orchestrator restarts it.
    assert_eq!(ini_get(&ini, "program:app", "critical"), Some("true"));
    assert_eq!(ini_get(&ini, "program:app", "autorestart"), Some("false"));

    // minisv stops one priority after another, each waiting up to its stopwaitsecs: the
    // kubelet must wait for all of them before its SIGKILL.
    let stopwait: u64 = programs
        .iter()
        .map(|p| {
            ini_get(&ini, &format!("program:{p}"), "stopwaitsecs").unwrap_or("10").parse::<u64>().expect("a number")
        })
        .sum();
    let grace: u64 = pod.get("grace").parse().expect("terminationGracePeriodSeconds");
    assert!(grace > stopwait, "terminationGracePeriodSeconds {grace} must exceed the sum of stopwaitsecs {stopwait}");
    assert!(grace <= stopwait + 30, "terminationGracePeriodSeconds {grace} is far above stopwaitsecs {stopwait}");

    // Both probes ask /healthz on the inet server's port, with its credentials.
    let port = ini_get(&ini, "inet_http_server", "port").expect("an inet server");
    let user = ini_get(&ini, "inet_http_server", "username").expect("username");
    let pass = ini_get(&ini, "inet_http_server", "password").expect("password");
    let want =
        format!("{} /healthz Basic {}", port.rsplit(':').next().unwrap_or(""), base64(&format!("{user}:{pass}")));
    assert_eq!(pod.get("liveness"), want);
    assert_eq!(pod.get("readiness"), want);
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Pod's minisv started here as the container would run it, its stdout and stderr in
/// `out.txt` (what `kubectl logs` shows).
struct PodRun {
    dir: TempDir,
    child: std::process::Child,
    port: u16,
    auth: String,
}

impl PodRun {
    fn start(tag: &str) -> PodRun {
        let dir = TempDir::new(tag);
        let pod = pod_facts(&dir);
        let port = free_port();
        let conf = dir.write("minisv.conf", &pod_config_here(&pod.conf, dir.path(), port));
        let auth = pod.get("liveness").rsplit("Basic ").next().unwrap_or("").to_string();
        // Appending, as to the pipe a container runtime gives: the programs open /dev/stdout
        // anew (O_APPEND), and a shared offset would let the daemon's writes overwrite theirs.
        let out = fs::OpenOptions::new().append(true).create(true).open(dir.join("out.txt")).expect("out.txt");
        let child = Command::new(BIN)
            .args(["-n", "-c"])
            .arg(&conf)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn minisv");
        let run = PodRun { dir, child, port, auth };
        wait_for(10.0, "/healthz to answer 200 to the probe", || (run.healthz(Some(&run.auth)).0 == 200).then_some(()));
        run
    }

    fn healthz(&self, auth: Option<&str>) -> (u16, String) {
        let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return (0, String::new()) };
        match http_on(s, "GET", "/healthz", b"", auth) {
            Ok((status, _, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
            Err(_) => (0, String::new()),
        }
    }

    fn output(&self) -> String {
        read_lossy(&self.dir.join("out.txt"))
    }

    fn rpc(&self, method: &str, name: &str) -> Option<minisv::rpc::xmlrpc::Value> {
        try_rpc(&self.dir.join("minisv.sock"), method, &[minisv::rpc::xmlrpc::Value::from(name)])?.ok()
    }

    fn wait_exit(&mut self, secs: f64) -> std::process::ExitStatus {
        wait_for(secs, "minisv to exit", || self.child.try_wait().ok().flatten())
    }
}

impl Drop for PodRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn fleet_kubernetes_pod_probes_logs_and_sigterm_as_the_kubelet_sees_them() {
    let mut pod = PodRun::start("k8srun");
    assert_eq!(pod.healthz(Some(&pod.auth)), (200, "ok\n".to_string()));
    assert_eq!(pod.healthz(None).0, 401, "the probe needs the credentials it carries");
    wait_for(10.0, "both programs' prefixed output on stdout", || {
        let out = pod.output();
        (out.contains("[app] serving\n") && out.contains("[worker] working\n")).then_some(())
    });
    // The daemon's own log is on the same stdout, once (silent=true: no second copy).
    wait_for(10.0, "app RUNNING in the log on stdout", || {
        pod.output().contains("success: app entered RUNNING state").then_some(())
    });
    assert_eq!(pod.output().matches("spawned: 'app' with pid").count(), 1, "{}", pod.output());

    // The kubelet stops the container with SIGTERM to PID 1, then waits
    // terminationGracePeriodSeconds.
    let started = Instant::now();
    kill(pod.child.id(), libc::SIGTERM);
    let status = pod.wait_exit(40.0);
    assert_eq!(status.code(), Some(0), "{}", pod.output());
    assert!(started.elapsed() < Duration::from_secs(40), "stopped within the grace period");
    let out = pod.output();
    let worker = out.find("stopped: worker (").unwrap_or_else(|| panic!("worker stopped\n{out}"));
    let app = out.find("stopped: app (").unwrap_or_else(|| panic!("app stopped\n{out}"));
    assert!(worker < app, "reverse priority order\n{out}");
}

#[test]
fn fleet_kubernetes_pod_ends_with_the_critical_programs_status() {
    let mut pod = PodRun::start("k8scrit");
    let info = wait_for(10.0, "app RUNNING", || {
        pod.rpc("supervisor.getProcessInfo", "app").filter(|i| i.str_of("statename") == "RUNNING")
    });
    let worker = pod.rpc("supervisor.getProcessInfo", "worker").expect("worker");
    // What an OOM kill does to the main program.
    kill(info.int_of("pid") as u32, libc::SIGKILL);
    let status = pod.wait_exit(30.0);
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "the container's status is app's\n{}", pod.output());
    assert!(!pid_alive(worker.int_of("pid") as u32), "worker was stopped before minisv exited");
}

// ---- Prometheus and Grafana ----------------------------------------------------------------

#[test]
fn fleet_prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = promtool();
    let dir = packaging("prometheus");
    let out = run(Command::new(&promtool).args(["check", "rules", "minisv-rules.yml"]).current_dir(&dir));
    let text = assert_success("promtool check rules minisv-rules.yml", &out);
    assert!(text.contains("SUCCESS: 6 rules found"), "{text}");
    let out = run(Command::new(&promtool).args(["test", "rules", "minisv-rules.test.yml"]).current_dir(&dir));
    assert_success("promtool test rules minisv-rules.test.yml", &out);
    let out = run(Command::new(&promtool).args(["check", "config", "prometheus.yml"]).current_dir(&dir));
    assert_success("promtool check config prometheus.yml", &out);

    // The unit tests catch a rule that watches the wrong metric or the wrong threshold.
    let tmp = TempDir::new("promrules");
    tmp.write("minisv-rules.test.yml", &read("prometheus/minisv-rules.test.yml"));
    let rules = read("prometheus/minisv-rules.yml");
    for (from, to) in [
        ("minisv_process_restarts_total[15m]", "minisv_process_restart_total[15m]"),
        ("state=\"FATAL\"} == 1", "state=\"Fatal\"} == 1"),
        ("minisv_process_exit_status != 0", "minisv_process_exit_status >= 0"),
        ("> 64e6", "> 640e6"),
    ] {
        assert!(rules.contains(from), "{from}");
        tmp.write("minisv-rules.yml", &rules.replace(from, to));
        let out = run(Command::new(&promtool).args(["test", "rules", "minisv-rules.test.yml"]).current_dir(tmp.path()));
        assert!(!out.status.success(), "rules with {to:?} passed their tests\n{}", show("promtool test rules", &out));
    }
}

/// The metric names an expression text uses: words that start like minisv's families.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("minisv_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// The `state="X"` and `state=~"X|Y"` values an expression text uses.
fn state_values(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("state").skip(1) {
        let part = part.trim_start_matches(['=', '~', '!']);
        let Some(rest) = part.strip_prefix("\\\"").or_else(|| part.strip_prefix('"')) else { continue };
        let value = rest.split(['"', '\\']).next().unwrap_or("");
        out.extend(value.split('|').map(str::to_string));
    }
    out
}

/// The expressions of the rules file and the dashboard.
fn exprs() -> String {
    let rules = read("prometheus/minisv-rules.yml");
    let rules: String = rules.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let dashboard = read("grafana/minisv-dashboard.json");
    let exprs: Vec<&str> = dashboard
        .lines()
        .filter(|l| l.contains("\"expr\"") || l.contains("\"query\"") || l.contains("\"definition\""))
        .collect();
    assert!(exprs.len() > 10, "the dashboard's queries were not found");
    format!("{rules}\n{}", exprs.join("\n"))
}

/// What is used but not exported: names and state values missing from `/metrics`.
fn unknown_metrics(used: &str, metrics: &str) -> Vec<String> {
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let states: BTreeSet<String> = metrics
        .lines()
        .filter(|l| l.starts_with("minisv_process_state{"))
        .filter_map(|l| l.split("state=\"").nth(1)?.split('"').next().map(str::to_string))
        .collect();
    let mut missing: Vec<String> = metric_names(used).into_iter().filter(|n| !exported.contains(n)).collect();
    missing.extend(state_values(used).into_iter().filter(|s| !states.contains(s)).map(|s| format!("state={s}")));
    missing
}

#[test]
fn fleet_rules_and_dashboard_use_only_metrics_minisv_exports() {
    // A daemon with a running program (memory and CPU series exist only for a live process).
    let d = Daemon::start("fleetmet", "[program:web]\ncommand=sleep 1000\nstartsecs=0\n");
    d.wait_state("web", "RUNNING", 10.0);
    let (status, _, body) = http_unix(&d.path("sv.sock"), "GET", "/metrics", b"", None).expect("GET /metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&body).into_owned();

    let used = exprs();
    let names = metric_names(&used);
    for n in [
        "minisv_process_state",
        "minisv_process_restarts_total",
        "minisv_process_resident_memory_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(names.contains(n), "{n} not found among the names used: {names:?}");
    }
    assert!(state_values(&used).contains("FATAL"), "{:?}", state_values(&used));
    assert_eq!(unknown_metrics(&used, &metrics), Vec::<String>::new(), "used but not in /metrics:\n{metrics}");
    // The comparison sees a misspelt name or state.
    assert_eq!(
        unknown_metrics("minisv_process_upp == 0 or minisv_process_state{state=\"Fatal\"}", &metrics),
        ["minisv_process_upp", "state=Fatal"]
    );
    let dashboard_in_json = r#""expr": "minisv_process_state{job=\"minisv\", state!=\"RUNNIN\"} == 1""#;
    assert_eq!(unknown_metrics(dashboard_in_json, &metrics), ["state=RUNNIN"]);
}

#[test]
fn fleet_grafana_dashboard_is_json_with_prometheus_queries() {
    let check = r#"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uid"] and d["title"], "uid and title"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "panel ids are unique"
for p in d["panels"]:
    assert p["datasource"]["type"] == "prometheus", p["title"]
    assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    g = p["gridPos"]
    assert g["x"] + g["w"] <= 24, p["title"]
print(len(ids))
"#;
    let out = run(Command::new("python3").arg("-c").arg(check).arg(packaging("grafana/minisv-dashboard.json")));
    let text = assert_success("the dashboard's JSON", &out);
    assert!(text.trim().parse::<usize>().is_ok_and(|n| n >= 10), "{text}");
}

// ---- Ansible -------------------------------------------------------------------------------

fn ansible_playbook(dir: &Path, args: &[&str]) -> Output {
    let venv = fleet_venv();
    run(Command::new(venv.join("ansible-playbook"))
        .args(args)
        .current_dir(dir)
        // A user's ansible.cfg and collections must not change the result.
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_REMOTE_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PYTHONWARNINGS", "ignore"))
}

/// An inventory of this machine alone, run with the venv's Python.
fn local_inventory(dir: &TempDir) -> PathBuf {
    dir.write("ansible.cfg", "[defaults]\nstdout_callback = default\nretry_files_enabled = false\n");
    dir.write(
        "inventory.ini",
        &format!(
            "[minisv]\nlocalhost ansible_connection=local ansible_python_interpreter={}\n",
            fleet_venv().join("python").display()
        ),
    )
}

#[test]
fn fleet_ansible_playbook_passes_syntax_check() {
    let dir = TempDir::new("ansyn");
    local_inventory(&dir);
    let playbook = packaging("ansible/minisv.yml");
    let out =
        ansible_playbook(dir.path(), &["-i", "inventory.ini", "--syntax-check", playbook.to_str().expect("utf-8")]);
    assert_success("ansible-playbook --syntax-check packaging/ansible/minisv.yml", &out);
    let out = ansible_playbook(
        dir.path(),
        &[
            "-i",
            &packaging("ansible/inventory.ini").to_string_lossy(),
            "--list-hosts",
            playbook.to_str().expect("utf-8"),
        ],
    );
    let text = assert_success("ansible-playbook --list-hosts", &out);
    assert!(text.contains("hosts (3)"), "{text}");
    // The example host config is valid (its paths are the hosts' own, which need not exist
    // here: only the pidfile's and socket's directory, /run, is checked).
    let out = run(Command::new(BIN).arg("check").arg("-c").arg(packaging("ansible/files/minisv.conf")));
    let text = assert_success("minisv check packaging/ansible/files/minisv.conf", &out);
    assert!(text.contains("OK (2 groups, 3 processes)"), "{text}");
}

/// The shipped playbook on this machine: installs into a temp dir (no systemd), then makes
/// sure the listed programs run, against a daemon already started on the same config.
#[test]
fn fleet_ansible_playbook_installs_and_starts_programs_on_a_local_daemon() {
    let dir = TempDir::new("anplay");
    let d = Daemon::start_in(
        dir,
        "[program:web]\ncommand=sleep 1000\nstartsecs=0\nautostart=false\n\
         [group:workers]\nprograms=w1,w2\n\
         [program:w1]\ncommand=sleep 1000\nstartsecs=0\nautostart=false\n\
         [program:w2]\ncommand=sleep 1000\nstartsecs=0\nautostart=false\n",
        &[],
    );
    let dir = &d.dir;
    local_inventory(dir);
    let vars = format!(
        "minisv_binary_src={bin} minisv_config_src={conf} minisv_bin={d}/inst/minisv minisv_ctl={d}/inst/minisv-supervisorctl \
         minisv_config={d}/inst/minisv.conf minisv_systemd=false",
        bin = BIN,
        conf = d.conf.display(),
        d = dir.path().display()
    );
    fs::create_dir_all(dir.join("inst")).expect("inst");
    let playbook = packaging("ansible/minisv.yml");
    let out = ansible_playbook(dir.path(), &["-i", "inventory.ini", "-e", &vars, playbook.to_str().expect("utf-8")]);
    let text = assert_success("ansible-playbook packaging/ansible/minisv.yml", &out);
    assert!(text.contains("failed=0"), "{text}");
    assert_eq!(fs::read(dir.join("inst/minisv.conf")).expect("installed config"), fs::read(&d.conf).expect("config"));
    let wrapper = fs::read_to_string(dir.join("inst/minisv-supervisorctl")).expect("installed wrapper");
    assert!(wrapper.contains(&format!("exec {}/inst/minisv ctl \"$@\"", dir.path().display())), "{wrapper}");
    for p in ["web", "workers:w1", "workers:w2"] {
        assert_eq!(d.state(p), "RUNNING", "{p}\n{text}");
    }
    // A second run changes nothing.
    let out = ansible_playbook(dir.path(), &["-i", "inventory.ini", "-e", &vars, playbook.to_str().expect("utf-8")]);
    let text = assert_success("ansible-playbook packaging/ansible/minisv.yml, again", &out);
    assert!(text.contains("changed=0") && text.contains("failed=0"), "{text}");
}

/// Every state of community.general.supervisorctl, each followed by what `minisv ctl status`
/// must then say, and whether the module must report a change.
const MODULE_STEPS: &str = r#"
- hosts: minisv
  gather_facts: false
  tasks:
    - name: "{{ item.name }} {{ item.state }}"
      community.general.supervisorctl:
        name: "{{ item.name }}"
        state: "{{ item.state }}"
        signal: "{{ item.signal | default(omit) }}"
        stop_before_removing: "{{ item.stop_before_removing | default(omit) }}"
        config: "{{ config if not server_url else omit }}"
        server_url: "{{ server_url or omit }}"
        username: "{{ username or omit }}"
        password: "{{ password or omit }}"
        supervisorctl_path: "{{ wrapper }}"
      register: result
      loop:
        - {name: web, state: stopped, changed: true}
        - {name: web, state: stopped, changed: false}
        - {name: web, state: started, changed: true}
        - {name: web, state: started, changed: false}
        - {name: web, state: restarted, changed: true}
        - {name: web, state: signalled, signal: USR1, changed: true}
        - {name: "workers:", state: stopped, changed: true}
        - {name: "workers:", state: started, changed: true}
        - {name: web, state: absent, stop_before_removing: true, changed: true}
        - {name: web, state: present, changed: true}
        - {name: web, state: present, changed: false}
    - name: the module reported each change as expected
      ansible.builtin.assert:
        that: item.changed == item.item.changed
        fail_msg: "{{ item.item }} reported changed={{ item.changed }}"
      loop: "{{ result.results }}"
      loop_control:
        label: "{{ item.item.name }} {{ item.item.state }}"
"#;

fn run_module_steps(d: &Daemon, extra: &str) -> Output {
    let dir = &d.dir;
    local_inventory(dir);
    dir.write("steps.yml", MODULE_STEPS);
    let wrapper = dir.write("minisv-supervisorctl", &format!("#!/bin/sh\nexec {BIN} ctl \"$@\"\n"));
    let _ = Command::new("chmod").arg("+x").arg(&wrapper).status();
    let vars = format!(
        "config={} wrapper={} server_url='' username='' password='' {extra}",
        d.conf.display(),
        wrapper.display()
    );
    ansible_playbook(dir.path(), &["-i", "inventory.ini", "-e", &vars, "steps.yml"])
}

/// web reports SIGUSR1 and keeps running (its `sleep` stops with it: stopasgroup).
const MODULE_PROGRAMS: &str = "[program:web]\n\
    command=sh -c 'trap \"echo got USR1\" USR1; while :; do sleep 1000 & wait $!; done'\n\
    startsecs=0\nstopasgroup=true\nkillasgroup=true\nstdout_logfile=%(here)s/web.out\n\
    [group:workers]\nprograms=w1,w2\n\
    [program:w1]\ncommand=sleep 1000\nstartsecs=0\n\
    [program:w2]\ncommand=sleep 1000\nstartsecs=0\n";

fn assert_module_steps_ran(d: &Daemon, out: &Output) {
    let text = assert_success("community.general.supervisorctl through every state", out);
    assert!(text.contains("failed=0"), "{text}");
    // What the daemon saw: web started, then started again by the module three times
    // (started, restarted, present), signalled; the group stopped and started.
    let log = d.log();
    assert_eq!(d.count_log("spawned: 'web'"), 4, "{log}");
    assert!(read_lossy(&d.path("web.out")).contains("got USR1"), "web was signalled\n{log}");
    assert_eq!(d.state("web"), "RUNNING");
    assert_eq!(d.state("workers:w1"), "RUNNING");
    assert!(log.contains("stopped: w1 (") && log.contains("stopped: w2 ("), "{log}");
}

#[test]
fn fleet_ansible_supervisorctl_module_drives_minisv_over_the_unix_socket() {
    let d = Daemon::start("anunix", MODULE_PROGRAMS);
    d.wait_state("web", "RUNNING", 10.0);
    let out = run_module_steps(&d, "");
    assert_module_steps_ran(&d, &out);
}

#[test]
fn fleet_ansible_supervisorctl_module_drives_minisv_over_tcp_with_a_password() {
    let port = free_port();
    let d = Daemon::start(
        "antcp",
        &format!("[inet_http_server]\nport=127.0.0.1:{port}\nusername=ops\npassword=s3cret\n{MODULE_PROGRAMS}"),
    );
    d.wait_state("web", "RUNNING", 10.0);
    let url = format!("server_url=http://127.0.0.1:{port} username=ops");
    // A wrong password: the module sees no process and fails, changing nothing.
    let out = run_module_steps(&d, &format!("{url} password=wrong"));
    assert!(!out.status.success(), "{}", show("a wrong password", &out));
    assert_eq!(d.state("web"), "RUNNING");
    let out = run_module_steps(&d, &format!("{url} password=s3cret"));
    assert_module_steps_ran(&d, &out);
}

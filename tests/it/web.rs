//! The web side over real HTTP: the status and tail pages, their actions and the token that
//! guards them, the JSON API, /metrics, /healthz, auth on every path, and a real browser
//! (Debian's headless chromium) clicking Stop and Start.

mod cdp;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{free_port, wait_for, Daemon};

/// A daemon with an `[inet_http_server]` on a free loopback port (and `extra` lines in it).
fn start(tag: &str, extra: &str, programs: &str) -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(tag, &format!("[inet_http_server]\nport=127.0.0.1:{port}\n{extra}\n{programs}"));
    (d, port)
}

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on its own connection: `headers` are whole lines without CRLF.
fn http(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Resp { status, head: head.to_string(), body: body.to_string() }
}

fn get(port: u16, path: &str) -> Resp {
    http(port, "GET", path, &[], "")
}

/// The token in the page's forms.
fn token(port: u16) -> String {
    let page = get(port, "/").body;
    let at = page.find("name=\"token\" value=\"").expect("a token in the page") + 20;
    page[at..at + 32].to_string()
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

const TWO: &str = "[program:web]\ncommand=sh -c 'echo hello \"<b>\"; exec sleep 1000'\nstartsecs=0\n\n\
                   [program:sh<script>]\ncommand=sleep 1000\nstartsecs=0\nautostart=false\n";

#[test]
fn status_page_lists_processes_with_escaped_names() {
    let programs = format!("{TWO}[program:joined]\ncommand=sleep 1000\nredirect_stderr=true\nautostart=false\n");
    let (d, port) = start("webpage", "", &programs);
    d.wait_state("web", "RUNNING", 10.0);
    let r = get(port, "/");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("Content-Type"), Some("text/html;charset=utf-8"));
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    assert!(r.body.contains("<title>Supervisor Status</title>"));
    assert!(r.body.contains("sh&lt;script&gt;") && !r.body.contains("sh<script>"), "{}", r.body);
    assert!(r.body.contains("aria-label=\"Stop web\""));
    assert!(r.body.contains("aria-label=\"Start sh&lt;script&gt;\""));
    // A stderr button only where there is a stderr log (issue 20, point 11).
    assert!(r.body.contains("aria-label=\"Tail stderr of web\""), "{}", r.body);
    assert!(r.body.contains("aria-label=\"Tail stdout of joined\""), "{}", r.body);
    assert!(!r.body.contains("aria-label=\"Tail stderr of joined\""), "{}", r.body);
    assert_eq!(get(port, "/index.html").status, 200);
    assert!(get(port, "/?message=%3Cscript%3Ex").body.contains("<div class=\"status_msg\">&lt;script&gt;x</div>"));
    // The tail page (Supervisor's quirk: never fewer than 1024 bytes asked).
    let t = get(port, "/tail.html?processname=web&limit=1");
    assert_eq!(t.status, 200);
    assert!(t.body.contains("hello &lt;b&gt;"), "{}", t.body);
    assert!(t.body.contains("tail.html?processname=web&amp;limit=1024"));
    assert!(get(port, "/tail.html").body.contains("No process name found"));
    assert_eq!(get(port, "/tail.html?processname=nosuch").status, 404);
    // Several logs: the page of their merged tail (issue 22, point 3).
    let t = get(port, "/tail.html?processname=web&processname=joined");
    assert_eq!(t.status, 200);
    assert!(t.body.contains("<title>Supervisor tail of web, joined</title>"), "{}", t.body);
    assert!(t.body.contains("web          | hello &lt;b&gt;\n"), "{}", t.body);
    assert!(t.body.contains("data-src=\"/mergedtail?name=web&amp;name=joined\""), "{}", t.body);
    let t = get(port, "/tail.html?processname=web&processname=nosuch");
    assert_eq!(t.status, 404);
    assert!(t.body.contains("nosuch: ERROR (no such process)</div>"), "{}", t.body);
    let css = get(port, "/static/minisv.css");
    assert_eq!((css.status, css.header("Content-Type")), (200, Some("text/css;charset=utf-8")));
    assert_eq!(get(port, "/static/nothing.css").status, 404);
}

#[test]
fn actions_change_state_only_with_the_token() {
    let (d, port) = start("webact", "", TWO);
    d.wait_state("web", "RUNNING", 10.0);
    // No token: refused, nothing changes.
    let r = http(port, "POST", "/index.html", &[FORM], "action=stop&processname=web");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Nothing was changed"));
    let r = get(port, "/index.html?action=stop&processname=web");
    assert_eq!(r.status, 403);
    let r = http(port, "POST", "/index.html", &[FORM], "action=stopall");
    assert_eq!(r.status, 403);
    assert_eq!(d.state("web"), "RUNNING");
    // With it: the answer comes once the process is stopped, as on Supervisor's page.
    let t = token(port);
    let r = http(port, "POST", "/index.html", &[FORM], &format!("action=stop&processname=web&token={t}"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/?message=Process%20web%20stopped"));
    assert_eq!(d.state("web"), "STOPPED");
    // Supervisor's GET links work when they carry the token.
    let r = get(port, &format!("/index.html?action=start&processname=web&token={t}"));
    assert_eq!(r.header("Location"), Some("/?message=Process%20web%20started"));
    assert_eq!(d.state("web"), "RUNNING");
    let r = http(port, "POST", "/", &[FORM], &format!("action=start&processname=web&token={t}"));
    assert_eq!(r.header("Location"), Some("/?message=ERROR%3A%20Process%20web%3A%20already%20started"));
    let r = http(port, "POST", "/", &[FORM], &format!("action=stop&processname=nosuch&token={t}"));
    assert_eq!(r.header("Location"), Some("/?message=No%20such%20process%20named%20nosuch"));
    let pid = d.info("web").int_of("pid");
    let r = http(port, "POST", "/", &[FORM], &format!("action=restart&processname=web&token={t}"));
    assert_eq!(r.header("Location"), Some("/?message=Process%20web%20restarted"));
    assert_ne!(d.wait_state("web", "RUNNING", 10.0).int_of("pid"), pid);
    let r = http(port, "POST", "/", &[FORM], &format!("action=clearlog&processname=web&token={t}"));
    assert_eq!(r.header("Location"), Some("/?message=Log%20for%20web%20cleared"));
    let r = http(port, "POST", "/", &[FORM], &format!("action=stopall&token={t}"));
    assert!(r.header("Location").is_some_and(|l| l.starts_with("/?message=All%20stopped%20at%20")));
    assert_eq!(d.state("web"), "STOPPED");
    // Refresh changes nothing and needs no token.
    assert!(get(port, "/index.html?action=refresh").header("Location").is_some_and(|l| l.contains("Page%20refreshed")));
}

#[test]
fn json_api_lists_and_controls_processes() {
    let (d, port) = start("webapi", "", TWO);
    d.wait_state("web", "RUNNING", 10.0);
    let list = get(port, "/api/v1/processes");
    assert_eq!((list.status, list.header("Content-Type")), (200, Some("application/json")));
    assert!(list.body.starts_with("[{\"namespec\":\"sh\\u003cscript\\u003e\""), "{}", list.body);
    assert!(list.body.contains("\"namespec\":\"web\",\"name\":\"web\",\"group\":\"web\""));
    let one = get(port, "/api/v1/processes/web");
    assert!(one.body.contains("\"statename\":\"RUNNING\""), "{}", one.body);
    let missing = get(port, "/api/v1/processes/nosuch");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, "{\"error\":{\"code\":10,\"name\":\"BAD_NAME\",\"message\":\"BAD_NAME: nosuch\"}}\n");
    // A form-like POST is refused.
    let r = http(port, "POST", "/api/v1/processes/web/stop", &[FORM], "");
    assert_eq!(r.status, 403);
    let r = http(
        port,
        "POST",
        "/api/v1/processes/web/stop",
        &["Content-Type: application/json", "Origin: http://evil.example"],
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(d.state("web"), "RUNNING");
    let r = http(port, "POST", "/api/v1/processes/web/stop", &["Content-Type: application/json"], "{}");
    assert_eq!((r.status, r.body.as_str()), (200, "{\"namespec\":\"web\",\"action\":\"stop\",\"ok\":true}\n"));
    assert_eq!(d.state("web"), "STOPPED");
    let r = http(port, "POST", "/api/v1/processes/web/stop", &["X-Requested-With: curl"], "");
    assert_eq!(r.status, 409);
    assert!(r.body.contains("\"name\":\"NOT_RUNNING\""));
    let r = http(port, "POST", "/api/v1/processes/web/start", &["X-Requested-With: curl"], "");
    assert_eq!(r.status, 200);
    assert_eq!(d.state("web"), "RUNNING");
    let pid = d.info("web").int_of("pid");
    let r = http(port, "POST", "/api/v1/processes/web/restart", &["X-Requested-With: curl"], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(d.wait_state("web", "RUNNING", 10.0).int_of("pid"), pid);
    assert_eq!(get(port, "/api/v1/processes/web/stop").status, 405);
    assert_eq!(http(port, "POST", "/api/v1/processes/web/explode", &["X-Requested-With: x"], "").status, 404);
    let sup = get(port, "/api/v1/supervisor");
    assert!(sup.body.contains(&format!("\"pid\":{},\"statecode\":1,\"statename\":\"RUNNING\"", d.pid)), "{}", sup.body);
    // The unix socket serves the same API.
    let (status, _, body) =
        crate::harness::http_unix(&d.path("sv.sock"), "GET", "/api/v1/processes/web", b"", None).expect("unix");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"statename\":\"RUNNING\""));
}

/// Runs `promtool check metrics` on `text` when Debian's prometheus package is installed.
fn promtool(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: only the format checks of this test ran");
        return;
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
}

#[test]
fn metrics_and_health() {
    let (d, port) = start("webmet", "", TWO);
    let pid = d.wait_state("web", "RUNNING", 10.0).int_of("pid");
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = r.body;
    promtool(&text);
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("minisv_process_up{group=\"web\",name=\"web\"} 1"), "{text}");
    assert!(has(&format!("minisv_process_pid{{group=\"web\",name=\"web\"}} {pid}")));
    assert!(has("minisv_process_state{group=\"web\",name=\"web\",state=\"RUNNING\"} 1"));
    assert!(has("minisv_process_state{group=\"sh<script>\",name=\"sh<script>\",state=\"STOPPED\"} 1"));
    assert!(has("# TYPE minisv_process_cpu_seconds_total counter"));
    let rss = text
        .lines()
        .find_map(|l| l.strip_prefix("minisv_process_resident_memory_bytes{group=\"web\",name=\"web\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(rss.is_some_and(|v| v > 0.0), "{text}");
    assert!(text.lines().any(|l| l.starts_with("process_open_fds ")));
    assert!(text.lines().any(|l| l.starts_with("minisv_uptime_seconds ")));
    let h = get(port, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    assert_eq!(get(port, "/ok.html").body, "OK");
    assert_eq!(http(port, "POST", "/metrics", &[], "").status, 405);
}

#[test]
fn healthz_fails_while_shutting_down() {
    let slow =
        "[program:slow]\ncommand=sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'\nstartsecs=0\nstopwaitsecs=3\n";
    let (mut d, port) = start("webhealth", "", slow);
    d.wait_state("slow", "RUNNING", 10.0);
    assert_eq!(get(port, "/healthz").status, 200);
    d.signal(libc::SIGTERM);
    let r = wait_for(10.0, "healthz to fail", || Some(get(port, "/healthz")).filter(|r| r.status == 503));
    assert_eq!(r.body, "the daemon is SHUTDOWN\n");
    d.wait_exit(15.0);
}

#[test]
fn auth_applies_to_every_path() {
    let (d, port) = start("webauth", "username=u\npassword=p", TWO);
    d.wait_state("web", "RUNNING", 10.0);
    for path in [
        "/",
        "/index.html",
        "/tail.html?processname=web",
        "/tail.html?processname=all",
        "/mergedtail?name=all",
        "/metrics",
        "/healthz",
        "/api/v1/processes",
        "/static/minisv.css",
    ] {
        let r = get(port, path);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"default\""));
    }
    let r = http(port, "POST", "/api/v1/processes/web/stop", &["X-Requested-With: x"], "");
    assert_eq!(r.status, 401);
    assert_eq!(http(port, "GET", "/", &["Authorization: Basic dTpw"], "").status, 200);
    assert_eq!(d.state("web"), "RUNNING");
}

/// Waits until the page has loaded a URL whose query contains `needle`.
fn wait_page(page: &mut cdp::Page, needle: &str) {
    wait_for(20.0, &format!("the page to show {needle:?}"), || {
        let v = page.eval("document.readyState + ' ' + location.href");
        (v.starts_with("complete") && v.contains(needle)).then_some(())
    });
}

/// Clicks the element that `selector` finds, with real mouse events at its centre.
fn click(page: &mut cdp::Page, selector: &str) {
    let js = format!(
        "(() => {{ const e = document.querySelector({}); if (!e) return ''; e.scrollIntoView({{block: 'center'}}); \
         const r = e.getBoundingClientRect(); return (r.x + r.width / 2) + ' ' + (r.y + r.height / 2); }})()",
        cdp::json_string(selector)
    );
    let at = page.eval(&js);
    let (x, y) = at.split_once(' ').unwrap_or_else(|| panic!("no element {selector}"));
    for kind in ["mousePressed", "mouseReleased"] {
        page.call(
            "Input.dispatchMouseEvent",
            &format!("{{\"type\":\"{kind}\",\"x\":{x},\"y\":{y},\"button\":\"left\",\"clickCount\":1}}"),
        );
    }
}

fn screenshot(page: &mut cdp::Page, name: &str) -> std::path::PathBuf {
    let m = page.call("Page.captureScreenshot", "{\"format\":\"png\",\"captureBeyondViewport\":true}");
    let data = cdp::string_after(&m, "\"data\":").expect("screenshot data");
    let png = minisv::rpc::xmlrpc::base64_decode(&data).expect("base64");
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write screenshot");
    path
}

#[test]
fn browser_clicks_stop_and_start() {
    let Some(bin) = cdp::chromium() else { return };
    let programs = "[program:web]\ncommand=sh -c 'echo serving; exec sleep 1000'\nstartsecs=0\n\n\
                    [program:worker]\ncommand=sleep 1000\nstartsecs=0\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)s\n\n\
                    [program:broken]\ncommand=/no/such/program\nstartretries=0\n\n\
                    [program:batch]\ncommand=true\nautostart=false\n";
    let (d, port) = start("webbrowser", "", programs);
    d.wait_state("web", "RUNNING", 10.0);
    d.wait_state("broken", "FATAL", 10.0);
    let browser = cdp::Browser::launch(&bin);
    let mut page = browser.page();
    page.call("Page.enable", "{}");
    let desktop = "{\"width\":1200,\"height\":800,\"deviceScaleFactor\":1,\"mobile\":false}";
    page.call("Emulation.setDeviceMetricsOverride", desktop);
    page.call("Page.navigate", &format!("{{\"url\":\"http://127.0.0.1:{port}/\"}}"));
    wait_page(&mut page, &format!("127.0.0.1:{port}/"));
    assert_eq!(page.eval("document.title"), "Supervisor Status");

    click(&mut page, "button[aria-label='Stop web']");
    wait_page(&mut page, "message=Process%20web%20stopped");
    assert_eq!(d.state("web"), "STOPPED");
    assert_eq!(page.eval("document.querySelector('.status_msg').textContent"), "Process web stopped");

    click(&mut page, "button[aria-label='Start web']");
    wait_page(&mut page, "message=Process%20web%20started");
    assert_eq!(d.state("web"), "RUNNING");
    let shot = screenshot(&mut page, "web-desktop.png");
    eprintln!("screenshot: {}", shot.display());

    let phone = "{\"width\":390,\"height\":844,\"deviceScaleFactor\":2,\"mobile\":true}";
    page.call("Emulation.setDeviceMetricsOverride", phone);
    page.call("Page.navigate", &format!("{{\"url\":\"http://127.0.0.1:{port}/\"}}"));
    wait_page(&mut page, &format!("127.0.0.1:{port}/"));
    // Nothing overflows sideways at phone width.
    assert_eq!(page.eval("String(document.documentElement.scrollWidth <= 390)"), "true");
    let shot = screenshot(&mut page, "web-phone.png");
    eprintln!("screenshot: {}", shot.display());

    // The tail page, with the live view following /logtail.
    page.call("Emulation.setDeviceMetricsOverride", desktop);
    page.call("Page.navigate", &format!("{{\"url\":\"http://127.0.0.1:{port}/tail.html?processname=web\"}}"));
    wait_page(&mut page, "tail.html");
    click(&mut page, "#follow");
    wait_for(10.0, "the live tail", || {
        (page.eval("document.getElementById('follow').getAttribute('aria-pressed')") == "true"
            && page.eval("document.getElementById('log').textContent").contains("serving"))
        .then_some(())
    });
    screenshot(&mut page, "web-tail.png");
}

/// The status page's checkboxes and Tail selected lead to the tail page of those logs, whose
/// Follow button streams them merged, new lines included.
#[test]
fn browser_follows_the_logs_of_the_selected_processes() {
    let Some(bin) = cdp::chromium() else { return };
    let programs = "[program:web]\ncommand=sh -c 'echo serving; echo warming up >&2; exec sleep 1000'\nstartsecs=0\n\n\
                    [program:worker]\ndirectory=%(here)s\n\
                    command=sh -c 'echo ready; while [ ! -e go ]; do sleep 0.05; done; echo job done; exec sleep 1000'\nstartsecs=0\n\n\
                    [program:other]\ncommand=sh -c 'echo not selected; exec sleep 1000'\nstartsecs=0\n";
    let (d, port) = start("webmerged", "", programs);
    for name in ["web", "worker", "other"] {
        d.wait_state(name, "RUNNING", 10.0);
    }
    wait_for(10.0, "the programs' first lines", || {
        let args = |n: &str| [minisv::rpc::xmlrpc::Value::from(n), 0i64.into(), 0i64.into()];
        let log = |n: &str, m: &str| d.rpc(m, &args(n)).ok()?.as_str().map(str::to_string);
        let ready = log("worker", "supervisor.readProcessStdoutLog")?.contains("ready")
            && log("web", "supervisor.readProcessStderrLog")?.contains("warming up");
        ready.then_some(())
    });
    let browser = cdp::Browser::launch(&bin);
    let mut page = browser.page();
    page.call("Page.enable", "{}");
    page.call(
        "Emulation.setDeviceMetricsOverride",
        "{\"width\":1200,\"height\":800,\"deviceScaleFactor\":1,\"mobile\":false}",
    );
    page.call("Page.navigate", &format!("{{\"url\":\"http://127.0.0.1:{port}/\"}}"));
    wait_page(&mut page, &format!("127.0.0.1:{port}/"));
    click(&mut page, "input[aria-label='Select web to tail']");
    click(&mut page, "input[aria-label='Select worker to tail']");
    click(&mut page, "button[form='tails']");
    wait_page(&mut page, "tail.html?processname=web&processname=worker");
    assert_eq!(page.eval("document.title"), "Supervisor tail of web, worker");
    let log = page.eval("document.getElementById('log').textContent");
    // Labels as wide as the widest, "worker (stderr)" (an empty log, so no line of it).
    assert_eq!(log, "web             | serving\nweb (stderr)    | warming up\nworker          | ready\n");
    click(&mut page, "#follow");
    wait_for(10.0, "the merged stream", || {
        (page.eval("document.getElementById('log').textContent").contains("worker          | ready")).then_some(())
    });
    // A line written after the stream began.
    std::fs::write(d.path("go"), "").expect("go");
    wait_for(10.0, "the new line", || {
        (page.eval("document.getElementById('log').textContent").contains("worker          | job done\n")).then_some(())
    });
    assert!(!page.eval("document.getElementById('log').textContent").contains("not selected"));
    screenshot(&mut page, "web-tail-merged.png");
}

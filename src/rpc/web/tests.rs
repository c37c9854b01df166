use super::*;
use crate::rpc::xmlrpc::Value;

fn info(name: &str, group: &str, state: &str, description: &str) -> Value {
    Value::structure([
        ("name", Value::from(name)),
        ("group", Value::from(group)),
        ("start", Value::Int(100)),
        ("stop", Value::Int(0)),
        ("now", Value::Int(165)),
        ("statename", Value::from(state)),
        ("pid", Value::Int(if state == "RUNNING" { 42 } else { 0 })),
        ("exitstatus", Value::Int(0)),
        ("description", Value::from(description)),
    ])
}

fn ctx<'a>(message: Option<&'a str>) -> html::IndexCtx<'a> {
    html::IndexCtx {
        identification: "id<&>",
        state: "RUNNING",
        version: "1",
        token: "00112233445566778899aabbccddeeff",
        message,
    }
}

#[test]
fn html_escapes_every_outside_text() {
    assert_eq!(html::escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    let evil = info("<script>alert(1)</script>", "g\"><img src=x>", "FATAL", "<script>bad()</script>");
    let page = html::index(&ctx(Some("<script>msg()</script>")), &[evil], Some("<b>"));
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;script&gt;msg()&lt;/script&gt;"));
    // In URLs the namespec is %-encoded.
    assert!(page.contains("processname=g%22%3E%3Cimg%20src%3Dx%3E%3A%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
    assert!(page.contains("<span class=\"ident\">id&lt;&amp;&gt;</span>"));
    let tail = html::tail("<x>", false, 1024, Ok("</pre><script>"));
    assert!(!tail.contains("<script>") && !tail.contains("</pre><"), "{tail}");
    let names = ["<a>".to_string(), "g:*".to_string()];
    let tail = html::tail_merged(&names, None, Ok("<a> | </pre><script>"));
    assert!(!tail.contains("<script>") && !tail.contains("</pre><") && !tail.contains("<a>"), "{tail}");
    assert!(tail.contains("data-src=\"/mergedtail?name=%3Ca%3E&amp;name=g%3A%2A\""), "{tail}");
    assert!(tail.contains("href=\"/tail.html?processname=%3Ca%3E&amp;processname=g%3A%2A\">Refresh"), "{tail}");
    let refused = html::tail_merged(&names, Some("stderr"), Err("<a>: ERROR (no such process)"));
    assert!(refused.contains("&lt;a&gt;: ERROR (no such process)</div>"), "{refused}");
    assert!(refused.contains("name=g%3A%2A&amp;channel=stderr"), "{refused}");
}

#[test]
fn index_shows_supervisors_buttons_per_state() {
    let rows = [
        info("run", "run", "RUNNING", "pid 42, uptime 0:01:05"),
        info("stopped", "stopped", "STOPPED", "Not started"),
        info("starting", "starting", "STARTING", ""),
    ];
    let page = html::index(&ctx(None), &rows, None);
    let row = |name: &str| {
        let at = page.find(&format!("value=\"{name}\"")).expect("row");
        page[at..].split("</tr>").next().unwrap_or("").to_string()
    };
    let run = row("run");
    assert!(run.contains("value=\"restart\"") && run.contains("value=\"stop\"") && !run.contains("value=\"start\""));
    let stopped = row("stopped");
    assert!(stopped.contains("value=\"start\"") && !stopped.contains("value=\"stop\""));
    let starting = row("starting");
    assert!(!starting.contains("value=\"start\"") && !starting.contains("value=\"stop\""));
    assert!(starting.contains("value=\"clearlog\""));
    assert!(page.contains("<td data-label=\"Uptime\" class=\"num\">0:01:05</td>"));
    assert!(page.contains("class=\"state statusrunning\">running<"));
    // Every form that changes state carries the token; the tail form (a GET) must not.
    assert_eq!(
        page.matches("method=\"post\"").count(),
        page.matches("name=\"token\" value=\"00112233445566778899aabbccddeeff\"").count()
    );
    assert!(page.contains("<form id=\"tails\" method=\"get\" action=\"/tail.html\"></form>"));
    assert!(page.contains(
        "<input type=\"checkbox\" name=\"processname\" value=\"run\" form=\"tails\" aria-label=\"Select run to tail\">"
    ));
    assert!(page.contains("href=\"/tail.html?processname=all\">Tail all</a>"));
    assert!(html::index(&ctx(None), &[], None).contains("No programs to manage"));
}

fn request(method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &str) -> WebRequest {
    WebRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: body.as_bytes().to_vec(),
        peer: None,
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[test]
fn csrf_needs_the_token_or_a_script_header() {
    let token = csrf_token();
    assert_eq!(token.len(), 32);
    assert_eq!(token, csrf_token(), "one token per daemon process");
    let good = format!("action=stop&processname=web&token={token}");
    assert!(csrf_ok(&request("POST", "/", "", &[FORM], &good), false));
    assert!(csrf_ok(&request("GET", "/", &good, &[], ""), false), "Supervisor's GET link with the token");
    assert!(!csrf_ok(&request("POST", "/", "", &[FORM], "action=stop&processname=web"), false));
    let last = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("action=stop&token={}{last}", &token[..31]);
    assert!(!csrf_ok(&request("POST", "/", "", &[FORM], &wrong), false));
    assert!(!csrf_ok(&request("POST", "/", "", &[FORM], "action=stop&token="), false));
    // A form body only counts when it is a form.
    assert!(!csrf_ok(&request("POST", "/", "", &[("content-type", "text/plain")], &good), false));
    // Page actions never accept the script headers.
    let json = ("content-type", "application/json");
    assert!(!csrf_ok(&request("POST", "/", "action=stop", &[json], ""), false));
    // The API takes either.
    let api = "/api/v1/processes/web/stop";
    assert!(csrf_ok(&request("POST", api, "", &[json], ""), true));
    assert!(csrf_ok(&request("POST", api, "", &[("content-type", "Application/JSON; charset=utf-8")], ""), true));
    assert!(csrf_ok(&request("POST", api, "", &[("x-requested-with", "curl")], ""), true));
    assert!(csrf_ok(&request("POST", api, "", &[("x-csrf-token", token)], ""), true));
    assert!(!csrf_ok(&request("POST", api, "", &[FORM], ""), true));
    assert!(!csrf_ok(&request("POST", api, "", &[("content-type", "text/plain")], ""), true));
    // ... unless a browser says it comes from elsewhere.
    let host = ("host", "127.0.0.1:9001");
    assert!(!csrf_ok(&request("POST", api, "", &[json, host, ("origin", "http://evil.example")], ""), true));
    assert!(!csrf_ok(&request("POST", api, "", &[json, ("sec-fetch-site", "cross-site")], ""), true));
    assert!(csrf_ok(&request("POST", api, "", &[json, host, ("origin", "http://127.0.0.1:9001")], ""), true));
    assert!(csrf_ok(&request("POST", api, "", &[json, ("sec-fetch-site", "same-origin")], ""), true));
}

#[test]
fn routes() {
    assert_eq!(route("/"), Page::Index);
    assert_eq!(route("/index.html"), Page::Index);
    assert_eq!(route("/tail.html"), Page::Tail);
    assert_eq!(route("/metrics"), Page::Metrics);
    assert_eq!(route("/healthz"), Page::Healthz);
    assert_eq!(route("/api/v1/supervisor"), Page::ApiSupervisor);
    assert_eq!(route("/api/v1/processes"), Page::ApiProcesses);
    assert_eq!(route("/api/v1/processes/g%3Ap"), Page::ApiProcess("g:p".into()));
    assert_eq!(route("/api/v1/processes/g:p/restart"), Page::ApiAction("g:p".into(), "restart".into()));
    assert_eq!(route("/api/v1/processes/a/b/c"), Page::NotFound);
    assert_eq!(route("/api/v1/processes//stop"), Page::NotFound);
    assert_eq!(route("/api/v2/processes"), Page::NotFound);
    assert_eq!(route("/index.htm"), Page::NotFound);
    assert!(check_method(&Page::Index, "POST").is_none());
    assert_eq!(check_method(&Page::Metrics, "POST").map(|r| r.status), Some(405));
    let r = check_method(&Page::ApiAction("x".into(), "stop".into()), "GET").expect("refused");
    assert!(r.headers.contains(&("Allow".to_string(), "POST".to_string())));
    assert_eq!(static_asset("/static/minisv.css").map(|a| a.0), Some("text/css;charset=utf-8"));
}

#[test]
fn forms_and_urls() {
    assert_eq!(
        parse_form("a=1&b=x+y%3Az&&c&d=%3C"),
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "x y:z".into()),
            ("c".into(), String::new()),
            ("d".into(), "<".into())
        ]
    );
    assert_eq!(quote("Process g:x started/ä"), "Process%20g%3Ax%20started%2F%C3%A4");
    let r = request("POST", "/", "processname=a", &[FORM], "action=start");
    assert_eq!((r.param("processname").as_deref(), r.param("action").as_deref()), (Some("a"), Some("start")));
}

#[test]
fn messages_are_supervisors() {
    let ok = Ok(Value::Bool(true));
    let fault = |code: i32| Err(Fault { code, string: format!("{}: x", faults::fault_name(code)) });
    assert_eq!(message(Action::Start, "x", &ok), "Process x started");
    assert_eq!(message(Action::Stop, "g:x", &ok), "Process g:x stopped");
    assert_eq!(message(Action::ClearLog, "x", &ok), "Log for x cleared");
    assert_eq!(message(Action::Start, "x", &fault(faults::SPAWN_ERROR)), "ERROR: Process x: spawn error");
    assert_eq!(message(Action::Start, "x", &fault(faults::ALREADY_STARTED)), "ERROR: Process x: already started");
    assert_eq!(message(Action::Stop, "x", &fault(faults::NOT_RUNNING)), "ERROR: Process x: not running");
    assert_eq!(message(Action::Stop, "x", &fault(faults::BAD_NAME)), "No such process named x");
    assert_eq!(
        message(Action::Stop, "x", &fault(faults::FAILED)),
        "ERROR: Process x: unexpected rpc fault [30] FAILED: x"
    );
    assert!(message(Action::StopAll, "", &ok).starts_with("All stopped at "));
    // A restart of a stopped process is a start; a failed start is reported.
    let not_running = Value::structure([("faultCode", Value::Int(70)), ("faultString", Value::from("NOT_RUNNING"))]);
    let spawn = Value::structure([("faultCode", Value::Int(50)), ("faultString", Value::from("SPAWN_ERROR: x"))]);
    let r = Ok(Value::Array(vec![not_running.clone(), Value::Bool(true)]));
    assert_eq!(message(Action::Restart, "x", &r), "Process x restarted");
    let r = Ok(Value::Array(vec![not_running, spawn]));
    assert_eq!(message(Action::Restart, "x", &r), "ERROR: Process x: spawn error");
    let resp = redirect("Process x started");
    assert_eq!(resp.status, 303);
    assert!(resp.headers.contains(&("Location".into(), "/?message=Process%20x%20started".into())));
}

#[test]
fn metrics_pass_the_format_check() {
    let infos = [info("a\"b", "g\\h", "RUNNING", ""), info("c", "c", "FATAL", "x")];
    // pid 42 is probably not ours; usage is only reported when /proc has it.
    let text = metrics_text(&infos, "id\n");
    let samples = metrics::parse::check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|s| s.2)
    };
    assert_eq!(find("minisv_process_up", &[("name", "a\"b"), ("group", "g\\h")]), Some(1.0));
    assert_eq!(find("minisv_process_state", &[("name", "c"), ("state", "FATAL")]), Some(1.0));
    assert_eq!(find("minisv_process_state", &[("name", "c"), ("state", "RUNNING")]), Some(0.0));
    assert_eq!(find("minisv_process_start_time_seconds", &[("name", "c")]), Some(100.0));
    assert_eq!(find("minisv_info", &[("identification", "id\n")]), Some(1.0));
    assert!(find("process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert_eq!(samples.iter().filter(|s| s.0 == "minisv_process_state").count(), 2 * STATES.len());
}

#[test]
fn process_json_adds_namespec_and_uptime() {
    let j = process_json(&info("p", "g", "RUNNING", "pid 42, uptime 0:01:05")).render();
    assert!(j.starts_with("{\"namespec\":\"g:p\",\"name\":\"p\""), "{j}");
    assert!(j.ends_with(",\"uptime\":65}"), "{j}");
    let e = api_error(&Fault { code: faults::BAD_NAME, string: "BAD_NAME: <x>".into() });
    assert_eq!(e.status, 404);
    assert_eq!(
        String::from_utf8_lossy(&e.body),
        "{\"error\":{\"code\":10,\"name\":\"BAD_NAME\",\"message\":\"BAD_NAME: \\u003cx\\u003e\"}}\n"
    );
}

//! The HTML of the status, tail and refusal pages. Every text that comes from a config, a
//! process or a request goes through [`escape`]; the pages need no JavaScript (the script only
//! adds auto-refresh and the live tail), and the stylesheet and script are separate files so
//! the Content-Security-Policy can forbid inline code.

use std::fmt::Write as _;

use super::quote;
use crate::rpc::api::make_namespec;
use crate::rpc::info::timedelta;
use crate::rpc::xmlrpc::Value;

/// Headers of every page: no caching, no framing (the buttons must not be clickjacked), no
/// inline script, no referrer (a token in a URL) sent to other sites.
pub fn page_headers() -> Vec<(String, String)> {
    [
        ("Cache-Control", "no-cache, no-store"),
        ("Pragma", "no-cache"),
        ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Python's `time.ctime()` in local time: `Mon Jan  1 00:00:00 2024`.
pub fn ctime(epoch: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let tm = crate::sys::localtime(epoch);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <link rel=\"stylesheet\" href=\"/static/minisv.css\">\n\
         <script src=\"/static/minisv.js\" defer></script>\n</head>\n",
        escape(title)
    );
}

fn header(out: &mut String, identification: &str, state: Option<&str>) {
    let _ = write!(out, "<header class=\"top\"><div class=\"wrap\"><a class=\"brand\" href=\"/\">minisv</a>");
    let _ = write!(out, "<span class=\"ident\">{}</span>", escape(identification));
    if let Some(s) = state {
        let _ = write!(out, "<span class=\"daemon\">daemon {}</span>", escape(&s.to_lowercase()));
    }
    out.push_str("</div></header>\n");
}

fn footer(out: &mut String, version: &str) {
    let _ = write!(out, "<footer class=\"wrap\"><p>minisv {}</p></footer>\n</body>\n</html>\n", escape(version));
}

pub struct IndexCtx<'a> {
    pub identification: &'a str,
    pub state: &'a str,
    pub version: &'a str,
    pub token: &'a str,
    pub message: Option<&'a str>,
}

/// Supervisor's CSS class for a state.
fn state_class(state: &str) -> &'static str {
    match state {
        "RUNNING" => "statusrunning",
        "FATAL" | "BACKOFF" => "statuserror",
        _ => "statusnominal",
    }
}

fn hidden(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value));
}

/// The status page.
pub fn index(ctx: &IndexCtx, infos: &[Value], error: Option<&str>) -> String {
    let mut out = String::with_capacity(4096 + infos.len() * 1200);
    head(&mut out, "Supervisor Status");
    out.push_str("<body>\n");
    header(&mut out, ctx.identification, Some(ctx.state));
    out.push_str("<main class=\"wrap\">\n");
    // Always present so that screen readers announce messages put there later.
    out.push_str("<div id=\"msg\" role=\"status\" aria-live=\"polite\">");
    if let Some(m) = ctx.message.filter(|m| !m.is_empty()) {
        let kind = if m.starts_with("ERROR") || m.starts_with("No such") { " error" } else { "" };
        let _ = write!(out, "<div class=\"status_msg{kind}\">{}</div>", escape(m));
    }
    if let Some(e) = error {
        let _ = write!(out, "<div class=\"status_msg error\">{}</div>", escape(e));
    }
    out.push_str("</div>\n");

    out.push_str("<form class=\"toolbar\" method=\"post\" action=\"/index.html\">");
    hidden(&mut out, "token", ctx.token);
    out.push_str(
        "<a class=\"button\" href=\"/index.html?action=refresh\">Refresh</a>\
         <button type=\"submit\" name=\"action\" value=\"restartall\">Restart all</button>\
         <button type=\"submit\" name=\"action\" value=\"stopall\" class=\"danger\">Stop all</button>\
         <label class=\"auto\" hidden><input type=\"checkbox\" id=\"autorefresh\"> Auto-refresh</label>",
    );
    if !infos.is_empty() {
        // The checkboxes of the rows belong to the form `tails` (a GET without the token).
        out.push_str(
            "<a class=\"button quiet\" href=\"/tail.html?processname=all\">Tail all</a>\
             <button type=\"submit\" form=\"tails\" class=\"quiet\">Tail selected</button>",
        );
    }
    out.push_str("</form>\n<form id=\"tails\" method=\"get\" action=\"/tail.html\"></form>\n");

    let running = infos.iter().filter(|i| i.str_of("statename") == "RUNNING").count();
    let failing = infos.iter().filter(|i| matches!(i.str_of("statename"), "FATAL" | "BACKOFF")).count();
    let _ = writeln!(
        out,
        "<p class=\"summary\" id=\"summary\">{} process{}: {running} running{}</p>",
        infos.len(),
        if infos.len() == 1 { "" } else { "es" },
        if failing > 0 { format!(", <strong class=\"statuserror\">{failing} failing</strong>") } else { String::new() }
    );

    if infos.is_empty() {
        out.push_str("<p id=\"procs\" class=\"empty\">No programs to manage</p>\n");
    } else {
        out.push_str(
            "<table id=\"procs\" class=\"procs\">\n<caption class=\"sr-only\">Processes</caption>\n\
             <thead><tr><th scope=\"col\">State</th><th scope=\"col\">Name</th><th scope=\"col\">PID</th>\
             <th scope=\"col\">Uptime</th><th scope=\"col\">Description</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        );
        for (n, info) in infos.iter().enumerate() {
            row(&mut out, ctx, info, n % 2 == 1);
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</main>\n");
    footer(&mut out, ctx.version);
    out
}

fn row(out: &mut String, ctx: &IndexCtx, info: &Value, shade: bool) {
    let ns = make_namespec(info.str_of("group"), info.str_of("name"));
    let (e_ns, q_ns) = (escape(&ns), quote(&ns));
    let state = info.str_of("statename");
    let running = state == "RUNNING";
    let pid = info.int_of("pid");
    let uptime = if running { timedelta(info.int_of("now") - info.int_of("start")) } else { String::new() };
    // For a running process the description is "pid N, uptime T": shown in its own columns.
    let desc = if running { "" } else { info.str_of("description") };
    let _ = write!(out, "<tr{}>", if shade { " class=\"shade\"" } else { "" });
    let _ = write!(
        out,
        "<td data-label=\"State\"><span class=\"state {}\">{}</span></td>",
        state_class(state),
        escape(&state.to_lowercase())
    );
    let _ = write!(
        out,
        "<th scope=\"row\" data-label=\"Name\"><input type=\"checkbox\" name=\"processname\" value=\"{e_ns}\" form=\"tails\" \
         aria-label=\"Select {e_ns} to tail\"> <a href=\"/tail.html?processname={q_ns}\" title=\"Log of {e_ns}\">{e_ns}</a></th>"
    );
    let _ = write!(
        out,
        "<td data-label=\"PID\" class=\"num\">{}</td>",
        if pid > 0 { pid.to_string() } else { String::new() }
    );
    let _ = write!(out, "<td data-label=\"Uptime\" class=\"num\">{}</td>", escape(&uptime));
    let _ = write!(out, "<td data-label=\"Description\" class=\"desc\">{}</td>", escape(desc));
    out.push_str("<td class=\"actions\"><form method=\"post\" action=\"/index.html\">");
    hidden(out, "token", ctx.token);
    hidden(out, "processname", &ns);
    let button = |out: &mut String, action: &str, label: &str, class: &str| {
        let _ = write!(
            out,
            "<button type=\"submit\" name=\"action\" value=\"{action}\" class=\"{class}\" aria-label=\"{label} {e_ns}\">{label}</button>"
        );
    };
    // Supervisor's choice of buttons per state.
    match state {
        "RUNNING" => {
            button(out, "restart", "Restart", "");
            button(out, "stop", "Stop", "danger");
        }
        "STOPPED" | "EXITED" | "FATAL" => button(out, "start", "Start", "primary"),
        _ => {}
    }
    button(out, "clearlog", "Clear log", "quiet");
    let _ = write!(
        out,
        "<a class=\"button quiet\" href=\"/tail.html?processname={q_ns}\" aria-label=\"Tail stdout of {e_ns}\">stdout</a>"
    );
    // No stderr log (redirect_stderr=true, stderr_logfile=NONE): no button that leads nowhere.
    if !info.str_of("stderr_logfile").is_empty() {
        let _ = write!(
            out,
            "<a class=\"button quiet\" href=\"/tail.html?processname={q_ns}&amp;channel=stderr\" aria-label=\"Tail stderr of {e_ns}\">stderr</a>"
        );
    }
    out.push_str("</form></td></tr>\n");
}

/// The tail page: the last `limit` bytes of a log, or an error text.
pub fn tail(ns: &str, stderr: bool, limit: i64, text: Result<&str, &str>) -> String {
    let channel = if stderr { "stderr" } else { "stdout" };
    let mut out = String::with_capacity(limit as usize + 2048);
    head(&mut out, &format!("Supervisor tail of process {ns}"));
    out.push_str("<body>\n");
    header(&mut out, "tail", None);
    let (e_ns, q_ns) = (escape(ns), quote(ns));
    let _ = write!(
        out,
        "<main class=\"wrap\">\n<h1 class=\"title\">{e_ns} <span class=\"channel\">{channel}</span></h1>\n"
    );
    let q_ch = if stderr { "&amp;channel=stderr" } else { "" };
    let _ = writeln!(
        out,
        "<nav class=\"toolbar\" aria-label=\"Log\"><a class=\"button\" href=\"/\">Back</a>\
         <a class=\"button\" href=\"/tail.html?processname={q_ns}&amp;limit=1024{q_ch}\">Refresh</a>\
         <a class=\"button quiet\" href=\"/logtail/{q_ns}/{channel}\">Raw stream</a>\
         <button type=\"button\" id=\"follow\" data-src=\"/logtail/{q_ns}/{channel}\" aria-pressed=\"false\" hidden>Follow</button></nav>"
    );
    match text {
        Ok(t) => {
            let _ = writeln!(
                out,
                "<pre id=\"log\" class=\"log\" tabindex=\"0\" aria-label=\"{channel} of {e_ns}\">{}</pre>",
                escape(t)
            );
        }
        Err(e) => {
            let _ = writeln!(out, "<div class=\"status_msg error\" role=\"alert\">{}</div>", escape(e));
        }
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The tail page of several logs: their last lines as `/mergedtail` begins, or why not.
pub fn tail_merged(names: &[String], channel: Option<&str>, text: Result<&str, &str>) -> String {
    let joined = names.join(", ");
    let mut out = String::with_capacity(text.map_or(0, str::len) + 2048);
    head(&mut out, &format!("Supervisor tail of {joined}"));
    out.push_str("<body>\n");
    header(&mut out, "tail", None);
    let what = channel.unwrap_or("stdout and stderr");
    let _ = write!(
        out,
        "<main class=\"wrap\">\n<h1 class=\"title\">{} <span class=\"channel\">{what}</span></h1>\n",
        escape(&joined)
    );
    let q_ch = channel.map(|c| format!("&amp;channel={c}")).unwrap_or_default();
    let page: Vec<String> = names.iter().map(|n| format!("processname={}", quote(n))).collect();
    let stream: Vec<String> = names.iter().map(|n| format!("name={}", quote(n))).collect();
    let (page, stream) = (page.join("&amp;"), stream.join("&amp;"));
    let _ = writeln!(
        out,
        "<nav class=\"toolbar\" aria-label=\"Log\"><a class=\"button\" href=\"/\">Back</a>\
         <a class=\"button\" href=\"/tail.html?{page}{q_ch}\">Refresh</a>\
         <a class=\"button quiet\" href=\"/mergedtail?{stream}{q_ch}\">Raw stream</a>\
         <button type=\"button\" id=\"follow\" data-src=\"/mergedtail?{stream}{q_ch}\" aria-pressed=\"false\" hidden>Follow</button></nav>"
    );
    match text {
        Ok(t) => {
            let _ = writeln!(
                out,
                "<pre id=\"log\" class=\"log\" tabindex=\"0\" aria-label=\"{what} of {}\">{}</pre>",
                escape(&joined),
                escape(t)
            );
        }
        Err(e) => {
            let _ = writeln!(out, "<div class=\"status_msg error\" role=\"alert\">{}</div>", escape(e));
        }
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The page for a state change without a valid token.
pub fn forbidden(identification: &str) -> String {
    let mut out = String::new();
    head(&mut out, "Refused");
    out.push_str("<body>\n");
    header(&mut out, identification, None);
    out.push_str(
        "<main class=\"wrap\"><div class=\"status_msg error\" role=\"alert\">Refused: this request would change \
         the state of a process, and it does not carry the token of this page. It may come from another site. \
         Nothing was changed.</div><p><a class=\"button\" href=\"/\">Back to the status page</a></p></main>\n</body>\n</html>\n",
    );
    out
}

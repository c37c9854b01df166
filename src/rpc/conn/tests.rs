//! The connection state machine without sockets: bytes in, requests and bytes out, a fake clock.

use super::*;

fn policy_with<'a>(auth: Option<&'a Credentials>) -> Policy<'a> {
    Policy { auth, body_limit: |t| if t.starts_with("/RPC2") { 1000 } else { 10 } }
}

const T0: SystemTime = SystemTime::UNIX_EPOCH;

/// Feeds `input` in pieces of `step` bytes (each at most what the connection takes), answers
/// every request with `200 <method> <target> <body>`, and returns the requests seen, the log
/// lines and everything written.
fn run(
    conn: &mut Conn,
    policy: &Policy,
    input: &[u8],
    step: usize,
    now: Instant,
) -> (Vec<Request>, Vec<String>, String) {
    let mut requests = Vec::new();
    let mut logs = Vec::new();
    let mut out = Vec::new();
    let mut rest = input;
    // Bounded: every round feeds at least one byte or ends.
    for _ in 0..input.len() + 2 {
        loop {
            match conn.poll(policy, T0) {
                Some(Event::Request(r)) => {
                    let body = format!("{} {} {}", r.method, r.target, String::from_utf8_lossy(&r.body));
                    requests.push(r);
                    conn.respond(&Response::new(200, "text/plain", body), T0, now);
                }
                Some(Event::Log(l)) => logs.push(l),
                None => break,
            }
        }
        out.extend_from_slice(conn.output());
        let n = conn.output_len();
        conn.wrote(n, now);
        let take = step.min(conn.read_room()).min(rest.len());
        if take == 0 {
            break;
        }
        conn.received(&rest[..take], now);
        rest = &rest[take..];
    }
    (requests, logs, String::from_utf8_lossy(&out).into_owned())
}

/// The connection is closing after its last answer: its sending side is to be shut, what the
/// client still sends is dropped (up to the linger budget), and it ends at the client's EOF or
/// after the linger time.
fn assert_closing(c: &mut Conn) {
    let now = Instant::now();
    assert!(c.wants_write_shutdown(), "not closing");
    c.write_shut();
    assert!(!c.wants_write_shutdown());
    assert!(!c.done(), "closed with the client's bytes unread: a reset could destroy the answer");
    let room = c.read_room();
    assert!(room > 0 && room <= MAX_HEAD);
    c.received(&vec![b'x'; room], now);
    assert!(c.input.is_empty() && c.output_len() == 0, "lingering keeps nothing");
    assert_eq!(c.deadline().map(|d| d > now), Some(true), "lingering has a deadline");
    assert!(c.expired(now + LINGER_TIME).is_some());
    c.received_eof();
    assert!(c.done());
}

fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.").filter_map(|(i, _)| out.get(i + 9..i + 12)?.parse().ok()).collect()
}

#[test]
fn a_request_split_at_every_byte_reads_the_same() {
    let input = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                  GET /ok.html HTTP/1.1\r\n\r\n\
                  POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
    let whole =
        run(&mut Conn::new(Instant::now(), Timeouts::default()), &policy_with(None), input, usize::MAX, Instant::now());
    for step in 1..8 {
        let now = Instant::now();
        let got = run(&mut Conn::new(now, Timeouts::default()), &policy_with(None), input, step, now);
        assert_eq!(got, whole, "step {step}");
    }
    let (reqs, _, out) = whole;
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body, b"hello");
    assert_eq!(reqs[2].body, b"abcde");
    assert_eq!(statuses(&out), vec![200, 200, 200]);
    assert!(out.contains("Content-Length: 16\r\nContent-Type: text/plain\r\n\r\nPOST /RPC2 hello"), "{out}");
}

#[test]
fn pipelined_requests_are_answered_in_order_one_at_a_time() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let p = policy_with(None);
    c.received(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", now);
    let Some(Event::Request(a)) = c.poll(&p, T0) else { panic!("first request") };
    assert_eq!(a.target, "/a");
    // Nothing more until /a is answered.
    assert_eq!(c.poll(&p, T0), None);
    c.respond(&Response::new(200, "text/plain", "A"), T0, now);
    let Some(Event::Request(b)) = c.poll(&p, T0) else { panic!("second request") };
    assert_eq!(b.target, "/b");
    c.respond(&Response::new(200, "text/plain", "B"), T0, now);
    let out = String::from_utf8_lossy(c.output()).into_owned();
    assert!(out.find("\r\n\r\nA").unwrap() < out.find("\r\n\r\nB").unwrap(), "{out}");
}

#[test]
fn heads_over_16_kib_get_431_and_the_connection_closes() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(MAX_HEAD + 100, b'a');
    let (reqs, _, out) = run(&mut c, &policy_with(None), &head, 4096, now);
    assert!(reqs.is_empty());
    assert_eq!(statuses(&out), vec![431]);
    assert!(out.contains("Connection: close"));
    assert_closing(&mut c);
}

#[test]
fn declared_bodies_over_the_limit_get_413_at_once_whatever_the_number() {
    for len in ["1001", "9000000000000000000", "18446744073709551615", "99999999999999999999999999999"] {
        let now = Instant::now();
        let mut c = Conn::new(now, Timeouts::default());
        let head = format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {len}\r\n\r\n");
        let (reqs, _, out) = run(&mut c, &policy_with(None), head.as_bytes(), usize::MAX, now);
        assert!(reqs.is_empty(), "{len}");
        assert_eq!(statuses(&out), vec![413], "{len}");
        assert_closing(&mut c);
    }
    // Garbage lengths, two different lengths, and both framings are refused.
    for bad in [
        "Content-Length: 12abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 1\r\nContent-Length: 2\r\n",
        "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\n",
    ] {
        let now = Instant::now();
        let mut c = Conn::new(now, Timeouts::default());
        let head = format!("POST /RPC2 HTTP/1.1\r\n{bad}\r\n");
        let (reqs, _, out) = run(&mut c, &policy_with(None), head.as_bytes(), usize::MAX, now);
        assert!(reqs.is_empty(), "{bad}");
        assert_eq!(statuses(&out), vec![400], "{bad}");
    }
    // No length at all on an RPC call: 411, as before.
    let now = Instant::now();
    let (_, _, out) =
        run(&mut Conn::new(now, Timeouts::default()), &policy_with(None), b"POST /RPC2 HTTP/1.1\r\n\r\n", 1, now);
    assert_eq!(statuses(&out), vec![411]);
}

#[test]
fn chunked_bodies_have_the_same_bound() {
    for body in ["3e9\r\n", "ffffffffffffffffff\r\n", "5\r\nabcde\r\n6\r\nabcdef\r\n"] {
        let now = Instant::now();
        let mut c = Conn::new(now, Timeouts::default());
        // The web limit in this policy is 10 bytes.
        let input = format!("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let (reqs, _, out) = run(&mut c, &policy_with(None), input.as_bytes(), 1, now);
        assert!(reqs.is_empty(), "{body:?}");
        assert_eq!(statuses(&out), vec![413], "{body:?}");
    }
    // A chunk-size line without end is cut.
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let mut input = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    input.resize(input.len() + 5000, b'0');
    let (_, _, out) = run(&mut c, &policy_with(None), &input, 100, now);
    assert_eq!(statuses(&out), vec![400]);
}

#[test]
fn authentication_is_checked_before_any_body_is_read() {
    let creds = Credentials { username: "bob".into(), password: "secret".into() };
    let p = policy_with(Some(&creds));
    let now = Instant::now();
    // No credentials: 401 with the realm, closed, and the body never read.
    let mut c = Conn::new(now, Timeouts::default());
    let (reqs, logs, out) = run(&mut c, &p, b"POST /RPC2 HTTP/1.1\r\nContent-Length: 900\r\n\r\nxxxx", usize::MAX, now);
    assert!(reqs.is_empty() && logs.is_empty());
    assert_eq!(statuses(&out), vec![401]);
    assert!(out.contains("WWW-Authenticate: Basic realm=\"default\"\r\n"));
    assert!(!c.is_authenticated());
    assert_closing(&mut c);
    // Wrong credentials: the same, and a log line naming the user.
    let mut c = Conn::new(now, Timeouts::default());
    let (_, logs, out) = run(&mut c, &p, b"GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOndyb25n\r\n\r\n", 3, now);
    assert_eq!(statuses(&out), vec![401]);
    assert_eq!(logs, vec!["failed login for user \"bob\"".to_string()]);
    // Right ones: the request comes through and the connection counts as authenticated.
    let mut c = Conn::new(now, Timeouts::default());
    let (reqs, _, out) = run(&mut c, &p, b"GET /ok HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldA==\r\n\r\n", 3, now);
    assert_eq!((reqs.len(), statuses(&out)), (1, vec![200]));
    assert!(c.is_authenticated() && !c.done());
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let p = policy_with(None);
    c.received(b"POST /RPC2 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", now);
    assert_eq!(c.poll(&p, T0), None);
    assert_eq!(c.output(), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.wrote(c.output_len(), now);
    c.received(b"abc", now);
    let Some(Event::Request(r)) = c.poll(&p, T0) else { panic!("request") };
    assert_eq!(r.body, b"abc");
    // Not for HTTP/1.0, and not when the body is over the limit (413 instead).
    let mut c = Conn::new(now, Timeouts::default());
    c.received(b"POST /RPC2 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n", now);
    assert_eq!(c.poll(&p, T0), None);
    assert!(c.output().starts_with(b"HTTP/1.1 413 "));
}

#[test]
fn keep_alive_follows_the_version_and_connection_header() {
    let now = Instant::now();
    let p = policy_with(None);
    let cases: [(&[u8], bool, Option<&str>); 4] = [
        (b"GET / HTTP/1.1\r\n\r\n", true, None),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false, Some("close")),
        (b"GET / HTTP/1.0\r\n\r\n", false, None),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, Some("Keep-Alive")),
    ];
    for (input, kept, header) in cases {
        let mut c = Conn::new(now, Timeouts::default());
        let (_, _, out) = run(&mut c, &p, input, usize::MAX, now);
        assert_eq!(!c.wants_write_shutdown(), kept, "{}", String::from_utf8_lossy(input));
        let conn_header = out.lines().find_map(|l| l.strip_prefix("Connection: "));
        assert_eq!(conn_header, header, "{out}");
    }
}

#[test]
fn head_requests_get_no_body() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let (_, _, out) = run(&mut c, &policy_with(None), b"HEAD /x HTTP/1.1\r\n\r\n", usize::MAX, now);
    assert!(out.ends_with("Content-Type: text/plain\r\n\r\n"), "{out}");
    assert!(out.contains("Content-Length: 8\r\n"), "{out}");
}

#[test]
fn garbage_is_a_400_and_the_end() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let (reqs, _, out) =
        run(&mut c, &policy_with(None), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 junk\r\n\r\n", 1, now);
    assert!(reqs.is_empty());
    assert_eq!(statuses(&out), vec![400]);
    assert_closing(&mut c);
}

#[test]
fn a_request_must_be_complete_within_the_request_timeout() {
    let t =
        Timeouts { request: Duration::from_secs(10), idle: Duration::from_secs(100), write: Duration::from_secs(60) };
    let start = Instant::now();
    let mut c = Conn::new(start, t);
    // A silent new connection.
    assert_eq!(c.deadline(), Some(start + t.request));
    assert_eq!(c.expired(start + Duration::from_secs(9)), None);
    assert_eq!(c.expired(start + t.request), Some(Expiry::Request));
    // Bytes trickling in do not move the clock of a connection's first request.
    c.received(b"GET / HTTP/1.1\r\nX: a", start + Duration::from_secs(5));
    c.received(b"b\r\n", start + Duration::from_secs(9));
    assert_eq!(c.deadline(), Some(start + t.request));
    // Once answered, the connection is idle, with the idle timeout from the answer.
    c.received(b"\r\n", start + Duration::from_secs(9));
    let Some(Event::Request(_)) = c.poll(&policy_with(None), T0) else { panic!("request") };
    assert_eq!(c.deadline(), None, "the loop's answer has no deadline");
    let answered = start + Duration::from_secs(20);
    c.respond(&Response::new(200, "text/plain", "x"), T0, answered);
    assert_eq!(c.expiry().map(|e| e.0), Some(Expiry::Write));
    c.wrote(c.output_len(), answered);
    assert_eq!(c.deadline(), Some(answered + t.idle));
    // Blank lines do not keep it alive; the next request's first byte starts its own clock.
    c.received(b"\r\n", answered + Duration::from_secs(50));
    assert_eq!(c.deadline(), Some(answered + t.idle));
    let next = answered + Duration::from_secs(60);
    c.received(b"G", next);
    assert_eq!(c.deadline(), Some(next + t.request));
}

#[test]
fn streams_are_chunked_on_http11_and_plain_on_http10() {
    let now = Instant::now();
    for (version, chunked) in [("1.1", true), ("1.0", false)] {
        let mut c = Conn::new(now, Timeouts::default());
        c.received(format!("GET /logtail/x HTTP/{version}\r\n\r\n").as_bytes(), now);
        let Some(Event::Request(_)) = c.poll(&policy_with(None), T0) else { panic!("request") };
        assert_eq!(c.start_stream(&Response::new(200, "text/plain", ""), T0), chunked);
        c.push(b"hello");
        let out = String::from_utf8_lossy(c.output()).into_owned();
        if chunked {
            assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), "{out}");
        } else {
            assert!(out.ends_with("Connection: close\r\n\r\nhello"), "{out}");
        }
        // A stream has no deadline while it keeps up, and ends when the client leaves.
        c.wrote(c.output_len(), now);
        assert_eq!(c.deadline(), None);
        assert!(!c.done());
        c.received_eof();
        assert!(c.done());
    }
}

#[test]
fn a_client_that_leaves_while_its_answer_is_pending_is_closed_at_once() {
    // As Supervisor's server does on EOF: the loop's answer will go to no one, and the
    // connection costs nothing while the call goes on.
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    c.received(b"POST /RPC2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", now);
    let Some(Event::Request(_)) = c.poll(&policy_with(None), T0) else { panic!("request") };
    assert!(!c.done(), "waiting for the loop");
    c.received_eof();
    assert!(c.done());
}

#[test]
fn a_head_trickled_a_byte_at_a_time_is_parsed_once_it_can_be_complete() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let p = policy_with(None);
    let head = b"GET /slow HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    for (i, b) in head.iter().enumerate() {
        c.received(&[*b], now);
        let got = c.poll(&p, T0);
        if i + 1 < head.len() {
            assert_eq!(got, None, "after byte {i}");
            assert_eq!(c.output_len(), 0, "after byte {i}");
        } else {
            let Some(Event::Request(r)) = got else { panic!("the request at the last byte") };
            assert_eq!(r.header("x-b"), Some("2"));
        }
    }
    // Garbage is refused at its first bytes, not when the head limit is reached.
    let mut c = Conn::new(now, Timeouts::default());
    c.received(b"\x16\x03\x01\x02", now);
    assert_eq!(c.poll(&p, T0), None);
    assert!(c.output().starts_with(b"HTTP/1.1 400 "));
}

#[test]
fn an_idle_connection_keeps_no_large_buffer() {
    let now = Instant::now();
    let mut c = Conn::new(now, Timeouts::default());
    let body = vec![b'x'; 60_000];
    let mut input = format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    input.extend_from_slice(&body);
    let p = Policy { auth: None, body_limit: |_| 100_000 };
    let mut rest = &input[..];
    let mut got = None;
    while got.is_none() && !rest.is_empty() {
        let n = c.read_room().min(rest.len());
        c.received(&rest[..n], now);
        rest = &rest[n..];
        got = c.poll(&p, T0);
    }
    let Some(Event::Request(r)) = got else { panic!("request") };
    assert_eq!(r.body.len(), 60_000);
    c.respond(&Response::new(200, "text/xml", vec![b'y'; 250_000]), T0, now);
    c.wrote(c.output_len(), now);
    assert_eq!(c.poll(&p, T0), None);
    assert!(c.is_idle());
    assert!(c.output.capacity() <= KEPT_BUFFER, "output keeps {}", c.output.capacity());
    assert!(c.input.capacity() <= KEPT_BUFFER, "input keeps {}", c.input.capacity());
}

#[test]
fn error_body_is_medusas() {
    assert_eq!(
        error_body(404),
        "<head>\r\n<title>Error response</title>\r\n</head>\r\n<body>\r\n<h1>Error response</h1>\r\n\
         <p>Error code 404.\r\n<p>Message: Not Found.\r\n</body>\r\n"
    );
}

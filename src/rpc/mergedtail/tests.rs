//! The merge of several logs over files kept in memory: labels, turns, lines held back, cut
//! and continued, truncation and rotation, and the bounds of a piece. No I/O.

use std::cell::RefCell;
use std::collections::HashMap;

use super::*;

/// Files in memory: path → (identity, content). Rotation renames as minisv's does.
#[derive(Default)]
struct Mem {
    files: RefCell<HashMap<PathBuf, (FileId, Vec<u8>)>>,
    inodes: RefCell<u64>,
}

impl Mem {
    fn new_id(&self) -> FileId {
        let mut n = self.inodes.borrow_mut();
        *n += 1;
        FileId { dev: 1, ino: *n }
    }

    fn write(&self, path: &str, data: &[u8]) {
        let id = self.new_id();
        let mut files = self.files.borrow_mut();
        files.entry(PathBuf::from(path)).or_insert((id, Vec::new())).1.extend_from_slice(data);
    }

    /// `path` → `path.1`, and a new empty file at `path`.
    fn rotate(&self, path: &str) {
        let id = self.new_id();
        let mut files = self.files.borrow_mut();
        let old = files.remove(Path::new(path)).expect("a file to rotate");
        files.insert(backup_path(Path::new(path)), old);
        files.insert(PathBuf::from(path), (id, Vec::new()));
    }

    /// Removed and made again empty, as `clear` does.
    fn recreate(&self, path: &str) {
        let id = self.new_id();
        self.files.borrow_mut().insert(PathBuf::from(path), (id, Vec::new()));
    }

    fn truncate(&self, path: &str) {
        self.files.borrow_mut().get_mut(Path::new(path)).expect("a file").1.clear();
    }
}

impl Files for Mem {
    fn stat(&self, path: &Path) -> Option<(FileId, u64)> {
        self.files.borrow().get(path).map(|(id, data)| (*id, data.len() as u64))
    }

    fn read_at(&self, path: &Path, id: FileId, pos: u64, buf: &mut [u8]) -> usize {
        let files = self.files.borrow();
        let Some((found, data)) = files.get(path) else { return 0 };
        if *found != id || pos as usize >= data.len() {
            return 0;
        }
        let n = buf.len().min(data.len() - pos as usize);
        buf[..n].copy_from_slice(&data[pos as usize..pos as usize + n]);
        n
    }
}

fn source(ns: &str, channel: Channel, path: &str) -> MergedSource {
    MergedSource { namespec: ns.into(), channel, log: Ok(PathBuf::from(path)) }
}

/// A stream over `sources` and a clock of its own.
struct Run {
    tail: MergedTail,
    buf: Vec<u8>,
    now: Instant,
}

impl Run {
    fn new(sources: Vec<MergedSource>) -> Run {
        Run { tail: MergedTail::new(sources), buf: vec![0; READ_CHUNK], now: Instant::now() }
    }

    /// The next wake-up: late enough for a look at every log.
    fn later(&mut self) {
        self.now += self.tail.pause();
    }

    fn piece(&mut self, fs: &Mem) -> String {
        let mut out = Vec::new();
        self.tail.next_piece(fs, &mut self.buf, self.now, &mut out);
        String::from_utf8(out).expect("utf-8 in these tests")
    }

    /// Every piece due at the next wake-up, concatenated (the clock moves on by the pause
    /// between two looks at every log).
    fn all(&mut self, fs: &Mem) -> String {
        self.later();
        let mut text = String::new();
        for _ in 0..10_000 {
            let p = self.piece(fs);
            if p.is_empty() {
                return text;
            }
            text.push_str(&p);
        }
        panic!("the stream never ran dry");
    }
}

#[test]
fn lines_carry_their_log_padded_to_one_width_with_stderr_named() {
    let fs = Mem::default();
    let mut run = Run::new(vec![
        source("web", Channel::Stdout, "/w.out"),
        source("web", Channel::Stderr, "/w.err"),
        source("worker:w_0", Channel::Stdout, "/k.out"),
    ]);
    assert_eq!(run.all(&fs), "", "no files yet: nothing");
    fs.write("/w.out", b"GET / 200\n");
    fs.write("/w.err", b"slow query\n");
    fs.write("/k.out", b"job 1\njob 2\n");
    assert_eq!(
        run.all(&fs),
        "web          | GET / 200\nweb (stderr) | slow query\nworker:w_0   | job 1\nworker:w_0   | job 2\n"
    );
    fs.write("/k.out", b"job 3\n");
    assert_eq!(run.all(&fs), "worker:w_0   | job 3\n");
}

#[test]
fn logs_that_cannot_be_followed_are_named_first() {
    let fs = Mem::default();
    fs.write("/a", b"hello\n");
    let mut run = Run::new(vec![
        source("a", Channel::Stdout, "/a"),
        MergedSource { namespec: "a".into(), channel: Channel::Stderr, log: Err("no log file".into()) },
        MergedSource {
            namespec: "b".into(),
            channel: Channel::Stdout,
            log: Err("not a regular file: /dev/tty".into()),
        },
    ]);
    assert_eq!(run.piece(&fs), "a (stderr) | ==> no log file <==\nb          | ==> not a regular file: /dev/tty <==\n");
    assert_eq!(run.all(&fs), "a          | hello\n");
}

#[test]
fn each_log_begins_with_the_whole_lines_of_its_last_1024_bytes() {
    let fs = Mem::default();
    let lines: String = (0..300).map(|i| format!("line {i:04}\n")).collect();
    fs.write("/a", lines.as_bytes());
    fs.write("/b", b"short\n");
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    let text = run.all(&fs);
    let a: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("a | ")).collect();
    // 1024 bytes hold 102 lines of 10 and a piece of another, which is left out.
    assert_eq!(a.len(), 102, "{text}");
    assert_eq!(a.first(), Some(&"line 0198"));
    assert_eq!(a.last(), Some(&"line 0299"));
    assert!(text.ends_with("b | short\n"), "each log's backlog comes whole, in turn: {text}");
}

#[test]
fn a_busy_log_does_not_hold_the_others_back() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    assert_eq!(run.all(&fs), "");
    let lots: String = (0..20_000).map(|i| format!("a{i}\n")).collect();
    fs.write("/a", lots.as_bytes());
    fs.write("/b", b"b says\n");
    run.later();
    let first = run.piece(&fs);
    assert!(first.starts_with("a | a0\n") && first.len() <= OUT_BUDGET + 64, "{}", first.len());
    assert_eq!(run.piece(&fs), "b | b says\n", "b's turn comes after one piece of a");
    let rest = run.all(&fs);
    let got: Vec<String> = format!("{first}{rest}").lines().map(|l| l[4..].to_string()).collect();
    let want: Vec<String> = (0..20_000).map(|i| format!("a{i}")).collect();
    assert_eq!(got, want, "every line of a, in order, none twice");
}

#[test]
fn a_piece_is_bounded_even_for_empty_lines_behind_a_long_label() {
    let fs = Mem::default();
    let long = "g".repeat(200);
    let mut run = Run::new(vec![source(&long, Channel::Stdout, "/a")]);
    assert_eq!(run.all(&fs), "");
    fs.write("/a", &vec![b'\n'; 100_000]);
    run.later();
    let mut total = 0;
    loop {
        let p = run.piece(&fs);
        if p.is_empty() {
            break;
        }
        assert!(p.len() <= OUT_BUDGET + 204, "a piece of {} bytes", p.len());
        total += p.lines().count();
    }
    assert_eq!(total, 100_000);
}

#[test]
fn a_line_waits_for_its_end() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    assert_eq!(run.all(&fs), "");
    fs.write("/a", b"one\nha");
    assert_eq!(run.all(&fs), "a | one\n");
    assert!(run.tail.deadline().is_some(), "a wake-up is due while a line is held");
    fs.write("/b", b"b line\n");
    fs.write("/a", b"lf a line\n");
    assert_eq!(run.all(&fs), "b | b line\na | half a line\n", "the held line was not cut by b's");
    assert_eq!(run.tail.deadline(), None, "nothing held: no wake-up");
}

#[test]
fn a_line_held_too_long_is_sent_and_continued_unless_another_log_comes_between() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    assert_eq!(run.all(&fs), "");
    fs.write("/a", b"Password: ");
    assert_eq!(run.all(&fs), "");
    let due = run.tail.deadline().expect("a deadline");
    assert_eq!(due, run.now + HOLD);
    run.now = due;
    assert_eq!(run.all(&fs), "a | Password: ");
    assert_eq!(run.tail.deadline(), None);
    fs.write("/a", b"ok\n");
    assert_eq!(run.all(&fs), "ok\n", "the rest of the line follows it");
    // Held and sent again; this time b's line comes before the rest.
    fs.write("/a", b"Again: ");
    assert_eq!(run.all(&fs), "");
    run.now += HOLD;
    assert_eq!(run.all(&fs), "a | Again: ");
    fs.write("/b", b"b line\n");
    fs.write("/a", b"ok\n");
    assert_eq!(run.all(&fs), "\nb | b line\na | ok\n");
}

#[test]
fn a_line_that_grows_waits_since_it_began() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    assert_eq!(run.all(&fs), "");
    fs.write("/a", b"...");
    assert_eq!(run.all(&fs), "");
    let t0 = run.now;
    run.now = t0 + HOLD / 2;
    fs.write("/a", b"...");
    assert_eq!(run.all(&fs), "");
    assert_eq!(run.tail.deadline(), Some(t0 + HOLD));
}

#[test]
fn a_very_long_line_is_sent_in_pieces_that_join_up() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    assert_eq!(run.all(&fs), "");
    let line = "x".repeat(40_000);
    fs.write("/a", line.as_bytes());
    // Everything but the last piece shorter than MAX_LINE goes out at once.
    let sent = run.all(&fs);
    assert!(sent.starts_with("a | x") && !sent.contains('\n'), "{}", sent.len());
    assert!(sent.len() > 40_000 - MAX_LINE, "{}", sent.len());
    fs.write("/a", b"\nnext\n");
    let text = sent + &run.all(&fs);
    assert_eq!(text, format!("a | {line}\na | next\n"));
}

#[test]
fn a_truncated_log_is_announced_and_read_from_its_start() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    fs.write("/a", b"first line\n");
    assert_eq!(run.all(&fs), "a | first line\n");
    fs.truncate("/a");
    fs.write("/a", b"new\n");
    assert_eq!(run.all(&fs), "a | ==> File truncated <==\na | new\n");
}

#[test]
fn a_rotation_loses_no_line() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    fs.write("/a", b"1\n");
    assert_eq!(run.all(&fs), "a | 1\n");
    // Written, then rotated away before the stream looked: it is found in `/a.1`.
    fs.write("/a", b"2\nhal");
    fs.rotate("/a");
    fs.write("/a", b"f\n3\n");
    assert_eq!(run.all(&fs), "a | 2\na | half\na | 3\n", "the line cut by the rotation is whole");
    fs.write("/a", b"4\n");
    assert_eq!(run.all(&fs), "a | 4\n");
}

#[test]
fn a_cleared_log_is_read_from_its_start() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    fs.write("/a", b"old\n");
    assert_eq!(run.all(&fs), "a | old\n");
    fs.write("/a", b"unread\n");
    fs.recreate("/a");
    assert_eq!(run.all(&fs), "");
    fs.write("/a", b"new\n");
    assert_eq!(run.all(&fs), "a | new\n");
}

#[test]
fn a_log_made_after_the_stream_began_is_read_from_its_start() {
    let fs = Mem::default();
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a")]);
    assert_eq!(run.all(&fs), "");
    let lines: String = (0..300).map(|i| format!("line {i:04}\n")).collect();
    fs.write("/a", lines.as_bytes());
    assert_eq!(run.all(&fs).lines().count(), 300);
}

#[test]
fn finish_sends_what_is_held_and_ends_the_line() {
    let fs = Mem::default();
    fs.write("/a", b"one\ntwo");
    fs.write("/b", b"three\n");
    let mut run = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    let mut text = run.all(&fs);
    let mut out = Vec::new();
    run.tail.finish(&fs, &mut run.buf, &mut out);
    text.push_str(std::str::from_utf8(&out).expect("utf-8"));
    assert_eq!(text, "a | one\nb | three\na | two\n");
}

#[test]
fn with_many_logs_a_fruitless_look_at_every_log_puts_off_the_next_by_100_us_per_log() {
    let fs = Mem::default();
    let sources: Vec<MergedSource> =
        (0..400).map(|i| source(&format!("p{i}"), Channel::Stdout, &format!("/{i}"))).collect();
    let mut run = Run::new(sources);
    assert_eq!(run.all(&fs), "");
    let pause = Duration::from_millis(40);
    assert_eq!(run.tail.pause(), pause);
    assert_eq!(run.tail.deadline(), None, "nothing put off: no wake-up");
    // A wake-up soon after (the daemon wrote p7's line): the look is put off, and a wake-up
    // is asked for when it is due.
    fs.write("/7", b"hello\n");
    let looked = run.now;
    run.now += Duration::from_millis(10);
    assert_eq!(run.piece(&fs), "");
    assert_eq!(run.tail.deadline(), Some(looked + pause));
    run.now = looked + pause;
    assert_eq!(run.piece(&fs).trim_end(), "p7   | hello");
    assert_eq!(run.piece(&fs), "");
    assert_eq!(run.tail.deadline(), None);
    // A few logs are looked at again at every wake-up.
    let two = Run::new(vec![source("a", Channel::Stdout, "/a"), source("b", Channel::Stdout, "/b")]);
    assert_eq!(two.tail.pause(), Duration::ZERO);
}

//! The interactive shell (reference 5.1): `status` first, then `<prompt>> ` lines until EOF or
//! `quit`; history loaded from and saved to the history file; a small line editor on terminals.

use std::io::Write;
use std::path::Path;

use super::term;
use super::Ctl;

const STDIN: i32 = 0;
/// History entries kept in memory and in the file.
const HISTORY_MAX: usize = 1000;
/// Longest line accepted from stdin.
const LINE_MAX: usize = 64 * 1024;

/// `cmd.Cmd.parseline`: (command word, argument, stripped line). `?x` means `help x`; the command
/// word is the leading run of letters, digits and `_`; `None` for a line starting with `!`.
pub fn parseline(line: &str) -> (Option<String>, String, String) {
    let mut line = line.trim().to_string();
    if line.is_empty() {
        return (None, String::new(), line);
    }
    if let Some(rest) = line.strip_prefix('?') {
        line = format!("help {rest}");
    } else if line.starts_with('!') {
        return (None, String::new(), line);
    }
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len());
    let cmd = line[..end].to_string();
    let arg = line[end..].trim().to_string();
    (Some(cmd), arg, line)
}

/// What reading a line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    Eof,
    Interrupted,
}

/// Line input from stdin: a line editor with history on a terminal, plain reads otherwise. All
/// reads go through `term::read_fd` so that Ctrl-C (EINTR) is seen even inside `fg`.
pub struct Input {
    buf: Vec<u8>,
    eof: bool,
    pub history: Vec<String>,
}

impl Default for Input {
    fn default() -> Self {
        Self::new()
    }
}

impl Input {
    pub fn new() -> Input {
        Input { buf: Vec::new(), eof: false, history: Vec::new() }
    }

    /// Reads one line (without its newline), printing `prompt` first.
    pub fn read_line(&mut self, prompt: &str) -> Line {
        if term::is_tty(STDIN) {
            if let Ok(mode) = term::TermMode::raw(STDIN) {
                let r = self.edit_line(prompt);
                drop(mode);
                return r;
            }
        }
        print_flush(prompt);
        self.plain_line()
    }

    /// A line typed with echo, as Python's `raw_input(prompt)`; `None` on EOF or Ctrl-C.
    pub fn ask(&mut self, prompt: &str) -> Option<String> {
        match self.read_line(prompt) {
            Line::Text(t) => Some(t),
            _ => None,
        }
    }

    /// A line typed without echo (getpass).
    pub fn ask_password(&mut self, prompt: &str) -> Option<String> {
        print_flush(prompt);
        let mode = if term::is_tty(STDIN) { term::TermMode::no_echo(STDIN).ok() } else { None };
        let r = self.plain_line();
        // The typed newline is not echoed (getpass writes one too).
        print_flush("\n");
        drop(mode);
        match r {
            Line::Text(t) => Some(t),
            _ => None,
        }
    }

    fn fill(&mut self) -> Result<bool, Line> {
        let mut chunk = [0u8; 4096];
        loop {
            if term::interrupted() {
                return Err(Line::Interrupted);
            }
            // Poll so that a Ctrl-C is noticed even when the read would restart.
            match term::wait_readable(STDIN, 200) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return Ok(false),
            }
            match term::read_fd(STDIN, &mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(false),
            }
        }
    }

    /// Reads up to a newline from stdin, without echo handling.
    pub fn plain_line(&mut self) -> Line {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let mut s = String::from_utf8_lossy(&line[..i]).into_owned();
                if s.ends_with('\r') {
                    s.pop();
                }
                return Line::Text(s);
            }
            if self.eof || self.buf.len() > LINE_MAX {
                if self.buf.is_empty() {
                    return Line::Eof;
                }
                let s = String::from_utf8_lossy(&self.buf).into_owned();
                self.buf.clear();
                return Line::Text(s);
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => self.eof = true,
                Err(l) => return l,
            }
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        loop {
            if !self.buf.is_empty() {
                return Some(self.buf.remove(0));
            }
            match self.fill() {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    /// The terminal line editor: left/right, backspace, up/down through history, Ctrl-A/E,
    /// Ctrl-C clears the line, Ctrl-D on an empty line is EOF.
    fn edit_line(&mut self, prompt: &str) -> Line {
        let mut line: Vec<char> = Vec::new();
        let mut cur = 0usize;
        let mut hist_pos = self.history.len();
        let mut saved: Vec<char> = Vec::new();
        let redraw = |line: &[char], cur: usize| {
            let text: String = line.iter().collect();
            let back = line.len() - cur;
            let mut s = format!("\r{prompt}{text}\x1b[K");
            if back > 0 {
                s.push_str(&format!("\x1b[{back}D"));
            }
            print_flush(&s);
        };
        print_flush(prompt);
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.next_byte() else {
                print_flush("\r\n");
                return Line::Eof;
            };
            match b {
                b'\r' | b'\n' => {
                    print_flush("\r\n");
                    return Line::Text(line.iter().collect());
                }
                3 => {
                    // Ctrl-C: drop the line, start a fresh one.
                    print_flush("^C\r\n");
                    line.clear();
                    cur = 0;
                    hist_pos = self.history.len();
                    print_flush(prompt);
                }
                // The shell's EOF handling prints the newline.
                4 if line.is_empty() => return Line::Eof,
                4 if cur < line.len() => {
                    line.remove(cur);
                    redraw(&line, cur);
                }
                1 => {
                    cur = 0;
                    redraw(&line, cur);
                }
                5 => {
                    cur = line.len();
                    redraw(&line, cur);
                }
                127 | 8 if cur > 0 => {
                    cur -= 1;
                    line.remove(cur);
                    redraw(&line, cur);
                }
                0x1b => {
                    let (Some(a), Some(k)) = (self.next_byte(), self.next_byte()) else {
                        continue;
                    };
                    if a != b'[' && a != b'O' {
                        continue;
                    }
                    match k {
                        b'D' if cur > 0 => cur -= 1,
                        b'C' if cur < line.len() => cur += 1,
                        b'H' => cur = 0,
                        b'F' => cur = line.len(),
                        b'A' if hist_pos > 0 => {
                            if hist_pos == self.history.len() {
                                saved = line.clone();
                            }
                            hist_pos -= 1;
                            line = self.history[hist_pos].chars().collect();
                            cur = line.len();
                        }
                        b'B' if hist_pos < self.history.len() => {
                            hist_pos += 1;
                            line = if hist_pos == self.history.len() {
                                saved.clone()
                            } else {
                                self.history[hist_pos].chars().collect()
                            };
                            cur = line.len();
                        }
                        b'3' => {
                            let _ = self.next_byte(); // the '~' of Delete
                            if cur < line.len() {
                                line.remove(cur);
                            }
                        }
                        _ => {}
                    }
                    redraw(&line, cur);
                }
                b if b >= 0x20 && b != 127 => {
                    pending.push(b);
                    if let Ok(s) = std::str::from_utf8(&pending) {
                        for c in s.chars() {
                            line.insert(cur, c);
                            cur += 1;
                        }
                        pending.clear();
                        redraw(&line, cur);
                    } else if pending.len() >= 4 {
                        pending.clear();
                    }
                }
                _ => {}
            }
        }
    }

    pub fn add_history(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.history.push(line.to_string());
        if self.history.len() > HISTORY_MAX {
            self.history.remove(0);
        }
    }
}

fn print_flush(s: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Reads a readline-style history file (one entry per line); a missing file is no history.
pub fn load_history(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut lines: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    let skip = lines.len().saturating_sub(HISTORY_MAX);
    lines.drain(..skip);
    lines
}

/// Writes the history file; errors are ignored, as supervisorctl does.
pub fn save_history(path: &Path, history: &[String]) {
    let mut text = history.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let _ = std::fs::write(path, text);
}

/// The shell loop: `status` first, then prompts until EOF/`quit`. Ctrl-C outside the editor ends
/// the shell with an empty line, as supervisorctl's KeyboardInterrupt does.
pub fn run(ctl: &mut Ctl) {
    term::catch_sigint();
    let history_file = ctl.settings.history_file.clone();
    if let Some(h) = &history_file {
        ctl.input.history = load_history(h);
    }
    let mut queue = vec!["status".to_string()];
    while !ctl.quit {
        let line = match queue.pop() {
            Some(l) => l,
            None => {
                term::clear_interrupt();
                let prompt = format!("{}> ", ctl.settings.prompt);
                match ctl.input.read_line(&prompt) {
                    Line::Text(t) => {
                        ctl.input.add_history(&t);
                        t
                    }
                    Line::Eof => "EOF".to_string(),
                    Line::Interrupted => {
                        ctl.output("");
                        break;
                    }
                }
            }
        };
        ctl.onecmd(&line);
        if term::interrupted() {
            ctl.output("");
            break;
        }
    }
    if let Some(h) = &history_file {
        save_history(h, &ctl.input.history);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parseline_matches_python_cmd() {
        assert_eq!(parseline("  status  a b "), (Some("status".into()), "a b".into(), "status  a b".into()));
        assert_eq!(parseline("?start"), (Some("help".into()), "start".into(), "help start".into()));
        assert_eq!(parseline("!ls"), (None, String::new(), "!ls".into()));
        assert_eq!(parseline("foo:bar"), (Some("foo".into()), ":bar".into(), "foo:bar".into()));
        assert_eq!(parseline("-x"), (Some(String::new()), "-x".into(), "-x".into()));
        assert_eq!(parseline("   "), (None, String::new(), String::new()));
    }

    #[test]
    fn history_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("minisv-hist-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("h");
        save_history(&f, &["status".into(), "tail -f x".into()]);
        assert_eq!(load_history(&f), ["status", "tail -f x"]);
        assert!(load_history(&dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

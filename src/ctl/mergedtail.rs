//! `tail -f` of several processes (minisv, Supervisor #246): which arguments ask for it, the
//! `/mergedtail` request, and the colours of the labels on a terminal.
//!
//! supervisorctl refuses what this accepts (`tail -f a b` is `Error: bad channel 'b'`, a group
//! or `all` is a 404 of `/logtail`), so nothing that worked changes: `tail -f NAME [CHANNEL]`
//! of one process still streams its `/logtail`, and `tail` without `-f` is supervisorctl's.

use crate::rpc::web::quote;

/// The names and the channel of `tail -f <args>` if it follows several logs: more than one
/// name, a group (`group:*`) or `all`, optionally followed by `stdout` or `stderr` (which
/// keeps only that channel of each). None: one process, as supervisorctl reads it.
pub fn merged_request<'a>(args: &[&'a str]) -> Option<(Vec<&'a str>, Option<&'static str>)> {
    let (channel, names) = match args.split_last() {
        Some((last, names)) if !names.is_empty() => match last.to_lowercase().as_str() {
            "stdout" => (Some("stdout"), names),
            "stderr" => (Some("stderr"), names),
            _ => (None, args),
        },
        _ => (None, args),
    };
    crate::rpc::mergedtail::several(names).then(|| (names.to_vec(), channel))
}

/// The request for the stream of `names` (and only `channel`, if given).
pub fn path(names: &[&str], channel: Option<&str>) -> String {
    let mut query: Vec<String> = names.iter().map(|n| format!("name={}", quote(n))).collect();
    if let Some(c) = channel {
        query.push(format!("channel={c}"));
    }
    format!("/mergedtail?{}", query.join("&"))
}

/// Whether to colour: stdout is a terminal and `NO_COLOR` is not set (https://no-color.org).
pub fn colour_wanted() -> bool {
    super::term::is_tty(1) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Colours for names: readable on dark and light terminals, red left out (it marks stderr).
const PALETTE: [&str; 10] = ["32", "33", "34", "35", "36", "92", "93", "94", "95", "96"];

/// The colour of a name, the same in every run (FNV-1a of its bytes).
pub fn colour_of(name: &[u8]) -> &'static str {
    let hash = name.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    PALETTE[hash as usize % PALETTE.len()]
}

/// How far a line's start is searched for the end of its label.
const MAX_LABEL: usize = 1024;

/// Colours the label at the start of each line of the stream (`name (stderr) | text`): the
/// name in its colour, `(stderr)` in red. Pieces may end anywhere but inside a label (the daemon
/// sends labels whole).
pub struct Painter {
    colour: bool,
    line_start: bool,
}

impl Painter {
    pub fn new(colour: bool) -> Painter {
        Painter { colour, line_start: true }
    }

    /// Whether the last piece ended a line (then nothing needs ending).
    pub fn at_line_start(&self) -> bool {
        self.line_start
    }

    pub fn paint(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.colour {
            out.extend_from_slice(data);
            if let Some(&last) = data.last() {
                self.line_start = last == b'\n';
            }
            return;
        }
        let mut rest = data;
        // Bounded: each turn consumes a label or up to a newline.
        while !rest.is_empty() {
            if self.line_start {
                let head = &rest[..rest.len().min(MAX_LABEL)];
                if let Some(k) = head.windows(3).position(|w| w == b" | ") {
                    paint_label(&rest[..k], out);
                    out.extend_from_slice(b" | ");
                    rest = &rest[k + 3..];
                    self.line_start = false;
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(k) => {
                    out.extend_from_slice(&rest[..=k]);
                    rest = &rest[k + 1..];
                    self.line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                    self.line_start = false;
                }
            }
        }
    }
}

fn paint_label(label: &[u8], out: &mut Vec<u8>) {
    let text_len = label.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let (text, pad) = label.split_at(text_len);
    let (name, stderr) = match text.strip_suffix(b" (stderr)") {
        Some(name) => (name, true),
        None => (text, false),
    };
    out.extend_from_slice(format!("\x1b[{}m", colour_of(name)).as_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(b"\x1b[0m");
    if stderr {
        out.extend_from_slice(b" \x1b[31m(stderr)\x1b[0m");
    }
    out.extend_from_slice(pad);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_names_a_group_or_all_ask_for_the_merged_stream() {
        assert_eq!(merged_request(&["web"]), None, "one process: its /logtail, as supervisorctl");
        assert_eq!(merged_request(&["web", "stderr"]), None);
        assert_eq!(merged_request(&["web", "STDOUT"]), None);
        assert_eq!(merged_request(&["web", "worker"]), Some((vec!["web", "worker"], None)));
        assert_eq!(merged_request(&["web", "worker:*", "stderr"]), Some((vec!["web", "worker:*"], Some("stderr"))));
        assert_eq!(merged_request(&["all"]), Some((vec!["all"], None)));
        assert_eq!(merged_request(&["all", "stdout"]), Some((vec!["all"], Some("stdout"))));
        assert_eq!(merged_request(&["grp:*"]), Some((vec!["grp:*"], None)));
        assert_eq!(merged_request(&["grp:"]), Some((vec!["grp:"], None)));
        assert_eq!(merged_request(&["grp:one"]), None);
        assert_eq!(merged_request(&[]), None);
    }

    #[test]
    fn the_request_quotes_every_name() {
        assert_eq!(path(&["web", "grp:*"], None), "/mergedtail?name=web&name=grp%3A%2A");
        assert_eq!(path(&["a b"], Some("stderr")), "/mergedtail?name=a%20b&channel=stderr");
    }

    fn painted(pieces: &[&str]) -> String {
        let mut p = Painter::new(true);
        let mut out = Vec::new();
        for piece in pieces {
            p.paint(piece.as_bytes(), &mut out);
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn labels_get_their_name_colour_and_stderr_is_red() {
        let web = colour_of(b"web");
        assert_eq!(colour_of(b"web"), web, "the same colour every time");
        assert_eq!(
            painted(&["web          | GET / | 200\nweb (stderr) | slow\n"]),
            format!(
                "\x1b[{web}mweb\x1b[0m          | GET / | 200\n\x1b[{web}mweb\x1b[0m \x1b[31m(stderr)\x1b[0m | slow\n"
            )
        );
    }

    #[test]
    fn only_line_starts_are_labels() {
        let a = colour_of(b"a");
        // An open line continued in the next piece is text, whatever it holds.
        assert_eq!(
            painted(&["a | Password: ", "x | y\n", "a | z\n"]),
            format!("\x1b[{a}ma\x1b[0m | Password: x | y\n\x1b[{a}ma\x1b[0m | z\n")
        );
    }

    #[test]
    fn without_colour_the_stream_is_unchanged() {
        let mut p = Painter::new(false);
        let mut out = Vec::new();
        p.paint(b"a | one\na | tw", &mut out);
        assert!(!p.at_line_start());
        p.paint(b"o\n", &mut out);
        assert!(p.at_line_start());
        assert_eq!(out, b"a | one\na | two\n");
    }

    #[test]
    fn names_spread_over_the_palette() {
        let names: Vec<String> = (0..50).map(|i| format!("worker:worker_{i:02}")).collect();
        let colours: std::collections::HashSet<&str> = names.iter().map(|n| colour_of(n.as_bytes())).collect();
        assert!(colours.len() >= 6, "{colours:?}");
    }
}

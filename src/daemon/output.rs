//! What happens to a child's output between its pipe and its log (reference 3.2, 3.6).

/// Supervisor's `strip_escapes`: removes `ESC[` up to and including the first byte in
/// `HfABCDRsuJKhlpm`. Returns the input unchanged (borrowed) when it has no escape.
pub fn strip_ansi(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const ESC: &[u8] = b"\x1b[";
    const ENDS: &[u8] = b"HfABCDRsuJKhlpm";
    if !data.windows(2).any(|w| w == ESC) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(ESC) {
            match data[i + 2..].iter().position(|b| ENDS.contains(b)) {
                Some(end) => i += 2 + end + 1,
                // An unfinished sequence: Supervisor drops the rest of the chunk.
                None => break,
            }
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Puts `prefix` before every line of `data` (`log_prefix`/`log_timestamps`, Supervisor issue
/// #553). `at_line_start` carries over between reads, so a line split across two reads gets
/// one prefix, at its start.
pub fn prefix_lines(data: &[u8], prefix: &[u8], at_line_start: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + prefix.len() * 4);
    for &b in data {
        if *at_line_start {
            out.extend_from_slice(prefix);
            *at_line_start = false;
        }
        out.push(b);
        if b == b'\n' {
            *at_line_start = true;
        }
    }
    out
}

/// Splits output into syslog lines: Supervisor logs each line of a chunk, the trailing
/// newline stripped.
pub fn syslog_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_color_codes_only() {
        assert_eq!(&*strip_ansi(b"\x1b[31mred\x1b[0m plain"), b"red plain");
        assert_eq!(&*strip_ansi(b"\x1b[2J\x1b[1;1Hhome"), b"home");
        assert_eq!(&*strip_ansi(b"no escapes"), b"no escapes");
        assert_eq!(&*strip_ansi(b"\x1b(B keeps non-CSI"), b"\x1b(B keeps non-CSI");
    }

    #[test]
    fn prefix_goes_before_each_line_even_when_split_across_reads() {
        let mut start = true;
        let mut out = prefix_lines(b"one\ntw", b"[a] ", &mut start);
        out.extend(prefix_lines(b"o\n\nthree", b"[a] ", &mut start));
        assert_eq!(out, b"[a] one\n[a] two\n[a] \n[a] three");
        assert!(!start);
        assert_eq!(prefix_lines(b"", b"x", &mut start), b"");
    }

    #[test]
    fn syslog_lines_drop_the_final_newline() {
        let lines: Vec<&[u8]> = syslog_lines(b"a\nb\n").collect();
        assert_eq!(lines, vec![&b"a"[..], &b"b"[..]]);
    }
}

use super::*;

fn parse(text: &str) -> Result<Ini, IniError> {
    let mut ini = Ini::new();
    ini.read(text, Path::new("/etc/test.conf"))?;
    Ok(ini)
}

fn get(ini: &Ini, section: &str, key: &str) -> Option<String> {
    ini.get(section, key).map(|v| v.text.clone())
}

#[test]
fn inline_semicolon_needs_preceding_whitespace() {
    let ini = parse("[s]\na=/bin/echo a;b ; real comment\nb=/x.pid;nospace\nc=/bin/cat g1 #notcomment\n").unwrap();
    assert_eq!(get(&ini, "s", "a").as_deref(), Some("/bin/echo a;b"));
    assert_eq!(get(&ini, "s", "b").as_deref(), Some("/x.pid;nospace"));
    assert_eq!(get(&ini, "s", "c").as_deref(), Some("/bin/cat g1"));
}

#[test]
fn commented_out_keys_stay_comments() {
    let ini =
        parse("[unix_http_server]\nfile=/tmp/s.sock   ; the path\n;chmod=0700                 ; socket file mode\n")
            .unwrap();
    assert_eq!(get(&ini, "unix_http_server", "chmod"), None);
    assert_eq!(get(&ini, "unix_http_server", "file").as_deref(), Some("/tmp/s.sock"));
}

#[test]
fn continuation_lines_join_with_newline_and_keep_blank_lines() {
    let ini = parse("[s]\na = one\n  two\n\n  three\n\n\nb: x\n").unwrap();
    assert_eq!(get(&ini, "s", "a").as_deref(), Some("one\ntwo\n\nthree"));
    assert_eq!(get(&ini, "s", "b").as_deref(), Some("x"));
}

#[test]
fn first_separator_wins_and_keys_are_lowercased() {
    let ini = parse("[s]\nURL: http://x:80/a=b\nKey = a=b\nempty=\n").unwrap();
    assert_eq!(get(&ini, "s", "url").as_deref(), Some("http://x:80/a=b"));
    assert_eq!(get(&ini, "s", "key").as_deref(), Some("a=b"));
    assert_eq!(get(&ini, "s", "empty").as_deref(), Some(""));
}

#[test]
fn duplicate_sections_merge_and_later_keys_win() {
    let ini = parse("[p]\ncommand=a\nx=1\n[q]\n[p]\ncommand=b\n").unwrap();
    assert_eq!(ini.sections.len(), 2);
    assert_eq!(get(&ini, "p", "command").as_deref(), Some("b"));
    assert_eq!(ini.get("p", "command").map(|v| v.span.line), Some(6));
    assert_eq!(get(&ini, "p", "x").as_deref(), Some("1"));
}

#[test]
fn default_section_keys_appear_in_every_section() {
    let ini = parse("[DEFAULT]\nuser=nobody\n[a]\n[b]\nuser=root\n").unwrap();
    assert!(!ini.has_section("DEFAULT"));
    assert_eq!(get(&ini, "a", "user").as_deref(), Some("nobody"));
    assert_eq!(get(&ini, "b", "user").as_deref(), Some("root"));
}

#[test]
fn section_names_are_case_sensitive() {
    let ini = parse("[Program:a]\nx=1\n").unwrap();
    assert!(!ini.has_section("program:a"));
    assert!(ini.has_section("Program:a"));
}

#[test]
fn garbage_lines_are_all_reported_in_plain_words() {
    let err = parse("[s]\na=1\ngarbage line\nb=2\nmore\n").unwrap_err();
    let expected =
        "expected a [section] header, key = value (or key: value), a comment, or an indented continuation line";
    assert_eq!(
        err.to_string(),
        format!("line 3: cannot read 'garbage line'; {expected}\nline 5: cannot read 'more'; {expected}")
    );
    assert_eq!(err.span().line, 3);
}

#[test]
fn key_before_any_section_is_an_error() {
    let err = parse("foo=bar\n[s]\n").unwrap_err();
    assert_eq!(err.to_string(), "line 1: 'foo=bar' comes before any [section] header");
}

#[test]
fn python_inline_comment_rounds_are_copied() {
    // Python looks at the first ';' and first '#' together: the ';' at column 3 qualifies in
    // round one, so the earlier qualifying '#' found only in round two is never seen... and
    // here the reverse: both rounds are needed before ' #' qualifies.
    let ini = parse("[s]\na=x#y #z;w\n").unwrap();
    assert_eq!(get(&ini, "s", "a").as_deref(), Some("x#y"));
}

// ---- differential test against Python's configparser ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn random_file(rng: &mut Rng) -> String {
    const HEADERS: &[&str] = &[
        "[program:a]",
        "[program:b]",
        "[DEFAULT]",
        "[Program:A]",
        "[x] trailing",
        "[ sp ]",
        "[a]b]",
        "  [program:a]",
        "[supervisord]",
    ];
    const KEYS: &[&str] = &["command", "Key", "  key2 ", "a.b", "USER", "x y", "k\t"];
    const SEPS: &[&str] = &["=", " = ", ":", " : ", "=:", "\t=\t", ": ="];
    const VALUES: &[&str] = &[
        "v",
        "a;b",
        "a ;c",
        "a #c",
        "a#b",
        "",
        "x\t;y",
        "%(here)s",
        "\"q ;\"",
        "a = b",
        "sh -c 'a ; b'",
        "x # y ; z",
        "x;#y #z",
        "  spaced  ",
        "tail\t",
        "#start",
        ";start",
        "a:b",
    ];
    const OTHER: &[&str] = &[
        "; comment",
        "# comment",
        "   ; indented comment",
        "",
        "   ",
        "\t",
        "  cont",
        "\tcont ; c",
        "    cont#x",
        "  ;cont comment",
        "  # x",
    ];
    let mut out = String::new();
    if rng.chance(3) {
        out.push_str("foo=bar\n");
    } else if rng.chance(95) {
        out.push_str(rng.pick(HEADERS));
        out.push_str("\nk=v\n");
    }
    let lines = 3 + rng.next() % 14;
    for _ in 0..lines {
        let roll = rng.next() % 100;
        if roll < 15 {
            out.push_str(rng.pick(HEADERS));
        } else if roll < 60 {
            if rng.chance(15) {
                out.push_str(rng.pick(&[" ", "  ", "\t"]));
            }
            out.push_str(rng.pick(KEYS));
            out.push_str(rng.pick(SEPS));
            out.push_str(rng.pick(VALUES));
        } else if roll < 98 {
            out.push_str(rng.pick(OTHER));
        } else {
            out.push_str(rng.pick(&["garbage", "=novalue"]));
        }
        out.push_str(rng.pick(&["\n", "\n", "\n", "\r\n"]));
    }
    if rng.chance(20) {
        out.push_str("last=no newline");
    }
    out
}

fn render(files: &[PathBuf]) -> String {
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    super::differential::dump(texts.iter().map(String::as_str).zip(files.iter().map(PathBuf::as_path)))
}

#[test]
fn differential_against_python_configparser() {
    // The test command needs Python 3 (README): without it this test fails, it does not pass.
    let python = std::process::Command::new("python3").arg("-c").arg("pass").status();
    assert!(
        python.as_ref().is_ok_and(|s| s.success()),
        "python3 is needed for the differential test against configparser: {python:?}"
    );
    let dir = std::env::temp_dir().join(format!("minisv-ini-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases: Vec<Vec<PathBuf>> = Vec::new();
    for i in 0..400 {
        let count = if rng.chance(20) { 2 } else { 1 };
        let mut files = Vec::new();
        for j in 0..count {
            let path = dir.join(format!("case{i}-{j}.conf"));
            std::fs::write(&path, random_file(&mut rng)).unwrap();
            files.push(path);
        }
        cases.push(files);
    }
    let args: Vec<String> = cases
        .iter()
        .map(|files| files.iter().map(|f| f.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","))
        .collect();
    let output =
        std::process::Command::new("python3").arg("-c").arg(super::differential::PYTHON).args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected: Vec<&str> = stdout.split('\0').collect();
    let mut errors = 0;
    let mut mismatches = Vec::new();
    for (files, python) in cases.iter().zip(expected.iter()) {
        let ours = render(files);
        if ours.starts_with("ERR") {
            errors += 1;
        }
        if ours != *python {
            let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
            mismatches.push(format!("files {texts:?}\n--- python\n{python}--- ours\n{ours}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(mismatches.is_empty(), "{} mismatches, first:\n{}", mismatches.len(), mismatches[0]);
    eprintln!("{} cases, {errors} parse errors", cases.len());
    // The generator must exercise both outcomes.
    assert!(errors > 5 && errors < 250, "{errors} error cases");
}

#[test]
fn py_repr_escapes_noncharacters_like_python() {
    // repr('\uffff'), repr('\ufdd0'), repr('\U0001fffe') in Python 3.
    assert_eq!(super::py_repr("a\u{ffff}"), "'a\\uffff'");
    assert_eq!(super::py_repr("\u{fdd0}"), "'\\ufdd0'");
    assert_eq!(super::py_repr("\u{1fffe}"), "'\\U0001fffe'");
    assert_eq!(super::py_repr("\u{fdcf}é"), "'\u{fdcf}é'");
}

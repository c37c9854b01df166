//! The INI reader's differential check against Python's `configparser` (what Supervisor
//! reads configs with): both sides print what they read in one format, and the outputs must be
//! equal. Used by the unit tests on generated files and by the fuzz smoke test on mutated seeds.

use std::path::Path;

use super::{py_repr, Ini, IniError};

/// The Python side: each argument is one case, a comma-separated list of files read in order
/// into one parser configured as Supervisor's; each case's dump is followed by a NUL.
pub const PYTHON: &str = r#"
import configparser, sys
def esc(s):
    return s.replace('\\', '\\\\').replace('\n', '\\n').replace('\t', '\\t').replace('\r', '\\r')
for case in sys.argv[1:]:
    p = configparser.RawConfigParser(inline_comment_prefixes=(';', '#'), strict=False)
    out = []
    try:
        for f in case.split(','):
            with open(f, encoding='utf-8') as fp:
                p.read_file(fp)
        for s in p.sections():
            out.append('S ' + esc(s))
            for k, v in sorted(p.items(s)):
                out.append('K %s=%s' % (esc(k), esc(v)))
    except configparser.MissingSectionHeaderError as e:
        out = ['ERR H %d' % e.lineno]
    except configparser.ParsingError as e:
        out = ['ERR P ' + esc(' '.join('%d:%s' % (n, l) for n, l in e.errors))]
    sys.stdout.write(''.join(x + '\n' for x in out))
    sys.stdout.write('\x00')
"#;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t").replace('\r', "\\r")
}

/// Our side of one case: the files' texts, read in order into one `Ini`, dumped as `PYTHON` does.
pub fn dump<'a>(files: impl IntoIterator<Item = (&'a str, &'a Path)>) -> String {
    let mut ini = Ini::new();
    for (text, path) in files {
        if let Err(e) = ini.read(text, path) {
            return match e {
                IniError::Parsing { lines, .. } => {
                    let parts: Vec<String> = lines.iter().map(|(n, l)| format!("{n}:{}", py_repr(l))).collect();
                    format!("ERR P {}\n", esc(&parts.join(" ")))
                }
                IniError::NoSectionHeader { line, .. } => format!("ERR H {line}\n"),
            };
        }
    }
    let mut out = String::new();
    for section in &ini.sections {
        out.push_str(&format!("S {}\n", esc(&section.name)));
        let mut items: Vec<(String, String)> =
            ini.items(&section.name).into_iter().map(|(k, v)| (k.to_string(), v.text.clone())).collect();
        items.sort();
        for (k, v) in items {
            out.push_str(&format!("K {}={}\n", esc(&k), esc(&v)));
        }
    }
    out
}

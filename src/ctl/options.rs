//! Command-line options of `minisv ctl` (reference 0.2), parsed as Python's `getopt` does:
//! options stop at the first non-option word; long options may be abbreviated.

/// Printed by `-h`/`--help`.
pub const USAGE: &str = "\
minisv ctl -- control applications run by minisv from the cmd line.

Usage: minisv ctl [options] [action [arguments]]

Options:
-c/--configuration FILENAME -- configuration file path (searches if not given)
-h/--help -- print usage message and exit
-i/--interactive -- start an interactive shell after executing commands
-s/--serverurl URL -- URL on which the server is listening
     (default \"http://localhost:9001\").
-u/--username USERNAME -- username to use for authentication with server
-p/--password PASSWORD -- password to use for authentication with server
-r/--history_file FILENAME -- keep a command history in FILENAME

action [arguments] -- see below

Actions are commands like \"tail\" or \"stop\".  If -i is specified or no action is
specified on the command line, a \"shell\" interpreting actions typed
interactively is started.  Use the action \"help\" to find out about available
actions.
";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub configuration: Option<String>,
    pub interactive: bool,
    pub serverurl: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub history_file: Option<String>,
    /// The action and its arguments.
    pub args: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Options),
    Help,
}

/// (short letter, long name, takes a value)
const SPECS: &[(char, &str, bool)] = &[
    ('c', "configuration", true),
    ('h', "help", false),
    ('i', "interactive", false),
    ('s', "serverurl", true),
    ('u', "username", true),
    ('p', "password", true),
    ('r', "history_file", true),
];

/// Prints supervisorctl's two usage lines to stderr and returns exit status 2.
pub fn usage_error(msg: &str) -> i32 {
    eprintln!("Error: {msg}");
    eprintln!("For help, use minisv ctl -h");
    2
}

/// Python's `datatypes.url`: a scheme and a netloc or path.
fn check_url(v: &str) -> Result<(), String> {
    let ok = match v.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.trim_start_matches('/').is_empty()
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("value '{v}' is not a URL"))
    }
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut found: Vec<(String, char, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let exact = SPECS.iter().find(|s| s.1 == name);
            let matches: Vec<_> = SPECS.iter().filter(|s| s.1.starts_with(name)).collect();
            let spec = match (exact, matches.len()) {
                (Some(s), _) => s,
                (None, 1) => matches[0],
                (None, 0) => return Err(format!("option --{name} not recognized")),
                (None, _) => return Err(format!("option --{name} not a unique prefix")),
            };
            let value = if spec.2 {
                match value {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        Some(args.get(i).ok_or_else(|| format!("option --{} requires argument", spec.1))?.clone())
                    }
                }
            } else {
                if value.is_some() {
                    return Err(format!("option --{} must not have an argument", spec.1));
                }
                None
            };
            found.push((format!("--{}", spec.1), spec.0, value));
            i += 1;
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let letters: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < letters.len() {
                let l = letters[j];
                let spec = SPECS.iter().find(|s| s.0 == l).ok_or_else(|| format!("option -{l} not recognized"))?;
                if spec.2 {
                    let rest: String = letters[j + 1..].iter().collect();
                    let value = if rest.is_empty() {
                        i += 1;
                        args.get(i).ok_or_else(|| format!("option -{l} requires argument"))?.clone()
                    } else {
                        rest
                    };
                    found.push((format!("-{l}"), l, Some(value)));
                    break;
                }
                found.push((format!("-{l}"), l, None));
                j += 1;
            }
            i += 1;
            continue;
        }
        break;
    }
    let mut o = Options { args: args[i..].to_vec(), ..Options::default() };
    for (shown, letter, value) in found {
        if letter == 'h' {
            return Ok(Parsed::Help);
        }
        if letter == 's' {
            let v = value.as_deref().unwrap_or("");
            check_url(v).map_err(|m| format!("invalid value for {shown} '{v}': {m}"))?;
        }
        let conflict = |set: bool| {
            if set {
                Err(format!("conflicting command line option '{shown}'"))
            } else {
                Ok(())
            }
        };
        match letter {
            'c' => {
                conflict(o.configuration.is_some())?;
                o.configuration = value;
            }
            'i' => {
                conflict(o.interactive)?;
                o.interactive = true;
            }
            's' => {
                conflict(o.serverurl.is_some())?;
                o.serverurl = value;
            }
            'u' => {
                conflict(o.username.is_some())?;
                o.username = value;
            }
            'p' => {
                conflict(o.password.is_some())?;
                o.password = value;
            }
            'r' => {
                conflict(o.history_file.is_some())?;
                o.history_file = value;
            }
            _ => {}
        }
    }
    Ok(Parsed::Run(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_stop_at_the_action() {
        let Ok(Parsed::Run(o)) = run(&["-s", "unix:///x", "-uBob", "--password=pw", "-i", "tail", "-f", "x"]) else {
            panic!()
        };
        assert_eq!(o.serverurl.as_deref(), Some("unix:///x"));
        assert_eq!(o.username.as_deref(), Some("Bob"));
        assert_eq!(o.password.as_deref(), Some("pw"));
        assert!(o.interactive);
        assert_eq!(o.args, ["tail", "-f", "x"]);
    }

    #[test]
    fn long_options_take_prefixes_and_separate_values() {
        let Ok(Parsed::Run(o)) = run(&["--server", "http://h:1", "--history_file=/h", "--conf", "c"]) else { panic!() };
        assert_eq!(o.serverurl.as_deref(), Some("http://h:1"));
        assert_eq!(o.history_file.as_deref(), Some("/h"));
        assert_eq!(o.configuration.as_deref(), Some("c"));
        assert_eq!(run(&["-h", "status"]), Ok(Parsed::Help));
        assert_eq!(run(&["--he"]), Ok(Parsed::Help));
    }

    #[test]
    fn option_errors_use_getopt_wording() {
        assert_eq!(run(&["-x"]), Err("option -x not recognized".into()));
        assert_eq!(run(&["-s"]), Err("option -s requires argument".into()));
        assert_eq!(run(&["--bogus"]), Err("option --bogus not recognized".into()));
        assert_eq!(run(&["--help=1"]), Err("option --help must not have an argument".into()));
        assert_eq!(run(&["-s", "nourl"]), Err("invalid value for -s 'nourl': value 'nourl' is not a URL".into()));
        assert_eq!(run(&["-u", "a", "-u", "b"]), Err("conflicting command line option '-u'".into()));
    }
}

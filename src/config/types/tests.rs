//! Expected values and messages were checked against Supervisor 4.3's datatypes.py.
use super::*;

#[test]
fn boolean_accepts_supervisor_words_in_any_case() {
    assert_eq!(boolean("Yes"), Ok(true));
    assert_eq!(boolean("ON"), Ok(true));
    assert_eq!(boolean("0"), Ok(false));
    assert_eq!(boolean("maybe"), Err("not a valid boolean value: 'maybe'".to_string()));
}

#[test]
fn integer_follows_python_int_rules() {
    assert_eq!(integer("+5"), Ok(5));
    assert_eq!(integer(" 7 "), Ok(7));
    assert_eq!(integer("1_000"), Ok(1000));
    assert_eq!(integer("010"), Ok(10));
    assert_eq!(integer("-1"), Ok(-1));
    for bad in ["1__0", "abc", "0x10", "-_1", "", "1_"] {
        assert_eq!(integer(bad), Err(format!("'{bad}' is not a whole number")));
    }
}

#[test]
fn byte_size_takes_kb_mb_gb_suffixes() {
    assert_eq!(byte_size("100 MB"), Ok(100 * 1024 * 1024));
    assert_eq!(byte_size("5kb"), Ok(5120));
    assert_eq!(byte_size("1GB"), Ok(1 << 30));
    assert_eq!(byte_size("0"), Ok(0));
    assert_eq!(byte_size("-1"), Ok(0));
    assert_eq!(byte_size("1.5MB"), Err("'1.5MB' is not a whole number of bytes, KB, MB or GB".to_string()));
    assert_eq!(byte_size("10XB"), Err("'10XB' is not a whole number of bytes, KB, MB or GB".to_string()));
}

#[test]
fn octal_accepts_python_int_base_8() {
    assert_eq!(octal("022"), Ok(0o22));
    assert_eq!(octal("0o22"), Ok(0o22));
    assert_eq!(octal("+7"), Ok(7));
    assert_eq!(octal("8"), Err("8 can not be converted to an octal type".to_string()));
}

#[test]
fn signal_names_and_numbers() {
    assert_eq!(signal("TERM"), Ok(15));
    assert_eq!(signal("sigusr1"), Ok(10));
    assert_eq!(signal("9"), Ok(9));
    assert_eq!(signal("0"), Ok(0));
    assert_eq!(signal("rtmin"), Ok(34));
    assert_eq!(signal("32"), Err("value '32' is not a valid signal number".to_string()));
    assert_eq!(signal("FOO"), Err("value 'FOO' is not a valid signal name".to_string()));
    assert_eq!(signal_name(15), Some("SIGTERM"));
    assert_eq!(signal_name(6), Some("SIGABRT"));
    assert_eq!(signal_name(32), None);
}

#[test]
fn every_signal_name_round_trips() {
    for (name, num) in SIGNALS {
        assert_eq!(signal_number(name), Some(*num));
        assert_eq!(signal_number(&name[3..].to_lowercase()), Some(*num));
        assert!(signal_name(*num).is_some());
    }
}

#[test]
fn exitcodes_are_ints_in_byte_range() {
    assert_eq!(exitcodes("0, 2"), Ok(vec![0, 2]));
    assert_eq!(exitcodes(""), Ok(vec![]));
    assert_eq!(exitcodes("0,256"), Err("not a valid list of exit codes: '0,256'".to_string()));
    assert_eq!(exitcodes("0,"), Err("not a valid list of exit codes: '0,'".to_string()));
}

#[test]
fn autorestart_values() {
    assert_eq!(auto_restart("TRUE"), Ok(AutoRestart::Always));
    assert_eq!(auto_restart("off"), Ok(AutoRestart::Never));
    assert_eq!(auto_restart("unexpected"), Ok(AutoRestart::Unexpected));
    assert_eq!(auto_restart("Sometimes"), Err("invalid 'autorestart' value 'sometimes'".to_string()));
}

#[test]
fn log_level_rejects_warning() {
    assert_eq!(log_level("WARN"), Ok(LogLevel::Warn));
    assert_eq!(log_level("blather"), Ok(LogLevel::Blather));
    assert_eq!(log_level("warning"), Err("bad logging level name 'warning'".to_string()));
}

#[test]
fn inet_address_forms() {
    assert_eq!(inet_address("127.0.0.1:9001"), Ok(("127.0.0.1".to_string(), 9001)));
    assert_eq!(inet_address("*:80"), Ok((String::new(), 80)));
    assert_eq!(inet_address(":80"), Ok((String::new(), 80)));
    assert_eq!(inet_address("9001"), Ok((String::new(), 9001)));
    assert_eq!(inet_address("LocalHost:1"), Ok(("localhost".to_string(), 1)));
    assert_eq!(inet_address("abc"), Err("not a valid port number: 'abc' ".to_string()));
    assert_eq!(inet_address("99999"), Err("not a valid port number: '99999' ".to_string()));
    assert_eq!(inet_address("x:"), Err("no port number specified in ''".to_string()));
    assert_eq!(inet_address("Host:0"), Err("0 is below lower bound (1)".to_string()));
}

#[test]
fn url_needs_scheme_and_netloc_or_path() {
    for good in ["http://localhost:9001", "unix:///tmp/s", "localhost:9001"] {
        assert_eq!(url(good), Ok(good.to_string()));
    }
    for bad in ["foo", "http:", "http://", "1http://x"] {
        assert_eq!(url(bad), Err(format!("value '{bad}' is not a URL")));
    }
}

#[test]
fn logfile_names() {
    assert_eq!(logfile_name("NONE"), Ok(LogFileName::None));
    assert_eq!(logfile_name("Auto"), Ok(LogFileName::Auto));
    assert_eq!(logfile_name("syslog"), Ok(LogFileName::Syslog));
    assert_eq!(logfile_name("x.log"), Ok(LogFileName::Path(PathBuf::from("x.log"))));
    assert_eq!(
        logfile_name("/nonexistent/dir/x.log"),
        Err("The directory named as part of the path /nonexistent/dir/x.log does not exist".to_string())
    );
}

#[test]
fn user_resolves_root_by_name_and_uid() {
    let root = user("root").unwrap();
    assert_eq!((root.uid, root.gid, root.name.as_str()), (0, 0, "root"));
    assert_eq!(user("0").map(|u| u.name), Ok("root".to_string()));
    assert_eq!(user("nosuchuser"), Err("Invalid user name nosuchuser".to_string()));
    assert_eq!(user("4000000"), Err("Invalid user id 4000000".to_string()));
    assert_eq!(user_group("root:root"), Ok((0, 0)));
    assert_eq!(user_group("root"), Ok((0, u32::MAX)));
    assert_eq!(user_group("root:nogroupx"), Err("Invalid user:group definition root:nogroupx".to_string()));
}

#[test]
fn names_with_space_colon_or_slash_are_invalid() {
    assert_eq!(process_or_group_name(" web "), Ok("web".to_string()));
    assert_eq!(process_or_group_name("a b"), Err("Invalid name: 'a b' because of character: ' '".to_string()));
    assert_eq!(process_or_group_name("a/b"), Err("Invalid name: 'a/b' because of character: '/'".to_string()));
}

fn env(s: &str) -> Result<Vec<(String, String)>, String> {
    environment(s).map(|e| e.pairs)
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn environment_pairs_follow_supervisor_shlex() {
    assert_eq!(env("A=1,B=2"), Ok(pairs(&[("A", "1"), ("B", "2")])));
    assert_eq!(env("A=\"1,2\", B='x y'"), Ok(pairs(&[("A", "1,2"), ("B", "x y")])));
    assert_eq!(env("A = 1 , b=2"), Ok(pairs(&[("A", "1"), ("b", "2")])));
    assert_eq!(env("X=a,X=b"), Ok(pairs(&[("X", "b")])));
    assert_eq!(env("A=é"), Ok(pairs(&[("A", "é")])));
    assert_eq!(env(""), Ok(vec![]));
    for bad in ["A=\"1\" B=\"2\"", "A=1,B", "A=x#c\nB=2", "K=a=b", "P=/usr/bin:$PATH"] {
        assert_eq!(env(bad), Err(format!("Unexpected end of key/value pairs in value '{bad}'")));
    }
    assert_eq!(env("A=\"unterminated"), Err("No closing quotation".to_string()));
}

#[test]
fn environment_unquoted_space_drops_the_rest_and_is_reported() {
    let parsed = environment("A=with space").unwrap();
    assert_eq!(parsed.pairs, pairs(&[("A", "with")]));
    assert_eq!(parsed.skipped, pairs(&[("A", "space")]));
}

#[test]
fn probes_are_addresses_urls_or_commands() {
    use crate::config::model::Probe;
    assert_eq!(probe("127.0.0.1:8080"), Ok(Probe::Tcp("127.0.0.1:8080".parse().unwrap())));
    assert_eq!(probe("localhost:5432"), Ok(Probe::Tcp("127.0.0.1:5432".parse().unwrap())));
    assert_eq!(probe("tcp://[::1]:6379"), Ok(Probe::Tcp("[::1]:6379".parse().unwrap())));
    assert_eq!(
        probe("http://127.0.0.1:8080/healthz"),
        Ok(Probe::Http {
            addr: "127.0.0.1:8080".parse().unwrap(),
            host: "127.0.0.1:8080".into(),
            path: "/healthz".into()
        })
    );
    assert_eq!(
        probe("http://localhost"),
        Ok(Probe::Http { addr: "127.0.0.1:80".parse().unwrap(), host: "localhost".into(), path: "/".into() })
    );
    assert_eq!(probe("pg_isready -h /run/postgresql"), Ok(Probe::Command("pg_isready -h /run/postgresql".into())));
    assert_eq!(probe("/usr/bin/check"), Ok(Probe::Command("/usr/bin/check".into())));
    assert!(probe("http://10.0.0.1:80/").unwrap_err().contains("not a loopback address"));
    assert!(probe("https://127.0.0.1/").unwrap_err().contains("https is not supported"));
    assert!(probe("db.example:5432").unwrap_err().contains("not an IP address or localhost"));
    assert!(probe("127.0.0.1:99999").unwrap_err().contains("bad port"));
    assert!(probe("  ").is_err());
}

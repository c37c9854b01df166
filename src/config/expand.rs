//! `%(name)s` expansion: Python's `str % dict`, with its format specs (`%(process_num)02d`,
//! `%(x)-5s`, `%%`, ...) and Supervisor's two error texts (reference 1.2).

use std::collections::BTreeMap;

use super::ini::py_repr;

/// A value that can be expanded: Supervisor's dicts hold strings and ints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpValue {
    Str(String),
    Int(i64),
}

/// The names available to one value, sorted (the error message lists them in this order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names(BTreeMap<String, ExpValue>);

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    pub fn set_str(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), ExpValue::Str(value.into()));
    }

    pub fn set_int(&mut self, name: impl Into<String>, value: i64) {
        self.0.insert(name.into(), ExpValue::Int(value));
    }

    pub fn insert(&mut self, name: String, value: ExpValue) {
        self.0.insert(name, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ExpValue)> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&ExpValue> {
        self.0.get(name)
    }

    /// Adds every `ENV_<key>` for these environment pairs.
    pub fn add_env<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (k, v) in pairs {
            self.set_str(format!("ENV_{k}"), v);
        }
    }
}

/// Expands `text` like Python's `text % names`. `what` names the value in the message
/// (`program:a.command`). The error is Supervisor's text.
pub fn expand(text: &str, names: &Names, what: &str) -> Result<String, String> {
    expand_in(text, &[names], what)
}

/// `expand` with the names of several layers, without merging them: a name is looked up in
/// the first layer that has it.
pub fn expand_in(text: &str, layers: &[&Names], what: &str) -> Result<String, String> {
    format(text, layers).map_err(|err| match err {
        FormatError::MissingName(name) => format!(
            "Format string {} for {} contains names ({}) which cannot be expanded. Available names: {}",
            py_repr(text),
            py_repr(what),
            py_repr(&name),
            layers
                .iter()
                .flat_map(|l| l.0.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FormatError::Bad(reason) => {
            format!("Format string {} for {} is badly formatted: {reason}", py_repr(text), py_repr(what))
        }
    })
}

enum FormatError {
    MissingName(String),
    Bad(String),
}

#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: usize,
    precision: Option<usize>,
}

fn format(text: &str, layers: &[&Names]) -> Result<String, FormatError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let incomplete = || FormatError::Bad("incomplete format".to_string());
        let start = i - 1;
        let mut key: Option<String> = None;
        if chars.get(i) == Some(&'(') {
            // Python counts nested parentheses in the key.
            let mut depth = 1;
            let key_start = i + 1;
            i += 1;
            while i < chars.len() && depth > 0 {
                match chars[i] {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            if depth > 0 {
                return Err(FormatError::Bad("incomplete format key".to_string()));
            }
            key = Some(chars[key_start..i - 1].iter().collect());
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alternate = true,
                _ => break,
            }
            i += 1;
        }
        if chars.get(i) == Some(&'*') {
            return Err(FormatError::Bad("* wants int".to_string()));
        }
        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
            spec.width = spec.width.saturating_mul(10).saturating_add(d as usize);
            i += 1;
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = 0usize;
            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize);
                i += 1;
            }
            spec.precision = Some(p);
        }
        // Python would try (and fail) to build a string that size; a config value never needs
        // one, so a huge width or precision is an error instead of an abort.
        if spec.width > MAX_FIELD || spec.precision.is_some_and(|p| p > MAX_FIELD) {
            return Err(FormatError::Bad(format!("width or precision larger than {MAX_FIELD}")));
        }
        while matches!(chars.get(i), Some('h' | 'l' | 'L')) {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            return Err(incomplete());
        };
        i += 1;
        if conv == '%' {
            out.push('%');
            continue;
        }
        if !"diouxXeEfFgGcrsa".contains(conv) {
            return Err(FormatError::Bad(format!(
                "unsupported format character {} (0x{:x}) at index {}",
                py_repr(&conv.to_string()),
                conv as u32,
                i - 1
            )));
        }
        let Some(key) = key else {
            // Python would format the whole dict here; no config means that.
            return Err(FormatError::Bad(format!(
                "'%{conv}' at index {start} has no name; use %(name){conv}, or %% for a literal %"
            )));
        };
        let value = layers.iter().find_map(|l| l.get(&key)).ok_or_else(|| FormatError::MissingName(key.clone()))?;
        out.push_str(&convert(value, conv, &spec)?);
    }
    Ok(out)
}

/// The largest width or precision accepted in a format spec.
const MAX_FIELD: usize = 4096;

fn pad(body: String, sign: &str, spec: &Spec, numeric: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    if len >= spec.width {
        return format!("{sign}{body}");
    }
    let fill = spec.width - len;
    if spec.left {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

fn convert(value: &ExpValue, conv: char, spec: &Spec) -> Result<String, FormatError> {
    match (value, conv) {
        (ExpValue::Str(s), 's' | 'r' | 'a') => {
            let text = if conv == 's' { s.clone() } else { py_repr(s) };
            let text = match spec.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            };
            Ok(pad(text, "", spec, false))
        }
        (ExpValue::Int(n), 's' | 'r' | 'a') => {
            let text = n.to_string();
            let text = match spec.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            };
            Ok(pad(text, "", spec, false))
        }
        (ExpValue::Str(s), 'c') if s.chars().count() == 1 => Ok(pad(s.clone(), "", spec, false)),
        (ExpValue::Str(_), 'c') => Err(FormatError::Bad("%c requires int or char".to_string())),
        (ExpValue::Str(_), 'd' | 'i' | 'u') => {
            Err(FormatError::Bad(format!("%{conv} format: a real number is required, not str")))
        }
        (ExpValue::Str(_), 'o' | 'x' | 'X') => {
            Err(FormatError::Bad(format!("%{conv} format: an integer is required, not str")))
        }
        (ExpValue::Str(_), _) => Err(FormatError::Bad("must be real number, not str".to_string())),
        (ExpValue::Int(n), 'c') => match u32::try_from(*n).ok().and_then(char::from_u32) {
            Some(c) => Ok(pad(c.to_string(), "", spec, false)),
            None => Err(FormatError::Bad("%c arg not in range(0x110000)".to_string())),
        },
        (ExpValue::Int(n), 'd' | 'i' | 'u' | 'o' | 'x' | 'X') => {
            let magnitude = n.unsigned_abs();
            let mut digits = match conv {
                'o' => format!("{magnitude:o}"),
                'x' => format!("{magnitude:x}"),
                'X' => format!("{magnitude:X}"),
                _ => magnitude.to_string(),
            };
            if let Some(p) = spec.precision {
                if digits.len() < p {
                    digits = format!("{}{digits}", "0".repeat(p - digits.len()));
                }
            }
            let prefix = match (spec.alternate, conv) {
                (true, 'o') => "0o",
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                _ => "",
            };
            let sign = sign_of(*n < 0, spec);
            Ok(pad(digits, &format!("{sign}{prefix}"), spec, true))
        }
        (ExpValue::Int(n), _) => {
            let x = *n as f64;
            let p = spec.precision.unwrap_or(6);
            let body = match conv {
                'f' | 'F' => format!("{:.p$}", x.abs()),
                'e' | 'E' => exp_format(x.abs(), p, conv == 'E'),
                _ => general_format(x.abs(), p.max(1), conv == 'G', spec.alternate),
            };
            Ok(pad(body, sign_of(*n < 0, spec), spec, true))
        }
    }
}

fn sign_of(negative: bool, spec: &Spec) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn exp_format(x: f64, precision: usize, upper: bool) -> String {
    let s = format!("{x:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{e}{sign}{:02}", exp.abs())
}

/// Python's `%g`: the exponent is that of the `%e` form with `precision - 1` digits, rounding
/// included (so 99999 to 4 digits is `1e+05`). No log10 here: it was the one function the
/// binary took from libm, which alone made a few hundred KB of the daemon's memory.
fn general_format(x: f64, precision: usize, upper: bool, keep_zeros: bool) -> String {
    let e_form = exp_format(x, precision - 1, upper);
    let exp: i32 = e_form.rsplit(['e', 'E']).next().and_then(|e| e.parse().ok()).unwrap_or(0);
    let strip = |s: String| -> String {
        if keep_zeros || !s.contains('.') {
            s
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if exp < -4 || exp >= precision as i32 {
        let (m, e) = e_form.split_at(e_form.find(['e', 'E']).unwrap_or(e_form.len()));
        format!("{}{e}", strip(m.to_string()))
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        strip(format!("{x:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut n = Names::new();
        n.set_int("process_num", 3);
        n.set_int("numprocs", 12);
        n.set_str("program_name", "web");
        n.set_str("ENV_HOME", "/root");
        n
    }

    fn ok(text: &str) -> String {
        expand(text, &names(), "program:web.command").unwrap()
    }

    #[test]
    fn layers_are_looked_up_in_order_and_all_listed_when_a_name_is_missing() {
        let mut top = Names::new();
        top.set_str("program_name", "top");
        top.set_str("ENV_HOME", "/top");
        let mut env = Names::new();
        env.set_str("ENV_HOME", "/env");
        env.set_str("ENV_USER", "me");
        let layers = [&top, &env];
        assert_eq!(expand_in("%(program_name)s %(ENV_HOME)s %(ENV_USER)s", &layers, "x").unwrap(), "top /top me");
        assert_eq!(
            expand_in("%(nope)s", &layers, "program:a.command").unwrap_err(),
            "Format string '%(nope)s' for 'program:a.command' contains names ('nope') which cannot be expanded. \
             Available names: ENV_HOME, ENV_USER, program_name"
        );
    }

    #[test]
    fn general_format_rounds_then_picks_the_form_like_python() {
        let mut n = Names::new();
        for (k, v) in
            [("big", 1234567), ("n99999", 99999), ("n995", 995), ("zero", 0), ("neg", -1234567), ("twelve", 12)]
        {
            n.set_int(k, v);
        }
        // Each right-hand side is what Python 3 prints for the same format and value.
        for (fmt, want) in [
            ("%(big)g", "1.23457e+06"),
            ("%(n99999).4g", "1e+05"),
            ("%(n995).2g", "1e+03"),
            ("%(zero).3g", "0"),
            ("%(neg)g", "-1.23457e+06"),
            ("%(twelve)#g", "12.0000"),
            ("%(big)G", "1.23457E+06"),
            ("[%(big)-13.3g]", "[1.23e+06     ]"),
            ("%(n99999)g", "99999"),
            ("%(n995).0g", "1e+03"),
        ] {
            assert_eq!(expand(fmt, &n, "test").unwrap(), want, "{fmt}");
        }
    }

    #[test]
    fn process_num_format_spec_zero_pads() {
        assert_eq!(ok("%(program_name)s_%(process_num)02d"), "web_03");
        assert_eq!(ok("%(process_num)d/%(numprocs)d"), "3/12");
        assert_eq!(ok("%(process_num)03i"), "003");
    }

    #[test]
    fn width_and_alignment_follow_python() {
        assert_eq!(ok("[%(program_name)5s]"), "[  web]");
        assert_eq!(ok("[%(program_name)-5s]"), "[web  ]");
        assert_eq!(ok("[%(program_name).2s]"), "[we]");
        assert_eq!(ok("[%(process_num)-4d]"), "[3   ]");
        assert_eq!(ok("[%(process_num)+d]"), "[+3]");
        assert_eq!(ok("%(numprocs)x %(numprocs)#o %(numprocs)r"), "c 0o14 12");
        assert_eq!(ok("%(process_num)f %(process_num).1e %(numprocs)g"), "3.000000 3.0e+00 12");
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        assert_eq!(ok("echo 100%% %(ENV_HOME)s"), "echo 100% /root");
    }

    #[test]
    fn bare_percent_is_an_incomplete_format() {
        assert_eq!(
            expand("/bin/echo 100%", &names(), "program:a.command").unwrap_err(),
            "Format string '/bin/echo 100%' for 'program:a.command' is badly formatted: incomplete format"
        );
    }

    #[test]
    fn unknown_name_lists_sorted_available_names() {
        assert_eq!(
            expand("%(ENV_NOPE)s", &names(), "program:a.command").unwrap_err(),
            "Format string '%(ENV_NOPE)s' for 'program:a.command' contains names ('ENV_NOPE') which cannot be expanded. Available names: ENV_HOME, numprocs, process_num, program_name"
        );
    }

    #[test]
    fn string_with_d_format_is_badly_formatted() {
        assert_eq!(
            expand("%(program_name)d", &names(), "x").unwrap_err(),
            "Format string '%(program_name)d' for 'x' is badly formatted: %d format: a real number is required, not str"
        );
    }

    #[test]
    fn unsupported_character_names_its_index() {
        assert_eq!(
            expand("a %(program_name)z", &names(), "x").unwrap_err(),
            "Format string 'a %(program_name)z' for 'x' is badly formatted: unsupported format character 'z' (0x7a) at index 17"
        );
    }
}

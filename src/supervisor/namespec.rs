//! Namespecs as Supervisor's `split_namespec` and `make_namespec` read and write them
//! (`group:process`, `group:*`, a bare name): one parser for the daemon and the client.

/// `g:p` → (g, Some(p)); `g:` or `g:*` → (g, None) (the whole group); `x` → (x, Some(x)).
pub fn split(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((g, "" | "*")) => (g, None),
        Some((g, p)) => (g, Some(p)),
        None => (name, Some(name)),
    }
}

/// The bare name when group and process are the same, else `group:process`.
pub fn make(group: &str, process: &str) -> String {
    if group == process {
        process.to_string()
    } else {
        format!("{group}:{process}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespecs_read_and_write_as_supervisor() {
        assert_eq!(split("g:p"), ("g", Some("p")));
        assert_eq!(split("g:*"), ("g", None));
        assert_eq!(split("g:"), ("g", None));
        assert_eq!(split("x"), ("x", Some("x")));
        // Only the first colon splits, as Python's str.split(':', 1).
        assert_eq!(split("g:p:q"), ("g", Some("p:q")));
        assert_eq!(make("x", "x"), "x");
        assert_eq!(make("g", "p"), "g:p");
    }
}

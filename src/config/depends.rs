//! `depends_on=` (a minisv option, issue 8): which processes a process waits for, and the
//! config checks (every name known, no cycle). The state machine uses `matches` too, so a
//! name means the same thing everywhere.

use std::collections::HashMap;

use super::load::Loader;
use super::model::{GroupConfig, Span};

/// Whether the dependency `spec` names the process `name` of group `group`, made from
/// program `program`: `x` (a program or a group), `g:*` (a group), `g:p` (one process).
pub fn matches(spec: &str, group: &str, name: &str, program: &str) -> bool {
    match spec.split_once(':') {
        Some((g, "*" | "")) => g == group,
        Some((g, p)) => g == group && p == name,
        None => spec == program || spec == group,
    }
}

/// The names of a `depends_on=` value.
pub fn parse(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Checks every `depends_on=`: each name must match some process, and the graph must have no
/// cycle (reported with the programs on it).
pub fn check(ld: &mut Loader, groups: &[GroupConfig]) {
    // Every process, as (group, name, program, its dependencies, where they were written).
    let mut procs: Vec<(&str, &str, &str, &[String], &Span)> = Vec::new();
    for g in groups {
        for p in &g.processes {
            procs.push((&g.name, &p.name, &p.program, &p.depends_on, &p.span));
        }
    }
    let section_of = |ld: &Loader, program: &str| -> String {
        ["program:", "fcgi-program:", "eventlistener:"]
            .iter()
            .map(|k| format!("{k}{program}"))
            .find(|s| ld.ini.has_section(s))
            .unwrap_or_else(|| format!("program:{program}"))
    };
    let mut reported: Vec<String> = Vec::new();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); procs.len()];
    for (i, (_, _, program, deps, _)) in procs.iter().enumerate() {
        for spec in deps.iter() {
            let targets: Vec<usize> = procs
                .iter()
                .enumerate()
                .filter(|(_, (g, n, prog, _, _))| matches(spec, g, n, prog))
                .map(|(j, _)| j)
                .collect();
            if targets.is_empty() {
                let key = format!("{program}/{spec}");
                if !reported.contains(&key) {
                    reported.push(key);
                    let section = section_of(ld, program);
                    let span = ld.raw(&section, "depends_on").map(|v| v.span);
                    ld.error(
                        span,
                        &section,
                        Some("depends_on"),
                        format!(
                            "'{spec}' is not a program or group (names: a program, a group, group:* or group:process)"
                        ),
                    );
                }
            }
            edges[i].extend(targets.into_iter().filter(|&j| j != i));
        }
    }
    // Depth-first search for a cycle; report each cycle once, by its programs.
    let mut state = vec![0u8; procs.len()]; // 0 new, 1 on the path, 2 done
    let mut path: Vec<usize> = Vec::new();
    let mut seen_cycles: HashMap<Vec<String>, ()> = HashMap::new();
    fn dfs(i: usize, edges: &[Vec<usize>], state: &mut [u8], path: &mut Vec<usize>, cycles: &mut Vec<Vec<usize>>) {
        state[i] = 1;
        path.push(i);
        for &j in &edges[i] {
            match state[j] {
                0 => dfs(j, edges, state, path, cycles),
                1 => {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    cycles.push(path[from..].to_vec());
                }
                _ => {}
            }
        }
        path.pop();
        state[i] = 2;
    }
    let mut cycles = Vec::new();
    for i in 0..procs.len() {
        if state[i] == 0 {
            dfs(i, &edges, &mut state, &mut path, &mut cycles);
        }
    }
    for cycle in cycles {
        let mut names: Vec<String> = cycle.iter().map(|&k| procs[k].2.to_string()).collect();
        names.dedup();
        let mut key = names.clone();
        key.sort();
        if seen_cycles.insert(key, ()).is_some() {
            continue;
        }
        let first = names.first().cloned().unwrap_or_default();
        let shown = format!("{} -> {first}", names.join(" -> "));
        let section = section_of(ld, &first);
        let span = ld.raw(&section, "depends_on").map(|v| v.span);
        ld.error(span, &section, Some("depends_on"), format!("dependencies make a cycle: {shown}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_programs_groups_and_processes() {
        assert!(matches("db", "db", "db", "db"));
        assert!(matches("web", "web", "web_01", "web"), "a program means all its processes");
        assert!(matches("grp", "grp", "a", "a"), "a group name means the group");
        assert!(matches("grp:*", "grp", "a", "a"));
        assert!(matches("grp:a", "grp", "a", "a"));
        assert!(!matches("grp:b", "grp", "a", "a"));
        assert!(!matches("other", "grp", "a", "a"));
        assert_eq!(parse(" a, b ,,grp:*"), vec!["a", "b", "grp:*"]);
    }
}

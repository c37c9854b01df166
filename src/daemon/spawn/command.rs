//! Finding the program a `command=` names, as Supervisor does before it forks: the line is
//! split as Python's `shlex.split` splits it, and a name without a `/` is looked up in the
//! directories of the program's PATH. The messages are Supervisor's.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// Why a command cannot be started, found in the parent before the clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// `can't find command 'x'` (the RPC answers NO_FILE).
    NotFound(String),
    /// `command at 'x' is a directory`, `... is not executable`, `can't parse command`,
    /// `command is empty`, `no permission to run command 'x'` (NOT_EXECUTABLE).
    NotExecutable(String),
}

impl CommandError {
    pub fn message(&self) -> &str {
        match self {
            CommandError::NotFound(m) | CommandError::NotExecutable(m) => m,
        }
    }
}

/// Python's `repr()` of a string, used in Supervisor's messages (one implementation).
pub use crate::config::ini::py_repr;

/// Python's `shlex.split(s)` (POSIX mode, no comments).
pub fn shlex_split(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("No closing quotation"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("No escaped character"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Splits `command` and finds the program as Supervisor does: a name with a `/` is used as is,
/// otherwise each directory of `path` (the program's PATH, or ours, or a default) is tried.
pub fn resolve_command(command: &str, path: Option<&str>) -> Result<(PathBuf, Vec<String>), CommandError> {
    resolve_command_in(command, path, &mut FoundCommands::default())
}

/// The programs found during one batch of starts, by name and search path. Starting 1000
/// programs at once looked the same `sleep` up in each directory of a long PATH for each of
/// them (16 system calls a program with the PATH of the benchmark, a sixth of the daemon's CPU
/// in that start). The loop
/// empties it after each batch, so a program installed, removed or shadowed between two
/// batches is seen as Supervisor would see it.
#[derive(Default)]
pub struct FoundCommands(HashMap<String, PathBuf>);

impl FoundCommands {
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// `resolve_command`, with what `found` already holds taken as found.
pub fn resolve_command_in(
    command: &str,
    path: Option<&str>,
    found: &mut FoundCommands,
) -> Result<(PathBuf, Vec<String>), CommandError> {
    let argv = shlex_split(command)
        .map_err(|e| CommandError::NotExecutable(format!("can't parse command {}: {}", py_repr(command), e)))?;
    let Some(program) = argv.first() else {
        return Err(CommandError::NotExecutable("command is empty".into()));
    };
    let search = path.unwrap_or("/bin:/usr/bin:/usr/local/bin");
    let key = format!("{program}\0{search}");
    if let Some(file) = found.0.get(&key) {
        return Ok((file.clone(), argv));
    }
    let file = find_program(command, program, search)?;
    found.0.insert(key, file.clone());
    Ok((file, argv))
}

/// The file `program` (the first word of `command`) names, directly or in a directory of
/// `search`, checked as Supervisor checks it before it forks.
fn find_program(command: &str, program: &str, search: &str) -> Result<PathBuf, CommandError> {
    let found = if program.contains('/') {
        let p = PathBuf::from(program);
        fs::metadata(&p).ok().map(|m| (p, m))
    } else {
        search.split(':').find_map(|dir| {
            let p = Path::new(dir).join(program);
            fs::metadata(&p).ok().map(|m| (p, m))
        })
    };
    let Some((file, meta)) = found else {
        return Err(CommandError::NotFound(format!("can't find command {}", py_repr(program))));
    };
    let shown = file.display().to_string();
    if meta.is_dir() {
        return Err(CommandError::NotExecutable(format!("command at {} is a directory", py_repr(&shown))));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(CommandError::NotExecutable(format!("command at {} is not executable", py_repr(&shown))));
    }
    let c = CString::new(file.as_os_str().as_bytes())
        .map_err(|_| CommandError::NotExecutable(format!("can't parse command {}: NUL byte", py_repr(command))))?;
    if sys::access_x(&c).is_err() {
        return Err(CommandError::NotExecutable(format!("no permission to run command {}", py_repr(&shown))));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_matches_python() {
        assert_eq!(shlex_split("a 'b c' \"d \\\" e\" f\\ g").unwrap(), vec!["a", "b c", "d \" e", "f g"]);
        assert_eq!(shlex_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shlex_split("a\nb").unwrap(), vec!["a", "b"]);
        assert_eq!(shlex_split("x'y'z").unwrap(), vec!["xyz"]);
        assert_eq!(shlex_split("'unterminated"), Err("No closing quotation"));
        assert_eq!(shlex_split("\"a\\nb\"").unwrap(), vec!["a\\nb"]);
    }

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
    }

    #[test]
    fn resolve_reports_supervisors_messages() {
        assert_eq!(
            resolve_command("nonexistent_cmd_xyz", Some("/bin")),
            Err(CommandError::NotFound("can't find command 'nonexistent_cmd_xyz'".into()))
        );
        assert_eq!(resolve_command("  ", None), Err(CommandError::NotExecutable("command is empty".into())));
        assert_eq!(
            resolve_command("/tmp", None),
            Err(CommandError::NotExecutable("command at '/tmp' is a directory".into()))
        );
        let plain = std::env::temp_dir().join(format!("minisv-spawn-plain-{}", std::process::id()));
        fs::write(&plain, "data").expect("write");
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            resolve_command(plain.to_str().expect("utf-8"), None),
            Err(CommandError::NotExecutable(format!("command at '{}' is not executable", plain.display())))
        );
        let _ = fs::remove_file(&plain);
        assert!(
            matches!(resolve_command("echo 'x", None), Err(CommandError::NotExecutable(m)) if m.starts_with("can't parse command"))
        );
        let (path, argv) = resolve_command("sh -c 'exit 0'", Some("/nonexistent:/bin")).expect("sh is in /bin");
        assert_eq!(path, PathBuf::from("/bin/sh"));
        assert_eq!(argv, vec!["sh", "-c", "exit 0"]);
    }

    #[test]
    fn a_program_found_in_a_batch_is_not_looked_up_again_until_the_batch_ends() {
        let dir = std::env::temp_dir().join(format!("minisv-spawn-found-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let tool = dir.join("tool");
        fs::write(&tool, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        let search = format!("/nonexistent:{}", dir.display());
        let mut found = FoundCommands::default();
        let first = resolve_command_in("tool a", Some(&search), &mut found).expect("found");
        assert_eq!(first, (tool.clone(), vec!["tool".to_string(), "a".to_string()]));
        fs::remove_file(&tool).expect("rm");
        // The same batch: taken as found (its arguments still its own); exec reports it gone.
        assert_eq!(resolve_command_in("tool b", Some(&search), &mut found).expect("cached").0, tool);
        // Another search path is another lookup.
        assert!(matches!(resolve_command_in("tool", Some("/bin"), &mut found), Err(CommandError::NotFound(_))));
        found.clear();
        assert!(matches!(resolve_command_in("tool", Some(&search), &mut found), Err(CommandError::NotFound(_))));
        let _ = fs::remove_dir(&dir);
    }
}

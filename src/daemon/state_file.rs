//! `state_file=`: which programs were started or stopped by hand, kept across restarts of the
//! daemon (and of the host), so that a program stopped by hand stays stopped and one started
//! by hand starts again even with `autostart=false`.
//!
//! The file is a few lines of text, `started group:name` or `stopped group:name`, written whole
//! each time (a temporary file, fsync, rename, fsync of the directory) so that a crash leaves
//! the old file or the new one. It is read leniently: a line that makes no sense is reported
//! with its file:line and ignored, and a file that cannot be read is reported and ignored; the
//! daemon starts either way.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const HEADER: &str = "# minisv state: programs started or stopped by hand (state_file=); written by minisv\n";

#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Namespec -> started (true) or stopped (false) by hand.
    entries: BTreeMap<String, bool>,
}

impl StateFile {
    /// Reads the file at `path` (missing: nothing yet). The second value holds what was wrong
    /// with it, one line each, for the main log.
    pub fn load(path: &Path) -> (StateFile, Vec<String>) {
        let mut file = StateFile { path: path.to_path_buf(), entries: BTreeMap::new() };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (file, Vec::new()),
            Err(e) => return (file, vec![format!("cannot read the state file {}: {e}; ignored", path.display())]),
        };
        let (entries, problems) = parse(&text, path);
        file.entries = entries;
        (file, problems)
    }

    /// Programs started by hand, then stopped by hand.
    pub fn entries(&self) -> impl Iterator<Item = (&str, bool)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Records a start (`true`) or stop by hand and writes the file if that changed it.
    pub fn set(&mut self, namespec: &str, started: bool) -> io::Result<()> {
        if self.entries.get(namespec) == Some(&started) {
            return Ok(());
        }
        self.entries.insert(namespec.to_string(), started);
        self.write()
    }

    fn write(&self) -> io::Result<()> {
        let mut text = String::from(HEADER);
        for (name, started) in &self.entries {
            text.push_str(if *started { "started " } else { "stopped " });
            text.push_str(name);
            text.push('\n');
        }
        write_atomically(&self.path, text.as_bytes())
    }
}

/// The entries of a state file, and a line for each line that makes no sense.
fn parse(text: &str, path: &Path) -> (BTreeMap<String, bool>, Vec<String>) {
    let mut entries = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = match line.split_once(' ') {
            Some(("started", name)) if !name.trim().is_empty() => Some((name.trim(), true)),
            Some(("stopped", name)) if !name.trim().is_empty() => Some((name.trim(), false)),
            _ => None,
        };
        match entry {
            Some((name, started)) => {
                entries.insert(name.to_string(), started);
            }
            None => problems.push(format!(
                "{}:{}: cannot read {line:?} (expected 'started NAME' or 'stopped NAME'); ignored",
                path.display(),
                n + 1
            )),
        }
    }
    (entries, problems)
}

/// Writes `data` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file beside it, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| named(io::ErrorKind::InvalidInput.into()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("minisv-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn entries_survive_a_write_and_a_read_and_no_temporary_file_is_left() {
        let dir = temp("rw");
        let path = dir.join("state");
        let (mut f, problems) = StateFile::load(&path);
        assert!(problems.is_empty(), "a missing file is no problem");
        f.set("web:web_0", false).expect("write");
        f.set("batch", true).expect("write");
        f.set("web:web_0", true).expect("write");
        let (g, problems) = StateFile::load(&path);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(g.entries().collect::<Vec<_>>(), vec![("batch", true), ("web:web_0", true)]);
        let names: Vec<String> =
            fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert_eq!(names, vec!["state"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_read_as_far_as_it_makes_sense_with_each_bad_line_named() {
        let dir = temp("bad");
        let path = dir.join("state");
        fs::write(&path, "# comment\nstopped a\nfrobnicate b\n\0\u{1}garbage\nstarted\nstarted c\n").expect("write");
        let (f, problems) = StateFile::load(&path);
        assert_eq!(f.entries().collect::<Vec<_>>(), vec![("a", false), ("c", true)]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("{}:3: cannot read \"frobnicate b\"", path.display())),
            "{problems:?}"
        );
        fs::create_dir_all(dir.join("adir")).expect("mkdir");
        let (f, problems) = StateFile::load(&dir.join("adir"));
        assert_eq!(f.entries().count(), 0);
        assert!(problems[0].contains("cannot read the state file"), "{problems:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}

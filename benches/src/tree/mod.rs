//! Deterministic tree generators and their shape records.
//!
//! - [`mirror`]: a distribution mirror (`releases/<ver>/<variant>/<arch>/os/Packages/<x>/…`)
//!   of N entries, files sparse (sizes without data blocks) so a million entries
//!   fit in a few hundred MB of disk; for null syncs, `--files-from` and
//!   snapshot figures, where no file content is read.
//! - [`mixed`]: a tree of real (non-sparse) data, part random and part text,
//!   for full and delta pulls, and its altered copy (a few percent of blocks
//!   changed) as the client's basis for a delta pull.
//!
//! A generated tree gets a marker file `<root>.done` holding its
//! [`TreeInfo`]; [`ensure`] reuses a tree whose marker matches the request.

pub mod mirror;
pub mod mixed;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// Bump when a generator's output changes, so old trees are regenerated.
pub const GENERATOR_VERSION: u32 = 1;

/// Shape of a generated tree (written to and read from the marker file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeInfo {
    /// `mirror`, `mixed` or `mixed-basis`.
    pub kind: String,
    /// Generator seed.
    pub seed: u64,
    /// What was asked for: entries (mirror) or bytes (mixed).
    pub target: u64,
    /// Entries below the root (files, directories, symlinks, hard links).
    pub entries: u64,
    /// Regular files (hard links excluded).
    pub files: u64,
    /// Directories below the root.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Extra names of an already created file.
    pub hardlinks: u64,
    /// Directories left 0750 (pre-bitflip: hidden from `uid = nobody`).
    pub dirs_0750: u64,
    /// Sum of file sizes (each inode once).
    pub apparent_bytes: u64,
    /// Bytes actually written (non-sparse data).
    pub data_bytes: u64,
    /// Of `data_bytes`, compressible text.
    pub text_bytes: u64,
    /// Largest file.
    pub largest_file: u64,
    /// Delta basis: blocks altered and blocks in total (rsync block size of
    /// each file).
    pub altered_blocks: u64,
    /// See `altered_blocks`.
    pub total_blocks: u64,
    /// Seconds the generator took.
    pub gen_secs: f64,
}

impl TreeInfo {
    /// The marker text (`key=value` lines).
    pub fn to_marker(&self) -> String {
        let mut m = BTreeMap::new();
        m.insert("version", GENERATOR_VERSION.to_string());
        m.insert("kind", self.kind.clone());
        for (k, v) in [
            ("seed", self.seed),
            ("target", self.target),
            ("entries", self.entries),
            ("files", self.files),
            ("dirs", self.dirs),
            ("symlinks", self.symlinks),
            ("hardlinks", self.hardlinks),
            ("dirs_0750", self.dirs_0750),
            ("apparent_bytes", self.apparent_bytes),
            ("data_bytes", self.data_bytes),
            ("text_bytes", self.text_bytes),
            ("largest_file", self.largest_file),
            ("altered_blocks", self.altered_blocks),
            ("total_blocks", self.total_blocks),
        ] {
            m.insert(k, v.to_string());
        }
        m.insert("gen_secs", format!("{:.3}", self.gen_secs));
        m.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// Parses a marker; `None` if it is from another generator version or
    /// malformed.
    pub fn from_marker(text: &str) -> Option<TreeInfo> {
        let mut t = TreeInfo::default();
        let mut version = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=')?;
            let num = || v.parse::<u64>().ok();
            match k {
                "version" => version = v.parse().ok()?,
                "kind" => t.kind = v.to_string(),
                "seed" => t.seed = num()?,
                "target" => t.target = num()?,
                "entries" => t.entries = num()?,
                "files" => t.files = num()?,
                "dirs" => t.dirs = num()?,
                "symlinks" => t.symlinks = num()?,
                "hardlinks" => t.hardlinks = num()?,
                "dirs_0750" => t.dirs_0750 = num()?,
                "apparent_bytes" => t.apparent_bytes = num()?,
                "data_bytes" => t.data_bytes = num()?,
                "text_bytes" => t.text_bytes = num()?,
                "largest_file" => t.largest_file = num()?,
                "altered_blocks" => t.altered_blocks = num()?,
                "total_blocks" => t.total_blocks = num()?,
                "gen_secs" => t.gen_secs = v.parse().ok()?,
                _ => {}
            }
        }
        (version == GENERATOR_VERSION).then_some(t)
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut s = format!(
            "{} entries: {} files, {} dirs, {} symlinks, {} hard links",
            self.entries, self.files, self.dirs, self.symlinks, self.hardlinks
        );
        if self.dirs_0750 > 0 {
            s.push_str(&format!(", {} dirs 0750", self.dirs_0750));
        }
        s.push_str(&format!("; {:.1} GiB apparent", mib(self.apparent_bytes) / 1024.0));
        if self.data_bytes > 0 {
            s.push_str(&format!(", {:.0} MiB written ({:.0} MiB text)", mib(self.data_bytes), mib(self.text_bytes)));
        }
        s.push_str(&format!("; largest file {:.0} MiB", mib(self.largest_file)));
        if self.total_blocks > 0 {
            s.push_str(&format!(
                "; {} of {} blocks altered ({:.1}%)",
                self.altered_blocks,
                self.total_blocks,
                100.0 * self.altered_blocks as f64 / self.total_blocks as f64
            ));
        }
        s.push_str(&format!("; seed {}; generated in {:.1} s", self.seed, self.gen_secs));
        s
    }
}

/// The marker file of a tree root.
pub fn marker_path(root: &Path) -> PathBuf {
    let mut s = root.as_os_str().to_os_string();
    s.push(".done");
    PathBuf::from(s)
}

/// Reads the marker of `root`, if any.
pub fn read_marker(root: &Path) -> Option<TreeInfo> {
    TreeInfo::from_marker(&fs::read_to_string(marker_path(root)).ok()?)
}

/// Reuses the tree at `root` when its marker says it is `kind` with
/// `target` and `seed`; otherwise removes whatever is there and runs `gen`.
pub fn ensure(root: &Path, kind: &str, target: u64, seed: u64, gen: impl FnOnce(&Path) -> Result<TreeInfo>) -> Result<TreeInfo> {
    if let Some(t) = read_marker(root) {
        if t.kind == kind && t.target == target && t.seed == seed && root.is_dir() {
            eprintln!("reusing {} ({})", root.display(), t.describe());
            return Ok(t);
        }
    }
    remove(root)?;
    eprintln!("generating {kind} tree {} (target {target}) ...", root.display());
    let t0 = Instant::now();
    let mut info = gen(root)?;
    info.kind = kind.to_string();
    info.target = target;
    info.seed = seed;
    info.gen_secs = t0.elapsed().as_secs_f64();
    fs::write(marker_path(root), info.to_marker())?;
    eprintln!("generated: {}", info.describe());
    Ok(info)
}

/// Removes a tree and its marker (tolerates absence; makes 0750/0700
/// directories writable first is unnecessary as root).
pub fn remove(root: &Path) -> Result<()> {
    let _ = fs::remove_file(marker_path(root));
    if root.symlink_metadata().is_ok() {
        fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(())
}

/// Syllables for package names and text.
pub const SYLLABLES: &[&str] = &[
    "a", "ab", "al", "an", "ar", "at", "ba", "be", "bi", "bo", "ca", "co", "cu", "da", "de", "di", "do", "el", "en", "er", "ex", "fa", "fi",
    "fo", "ga", "ge", "gi", "go", "ha", "he", "hi", "in", "io", "ja", "ka", "ke", "ki", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo",
    "mu", "na", "ne", "ni", "no", "nu", "ob", "on", "or", "pa", "pe", "pi", "po", "py", "qt", "ra", "re", "ri", "ro", "ru", "sa", "se", "si",
    "so", "su", "ta", "te", "ti", "to", "tu", "un", "ur", "va", "ve", "vi", "wa", "we", "xe", "xi", "ya", "yo", "za", "ze", "zo",
];

/// Fails when the umask would keep `uid = nobody` from reading generated
/// files (both daemons serve the trees as nobody).
pub fn check_umask() -> Result<()> {
    let s = fs::read_to_string("/proc/self/status")?;
    let mask = s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok()).unwrap_or(0o022);
    anyhow::ensure!(mask & 0o044 == 0, "umask {mask:04o} hides generated files from others; use umask 022");
    Ok(())
}

/// Visits every entry below `root` (lstat semantics, never following
/// symlinks), each directory's entries in bytewise name order, depth first.
/// `f` gets the path relative to `root` and the entry's metadata and
/// returns whether to descend (directories only).
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata) -> bool) -> Result<()> {
    fn rec(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata) -> bool) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let md = fs::symlink_metadata(root.join(&r))?;
            if f(&r, &md) && md.is_dir() {
                rec(root, &r, f)?;
            }
        }
        Ok(())
    }
    rec(root, Path::new(""), f)
}

/// Whole seconds since the epoch as a `SystemTime`.
pub fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Directories created by a generator, with the mode and mtime to apply
/// once their entries exist (creating entries bumps a directory's mtime).
#[derive(Debug, Default)]
pub struct DirTimes {
    dirs: Vec<(PathBuf, u32, i64)>,
}

impl DirTimes {
    /// Create `path` (its parent must exist) and remember `mode`/`mtime`.
    pub fn mkdir(&mut self, path: &Path, mode: u32, mtime: i64) -> Result<()> {
        fs::create_dir(path).with_context(|| format!("mkdir {}", path.display()))?;
        self.dirs.push((path.to_path_buf(), mode, mtime));
        Ok(())
    }

    /// Remember `mode`/`mtime` for an existing directory.
    pub fn record(&mut self, path: &Path, mode: u32, mtime: i64) {
        self.dirs.push((path.to_path_buf(), mode, mtime));
    }

    /// Directories created so far.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// True before the first directory.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Apply mtimes and modes, deepest first.
    pub fn finish(mut self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode, t) in &self.dirs {
            let f = fs::File::open(p)?;
            f.set_modified(at(*t))?;
            f.set_permissions(fs::Permissions::from_mode(*mode))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_rejects_other_versions() {
        let t = TreeInfo {
            kind: "mirror".into(),
            seed: 3,
            target: 1000,
            entries: 1000,
            files: 900,
            dirs: 80,
            symlinks: 5,
            hardlinks: 15,
            dirs_0750: 2,
            apparent_bytes: 1 << 40,
            data_bytes: 7,
            text_bytes: 3,
            largest_file: 99,
            altered_blocks: 4,
            total_blocks: 100,
            gen_secs: 1.5,
        };
        assert_eq!(TreeInfo::from_marker(&t.to_marker()), Some(t.clone()));
        let old = t.to_marker().replace(&format!("version={GENERATOR_VERSION}"), "version=0");
        assert_eq!(TreeInfo::from_marker(&old), None);
        assert!(t.describe().contains("1000 entries"));
    }

    #[test]
    fn ensure_reuses_a_matching_tree_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t");
        let calls = std::cell::Cell::new(0);
        let gen = |r: &Path| {
            calls.set(calls.get() + 1);
            fs::create_dir(r)?;
            Ok(TreeInfo { entries: 1, ..TreeInfo::default() })
        };
        ensure(&root, "k", 1, 1, gen).unwrap();
        ensure(&root, "k", 1, 1, gen).unwrap();
        assert_eq!(calls.get(), 1);
        ensure(&root, "k", 2, 1, gen).unwrap();
        assert_eq!(calls.get(), 2);
        remove(&root).unwrap();
        assert!(!root.exists() && !marker_path(&root).exists());
    }
}

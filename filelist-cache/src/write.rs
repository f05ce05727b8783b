//! Crash-safe publication of a snapshot file.
//!
//! Rules (see docs/snapshot-format.md): the bytes go to a new temporary file in the
//! destination directory (`O_EXCL`), which is fsynced, renamed over the destination and
//! followed by an fsync of the directory. A published file is never written again, so
//! live mappings of an older file stay valid (the rename gives the new file a new inode
//! and the old one lives on until its last mapping is dropped).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ScanError;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes the concatenation of `parts` to `out` atomically.
pub(crate) fn write_atomic(out: &Path, parts: &[&[u8]]) -> Result<(), ScanError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = out.file_name().ok_or_else(|| ScanError::Write {
        path: out.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"),
    })?;
    let (tmp_path, mut file) = create_temp(&dir, base)?;
    let result = (|| {
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(ScanError::Write {
            path: tmp_path,
            source,
        });
    }
    drop(file);
    if let Err(source) = fs::rename(&tmp_path, out) {
        let _ = fs::remove_file(&tmp_path);
        return Err(ScanError::Write {
            path: out.to_path_buf(),
            source,
        });
    }
    // Make the rename itself durable.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ScanError::Write { path: dir, source })
}

/// Creates `.<base>.tmp.<pid>.<n>` next to the destination with `O_EXCL`.
fn create_temp(dir: &Path, base: &std::ffi::OsStr) -> Result<(PathBuf, File), ScanError> {
    let pid = std::process::id();
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(base);
        name.push(format!(".tmp.{pid}.{n}"));
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(ScanError::Write { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_leaves_no_temp_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let out = t.path().join("snap");
        write_atomic(&out, &[b"abc", b"def"]).expect("write");
        assert_eq!(fs::read(&out).expect("read"), b"abcdef");
        write_atomic(&out, &[b"x"]).expect("rewrite");
        assert_eq!(fs::read(&out).expect("read"), b"x");
        let names: Vec<_> = fs::read_dir(t.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("snap")]);
    }

    #[test]
    fn missing_directory_is_a_write_error() {
        let t = tempfile::tempdir().expect("tempdir");
        let out = t.path().join("no/such/dir/snap");
        assert!(matches!(
            write_atomic(&out, &[b"x"]),
            Err(ScanError::Write { .. })
        ));
    }
}

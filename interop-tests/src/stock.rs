//! Finding the stock `rsync` binary and telling what it is.

use std::process::Command;
use std::sync::OnceLock;

/// What `rsync --version` said about the installed stock binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockVersion {
    /// The version string, e.g. `3.2.7`.
    pub version: String,
    /// The highest protocol it speaks, e.g. `32`.
    pub protocol: u32,
    /// True for openrsync, which is not the rsync these tests compare against.
    pub openrsync: bool,
    /// The first line of `rsync --version`, verbatim.
    pub banner: String,
}

/// Parses the output of `rsync --version`.
///
/// tridge rsync prints `rsync  version 3.2.7  protocol version 32`;
/// openrsync prints `openrsync: protocol version 29` and similar.
pub fn parse_version(out: &str) -> Option<StockVersion> {
    let banner = out.lines().next()?.trim().to_string();
    let words: Vec<&str> = banner.split_whitespace().collect();
    let openrsync = banner.contains("openrsync");
    // "protocol version N": the word after the last "version".
    let last = words.iter().rposition(|w| *w == "version")?;
    let protocol: u32 = words.get(last + 1)?.parse().ok()?;
    let version = if openrsync {
        String::new()
    } else {
        // "rsync  version X.Y.Z": the word after the first "version".
        let first = words.iter().position(|w| *w == "version")?;
        words.get(first + 1)?.to_string()
    };
    Some(StockVersion {
        version,
        protocol,
        openrsync,
        banner,
    })
}

/// The stock rsync's version, or why it is unusable.
pub fn stock_version() -> Result<StockVersion, String> {
    static CACHE: OnceLock<Result<StockVersion, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let out = Command::new("rsync")
                .arg("--version")
                .output()
                .map_err(|e| format!("cannot run `rsync --version`: {e}"))?;
            if !out.status.success() {
                return Err(format!("`rsync --version` failed: {}", out.status));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let v = parse_version(&text)
                .ok_or_else(|| format!("cannot parse `rsync --version`: {text:?}"))?;
            if v.openrsync {
                return Err(format!(
                    "`rsync` is openrsync ({}), need rsync.samba.org rsync",
                    v.banner
                ));
            }
            if v.protocol < 31 {
                return Err(format!("stock rsync too old: {}", v.banner));
            }
            Ok(v)
        })
        .clone()
}

/// True when a usable stock rsync is installed.
///
/// When it is missing, this prints the reason and returns false, so a test can
/// return early (a skip); when the environment variable `CI` is set, it panics
/// instead, because CI must not silently skip the interop suite.
pub fn rsync_available() -> bool {
    match stock_version() {
        Ok(_) => true,
        Err(why) => {
            if std::env::var_os("CI").is_some() {
                panic!("stock rsync unavailable under CI: {why}");
            }
            eprintln!("SKIP: stock rsync unavailable: {why}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samba_rsync() {
        let v = parse_version("rsync  version 3.2.7  protocol version 32\nCopyright\n").unwrap();
        assert_eq!(v.version, "3.2.7");
        assert_eq!(v.protocol, 32);
        assert!(!v.openrsync);
    }

    #[test]
    fn parses_openrsync() {
        let v = parse_version("openrsync: protocol version 29\n").unwrap();
        assert_eq!(v.protocol, 29);
        assert!(v.openrsync);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_version("hello\n").is_none());
        assert!(parse_version("").is_none());
    }
}

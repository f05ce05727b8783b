//! What the results were measured on.

use std::fs;
use std::path::Path;
use std::process::Command;

/// First line of a command's stdout (or the error).
pub fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

/// UTC date, `YYYY-MM-DD`.
pub fn today() -> String {
    cmd_line("date", &["-u", "+%Y-%m-%d"])
}

/// The host name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into())
}

/// CPU model name.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal` as text.
pub fn mem_total() -> String {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The machine, as Markdown list items.
pub fn describe(work: &Path, shm: &Path, rsync: &Path, rsyncd: &Path, ws: &Path) -> String {
    let git = |args: &[&str]| {
        let mut a = vec!["-C", ws.to_str().unwrap_or(".")];
        a.extend_from_slice(args);
        cmd_line("git", &a)
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let fs_of = |p: &Path| cmd_line("findmnt", &["-no", "FSTYPE,OPTIONS", "-T", &p.to_string_lossy()]);
    [
        format!("- CPU: {} ({} cores online)", cpu_model(), cmd_line("nproc", &[])),
        format!("- RAM: {}", mem_total()),
        format!("- kernel: {}", cmd_line("uname", &["-srm"])),
        format!("- trees: {} ({}); pull destinations: {} ({})", work.display(), fs_of(work), shm.display(), fs_of(shm)),
        format!("- stock: {} (daemon and every client)", cmd_line(&rsync.to_string_lossy(), &["--version"])),
        format!("- strace: {}", cmd_line("strace", &["-V"])),
        format!(
            "- ours: `{}`, release profile, workspace commit {}{}",
            rsyncd.display(),
            git(&["rev-parse", "--short", "HEAD"]),
            if dirty { " (work tree modified)" } else { "" }
        ),
        "- the machine is shared with other people's builds: every sample records the 1-minute load average; runs alternate between the daemons so drift hits both".to_string(),
    ]
    .join("\n")
}

//! A progress line for the first index build of a module, when an operator
//! watches the start-up on a terminal: entries scanned so far and the rate,
//! rewritten in place on stderr a few times a second. Nothing is shown when
//! stderr is not a terminal (journald, files, tests) or when the snapshot
//! is opened from disk (no scan runs).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use filelist_cache::ScanProgress;

/// How often the line is redrawn.
pub const REDRAW: Duration = Duration::from_millis(250);

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string().into_bytes();
    let mut groups: Vec<&[u8]> = digits.rchunks(3).collect();
    groups.reverse();
    groups.iter().map(|g| String::from_utf8_lossy(g)).collect::<Vec<_>>().join(",")
}

/// The progress text (without the terminal control sequences).
pub fn format_line(module: &str, entries: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { (entries as f64 / secs) as u64 } else { 0 };
    format!("rsyncd: indexing {module}: {} entries, {}/s, {:.0} s", grouped(entries), grouped(rate), secs)
}

/// A running progress display; dropping it stops it and clears the line.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty() only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Shows the progress of `module`'s build from `progress` while the
/// returned handle lives; `None` when stderr is not a terminal.
pub fn start(module: &str, progress: ScanProgress) -> Option<Display> {
    if !stderr_is_tty() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, module) = (stop.clone(), module.to_string());
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let t0 = Instant::now();
            let mut shown = false;
            while !s2.load(Ordering::Acquire) {
                std::thread::sleep(REDRAW);
                let n = progress.entries();
                if n == 0 {
                    continue; // opened from disk, or the walk has not started
                }
                let mut e = std::io::stderr().lock();
                let _ = write!(e, "\r\x1b[2K{}", format_line(&module, n, t0.elapsed()));
                let _ = e.flush();
                shown = true;
            }
            if shown {
                let n = progress.entries();
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "\r\x1b[2K{} (done)", format_line(&module, n, t0.elapsed()));
            }
        })
        .ok()?;
    Some(Display { stop, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_text() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(format_line("fedora", 2_000_000, Duration::from_secs(4)), "rsyncd: indexing fedora: 2,000,000 entries, 500,000/s, 4 s");
    }
}

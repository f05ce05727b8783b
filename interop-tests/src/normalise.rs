//! Normalising client output so two runs against different daemons compare
//! equal when they differ only in daemon-specific or run-specific details.

use std::sync::OnceLock;

use regex::Regex;

/// How the numbers of `--stats` and the summary lines are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatsCompare {
    /// Wire byte counts (`Total bytes sent/received`, `File list size`,
    /// literal/matched data, `total size is`) must match; only timings,
    /// rates, the `sent/received` summary line and the speedup are masked.
    #[default]
    Strict,
    /// Also mask every `--stats` byte count and `total size is`.
    Loose,
}

/// What varies between the two runs of a case and must be masked.
#[derive(Debug, Clone, Default)]
pub struct NormaliseCtx {
    /// The daemon's port.
    pub port: u16,
    /// Literal strings (temp paths) and what to write instead, applied longest first.
    pub replace: Vec<(String, String)>,
    /// How `--stats` numbers compare.
    pub stats: StatsCompare,
}

struct Patterns {
    sent: Regex,
    speedup: Regex,
    total_size: Regex,
    src_loc: Regex,
    role_ver: Regex,
    pid: Regex,
    timing: Regex,
    loose_stats: Regex,
    reset: Regex,
    progress: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        sent: Regex::new(r"(?m)^sent [\d,.]+ bytes\s+received [\d,.]+ bytes\s+[\d,.]+ bytes/sec$").unwrap(),
        speedup: Regex::new(r"speedup is [\d,.]+").unwrap(),
        total_size: Regex::new(r"total size is [\d,.]+").unwrap(),
        // " at main.c(1338) [sender=3.2.7]": where the daemon's C source raised it.
        src_loc: Regex::new(r"\bat [\w./-]+\.c\(\d+\)").unwrap(),
        role_ver: Regex::new(r"\[(\w+)=[0-9][^\]\s]*\]").unwrap(),
        // "rsync[12345] (receiver) heap statistics:" with -vv --stats.
        pid: Regex::new(r"\brsync\[\d+\]").unwrap(),
        timing: Regex::new(r"(?m)^(File list generation time|File list transfer time): .*$").unwrap(),
        loose_stats: Regex::new(
            r"(?m)^(Total bytes sent|Total bytes received|File list size|Literal data|Matched data|Total transferred file size): .*$",
        )
        .unwrap(),
        // The stock daemon exits with the client's last bytes unread, so the
        // kernel answers them with a TCP reset, which the client may or may
        // not read before it finishes (a teardown race); a daemon that
        // drains its input closes cleanly. Either way the client's verdict
        // (exit code, error lines) is already decided and compared.
        reset: Regex::new(
            r"(?m)^rsync: \[(?:Receiver|sender|generator)\] (?:read error: Connection reset by peer \(104\)|write error: Broken pipe \(32\))\n",
        )
        .unwrap(),
        // --progress: "      5 100%    4.88kB/s    0:00:00 (xfr#2, ...)": the
        // rate and the elapsed/remaining time are timing.
        progress: Regex::new(r"[\d.]+[kMGTP]?B/s(\s+)\d+:\d{2}:\d{2}").unwrap(),
    })
}

/// Masks ports, temp paths, timings and (per `ctx.stats`) byte counts in `text`.
pub fn normalise(text: &str, ctx: &NormaliseCtx) -> String {
    let p = patterns();
    let mut s = text.to_string();
    let mut reps: Vec<&(String, String)> = ctx
        .replace
        .iter()
        .filter(|(from, _)| !from.is_empty())
        .collect();
    reps.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    for (from, to) in reps {
        s = s.replace(from.as_str(), to);
    }
    if ctx.port != 0 {
        let port = Regex::new(&format!(r"(:|\bport ){}\b", ctx.port)).unwrap();
        s = port.replace_all(&s, "${1}<PORT>").into_owned();
    }
    s = p
        .sent
        .replace_all(&s, "sent <N> bytes  received <N> bytes  <N> bytes/sec")
        .into_owned();
    s = p.speedup.replace_all(&s, "speedup is <N>").into_owned();
    s = p.src_loc.replace_all(&s, "at <SRC>").into_owned();
    s = p.role_ver.replace_all(&s, "[${1}=<VER>]").into_owned();
    s = p.pid.replace_all(&s, "rsync[<PID>]").into_owned();
    s = p.timing.replace_all(&s, "${1}: <T>").into_owned();
    s = p.reset.replace_all(&s, "").into_owned();
    s = p.progress.replace_all(&s, "<RATE>${1}<TIME>").into_owned();
    if ctx.stats == StatsCompare::Loose {
        s = p
            .total_size
            .replace_all(&s, "total size is <N>")
            .into_owned();
        s = p.loose_stats.replace_all(&s, "${1}: <N>").into_owned();
    }
    s
}

/// A compact line diff of two texts (`-` only in A, `+` only in B), or `None` when equal.
pub fn text_diff(a: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    // Longest common subsequence table; outputs are small.
    let (n, m) = (la.len(), lb.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if la[i] == lb[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && la[i] == lb[j] {
            out.push_str(&format!("  {}\n", la[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || t[i + 1][j] >= t[i][j + 1]) {
            out.push_str(&format!("- {}\n", la[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", lb[j]));
            j += 1;
        }
    }
    if a.ends_with('\n') != b.ends_with('\n') {
        out.push_str("(final newline differs)\n");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(stats: StatsCompare) -> NormaliseCtx {
        NormaliseCtx {
            port: 40123,
            replace: vec![
                ("/tmp/xyz/side-a".into(), "<WORK>".into()),
                ("/tmp/xyz".into(), "<TMP>".into()),
            ],
            stats,
        }
    }

    #[test]
    fn masks_run_specific_bits() {
        let text = "rsync: failed to connect to 127.0.0.1 (127.0.0.1) port 40123: refused\n\
                    url rsync://127.0.0.1:40123/m/ and 40123 alone\n\
                    created directory /tmp/xyz/side-a/dest\n\
                    src /tmp/xyz/src\n\
                    sent 1,234 bytes  received 5,678 bytes  2,345.67 bytes/sec\n\
                    total size is 1,048,576  speedup is 95.33\n\
                    rsync error: some files could not be transferred (code 23) at main.c(1338) [sender=3.2.7]\n\
                    File list generation time: 0.001 seconds\n\
                    rsync[4242] (receiver) heap statistics:\n\
                    Total bytes sent: 1,234\n";
        let n = normalise(text, &ctx(StatsCompare::Strict));
        assert_eq!(
            n,
            "rsync: failed to connect to 127.0.0.1 (127.0.0.1) port <PORT>: refused\n\
             url rsync://127.0.0.1:<PORT>/m/ and 40123 alone\n\
             created directory <WORK>/dest\n\
             src <TMP>/src\n\
             sent <N> bytes  received <N> bytes  <N> bytes/sec\n\
             total size is 1,048,576  speedup is <N>\n\
             rsync error: some files could not be transferred (code 23) at <SRC> [sender=<VER>]\n\
             File list generation time: <T>\n\
             rsync[<PID>] (receiver) heap statistics:\n\
             Total bytes sent: 1,234\n"
        );
        let l = normalise(text, &ctx(StatsCompare::Loose));
        assert!(l.contains("total size is <N>  speedup is <N>\n"), "{l}");
        assert!(l.contains("Total bytes sent: <N>\n"), "{l}");
    }

    #[test]
    fn masks_progress_rates_and_times() {
        let ctx = NormaliseCtx { port: 0, replace: vec![], stats: StatsCompare::Strict };
        let a = "              5 100%    4.88kB/s    0:00:00 (xfr#2, to-chk=0/4)\n";
        let b = "              5 100%    2.44kB/s    0:00:01 (xfr#2, to-chk=0/4)\n";
        assert_eq!(normalise(a, &ctx), normalise(b, &ctx));
        assert!(normalise(a, &ctx).contains("5 100%    <RATE>    <TIME> (xfr#2, to-chk=0/4)"));
        // Sizes and counts stay compared.
        let c = "              6 100%    4.88kB/s    0:00:00 (xfr#2, to-chk=0/4)\n";
        assert_ne!(normalise(a, &ctx), normalise(c, &ctx));
    }

    #[test]
    fn drops_connection_reset_lines() {
        let text = "rsync error: x (code 23)\n\
                    rsync: [Receiver] read error: Connection reset by peer (104)\n\
                    rsync error: error in socket IO (code 10)\n";
        assert_eq!(
            normalise(text, &ctx(StatsCompare::Strict)),
            "rsync error: x (code 23)\nrsync error: error in socket IO (code 10)\n"
        );
    }

    #[test]
    fn diff_shows_changed_lines() {
        assert_eq!(text_diff("a\nb\n", "a\nb\n"), None);
        let d = text_diff("a\nb\nc\n", "a\nx\nc\n").unwrap();
        assert_eq!(d, "  a\n- b\n+ x\n  c\n");
    }
}

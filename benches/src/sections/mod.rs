//! The measured sections and what they share: configuration, the results
//! store, time budgets, trees.

pub mod files_from;
pub mod micro;
pub mod null_sync;
pub mod pull;
pub mod snapshot;
pub mod strace;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::results::{Key, Store};
use crate::tree::{self, TreeInfo};

/// A section of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// Null syncs at several tree sizes and client counts.
    NullSync,
    /// Syscalls of one null sync, traced.
    Strace,
    /// Full and delta pulls of real data, with and without compression.
    Pull,
    /// `--files-from` with long lists.
    FilesFrom,
    /// Snapshot build/open/update figures.
    Snapshot,
    /// Criterion micro-benchmarks.
    Micro,
}

impl Section {
    /// All, in the order they run.
    pub const ALL: [Section; 6] = [Section::NullSync, Section::Strace, Section::Pull, Section::FilesFrom, Section::Snapshot, Section::Micro];

    /// Name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Section::NullSync => "null-sync",
            Section::Strace => "strace",
            Section::Pull => "pull",
            Section::FilesFrom => "files-from",
            Section::Snapshot => "snapshot",
            Section::Micro => "micro",
        }
    }

    /// Parses [`Section::name`].
    pub fn parse(s: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Client option sets of the null sync.
pub const NULL_SCENARIOS: &[(&str, &[&str])] = &[("a", &["-a"]), ("mirror", &["-aH", "--delete", "--delay-updates"])];

/// The client flags of a null-sync scenario name.
pub fn scenario_flags(name: &str) -> Vec<String> {
    NULL_SCENARIOS.iter().find(|(n, _)| *n == name).map(|(_, f)| f.iter().map(|s| s.to_string()).collect()).unwrap_or_default()
}

/// Human text of a scenario name.
pub fn scenario_text(name: &str) -> String {
    let f = scenario_flags(name);
    if f.is_empty() {
        name.to_string()
    } else {
        format!("`{}`", f.join(" "))
    }
}

/// Everything a run is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Quick mode (small trees, one run).
    pub quick: bool,
    /// Sections to run.
    pub sections: Vec<Section>,
    /// Mirror tree sizes (entries) for null sync, strace and snapshot.
    pub sizes: Vec<u64>,
    /// Concurrent clients for the null sync.
    pub conc: Vec<usize>,
    /// Runs per daemon and configuration.
    pub runs: usize,
    /// Bytes of the mixed tree for full/delta pulls.
    pub pull_bytes: u64,
    /// Runs per daemon of each pull configuration.
    pub pull_runs: usize,
    /// Fraction of blocks the delta basis differs in.
    pub delta_pct: f64,
    /// `--files-from` list lengths.
    pub ff_names: Vec<u64>,
    /// Timeout of a plain-client `--files-from` pull, seconds.
    pub plain_timeout: u64,
    /// Timeout of any other client, seconds.
    pub client_timeout: u64,
    /// Snapshot updates measured per tree size.
    pub updates: usize,
    /// Criterion warm-up and measurement seconds.
    pub criterion_secs: (f64, f64),
    /// Minutes per section.
    pub budget_min: Vec<(Section, f64)>,
    /// Generator seed.
    pub seed: u64,
    /// Trees and daemon state.
    pub work: PathBuf,
    /// Pull destinations (tmpfs).
    pub shm: PathBuf,
    /// Results directory.
    pub out: PathBuf,
    /// Stock rsync.
    pub rsync: PathBuf,
    /// Our daemon.
    pub rsyncd: PathBuf,
    /// Workspace root.
    pub ws: PathBuf,
}

impl Config {
    /// The budget of `s`.
    pub fn budget(&self, s: Section) -> Duration {
        let m = self.budget_min.iter().find(|(x, _)| *x == s).map(|(_, m)| *m).unwrap_or(60.0);
        Duration::from_secs_f64(m * 60.0)
    }
}

/// A running benchmark: configuration, results, the current section's clock.
pub struct Ctx {
    /// Configuration.
    pub cfg: Config,
    /// Results.
    pub store: Store,
    /// Clock ticks per second.
    pub tck: f64,
    section: Option<(Section, Instant)>,
}

impl Ctx {
    /// A context writing into `cfg.out` (keeping its earlier samples).
    pub fn new(cfg: Config) -> Result<Ctx> {
        let store = Store::load(&cfg.out)?;
        Ok(Ctx { cfg, store, tck: crate::procstat::clk_tck(), section: None })
    }

    /// Starts timing `s` against its budget.
    pub fn begin(&mut self, s: Section) {
        self.store.begin_section(s.name());
        self.section = Some((s, Instant::now()));
        eprintln!("=== section {} (budget {:.0} min)", s.name(), self.cfg.budget(s).as_secs_f64() / 60.0);
    }

    /// True (and noted once per call site's `what`) when the current section
    /// has used its budget: the caller skips what is left.
    pub fn over_budget(&mut self, what: &str) -> bool {
        let Some((s, t0)) = self.section else { return false };
        if t0.elapsed() > self.cfg.budget(s) {
            self.store.note(s.name(), format!("time budget ({:.0} min) used up: skipped {what}", self.cfg.budget(s).as_secs_f64() / 60.0));
            true
        } else {
            false
        }
    }

    /// Records a value of the unit begun with [`Store::begin_unit`].
    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, section: Section, scenario: &str, tree: u64, variant: &str, conc: u32, daemon: &str, metric: &str, run: u32, value: f64, load: f64) {
        let key = Key {
            section: section.name().into(),
            scenario: scenario.into(),
            tree,
            variant: variant.into(),
            conc,
            daemon: daemon.into(),
            metric: metric.into(),
        };
        self.store.push(key, run, value, load);
    }

    /// Saves the samples and regenerates the summary, CSV/JSON and plots.
    pub fn checkpoint(&self) -> Result<()> {
        self.store.save()?;
        crate::report::write_all(&self.store, &self.cfg)
    }

    /// The mirror tree of `entries` (generated unless a matching one exists).
    pub fn mirror(&self, entries: u64) -> Result<(PathBuf, TreeInfo)> {
        let root = self.cfg.work.join(format!("mirror-{entries}")).join("tree");
        let seed = self.cfg.seed;
        let info = tree::ensure(&root, "mirror", entries, seed, |r| tree::mirror::generate(r, entries, seed))?;
        Ok((root, info))
    }

    /// The client's copy of the mirror tree of `entries`: the same tree
    /// generated again (made exact by the first `--delete` pull).
    pub fn mirror_copy(&self, entries: u64) -> Result<PathBuf> {
        let root = self.cfg.work.join(format!("mirror-{entries}")).join("copy");
        let seed = self.cfg.seed;
        tree::ensure(&root, "mirror", entries, seed, |r| tree::mirror::generate(r, entries, seed))?;
        Ok(root)
    }

    /// Directory for a daemon pair's config, logs and state.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.cfg.work.join("run").join(name)
    }
}

/// Free bytes of the file system holding `p`.
pub fn free_bytes(p: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(p).output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1)?.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_round_trip() {
        for s in Section::ALL {
            assert_eq!(Section::parse(s.name()), Some(s));
        }
        assert_eq!(Section::parse("nope"), None);
        assert_eq!(scenario_flags("mirror"), vec!["-aH", "--delete", "--delay-updates"]);
        assert_eq!(scenario_text("a"), "`-a`");
        assert!(free_bytes(Path::new("/")) > 0);
    }
}

//! Raw samples and their medians.
//!
//! Every measurement is one [`Sample`] (long format: one metric value of one
//! run). A results directory keeps them in `raw.csv`; a later invocation
//! loads it and replaces only the units it measures again, so sections can
//! be run (and committed) one at a time into the same directory.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// What a sample belongs to, without its run number and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// `null-sync`, `strace`, `pull`, `files-from`, `snapshot`, `micro`, `setup`.
    pub section: String,
    /// Client options or kind of pull, e.g. `a`, `mirror`, `full`, `delta`.
    pub scenario: String,
    /// Tree size: entries (mirror), bytes (mixed) or names (`--files-from`).
    pub tree: u64,
    /// Compression, or another variant; `-` when none.
    pub variant: String,
    /// Concurrent clients.
    pub conc: u32,
    /// `stock`, `ours`, `find`, …
    pub daemon: String,
    /// Metric name (unit in the name: `_s`, `_mib`, `_bytes`, …).
    pub metric: String,
}

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// What it measures.
    pub key: Key,
    /// Run number (1-based; 0 for one-off values).
    pub run: u32,
    /// The value.
    pub value: f64,
    /// 1-minute load average when the run started.
    pub load1: f64,
}

/// Median, min and max of a key's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Values.
    pub n: usize,
    /// Smallest and largest load average of the runs.
    pub load_min: f64,
    /// See `load_min`.
    pub load_max: f64,
}

/// Median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Agg {
    /// Of `samples` (all of one key).
    pub fn of(samples: &[&Sample]) -> Option<Agg> {
        let vals: Vec<f64> = samples.iter().map(|s| s.value).filter(|v| !v.is_nan()).collect();
        if vals.is_empty() {
            return None;
        }
        let loads: Vec<f64> = samples.iter().map(|s| s.load1).filter(|v| !v.is_nan()).collect();
        Some(Agg {
            median: median(vals.clone()),
            min: vals.iter().cloned().fold(f64::INFINITY, f64::min),
            max: vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            n: vals.len(),
            load_min: loads.iter().cloned().fold(f64::NAN, f64::min),
            load_max: loads.iter().cloned().fold(f64::NAN, f64::max),
        })
    }
}

const HEADER: &str = "section,scenario,tree,variant,conc,daemon,run,metric,value,load1";

fn clean(s: &str) -> String {
    s.replace([',', '\n'], ";")
}

/// The samples of a results directory, and notes (skipped runs, failures).
#[derive(Debug, Default)]
pub struct Store {
    /// The results directory.
    pub dir: PathBuf,
    /// All samples.
    pub samples: Vec<Sample>,
    /// Notes per section.
    pub notes: BTreeMap<String, Vec<String>>,
    fresh_units: HashSet<(String, String, u64, String, u32)>,
    fresh_sections: HashSet<String>,
}

impl Store {
    /// Loads `dir/raw.csv` and `dir/notes.tsv` if present.
    pub fn load(dir: &Path) -> Result<Store> {
        let mut st = Store { dir: dir.to_path_buf(), ..Store::default() };
        if let Ok(text) = fs::read_to_string(dir.join("raw.csv")) {
            st.samples = parse_csv(&text);
        }
        if let Ok(text) = fs::read_to_string(dir.join("notes.tsv")) {
            for line in text.lines() {
                if let Some((s, n)) = line.split_once('\t') {
                    st.notes.entry(s.to_string()).or_default().push(n.to_string());
                }
            }
        }
        Ok(st)
    }

    /// A section starts measuring: its old notes go.
    pub fn begin_section(&mut self, section: &str) {
        if self.fresh_sections.insert(section.to_string()) {
            self.notes.remove(section);
        }
    }

    /// Adds a note to `section`.
    pub fn note(&mut self, section: &str, text: impl Into<String>) {
        let t: String = text.into();
        eprintln!("note [{section}]: {t}");
        self.notes.entry(section.to_string()).or_default().push(t.replace(['\n', '\t'], " "));
    }

    /// A unit (section, scenario, tree, variant, concurrency) is about to be
    /// measured: samples of it from an earlier invocation are dropped.
    pub fn begin_unit(&mut self, section: &str, scenario: &str, tree: u64, variant: &str, conc: u32) {
        let u = (section.to_string(), scenario.to_string(), tree, variant.to_string(), conc);
        if self.fresh_units.insert(u) {
            self.samples.retain(|s| {
                !(s.key.section == section && s.key.scenario == scenario && s.key.tree == tree && s.key.variant == variant && s.key.conc == conc)
            });
        }
    }

    /// Records one value (call [`Store::begin_unit`] first).
    pub fn push(&mut self, key: Key, run: u32, value: f64, load1: f64) {
        self.samples.push(Sample { key, run, value, load1 });
    }

    /// Writes `raw.csv` and `notes.tsv`.
    pub fn save(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        fs::write(self.dir.join("raw.csv"), to_csv(&self.samples))?;
        let mut n = String::new();
        for (s, notes) in &self.notes {
            for t in notes {
                let _ = writeln!(n, "{s}\t{t}");
            }
        }
        fs::write(self.dir.join("notes.tsv"), n)?;
        Ok(())
    }

    /// Median/min/max per key.
    pub fn aggregate(&self) -> BTreeMap<Key, Agg> {
        let mut by: BTreeMap<Key, Vec<&Sample>> = BTreeMap::new();
        for s in &self.samples {
            by.entry(s.key.clone()).or_default().push(s);
        }
        by.into_iter().filter_map(|(k, v)| Some((k, Agg::of(&v)?))).collect()
    }
}

/// Samples as CSV (with header).
pub fn to_csv(samples: &[Sample]) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for x in samples {
        let k = &x.key;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{}",
            clean(&k.section),
            clean(&k.scenario),
            k.tree,
            clean(&k.variant),
            k.conc,
            clean(&k.daemon),
            x.run,
            clean(&k.metric),
            x.value,
            x.load1
        );
    }
    s
}

/// Parses [`to_csv`] output (bad lines are skipped).
pub fn parse_csv(text: &str) -> Vec<Sample> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != 10 {
                return None;
            }
            Some(Sample {
                key: Key {
                    section: f[0].into(),
                    scenario: f[1].into(),
                    tree: f[2].parse().ok()?,
                    variant: f[3].into(),
                    conc: f[4].parse().ok()?,
                    daemon: f[5].into(),
                    metric: f[7].into(),
                },
                run: f[6].parse().ok()?,
                value: f[8].parse().ok()?,
                load1: f[9].parse().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, daemon: &str) -> Key {
        Key {
            section: "null-sync".into(),
            scenario: "a".into(),
            tree: 1000,
            variant: "-".into(),
            conc: 1,
            daemon: daemon.into(),
            metric: metric.into(),
        }
    }

    #[test]
    fn median_min_max() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        let s: Vec<Sample> = [5.0, 1.0, 3.0].iter().map(|&v| Sample { key: key("x", "ours"), run: 1, value: v, load1: v }).collect();
        let a = Agg::of(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((a.median, a.min, a.max, a.n, a.load_min, a.load_max), (3.0, 1.0, 5.0, 3, 1.0, 5.0));
    }

    #[test]
    fn csv_round_trip_and_unit_replacement() {
        let tmp = tempfile::tempdir().unwrap();
        let mut st = Store::load(tmp.path()).unwrap();
        st.begin_section("null-sync");
        st.begin_unit("null-sync", "a", 1000, "-", 1);
        st.push(key("server_cpu_s", "stock"), 1, 1.25, 0.5);
        st.push(key("server_cpu_s", "ours"), 1, 0.01, 0.5);
        st.note("null-sync", "a\tnote\nhere");
        st.save().unwrap();
        let mut again = Store::load(tmp.path()).unwrap();
        assert_eq!(again.samples, st.samples);
        assert_eq!(again.notes["null-sync"], vec!["a note here".to_string()]);
        // Measuring the unit again replaces it; other units stay.
        let mut other = key("server_cpu_s", "ours");
        other.conc = 4;
        again.begin_unit("null-sync", "a", 1000, "-", 4);
        again.push(other, 1, 0.02, 0.1);
        again.begin_unit("null-sync", "a", 1000, "-", 1);
        again.push(key("server_cpu_s", "ours"), 1, 0.03, 0.1);
        again.push(key("server_cpu_s", "ours"), 2, 0.05, 0.1);
        let agg = again.aggregate();
        assert_eq!(agg.len(), 2);
        assert_eq!(agg[&key("server_cpu_s", "ours")].median, 0.04);
        again.begin_section("null-sync");
        assert!(!again.notes.contains_key("null-sync"));
    }
}

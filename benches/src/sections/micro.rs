//! Criterion micro-benchmarks of the hot paths (`benches/benches/hot_paths.rs`),
//! run with short warm-up and measurement times; their medians (and the
//! 95% interval of the median) are read from criterion's JSON output.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use super::{Ctx, Section};

/// One criterion result.
#[derive(Debug, Clone, PartialEq)]
pub struct Bench {
    /// `group/function/parameter`.
    pub id: String,
    /// Median time per iteration, ns, and its 95% interval.
    pub median_ns: (f64, f64, f64),
    /// Bytes or elements per iteration.
    pub throughput: Option<(String, f64)>,
}

/// Reads every `new/benchmark.json` + `new/estimates.json` under `dir`.
pub fn read_results(dir: &Path) -> Result<Vec<Bench>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") && p.join("benchmark.json").is_file() {
                    out.push(parse(&p)?);
                } else if p.file_name().is_some_and(|n| n != "base" && n != "change" && n != "report") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn parse(new: &Path) -> Result<Bench> {
    let b: Value = serde_json::from_str(&std::fs::read_to_string(new.join("benchmark.json"))?)?;
    let e: Value = serde_json::from_str(&std::fs::read_to_string(new.join("estimates.json"))?)?;
    let id = b["full_id"].as_str().context("full_id")?.to_string();
    let m = &e["median"];
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let median_ns = (num(&m["point_estimate"]), num(&m["confidence_interval"]["lower_bound"]), num(&m["confidence_interval"]["upper_bound"]));
    let throughput = b["throughput"].as_object().and_then(|o| o.iter().next()).and_then(|(k, v)| Some((k.to_lowercase(), v.as_f64()?)));
    Ok(Bench { id, median_ns, throughput })
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let home: PathBuf = ctx.cfg.work.join("criterion");
    if home.exists() {
        std::fs::remove_dir_all(&home)?;
    }
    let (warm, meas) = ctx.cfg.criterion_secs;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let load = crate::procstat::load1();
    let st = Command::new(cargo)
        .current_dir(&ctx.cfg.ws)
        .args(["bench", "-p", "benches", "--bench", "hot_paths", "--", "--warm-up-time"])
        .arg(warm.to_string())
        .arg("--measurement-time")
        .arg(meas.to_string())
        .env("CRITERION_HOME", &home)
        .status()
        .context("cargo bench")?;
    ensure!(st.success(), "cargo bench -p benches --bench hot_paths failed");
    let results = read_results(&home)?;
    ensure!(!results.is_empty(), "no criterion results under {}", home.display());
    for b in results {
        let variant = b.throughput.as_ref().map(|(k, _)| k.clone()).unwrap_or_else(|| "-".into());
        ctx.store.begin_unit(Section::Micro.name(), &b.id, 0, &variant, 1);
        let (m, lo, hi) = b.median_ns;
        for (metric, v) in [("median_ns", m), ("median_ns_lo", lo), ("median_ns_hi", hi)] {
            ctx.push(Section::Micro, &b.id, 0, &variant, 1, "ours", metric, 1, v, load);
        }
        if let Some((_, per_iter)) = b.throughput {
            ctx.push(Section::Micro, &b.id, 0, &variant, 1, "ours", "per_second", 1, per_iter / (m * 1e-9), load);
        }
    }
    ctx.checkpoint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_json() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("strong/md5/8192/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"strong","function_id":"md5","value_str":"8192","throughput":{"Bytes":8192},"full_id":"strong/md5/8192","directory_name":"strong/md5/8192","title":"strong/md5/8192"}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":10.0,"standard_error":0.1}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(tmp.path().join("strong/md5/8192/base")).unwrap();
        let r = read_results(tmp.path()).unwrap();
        assert_eq!(r, vec![Bench { id: "strong/md5/8192".into(), median_ns: (10.0, 9.0, 11.0), throughput: Some(("bytes".into(), 8192.0)) }]);
    }
}

//! A distribution mirror of N entries, shaped like Fedora's
//! `releases/` tree:
//!
//! ```text
//! releases/<ver>/<variant>/<arch>/os/Packages/<x>/<name>-<v>-<r>.fc<ver>.<arch>.rpm
//! releases/<ver>/<variant>/<arch>/os/repodata/<hash>-primary.xml.zck …
//! releases/<ver>/<variant>/<arch>/os/images/install.img, pxeboot/{vmlinuz,initrd.img}
//! releases/<ver>/<variant>/<arch>/os/{.treeinfo,media.repo}
//! releases/<ver>/<variant>/<arch>/iso/Fedora-…​.iso, …-CHECKSUM, …-latest.iso -> …
//! releases/latest -> <newest ver>
//! ```
//!
//! - One `os` tree (36 `Packages/<x>` letter directories) per ~3700
//!   entries, four variants per architecture, four architectures per
//!   version; letter directories hold 10-1000+ packages (skewed, the same
//!   letters heavy in every tree), so 1M entries make ~10,000 directories.
//! - Package sizes 1-200 KiB log-uniform, 2% of them 200 KiB-64 MiB; a few
//!   large files per tree (install images 0.6-0.9 GB, DVD isos 1-4 GiB,
//!   repodata of 1-60 MB). All files are **sparse** (`ftruncate`, no data):
//!   only directories and inodes take disk space. Null syncs,
//!   `--files-from` and snapshot builds never read content.
//! - Non-Everything variants hard-link 30% of their packages to the
//!   Everything tree of the same version and architecture (as Fedora's
//!   `hardlink` run does); 0.5% of packages are symlinks to a sibling; each
//!   iso directory has a `-latest.iso` symlink.
//! - The newest version's `iso/` directories are mode 0750 (pre-bitflip:
//!   hidden from a `uid = nobody` module by both daemons).
//! - mtimes are whole seconds, per version 180 days apart, seeded.
//!
//! The same seed and size give the same tree (names, sizes, modes, mtimes,
//! links), so the client's copy for null syncs is generated, not pulled.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{check_umask, DirTimes, TreeInfo, SYLLABLES};
use crate::rng::Rng;

/// Variants per version (Everything first: the others hard-link to it).
pub const VARIANTS: &[&str] = &["Everything", "Server", "Workstation", "Cloud"];
/// Architectures per version.
pub const ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x"];
const LETTERS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Entries per `os` tree (packages plus ~60 fixed entries).
const ENTRIES_PER_TREE: u64 = 3700;
/// Newest release number.
const NEWEST: u32 = 41;
const DAY: i64 = 86_400;

#[derive(Debug, Clone)]
struct OsTree {
    ver: u32,
    ver_index: usize,
    arch: usize,
    variant: usize,
    /// `releases/<ver>/<variant>/<arch>`
    rel: PathBuf,
}

struct Gen {
    rng: Rng,
    root: PathBuf,
    dirs: DirTimes,
    info: TreeInfo,
}

impl Gen {
    fn mkdir(&mut self, rel: &Path, mode: u32, mtime: i64) -> Result<()> {
        self.dirs.mkdir(&self.root.join(rel), mode, mtime)?;
        self.info.entries += 1;
        self.info.dirs += 1;
        if mode & 0o007 == 0 {
            self.info.dirs_0750 += 1;
        }
        Ok(())
    }

    fn file(&mut self, rel: &Path, size: u64, mtime: i64) -> Result<()> {
        let f = fs::File::create(self.root.join(rel))?;
        if size > 0 {
            f.set_len(size)?;
        }
        f.set_modified(super::at(mtime))?;
        self.info.entries += 1;
        self.info.files += 1;
        self.info.apparent_bytes += size;
        self.info.largest_file = self.info.largest_file.max(size);
        Ok(())
    }

    fn symlink(&mut self, target: &str, rel: &Path) -> Result<()> {
        symlink(target, self.root.join(rel))?;
        self.info.entries += 1;
        self.info.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, existing: &Path, rel: &Path) -> Result<()> {
        fs::hard_link(self.root.join(existing), self.root.join(rel))?;
        self.info.entries += 1;
        self.info.hardlinks += 1;
        Ok(())
    }

    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.rng.next_u64()));
        }
        s.truncate(n);
        s
    }
}

fn plan(entries: u64) -> Vec<OsTree> {
    let n = (entries / ENTRIES_PER_TREE).max(2) as usize;
    let per_ver = VARIANTS.len() * ARCHES.len();
    let vers = n.div_ceil(per_ver);
    let first = NEWEST + 1 - vers as u32;
    (0..n)
        .map(|i| {
            let ver_index = i / per_ver;
            let (arch, variant) = ((i % per_ver) / VARIANTS.len(), i % VARIANTS.len());
            let ver = first + ver_index as u32;
            OsTree { ver, ver_index, arch, variant, rel: PathBuf::from(format!("releases/{ver}/{}/{}", VARIANTS[variant], ARCHES[arch])) }
        })
        .collect()
}

/// Split `total` into `weights.len()` parts proportional to the weights, exactly.
fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let mut parts: Vec<u64> = weights.iter().map(|w| (total as f64 * w / sum).floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut i = 0;
    while left > 0 {
        parts[i % weights.len()] += 1;
        left -= 1;
        i += 1;
    }
    parts
}

fn package_name(rng: &mut Rng, letter: u8) -> String {
    let mut s = String::new();
    s.push(letter as char);
    for _ in 0..1 + rng.below(3) {
        s.push_str(rng.pick::<&str>(SYLLABLES));
    }
    s.push_str(rng.pick::<&str>(&["", "", "", "-devel", "-libs", "-doc", "-common", "-tools", "-data", "3", "-fonts"]));
    s
}

/// Generates the mirror under `root` (must not exist) with exactly
/// `entries` entries below the root.
pub fn generate(root: &Path, entries: u64, seed: u64) -> Result<TreeInfo> {
    check_umask()?;
    let trees = plan(entries);
    let n_vers = trees.last().map(|t| t.ver_index + 1).unwrap_or(1);
    let ver_time = |vi: usize| 1_700_000_000 - (n_vers - 1 - vi) as i64 * 180 * DAY;
    fs::create_dir_all(root)?;
    let mut g = Gen { rng: Rng::new(seed), root: root.to_path_buf(), dirs: DirTimes::default(), info: TreeInfo::default() };
    g.dirs.record(root, 0o755, ver_time(n_vers - 1) + DAY);

    // Phase 1: the fixed structure of every tree.
    g.mkdir(Path::new("releases"), 0o755, ver_time(n_vers - 1) + DAY)?;
    let mut seen_ver = HashSet::new();
    let mut seen_variant = HashSet::new();
    for t in &trees {
        let base = ver_time(t.ver_index);
        let vdir = PathBuf::from(format!("releases/{}", t.ver));
        if seen_ver.insert(t.ver) {
            g.mkdir(&vdir, 0o755, base)?;
        }
        let var_dir = vdir.join(VARIANTS[t.variant]);
        if seen_variant.insert(var_dir.clone()) {
            g.mkdir(&var_dir, 0o755, base)?;
        }
        let (arch, variant) = (ARCHES[t.arch], VARIANTS[t.variant]);
        g.mkdir(&t.rel, 0o755, base)?;
        let os = t.rel.join("os");
        g.mkdir(&os, 0o755, base)?;
        g.mkdir(&os.join("Packages"), 0o755, base)?;
        for &l in LETTERS {
            g.mkdir(&os.join("Packages").join((l as char).to_string()), 0o755, base)?;
        }
        let repodata = os.join("repodata");
        g.mkdir(&repodata, 0o755, base)?;
        let t_repo = base + g.rng.below(DAY as u64) as i64;
        let sz = g.rng.log_uniform(3_000, 8_000);
        g.file(&repodata.join("repomd.xml"), sz, t_repo)?;
        for (kind, lo, hi) in [("primary.xml.zck", 1 << 20, 20 << 20), ("filelists.xml.zck", 10 << 20, 60 << 20), ("other.xml.zck", 5 << 20, 30 << 20)] {
            let name = format!("{}-{kind}", g.hex(64));
            let sz = g.rng.log_uniform(lo, hi);
            g.file(&repodata.join(name), sz, t_repo)?;
        }
        let name = format!("{}-comps-{variant}.{arch}.xml.gz", g.hex(64));
        let sz = g.rng.log_uniform(500_000, 2_000_000);
        g.file(&repodata.join(name), sz, t_repo)?;
        let images = os.join("images");
        g.mkdir(&images, 0o755, base)?;
        g.mkdir(&images.join("pxeboot"), 0o755, base)?;
        let sz = g.rng.log_uniform(600_000_000, 900_000_000);
        g.file(&images.join("install.img"), sz, base)?;
        let sz = g.rng.log_uniform(10_000_000, 15_000_000);
        g.file(&images.join("pxeboot/vmlinuz"), sz, base)?;
        let sz = g.rng.log_uniform(60_000_000, 120_000_000);
        g.file(&images.join("pxeboot/initrd.img"), sz, base)?;
        let sz = g.rng.log_uniform(1_000, 2_000);
        g.file(&os.join(".treeinfo"), sz, base)?;
        let sz = g.rng.log_uniform(100, 200);
        g.file(&os.join("media.repo"), sz, base)?;
        let iso = t.rel.join("iso");
        let iso_mode = if t.ver == NEWEST { 0o750 } else { 0o755 };
        g.mkdir(&iso, iso_mode, base)?;
        let iso_name = format!("Fedora-{variant}-dvd-{arch}-{}-1.5.iso", t.ver);
        let sz = g.rng.log_uniform(1 << 30, 4 << 30);
        g.file(&iso.join(&iso_name), sz, base)?;
        let sz = g.rng.log_uniform(1_000, 2_000);
        g.file(&iso.join(format!("Fedora-{variant}-{}-1.5-{arch}-CHECKSUM", t.ver)), sz, base)?;
        g.symlink(&iso_name, &iso.join(format!("Fedora-{variant}-{arch}-latest.iso")))?;
    }
    g.symlink(&trees.last().map(|t| t.ver).unwrap_or(NEWEST).to_string(), Path::new("releases/latest"))?;

    // Phase 2: packages, exactly filling the budget.
    let Some(budget) = entries.checked_sub(g.info.entries) else {
        bail!("{entries} entries is too small for the mirror layout (needs more than {})", g.info.entries);
    };
    let tree_w: Vec<f64> = trees.iter().map(|_| 0.8 + 0.4 * g.rng.unit()).collect();
    let per_tree = apportion(budget, &tree_w);
    let letter_w: Vec<f64> = LETTERS.iter().map(|_| 0.05 + 4.0 * g.rng.unit().powi(3)).collect();
    // Everything's packages of the current version, per (arch, letter).
    let mut pool: HashMap<(usize, u8), Vec<PathBuf>> = HashMap::new();
    let mut pool_ver = 0;
    for (t, &count) in trees.iter().zip(&per_tree) {
        if t.ver != pool_ver {
            pool.clear();
            pool_ver = t.ver;
        }
        let base = ver_time(t.ver_index);
        let arch = ARCHES[t.arch];
        for (&letter, &n) in LETTERS.iter().zip(&apportion(count, &letter_w)) {
            let dir = t.rel.join("os/Packages").join((letter as char).to_string());
            let mut names: HashSet<String> = HashSet::new();
            let mut made: Vec<String> = Vec::new();
            for _ in 0..n {
                let r = g.rng.unit();
                if t.variant > 0 && r < 0.30 {
                    let cands = pool.get(&(t.arch, letter)).map(|v| v.len()).unwrap_or(0);
                    if cands > 0 {
                        let pick = pool[&(t.arch, letter)][g.rng.below(cands as u64) as usize].clone();
                        let name = pick.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if names.insert(name.clone()) {
                            g.hardlink(&pick, &dir.join(&name))?;
                            made.push(name);
                            continue;
                        }
                    }
                }
                if r > 0.995 && !made.is_empty() {
                    let target = made[g.rng.below(made.len() as u64) as usize].clone();
                    let name = format!("{}-compat.rpm", target.trim_end_matches(".rpm"));
                    if names.insert(name.clone()) {
                        g.symlink(&target, &dir.join(&name))?;
                        continue;
                    }
                }
                let name = loop {
                    let pkg = package_name(&mut g.rng, letter);
                    let pa = if g.rng.chance(0.2) { "noarch" } else { arch };
                    let name = format!(
                        "{pkg}-{}.{}.{}-{}.fc{}.{pa}.rpm",
                        g.rng.below(12),
                        g.rng.below(30),
                        g.rng.below(20),
                        1 + g.rng.below(5),
                        t.ver
                    );
                    if names.insert(name.clone()) {
                        break name;
                    }
                };
                let size = if g.rng.chance(0.02) { g.rng.log_uniform(200 << 10, 64 << 20) } else { g.rng.log_uniform(1 << 10, 200 << 10) };
                let mtime = base - 30 * DAY + g.rng.below(30 * DAY as u64) as i64;
                let rel = dir.join(&name);
                g.file(&rel, size, mtime)?;
                if t.variant == 0 {
                    pool.entry((t.arch, letter)).or_default().push(rel);
                }
                made.push(name);
            }
        }
    }
    let Gen { dirs, info, .. } = g;
    dirs.finish()?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// (path, kind, size, mode, nlink, mtime unless symlink, link target).
    type Listing = Vec<(PathBuf, u32, u64, u32, u64, Option<i64>, Option<PathBuf>)>;

    fn listing(root: &Path) -> Listing {
        let mut out = Vec::new();
        crate::tree::walk(root, &mut |rel, md| {
            let link = md.file_type().is_symlink().then(|| fs::read_link(root.join(rel)).unwrap());
            out.push((rel.to_path_buf(), md.mode() & 0o170000, md.len(), md.mode() & 0o7777, md.nlink(), link.is_none().then(|| md.mtime()), link));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn exact_deterministic_and_mirror_shaped() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let info = generate(&a, 3000, 5).unwrap();
        generate(&b, 3000, 5).unwrap();
        let la = listing(&a);
        assert_eq!(la.len() as u64, 3000, "exactly the entries asked for");
        assert_eq!(info.entries, 3000);
        assert_eq!(info.files + info.dirs + info.symlinks + info.hardlinks, 3000);
        assert!(la == listing(&b), "same seed, same tree");
        assert!(info.hardlinks > 100, "Server hard-links to Everything: {info:?}");
        assert!(info.symlinks >= 3, "{info:?}");
        assert_eq!(info.dirs_0750, 2, "newest version's iso dirs: {info:?}");
        let iso = a.join("releases/41/Everything/x86_64/iso");
        assert_eq!(fs::metadata(&iso).unwrap().permissions().mode() & 0o777, 0o750);
        // Sparse: gigabytes of sizes, almost no blocks.
        assert!(info.apparent_bytes > 2 << 30, "{info:?}");
        let blocks: u64 = la.iter().map(|e| fs::symlink_metadata(a.join(&e.0)).unwrap().blocks()).sum();
        assert!(blocks * 512 < 64 << 20, "{blocks} blocks");
        // Packages mostly 1-200 KiB.
        let pk: Vec<u64> = la.iter().filter(|e| e.0.to_string_lossy().ends_with(".rpm") && e.1 == 0o100000).map(|e| e.2).collect();
        let small = pk.iter().filter(|&&s| (1024..=200 * 1024).contains(&s)).count();
        assert!(small * 100 > pk.len() * 90, "{small} of {}", pk.len());
        assert!(la.iter().any(|e| e.0 == Path::new("releases/41/Everything/x86_64/os/Packages/l")));
        // Another seed, another tree.
        let c = tmp.path().join("c");
        generate(&c, 3000, 6).unwrap();
        assert!(la != listing(&c));
    }

    #[test]
    fn too_small_is_an_error_and_apportion_is_exact() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(generate(&tmp.path().join("x"), 50, 1).is_err());
        let p = apportion(1001, &[1.0, 2.0, 3.5]);
        assert_eq!(p.iter().sum::<u64>(), 1001);
        assert!(p[0] < p[1] && p[1] < p[2]);
    }

    #[test]
    fn plan_scales_with_entries() {
        assert_eq!(plan(10_000).len(), 2);
        let p = plan(1_000_000);
        assert_eq!(p.len(), 270);
        assert_eq!(p.last().unwrap().ver, NEWEST);
        assert_eq!(p[1].rel, Path::new(&format!("releases/{}/Server/x86_64", p[0].ver)));
    }
}

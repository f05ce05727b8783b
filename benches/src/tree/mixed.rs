//! A tree of real (non-sparse) data for full and delta pulls, and the
//! client's altered copy of it.
//!
//! By bytes: 35% packages (`Packages/<x>/*.rpm`, random, 1-200 KiB
//! log-uniform), 15% repodata (`repodata/*.xml`, XML-like text, 1-20 MiB),
//! 15% documentation (`docs/s<k>/*.html`, text, 1-64 KiB, 100 per
//! directory), 35% images (`images/*.img`, random, 20-200 MiB). Random data
//! does not compress; the text compresses about 3-5x with zlib, so `-z`
//! pays off on 30% of the bytes, roughly as on a distribution mirror.
//!
//! [`make_basis`] generates the same tree and alters it as a client copy
//! that is a few percent out of date: in every file, each rsync block
//! (the block length stock's generator picks for that file size) is
//! altered with probability `pct` (one byte flipped), and every file's
//! mtime is moved back an hour, so a pull runs the delta algorithm over all
//! the data and sends about `pct` of it as literals.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::{check_umask, DirTimes, TreeInfo, SYLLABLES};
use crate::rng::Rng;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

#[derive(Clone, Copy, PartialEq)]
enum Content {
    Random,
    Xml,
    Html,
}

struct Category {
    name: &'static str,
    share: f64,
    content: Content,
    lo: u64,
    hi: u64,
}

const CATEGORIES: &[Category] = &[
    Category { name: "Packages", share: 0.35, content: Content::Random, lo: 1 << 10, hi: 200 << 10 },
    Category { name: "repodata", share: 0.15, content: Content::Xml, lo: 1 << 20, hi: 20 << 20 },
    Category { name: "docs", share: 0.15, content: Content::Html, lo: 1 << 10, hi: 64 << 10 },
    Category { name: "images", share: 0.35, content: Content::Random, lo: 20 << 20, hi: 200 << 20 },
];

/// Writes `size` bytes of `content` to `w`.
fn write_content(w: &mut impl Write, rng: &mut Rng, content: Content, size: u64) -> Result<()> {
    let mut left = size as usize;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len());
        match content {
            Content::Random => rng.fill(&mut buf[..n]),
            Content::Xml | Content::Html => {
                let mut line = Vec::with_capacity(n + 256);
                while line.len() < n {
                    text_line(rng, content, &mut line);
                }
                buf[..n].copy_from_slice(&line[..n]);
            }
        }
        w.write_all(&buf[..n])?;
        left -= n;
    }
    Ok(())
}

fn word(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let syl: &str = rng.pick::<&str>(SYLLABLES);
        out.extend_from_slice(syl.as_bytes());
    }
}

/// One line of XML-like package metadata or HTML prose.
fn text_line(rng: &mut Rng, content: Content, out: &mut Vec<u8>) {
    if content == Content::Xml {
        out.extend_from_slice(b"<package type=\"rpm\"><name>");
        word(rng, out);
        out.extend_from_slice(format!("</name><arch>x86_64</arch><version epoch=\"0\" ver=\"{}.{}\" rel=\"{}.fc41\"/>", rng.below(10), rng.below(40), 1 + rng.below(5)).as_bytes());
        out.extend_from_slice(b"<summary>");
        for _ in 0..3 + rng.below(6) {
            word(rng, out);
            out.push(b' ');
        }
        out.extend_from_slice(format!("</summary><size package=\"{}\"/></package>\n", rng.below(1 << 20)).as_bytes());
    } else {
        out.extend_from_slice(b"<p>");
        for _ in 0..8 + rng.below(20) {
            word(rng, out);
            out.push(if rng.chance(0.1) { b',' } else { b' ' });
        }
        out.extend_from_slice(b"</p>\n");
    }
}

/// `n` bytes like the tree's files: `text` (XML-like metadata, compresses
/// several-fold) or random. For micro-benchmarks.
pub fn sample(n: usize, text: bool, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let content = if text { Content::Xml } else { Content::Random };
    // Writing into a Vec cannot fail.
    let _ = write_content(&mut out, &mut Rng::new(seed), content, n as u64);
    out
}

/// Generates the mixed tree under `root` (must not exist) with about
/// `total` bytes of data (exactly `total` when `total` is at least a few MB).
pub fn generate(root: &Path, total: u64, seed: u64) -> Result<TreeInfo> {
    check_umask()?;
    let mut rng = Rng::new(seed);
    let mut info = TreeInfo::default();
    let mut dirs = DirTimes::default();
    let t0 = 1_700_000_000i64;
    fs::create_dir_all(root)?;
    dirs.record(root, 0o755, t0);
    for cat in CATEGORIES {
        let budget = (total as f64 * cat.share) as u64;
        let top = root.join(cat.name);
        dirs.mkdir(&top, 0o755, t0)?;
        info.dirs += 1;
        let mut used = 0u64;
        let mut n = 0u64;
        let mut made_dirs = std::collections::HashSet::new();
        while used < budget {
            let size = rng.log_uniform(cat.lo, cat.hi).min(budget - used);
            let (dir, name) = match cat.content {
                Content::Random if cat.name == "Packages" => {
                    let l = *rng.pick(LETTERS) as char;
                    let mut name = String::new();
                    name.push(l);
                    let mut w = Vec::new();
                    word(&mut rng, &mut w);
                    name.push_str(&String::from_utf8_lossy(&w));
                    (top.join(l.to_string()), format!("{name}-{n}.fc41.x86_64.rpm"))
                }
                Content::Random => (top.clone(), format!("image-{n}.img")),
                Content::Xml => (top.clone(), format!("{:016x}-primary-{n}.xml", rng.next_u64())),
                Content::Html => (top.join(format!("s{}", n / 100)), format!("page-{n}.html")),
            };
            if dir != top && made_dirs.insert(dir.clone()) {
                dirs.mkdir(&dir, 0o755, t0)?;
                info.dirs += 1;
            }
            let path = dir.join(name);
            let f = fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            write_content(&mut w, &mut rng, cat.content, size)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.set_modified(super::at(t0 - rng.below(365 * 86_400) as i64))?;
            info.files += 1;
            info.apparent_bytes += size;
            info.data_bytes += size;
            if cat.content != Content::Random {
                info.text_bytes += size;
            }
            info.largest_file = info.largest_file.max(size);
            used += size;
            n += 1;
        }
    }
    info.entries = info.files + info.dirs;
    dirs.finish()?;
    Ok(info)
}

/// The rsync block length stock's generator uses for a basis of `len`
/// bytes (protocol 31).
pub fn block_len(len: u64) -> u64 {
    protocol::sums::SumHead::for_basis_len(len, 31, 16, 2, 0).map(|h| h.blength as u64).unwrap_or(700).max(1)
}

/// Generates the mixed tree (same `total` and `seed` as the served one)
/// under `root` and alters it into a client copy `pct` out of date (see the
/// module docs).
pub fn make_basis(root: &Path, total: u64, seed: u64, pct: f64) -> Result<TreeInfo> {
    let mut info = generate(root, total, seed)?;
    let mut rng = Rng::new(seed ^ 0xA17E_7ED0);
    let mut files = Vec::new();
    super::walk(root, &mut |rel, md| {
        if md.is_file() {
            files.push((rel.to_path_buf(), md.len(), md.modified().ok()));
        }
        true
    })?;
    for (rel, len, mtime) in files {
        let f = fs::OpenOptions::new().read(true).write(true).open(root.join(&rel))?;
        let bl = block_len(len);
        let blocks = len.div_ceil(bl);
        info.total_blocks += blocks;
        for b in 0..blocks {
            if rng.chance(pct) {
                let start = b * bl;
                let off = start + rng.below((len - start).min(bl));
                let mut byte = [0u8; 1];
                f.read_exact_at(&mut byte, off)?;
                byte[0] ^= 0xFF;
                f.write_all_at(&byte, off)?;
                info.altered_blocks += 1;
            }
        }
        if let Some(t) = mtime {
            f.set_modified(t - std::time::Duration::from_secs(3600))?;
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn mixed_tree_has_the_bytes_and_compresses_partly() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let total = 24 << 20;
        let info = generate(&a, total, 2).unwrap();
        assert!(info.data_bytes <= total && info.data_bytes > total * 99 / 100, "{info:?}");
        assert!(info.text_bytes > total / 4 && info.text_bytes < total * 2 / 5, "{info:?}");
        let mut on_disk = 0;
        let mut text = Vec::new();
        crate::tree::walk(&a, &mut |rel, md| {
            if md.is_file() {
                on_disk += md.len();
                if rel.starts_with("docs") && text.len() < 1 << 20 {
                    fs::File::open(a.join(rel)).unwrap().read_to_end(&mut text).unwrap();
                }
            }
            true
        })
        .unwrap();
        assert_eq!(on_disk, info.data_bytes);
        let z = zstd::bulk::compress(&text, 3).unwrap();
        assert!(z.len() * 2 < text.len(), "text compresses: {} -> {}", text.len(), z.len());
    }

    #[test]
    fn basis_differs_in_about_pct_of_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let total = 16 << 20;
        generate(&a, total, 4).unwrap();
        let info = make_basis(&b, total, 4, 0.05).unwrap();
        let frac = info.altered_blocks as f64 / info.total_blocks as f64;
        assert!((0.03..0.07).contains(&frac), "{info:?}");
        let (mut differing, mut files) = (0u64, 0u64);
        crate::tree::walk(&a, &mut |rel, md| {
            if md.is_file() {
                files += 1;
                let (x, y) = (fs::read(a.join(rel)).unwrap(), fs::read(b.join(rel)).unwrap());
                assert_eq!(x.len(), y.len());
                differing += x.iter().zip(&y).filter(|(p, q)| p != q).count() as u64;
                let (ma, mb) = (md.modified().unwrap(), fs::metadata(b.join(rel)).unwrap().modified().unwrap());
                assert_eq!(ma.duration_since(mb).unwrap().as_secs(), 3600);
            }
            true
        })
        .unwrap();
        assert_eq!(differing, info.altered_blocks, "one byte per altered block");
        assert!(files > 10);
        assert_eq!(block_len(100), 700);
        assert!(block_len(100 << 20) > 700);
    }
}

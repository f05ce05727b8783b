//! kill -9 during updates: a child process keeps refreshing and compacting (writing new
//! base files) and is killed mid-write; the last good generation must open.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use filelist_cache::{OpenSource, SnapshotStore, WalkControl};

use crate::store::{assert_same_tree, quiet_opts};
use crate::util::Dir;

const ROOT_VAR: &str = "FLC_CRASH_ROOT";
const STATE_VAR: &str = "FLC_CRASH_STATE";

/// The child's work loop; only runs when started by `kill_9_mid_write_...`.
#[test]
#[ignore = "helper: run as a child process by kill_9_mid_write_leaves_last_good_generation"]
fn crash_child_writer() {
    let (Some(root), Some(state)) = (std::env::var_os(ROOT_VAR), std::env::var_os(STATE_VAR))
    else {
        return;
    };
    let (store, _) =
        SnapshotStore::open_or_build_with(Path::new(&root), Path::new(&state), "mod", quiet_opts())
            .expect("child store");
    for i in 0u64.. {
        let p = Path::new(&root).join(format!("d{:02}/child-{i}", i % 20));
        fs::write(&p, b"c").expect("write");
        store
            .refresh(&[format!("d{:02}", i % 20).as_bytes()])
            .expect("refresh");
        store.compact().expect("compact");
    }
}

fn temp_file_present(state: &Path) -> bool {
    fs::read_dir(state)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().contains(".snap.tmp.")
                && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
        })
}

#[test]
fn kill_9_mid_write_leaves_last_good_generation() {
    let d = Dir::new();
    d.mkdir(b"");
    // ~60k entries: each compaction writes several MB, so the kill lands mid-write.
    for k in 0..20 {
        for j in 0..3000 {
            let p = d.path(format!("d{k:02}/f{j:05}").as_bytes());
            if j == 0 {
                fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            }
            fs::File::create(p).expect("create");
        }
    }
    let state = d.tmp.path().join("state");
    {
        let (_s, rep) = SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts())
            .expect("initial build");
        assert_eq!(rep.source, OpenSource::Built);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut killed_mid_write = 0;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(ROOT_VAR, d.root())
            .env(STATE_VAR, &state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let t0 = Instant::now();
        // Let it publish a few generations first, then kill while a temp file is open.
        std::thread::sleep(Duration::from_millis(150 * (round + 1)));
        while !temp_file_present(&state) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "child never wrote a file"
            );
            if let Ok(Some(st)) = child.try_wait() {
                panic!("child exited early: {st}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().expect("kill -9"); // SIGKILL
        child.wait().expect("reap");
        // Almost always still mid-write; the child may have renamed just before the kill.
        let had_temp = temp_file_present(&state);
        killed_mid_write += usize::from(had_temp);

        // The last good generation opens at once and is served, never a partial file.
        let (store, rep) =
            SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts())
                .expect("reopen");
        assert_eq!(
            rep.source,
            OpenSource::Opened,
            "round {round}: {:?}",
            rep.rejected
        );
        assert!(rep.rejected.is_empty(), "round {round}: {:?}", rep.rejected);
        assert_eq!(
            rep.removed
                .iter()
                .any(|p| p.to_string_lossy().contains(".snap.tmp.")),
            had_temp,
            "round {round}: temp file handling: {:?}",
            rep.removed
        );
        let g = store.current();
        let mut n = 0usize;
        g.walk(g.root(), &mut |p, e| {
            n += 1;
            assert_eq!(g.lookup(p).map(|x| x.index()), Some(e.index()));
            WalkControl::Continue
        });
        assert_eq!(n + 1, g.len());
        assert!(n >= 60_020);
        // Exactly one base file and no temp files remain.
        let names: Vec<String> = fs::read_dir(&state)
            .expect("readdir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".snap"))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Reconciling with the tree catches up with what the child did after its last
        // persisted generation.
        store.rescan().expect("reconcile");
        assert_same_tree(&store.current(), &d.root());
    }
    assert!(killed_mid_write > 0, "no kill landed mid-write");
}

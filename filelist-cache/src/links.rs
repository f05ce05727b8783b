//! Inode index for hard links.
//!
//! When a hard link is created or removed, the kernel reports a directory-entry event
//! for the name that changed, but the link count change of the *other* names of the
//! inode arrives (if at all) without a directory or name (fanotify drops it in
//! `FAN_REPORT_DFID_NAME` mode). To keep `nlink` exact, an update that sees a link count
//! change looks up the inode's other names here and re-examines them.
//!
//! Built once per base file (a pass over its records and a sort, off the update path:
//! at open and after a rescan or compaction), extended by every update with the
//! non-directories it adds. Entries can go stale (removed, replaced); callers verify
//! every candidate against the view (same dev and inode, still reachable).

use std::collections::HashMap;

use crate::Snapshot;

/// Inode number -> entry indices of non-directories.
#[derive(Debug, Default)]
pub(crate) struct LinkIndex {
    sorted: Vec<(u64, u32)>,
    added: HashMap<u64, Vec<u32>>,
}

impl LinkIndex {
    /// Indexes every non-directory of `view` (its base file and its overlay records).
    pub(crate) fn build(view: &Snapshot) -> LinkIndex {
        let arch = view.archived();
        let mut sorted: Vec<(u64, u32)> = arch
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !crate::model::mode_is_dir(e.mode.to_native()))
            .map(|(i, e)| (e.ino.to_native(), i as u32))
            .collect();
        sorted.sort_unstable();
        let mut idx = LinkIndex {
            sorted,
            added: HashMap::new(),
        };
        let base_len = view.ov.base_len();
        for i in base_len..view.ov.next_index() {
            if let Some(e) = view.entry(i) {
                if !e.is_dir() {
                    idx.add(e.ino(), i);
                }
            }
        }
        idx
    }

    /// Records that entry `index` is a non-directory with inode `ino`.
    pub(crate) fn add(&mut self, ino: u64, index: u32) {
        self.added.entry(ino).or_default().push(index);
    }

    /// Entry indices that had inode `ino` at some point (verify before use).
    pub(crate) fn candidates(&self, ino: u64) -> Vec<u32> {
        let start = self.sorted.partition_point(|&(i, _)| i < ino);
        let mut v: Vec<u32> = self.sorted[start..]
            .iter()
            .take_while(|&&(i, _)| i == ino)
            .map(|&(_, x)| x)
            .collect();
        if let Some(more) = self.added.get(&ino) {
            v.extend_from_slice(more);
        }
        v
    }
}

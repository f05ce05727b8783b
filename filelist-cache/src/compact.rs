//! Compaction: writing a merged view (base file + overlay) out as one plain snapshot
//! model, in storage order, ready to be serialised into a new base file.

use crate::error::ScanError;
use crate::format::{flags, SnapshotV1, NO_INDEX};
use crate::records::RecordInput;
use crate::view::{Children, EntryRef};
use crate::Snapshot;

struct Frame<'a> {
    /// Index into `SnapshotV1::dirs` of the directory being filled.
    dir: u32,
    /// Its subdirectories in the view, not yet emitted.
    pending: std::vec::IntoIter<EntryRef<'a>>,
    next_slot: usize,
}

fn push(out: &mut SnapshotV1, e: EntryRef<'_>, parent: u32) -> Result<u32, ScanError> {
    let (fl, err) = e.raw_flags();
    let rec = RecordInput {
        parent,
        name: e.name(),
        target: e.link_target(),
        flags: fl & (flags::UNREADABLE | flags::OTHER_FS),
        dir_error: if fl & flags::UNREADABLE != 0 { err } else { 0 },
        scan_generation: e.scan_generation().unwrap_or(0),
    };
    out.push_record(&rec, &e.attrs())
}

/// Lists directory `entry` (already pushed as `index` with dir record `dir`): pushes
/// its non-directories, reserves its subdirectory slots, returns its frame.
fn list<'a>(
    out: &mut SnapshotV1,
    kids: Children<'a>,
    index: u32,
    dir: u32,
) -> Result<Frame<'a>, ScanError> {
    let mut nfiles = 0u32;
    let mut subdirs = Vec::new();
    for c in kids {
        if c.is_dir() {
            subdirs.push(c);
        } else {
            push(out, c, index)?;
            nfiles += 1;
        }
    }
    let next_slot = out.subdirs.len();
    if u32::try_from(next_slot + subdirs.len()).is_err() {
        return Err(ScanError::TooLarge {
            what: "more than 2^32 directories",
        });
    }
    let d = &mut out.dirs[dir as usize];
    d.nfiles = nfiles;
    d.subdirs_off = next_slot as u32;
    d.subdirs_len = subdirs.len() as u32;
    out.subdirs.resize(next_slot + subdirs.len(), NO_INDEX);
    Ok(Frame {
        dir,
        pending: subdirs.into_iter(),
        next_slot,
    })
}

/// The merged tree of `view` as a plain snapshot model with `generation`.
pub(crate) fn compact(view: &Snapshot, generation: u64) -> Result<SnapshotV1, ScanError> {
    let mut out = SnapshotV1 {
        generation,
        root_dev: view.root_dev(),
        root_ino: view.root_ino(),
        ..SnapshotV1::default()
    };
    let cap = view.len();
    out.entries.reserve(cap);
    let root = view.root();
    push(&mut out, root, NO_INDEX)?;
    let mut stack = vec![list(&mut out, root.children(), 0, 0)?];
    while let Some(top) = stack.last_mut() {
        let Some(sub) = top.pending.next() else {
            let d = top.dir as usize;
            out.dirs[d].subtree_end = out.entries.len() as u32;
            stack.pop();
            continue;
        };
        let parent = out.dirs[top.dir as usize].entry;
        let slot = top.next_slot;
        top.next_slot += 1;
        let index = push(&mut out, sub, parent)?;
        out.subdirs[slot] = index;
        let dir = out.entries[index as usize].dir;
        let frame = list(&mut out, sub.children(), index, dir)?;
        stack.push(frame);
    }
    Ok(out)
}

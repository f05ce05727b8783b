//! End-of-run statistics (`main.c: handle_stats()`).

use crate::wire::put_varlong30;

/// The sender's statistics, as sent after its final `NDX_DONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the sender read from the socket.
    pub total_read: i64,
    /// Bytes the sender wrote.
    pub total_written: i64,
    /// Sum of sizes of regular files and symlinks in the list.
    pub total_size: i64,
    /// File-list build time in milliseconds (proto >= 29).
    pub flist_buildtime_ms: i64,
    /// File-list transfer time in milliseconds (proto >= 29).
    pub flist_xfertime_ms: i64,
}

/// Encode the statistics block for `protocol`.
pub fn encode_stats(out: &mut Vec<u8>, s: &Stats, protocol: u8) {
    put_varlong30(out, s.total_read, 3, protocol);
    put_varlong30(out, s.total_written, 3, protocol);
    put_varlong30(out, s.total_size, 3, protocol);
    if protocol >= 29 {
        put_varlong30(out, s.flist_buildtime_ms, 3, protocol);
        put_varlong30(out, s.flist_xfertime_ms, 3, protocol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_stats_bytes() {
        let s = Stats { total_read: 49, total_written: 139, total_size: 12, flist_buildtime_ms: 1, flist_xfertime_ms: 0 };
        let mut o = Vec::new();
        encode_stats(&mut o, &s, 31);
        assert_eq!(o, [0, 0x31, 0, 0, 0x8B, 0, 0, 0x0C, 0, 0, 1, 0, 0, 0, 0]);
        o.clear();
        let s = Stats { total_read: 0x32, total_written: 0xA3, total_size: 12, flist_buildtime_ms: 1, flist_xfertime_ms: 0 };
        encode_stats(&mut o, &s, 29);
        assert_eq!(o.len(), 20);
        assert_eq!(&o[..4], &[0x32, 0, 0, 0]);
        o.clear();
        encode_stats(&mut o, &s, 28);
        assert_eq!(o.len(), 12);
    }
}

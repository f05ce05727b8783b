//! Every limit the protocol layer enforces, in one place, with its default.
//!
//! Decoders take a [`Limits`] value instead of hard-coding numbers so that
//! the daemon can tune them from its configuration and tests can shrink
//! them.

/// Limits applied to what a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest text line in the text phase (greeting, module, auth). Stock
    /// uses BIGPATHBUFLEN (about 5 KiB); default 4096.
    pub max_line: usize,
    /// Longest single argument (stock: 5119 bytes per arg line).
    pub max_arg_len: usize,
    /// Most arguments in the server argument vector(s). Default 1024.
    pub max_args: usize,
    /// Longest filter rule (stock: about 5 KiB). Default 4096.
    pub max_filter_rule_len: usize,
    /// Most filter rules a client may send. Default 4096 (stock: unbounded).
    pub max_filter_rules: usize,
    /// Longest non-data multiplexed message. Default 32 KiB.
    pub max_msg_payload: usize,
    /// Most blocks in one sum header. Default 2^24.
    pub max_sum_blocks: usize,
    /// Longest block length (stock: 128 KiB for protocol >= 30, MAX_BLOCK_SIZE).
    pub max_block_len: usize,
    /// Longest vstring accepted (xname in requests). Stock: 4095.
    pub max_vstring: usize,
    /// Most `--files-from` names. Default 10 million.
    pub max_files_from: usize,
    /// Longest `--files-from` name (MAXPATHLEN). Default 4096.
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            max_arg_len: 5119,
            max_args: 1024,
            max_filter_rule_len: 4096,
            max_filter_rules: 4096,
            max_msg_payload: 32 * 1024,
            max_sum_blocks: 1 << 24,
            max_block_len: 1 << 17,
            max_vstring: 4095,
            max_files_from: 10_000_000,
            max_path_len: 4096,
        }
    }
}

//! Decoder errors shared by every module of the crate.
//!
//! Decoders never perform IO: they look at the bytes they are given and
//! either produce a value, say how many more bytes they need
//! ([`DecodeError::Incomplete`]), or reject the input
//! ([`DecodeError::Invalid`]). The session that drives them decides what to
//! do with each case.

/// Why a decoder could not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends early; at least `needed` more bytes are required
    /// before decoding can make progress.
    #[error("incomplete input: {needed} more byte(s) needed")]
    Incomplete {
        /// Minimum number of additional bytes needed.
        needed: usize,
    },
    /// The input can never decode: it violates the protocol or a limit.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field or structure that failed.
        what: &'static str,
        /// Human-readable detail (never contains server paths).
        detail: String,
    },
}

impl DecodeError {
    /// Shorthand for an [`DecodeError::Invalid`] value.
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        DecodeError::Invalid { what, detail: detail.into() }
    }

    /// True for [`DecodeError::Incomplete`].
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// Result alias for decoders.
pub type DecodeResult<T> = Result<T, DecodeError>;

//! Tests for the rsyncd.conf reader.

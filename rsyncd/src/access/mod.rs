//! Access control: who may use a module and what they may ask for.
//!
//! - [`auth`]: `auth users`, `secrets file`, `strict modes`, `auth digest`.
//! - [`hosts`]: `hosts allow` / `hosts deny` with reverse and forward lookups.
//! - [`refuse`]: `refuse options`.
//! - [`limits`]: `max connections` / `lock file` slots and per-listener caps.
//! - [`identity`]: module `uid` / `gid` and what that identity may read.

pub mod auth;
pub mod hosts;
pub mod identity;
pub mod limits;
pub mod refuse;

//! Thin wrappers around the libc calls minisv needs outside the spawn path.

pub mod users;

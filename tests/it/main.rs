//! One integration test binary (habit 9): the real `minisv` binary in temp dirs.

mod api;
mod daemon;
mod docs;
mod harness;
mod packaging;
mod tutorial;

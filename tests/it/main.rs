//! One integration test binary (habit 9): the real `minisv` binary in temp dirs.

mod daemon;
mod harness;
mod docs;

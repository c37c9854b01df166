//! One integration test binary (habit 9): the real `minisv` binary in temp dirs.

mod api;
mod ctl_python;
mod ctl_tutorial;
mod daemon;
mod docs;
mod fuzz_smoke;
mod harness;
mod pid1;
mod pyenv;
mod tutorial;
mod update;

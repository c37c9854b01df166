//! One integration test binary (habit 9): the real `minisv` binary in temp dirs.

mod abuse;
mod api;
mod ctl_python;
mod ctl_tutorial;
mod daemon;
mod defaults;
mod docs;
mod envfiles;
mod events;
mod faults;
mod fleet;
mod fuzz_smoke;
mod harness;
mod http;
mod listen;
mod logs;
mod notify;
mod packaging;
mod pid1;
mod plugins;
mod probes;
mod pyenv;
mod soak;
mod tutorial;
mod update;
mod web;

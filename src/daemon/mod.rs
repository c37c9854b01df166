//! The daemon: the event loop and the I/O it performs for the supervisor core.

pub mod cgroup;
pub mod compress;
pub mod event_loop;
/// The text helpers of the output pipeline (fuzzed).
pub use event_loop::output;
pub mod fcgi;
pub mod logfile;
pub mod mainlog;
pub mod notify;
pub mod probe;
pub mod run;
pub mod spawn;
pub mod state_file;
pub mod upgrade;

pub use run::run;

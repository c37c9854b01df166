//! The daemon: the event loop and the I/O it performs for the supervisor core.

pub mod logfile;
pub mod mainlog;
pub mod spawn;

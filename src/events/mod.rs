//! Supervisor's event system, pure (reference 6): event types and payloads, envelopes, the
//! listener protocol, listener pools, TICK scheduling and capture mode.
//!
//! Nothing here does I/O or reads a clock. The event loop feeds bytes, process changes and `now`
//! in, and performs the actions that come back (write to a listener's stdin, write a log line).

pub mod capture;
pub mod envelope;
pub mod handler;
pub mod listener;
pub mod pool;
pub mod tick;
pub mod types;

pub use envelope::Serial;
pub use listener::{Listener, ListenerState};
pub use pool::{Action, Pool, Pools};
pub use tick::Ticker;

pub use types::{subscribes, Channel, Event, EventType, StateChange};

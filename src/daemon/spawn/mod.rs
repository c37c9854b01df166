//! Starting a child (reference 2.3): resolve the command in the parent, prepare everything
//! that needs allocation before the clone, and keep the child side to plain system calls.
//!
//! The child is started with clone(CLONE_VM | CLONE_FILES) on a stack mapped once per lane:
//! it shares the daemon's memory until it execs (no page tables copied), and copies only the
//! first few fds of the daemon's fd table (`Slots`). The daemon does not wait for the exec
//! there: up to `LANES` children are on their way to exec at once, and the kernel zeroes a
//! word of the lane's when a child has exec'd or exited (CLONE_CHILD_CLEARTID), which `finish`
//! waits for. Where that cannot be used (no raw system calls for the architecture, or an
//! emulator that refuses it), the daemon's thread waits in clone(CLONE_VFORK) instead.
//! The child gets fds 0-2 only (everything else is marked close-on-exec: fix of Q7), default
//! signal dispositions and an empty mask, its own process group, then supplementary groups,
//! gid and uid, the directory and the umask. A failure in the child is reported to the parent
//! as (step, errno) in the memory they share, so the parent can say which step failed.
//!
//! Programs and their command probes are started the same way (`ChildSetup::run_beside`).
//!
//! One job per file:
//! - `command`: finding the program a command line names;
//! - `env`: the child's environment;
//! - `dotenv`: environment files (`environment_file=`);
//! - `credentials`: the files of `credentials=`, copied for each run;
//! - `plan`: what a child is started with, and what every child of a program shares;
//! - `start`: one start, from plan to exec (`Spawner::spawn`, `finish`);
//! - `lanes`: the clone, on a lane's stack (`Spawner`);
//! - `slots`: the low fds through which a child takes its ends of the pipes;
//! - `signals`: the signals a child sets back to their default;
//! - `child`: the child's side, between clone and exec;
//! - `raw`: system calls without libc, for the child.

mod child;
mod command;
mod credentials;
pub mod dotenv;
mod env;
mod lanes;
mod plan;
mod raw;
mod signals;
mod slots;
mod start;

pub use child::mark_fds_cloexec;
pub use command::{py_repr, resolve_command, resolve_command_in, shlex_split, CommandError, FoundCommands};
pub use env::{program_env, remove_credentials, search_path, spawn_env, BaseEnv};
pub use lanes::{Spawner, LANES};
pub use plan::{program_user, ChildSetup, SpawnPlan, Spawned};
pub use start::{finish, kill_and_reap, InFlight};

/// Writing to a child's stdin (the loop's control path uses it from here).
pub use crate::sys::write_nonblocking;

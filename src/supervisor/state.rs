//! Process and daemon states with Supervisor's names and codes (reference 2.1).

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProcessState {
    #[default]
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
    Unknown,
}

impl ProcessState {
    pub const ALL: [ProcessState; 8] = [
        ProcessState::Stopped,
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Backoff,
        ProcessState::Stopping,
        ProcessState::Exited,
        ProcessState::Fatal,
        ProcessState::Unknown,
    ];

    pub fn code(self) -> i32 {
        match self {
            ProcessState::Stopped => 0,
            ProcessState::Starting => 10,
            ProcessState::Running => 20,
            ProcessState::Backoff => 30,
            ProcessState::Stopping => 40,
            ProcessState::Exited => 100,
            ProcessState::Fatal => 200,
            ProcessState::Unknown => 1000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Stopped => "STOPPED",
            ProcessState::Starting => "STARTING",
            ProcessState::Running => "RUNNING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }

    /// STOPPED_STATES: nothing is running and nothing will run without a request.
    pub fn is_stopped(self) -> bool {
        matches!(self, ProcessState::Stopped | ProcessState::Exited | ProcessState::Fatal | ProcessState::Unknown)
    }

    /// RUNNING_STATES: running, or about to be (a start request is refused with ALREADY_STARTED).
    pub fn is_running(self) -> bool {
        matches!(self, ProcessState::Running | ProcessState::Backoff | ProcessState::Starting)
    }

    /// SIGNALLABLE_STATES.
    pub fn is_signallable(self) -> bool {
        matches!(self, ProcessState::Running | ProcessState::Starting | ProcessState::Stopping)
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The daemon's mood (Supervisor's SupervisorStates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mood {
    Running,
    Restarting,
    Shutdown,
}

impl Mood {
    pub fn code(self) -> i32 {
        match self {
            Mood::Running => 1,
            Mood::Restarting => 0,
            Mood::Shutdown => -1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mood::Running => "RUNNING",
            Mood::Restarting => "RESTARTING",
            Mood::Shutdown => "SHUTDOWN",
        }
    }
}

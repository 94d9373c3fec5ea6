//! The splice-dr socket protocol, as one typed contract for the daemon, the CLI, the
//! demo and the tests: requests ([`Request`]), reply lines ([`Reply`]), live run events
//! ([`RunEvent`]) and the views answers carry (status, runs, backups...). `--json`
//! prints these views, so what scripts read is what is defined here.
//!
//! Data types and their (de)serialization only, on purpose: a client needs nothing else
//! to speak to a daemon. Views read leniently (a newer daemon may add fields); requests
//! are read strictly by the daemon (see [`wire`]).

pub mod answers;
pub mod automation;
pub mod backup;
pub mod drill;
pub mod event;
pub mod run;
pub mod runway;
pub mod status;
pub mod wire;

pub use answers::{
    Approved, CancelRequested, Candidate, CheckReport, PauseState, PingReply, PruneReport,
    Published, RepoCheckReport, RepoPlan, RetentionPolicyView, RuleReset, RunStarted,
};
pub use automation::{
    ApprovalWait, AutomationView, DecisionRecord, LeaderView, QueuedRun, RuleState, RuleStatus,
    ScheduleStatus, Waiting,
};
pub use backup::{BackupList, BackupSummary, DumpSummary, LastBackup, LastDrill};
pub use drill::{DrillRecord, DrillResult};
pub use event::RunEvent;
pub use run::{Detection, PendingApproval, RunDetail, RunState, RunSummary, StepRecord, StepState};
pub use runway::{DownRunway, RestoreRunway, RunwayView};
pub use status::{
    ConfigState, FlowView, HealthChange, HealthView, JournalStats, LeftoversView, NodeStatus,
    StatusView, WalView,
};
pub use wire::{
    parse_reply, parse_request, read_request, request_line, BadRequest, ErrorCode, Reply, Request,
    CRATE_VERSION, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};

//! The command line of `cuttle`, as clap types: every subcommand, flag and its help text.
//!
//! This module only describes what can be typed. It never validates values beyond their
//! shape (numbers stay `i64` so cuttle-core can refuse them with its own clear message) and
//! never talks to the API; the command modules do that.

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Where cuttle-api listens when neither `--api` nor `CUTTLE_API` says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:7171";

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "cuttle",
    version,
    about = "cuttle: the command-line client of cuttle-api, the scheduler of a Ceph test lab",
    long_about = "cuttle is the command-line client of cuttle-api, the scheduler of a Ceph \
test lab (a teuthology-style lab of test machines). It adds, locks and unlocks nodes, \
schedules runs of teuthology jobs, kills runs and jobs (cuttle kill), shows and pauses each \
machine type's queue (cuttle queue), and shows runs, jobs and the health of the API.\n\n\
It talks gRPC to cuttle-api at --api (or the CUTTLE_API environment variable, default \
http://127.0.0.1:7171). An operator can set --token (or CUTTLE_TOKEN) to the admin token, \
which is sent as `authorization: Bearer TOKEN` and lets them unlock other people's nodes \
and kill other people's runs.\n\n\
Every listing and show takes --json for machine-readable output.\n\n\
Exit status: 0 on success, 1 when the API refused the request or the input is invalid, \
2 for a usage error, 3 when cuttle-api cannot be reached."
)]
pub struct Cli {
    /// URL of cuttle-api's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "CUTTLE_API",
        hide_env_values = true,
        default_value = DEFAULT_API,
        value_name = "URL"
    )]
    pub api: String,

    /// Admin token, sent as `authorization: Bearer TOKEN` on every call; lets an operator
    /// unlock nodes held by someone else and kill anyone's run.
    #[arg(
        long,
        global = true,
        env = "CUTTLE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Print machine-readable JSON on stdout instead of tables and text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the lab's nodes: add, list, lock, unlock, update.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Create a run of one or more jobs and queue them (teuthology-schedule).
    Schedule(ScheduleArgs),
    /// List runs or show one run with its jobs.
    #[command(subcommand)]
    Run(RunCommand),
    /// Show a job and its timeline.
    #[command(subcommand)]
    Job(JobCommand),
    /// Kill a run's jobs that have not ended, or one job of it (teuthology-kill).
    #[command(
        long_about = "Kill every job of run RUN that has not ended yet, or only the \
job given with --job. Each becomes `killed` at once: queued jobs are deleted from their \
beanstalkd tube and never start; running jobs stop at their supervisor's next heartbeat, and \
the supervisor archives the logs and gives the nodes back. Jobs that already ended are left \
as they are, so killing a finished run kills nothing and succeeds.\n\n\
Only the run's owner may kill it (--owner, default $USER), or anyone with the admin token \
(--token / CUTTLE_TOKEN)."
    )]
    Kill(KillArgs),
    /// See and steer a machine type's queue: list waiting jobs, pause, resume.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Show cuttle-api's health and version; exits 1 if its database or beanstalkd is not ok.
    Health,
}

/// `cuttle node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Add a node to the inventory; it starts up and unlocked.
    Add(NodeAddArgs),
    /// List nodes, optionally filtered.
    List(NodeListArgs),
    /// Lock COUNT free nodes of a machine type, or the named nodes; all or nothing.
    Lock(NodeLockArgs),
    /// Unlock nodes you hold (or anyone's, with the admin token).
    Unlock(NodeUnlockArgs),
    /// Change a node's descriptive fields and/or mark it up or down.
    Update(NodeUpdateArgs),
}

/// `cuttle node add`
#[derive(Debug, Args)]
pub struct NodeAddArgs {
    /// Host name of the node, e.g. smithi001.
    pub name: String,
    /// Machine type the node belongs to, e.g. smithi.
    #[arg(long, value_name = "TYPE")]
    pub machine_type: String,
    /// Free-text description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Installed operating system, e.g. ubuntu.
    #[arg(long, value_name = "OS")]
    pub os_type: Option<String>,
    /// Installed operating system version, e.g. 22.04.
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
}

/// `cuttle node list`
#[derive(Debug, Args)]
pub struct NodeListArgs {
    /// Only nodes of this machine type.
    #[arg(long, value_name = "TYPE")]
    pub machine_type: Option<String>,
    /// Only locked nodes.
    #[arg(long, conflicts_with = "unlocked")]
    pub locked: bool,
    /// Only unlocked nodes.
    #[arg(long)]
    pub unlocked: bool,
    /// Only nodes that are up.
    #[arg(long, conflicts_with = "down")]
    pub up: bool,
    /// Only nodes that are down.
    #[arg(long)]
    pub down: bool,
    /// Only nodes locked by this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

/// `cuttle node lock`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("which_nodes")
        .required(true)
        .multiple(false)
        .args(["names", "machine_type"])
))]
pub struct NodeLockArgs {
    /// Lock exactly these nodes (instead of --machine-type/--count).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Machine type to take free nodes from; needs --count.
    #[arg(long, value_name = "TYPE", requires = "count")]
    pub machine_type: Option<String>,
    /// How many nodes of --machine-type to lock.
    #[arg(
        long,
        value_name = "K",
        requires = "machine_type",
        conflicts_with = "names",
        allow_negative_numbers = true
    )]
    pub count: Option<i64>,
    /// Who will hold the nodes.
    #[arg(long, value_name = "OWNER")]
    pub owner: String,
    /// The job the nodes are locked for, if any.
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
}

/// `cuttle node unlock`
#[derive(Debug, Args)]
pub struct NodeUnlockArgs {
    /// Nodes to unlock.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Who is unlocking; must be the holder unless --token carries the admin token.
    #[arg(long, value_name = "OWNER")]
    pub owner: String,
}

/// `cuttle node update`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["machine_type", "description", "os_type", "os_version", "up", "down"])
))]
pub struct NodeUpdateArgs {
    /// The node to change.
    pub name: String,
    /// Move the node to another machine type (refused while it is locked).
    #[arg(long, value_name = "TYPE")]
    pub machine_type: Option<String>,
    /// New free-text description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// New operating system.
    #[arg(long, value_name = "OS")]
    pub os_type: Option<String>,
    /// New operating system version.
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
    /// Mark the node up (back in service).
    #[arg(long, conflicts_with = "down")]
    pub up: bool,
    /// Mark the node down (out of service); needs --reason, which becomes its description
    /// (so it does not combine with --description).
    #[arg(long, requires = "reason", conflicts_with = "description")]
    pub down: bool,
    /// Why the node is going down; stored in its description.
    #[arg(long, value_name = "TEXT", requires = "down")]
    pub reason: Option<String>,
}

/// `cuttle schedule`
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// A teuthology job config (YAML), sent as is with every job; `-` reads stdin. At most
    /// 1 MiB. Its keys (name, owner, machine_type, priority, roles, ...) fill whatever the
    /// flags leave out; cuttle-api parses it.
    #[arg(value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// Run name. Without FILE, defaults to
    /// OWNER-YYYY-MM-DD_HH:MM:SS-SUITE-BRANCH-MACHINE_TYPE (UTC).
    #[arg(long, value_name = "RUN")]
    pub name: Option<String>,
    /// Owner of the run. Without FILE, defaults to $USER (or `cuttle`).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Machine type the jobs run on; required without FILE.
    #[arg(long, value_name = "TYPE")]
    pub machine_type: Option<String>,
    /// beanstalkd priority, 0 (most urgent) to 65535; default 1000.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// Nodes each job needs; default: the number of roles in FILE, or 1.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub nodes: Option<i64>,
    /// How many identical jobs to create, 1 to 10000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub jobs: i64,
    /// Time limit of each job in seconds (1 to 604800); default: the lab's max_job_time.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub time_limit: Option<i64>,
    /// Description of each job (teuthology's `description`).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Ceph branch under test.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Ceph commit under test.
    #[arg(long, value_name = "SHA1")]
    pub sha1: Option<String>,
    /// Suite name.
    #[arg(long, value_name = "SUITE")]
    pub suite: Option<String>,
    /// Operating system to run on.
    #[arg(long, value_name = "OS")]
    pub os_type: Option<String>,
    /// Operating system version to run on.
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
}

/// `cuttle run ...`
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List runs, newest first.
    List(RunListArgs),
    /// Show one run and its jobs.
    Show(RunShowArgs),
}

/// `cuttle run list`
#[derive(Debug, Args)]
pub struct RunListArgs {
    /// Only runs of this owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only runs with this status: queued, running, pass, fail, dead or killed.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs with jobs on this machine type.
    #[arg(long, value_name = "TYPE")]
    pub machine_type: Option<String>,
    /// Only runs of this branch.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// At most this many runs (the API's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `cuttle run show`
#[derive(Debug, Args)]
pub struct RunShowArgs {
    /// Run name.
    #[arg(value_name = "RUN")]
    pub name: String,
}

/// `cuttle job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show one job: status and reason, nodes, the dispatcher that claimed it, its
    /// supervisor (pid@host), when it started, and its timeline of status changes.
    Show(JobShowArgs),
}

/// `cuttle job show`
#[derive(Debug, Args)]
pub struct JobShowArgs {
    /// Job id.
    #[arg(value_name = "ID")]
    pub job_id: String,
}

/// `cuttle kill`
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Name of the run to kill.
    #[arg(value_name = "RUN")]
    pub run_name: String,
    /// Kill only this job of the run.
    #[arg(long = "job", value_name = "ID")]
    pub job_id: Option<String>,
    /// Who kills the run: it must be the run's owner unless --token carries the admin
    /// token. Defaults to $USER (or `cuttle`).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

/// `cuttle queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Show a machine type's queue: whether it is paused, which dispatcher serves it, and
    /// its waiting jobs in the order they will be dispatched.
    #[command(
        long_about = "Show the queue (beanstalkd tube) of machine type TYPE: whether it \
is paused and by whom, which dispatcher holds its lease (host and pid), beanstalkd's own \
ready/reserved/buried counts, and the jobs waiting on it (queued, or reserved by a dispatcher \
that has not started them yet), most urgent first: by aged priority, then older, then \
within a suite (smaller jobs first below cuttle-api's fewer_nodes_first_below, 1000 by \
default; biggest first otherwise). AGE is how long ago the job was scheduled."
    )]
    List(QueueListArgs),
    /// Pause a machine type's queue: no new jobs are dispatched; running jobs continue.
    Pause(QueuePauseArgs),
    /// Resume a paused queue: its dispatcher starts jobs again.
    Resume(QueuePauseArgs),
    /// List every queue (tube) cuttle knows, with its pause state and dispatcher.
    Tubes,
    /// Change a waiting job's priority (0 most urgent .. 65535); beanstalkd shows it too.
    #[command(
        long_about = "Change the priority of job JOB, which must still be waiting (queued, or \
reserved by a dispatcher that has not started it), to PRI: 0 is the most urgent, 65535 the \
least, 1000 the default. cuttle-api records it and replaces the job's beanstalkd copy with one \
at the new priority, so `cuttle queue list` and any beanstalkd client (stats-job) see the new \
order. Aging keeps counting from when the job was scheduled. Owners may re-prioritize their \
own jobs; anyone else's needs the admin token (--token)."
    )]
    Reprioritize(QueueReprioritizeArgs),
}

/// `cuttle queue reprioritize`
#[derive(Debug, Args)]
pub struct QueueReprioritizeArgs {
    /// The job's id (see `cuttle run show RUN` or `cuttle queue list TYPE`).
    #[arg(value_name = "JOB")]
    pub job_id: i64,
    /// The new priority: 0 (most urgent) to 65535.
    #[arg(value_name = "PRI")]
    pub priority: i64,
    /// Who asks. Defaults to $USER (or `cuttle`).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

/// `cuttle queue list`
#[derive(Debug, Args)]
pub struct QueueListArgs {
    /// Machine type (the beanstalkd tube's name), e.g. smithi.
    #[arg(value_name = "TYPE")]
    pub machine_type: String,
    /// Show at most this many jobs (the API's default is 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `cuttle queue pause` and `cuttle queue resume`
#[derive(Debug, Args)]
pub struct QueuePauseArgs {
    /// Machine type (the beanstalkd tube's name), e.g. smithi.
    #[arg(value_name = "TYPE")]
    pub machine_type: String,
    /// Who does it, for the record. Defaults to $USER (or `cuttle`).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

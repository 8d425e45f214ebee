//! The command line of `cuttle`, as clap types: every subcommand, flag and its help text.
//!
//! This module only describes what can be typed. It never validates values beyond their
//! shape (numbers stay `i64` so cuttle-core can refuse them with its own clear message) and
//! never talks to the API; the command modules do that.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

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
http://127.0.0.1:7171). Every change needs an API token: --token, else CUTTLE_TOKEN, else \
the first line of ~/.config/cuttle/token; it is sent as `authorization: Bearer TOKEN`. A \
developer's token acts on their own runs, jobs and locks; an admin's on everything (a lab \
admin creates tokens with `cuttle admin token create`). Listing and showing need no token \
unless the lab turned anonymous reads off.\n\n\
Every listing and show takes --json for machine-readable output, and colours statuses on \
a terminal (--color, NO_COLOR).\n\n\
Shell completions: `cuttle completions bash|zsh|fish > FILE`; man pages: `cuttle man DIR`.\n\n\
Exit status: 0 on success, 1 when the API refused the request or the input is invalid, \
2 for a usage error (and for `cuttle run wait` when --timeout passed), 3 when cuttle-api \
cannot be reached."
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

    /// API token, sent as `authorization: Bearer TOKEN` on every call (default: the first
    /// line of ~/.config/cuttle/token). Changes need one; reads usually do not.
    #[arg(
        long,
        global = true,
        env = "CUTTLE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// The CA certificate (PEM) that signed cuttle-api's TLS certificate; needed when
    /// --api is an https:// URL.
    #[arg(long, global = true, env = "CUTTLE_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,

    /// Print machine-readable JSON on stdout instead of tables and text.
    #[arg(long, global = true)]
    pub json: bool,

    /// When to colour job and run statuses: `auto` only on a terminal and not when
    /// NO_COLOR is set; `always` even into a pipe, NO_COLOR or not.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = ColorChoice::Auto,
        value_name = "WHEN"
    )]
    pub color: ColorChoice,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour statuses (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the lab's nodes: add, list, lock, unlock, update.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Create a run of one or more jobs and queue them (teuthology-schedule).
    #[command(after_help = "Examples:
  cuttle schedule -m smithi --jobs 3 --nodes 2 --description 'rados smoke'
  cuttle schedule job.yaml --name alice-smoke -p 100   # a teuthology job config
  cuttle schedule - < job.yaml                         # the config on stdin")]
    Schedule(ScheduleArgs),
    /// Expand a Ceph qa suite into its jobs and schedule them as one run (teuthology-suite).
    #[command(
        long_about = "Expand a Ceph qa suite into its jobs, exactly as teuthology-suite \
expands it, and schedule them as one run. The suite is a directory below qa/suites of a \
ceph checkout: `%` directories convolve their facets, `+` directories concatenate, `$` \
directories pick one entry at random (seeded by --seed), other directories offer their \
entries as alternatives, and each job's fragments are deep-merged into its config (running \
the fragments' premerge and postmerge Lua scripts in a sandbox). The same tree and options \
give the same jobs in the same order, with teuthology's descriptions, on every run.\n\n\
With --dry-run and --suite-dir the suite is expanded right here and nothing is sent: text \
output is one description per line, --json a list with one object per job (description, \
fragments, config, index). Otherwise cuttle-api expands it (from --suite-dir on its host, or \
its cached clone of --suite-repo) and, unless --dry-run, records the run and all its jobs in \
one transaction and queues them.\n\n\
--rerun RUN schedules again the jobs of RUN that ended fail or dead (or --rerun-statuses), \
with their descriptions and configs, as a new run.\n\n\
Guard rails: more jobs than --job-threshold (the lab's suite_job_threshold by default), or \
an urgent priority for a large run (below 50 at all, 50-74 over 25 jobs, 75-149 over 100 \
jobs), are refused; --job-threshold 0 and --force-priority pass them, for admins only.",
        after_help = "Examples:
  cuttle suite -s rados/singleton -c main -m smithi -p 100
  cuttle suite -s rados/basic --suite-dir ~/ceph --dry-run    # expand here, queue nothing
  cuttle suite -r RUN -R dead,fail -p 90                      # rerun what failed or died
  cuttle suite --preset nightly -c squid                      # a saved request, one flag changed
  cuttle run wait \"$(cuttle suite -s rados/basic -m smithi --json | jq -r .run_name)\""
    )]
    Suite(Box<SuiteCliArgs>),
    /// List runs, show one run with its jobs, or wait until a run has ended.
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
Whose run it is comes from cuttle-api's records: only the run's owner (with their own \
developer token) or anyone with the admin token (--token / CUTTLE_TOKEN) may kill it. \
--owner (default $USER) only says who killed it, in the jobs' timelines.\n\n\
teuthology-kill's -r RUN and -j JOB work too.",
        after_help = "Examples:
  cuttle kill alice-2026-05-01_10:00:00-rados-main-distro-default-smithi
  cuttle kill RUN -j 42                # one job of the run
  cuttle kill -r RUN -j 42             # teuthology-kill's spelling"
    )]
    Kill(KillArgs),
    /// Saved suite requests: list, show, add, edit, delete (cuttle suite --preset NAME).
    #[command(subcommand)]
    Preset(PresetCommand),
    /// Suites waiting for their build: list, show, add, edit, delete.
    #[command(
        subcommand,
        long_about = "Suites waiting for their build (AutoSuites). An AutoSuite keeps a \
`cuttle suite` request until the packages of its branch are built (Jenkins' build-status \
webhook, or cuttle-api's periodic Shaman poll, says so), then schedules it once with the \
build's sha1. `cuttle suite ... --wait-for-build` makes one when the build is not ready; \
`cuttle autosuite add` makes one outright. A failed build ends it `build_failed` with the \
build's URL; one that waits too long expires. See docs/builds.md."
    )]
    Autosuite(AutoSuiteCommand),
    /// See and steer a machine type's queue: waiting and buried jobs, pause, resume, kick.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Show cuttle-api's health and version; exits 1 if its database or beanstalkd is not ok.
    Health,
    /// The lab's books: audit the lock history, show it.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a shell completion script for cuttle on stdout (bash, zsh, fish, elvish,
    /// powershell), e.g. `cuttle completions bash > /etc/bash_completion.d/cuttle`.
    #[command(hide = true)]
    Completions(CompletionsArgs),
    /// Write cuttle's man pages (cuttle.1, cuttle-run-wait.1, ...) into DIR, e.g.
    /// `cuttle man /usr/local/share/man/man1`.
    #[command(hide = true)]
    Man(ManArgs),
}

/// `cuttle completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `cuttle man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into; created if missing.
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

/// `cuttle admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Check the whole lock history: no node was ever held by two holders at once.
    #[command(
        long_about = "Replay every lock and unlock of every node since the lock history \
began and check that no node was ever held by two holders (jobs or people) at the same \
time, and that the history agrees with the nodes' current locks. Prints the counts and \
each violation; exits 1 if there is any."
    )]
    Audit,
    /// Show the newest lock and unlock events, of one node or of all.
    LockHistory(LockHistoryArgs),
    /// Create, list and revoke API tokens (admins only).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show who your token says you are.
    Whoami,
}

/// `cuttle admin token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user or a daemon; the secret is printed once, on the last line.
    #[command(
        long_about = "Create an API token for USER with ROLE: `admin` (everything), \
`developer` (their own runs, jobs and hand locks) or `service` (what dispatchers and \
supervisors do; give one to each dispatcher host). The secret is printed once, on the last \
line of the output: cuttle-api keeps only its SHA-256. Hand it over privately; the user puts \
it in ~/.config/cuttle/token (mode 0600) or CUTTLE_TOKEN."
    )]
    Create(TokenCreateArgs),
    /// List tokens: id, user, role, first characters, created, revoked.
    List,
    /// Revoke a token at once (see `cuttle admin token list` for ids).
    Revoke(TokenRevokeArgs),
}

/// `cuttle admin token create`
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Who the token acts as (a user name, or a daemon's such as dispatcher-smithi).
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// admin, developer or service.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
}

/// `cuttle admin token revoke`
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id.
    #[arg(value_name = "ID")]
    pub id: i64,
}

/// `cuttle admin lock-history`
#[derive(Debug, Args)]
pub struct LockHistoryArgs {
    /// Only this node's events.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Show at most this many events, the newest (default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `cuttle node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Add a node to the inventory; it starts up and unlocked.
    Add(NodeAddArgs),
    /// List nodes, optionally filtered.
    #[command(after_help = "Examples:
  cuttle node list -m smithi --unlocked --up    # free nodes of a type
  cuttle node list --owner alice                # what alice holds
  cuttle node list --down --json | jq -r '.[].name'")]
    List(NodeListArgs),
    /// Lock COUNT free nodes of a machine type, or the named nodes; all or nothing.
    #[command(after_help = "Examples:
  cuttle node lock -m smithi --count 3          # any 3 free smithi nodes, for $USER
  cuttle node lock smithi004 smithi007          # these two
  cuttle node lock smithi004 --owner alice      # for someone else (admins only)")]
    Lock(NodeLockArgs),
    /// Unlock nodes you locked by hand (an admin: anyone's; a running job's: nobody's).
    #[command(after_help = "Examples:
  cuttle node unlock smithi004 smithi007
  cuttle node unlock smithi004 --owner alice    # alice's lock (admins only)")]
    Unlock(NodeUnlockArgs),
    /// Change a node's descriptive fields and/or mark it up or down.
    Update(NodeUpdateArgs),
    /// Add the nodes of a paddles lab, from paddles' JSON (`curl PADDLES/nodes/ > FILE`).
    #[command(
        long_about = "Add the nodes of a paddles lab to cuttle's inventory, from the JSON \
paddles answers GET /nodes/ with (save it with `curl -s PADDLES_URL/nodes/ > FILE`; `-` reads \
standard input). Each node keeps its name, machine type, description, os type and version, \
and ssh host key; a node down in paddles is added down. Locks are not imported. Nodes \
already in cuttle are left as they are, so an import can be run again. Prints a line per \
node and exits 1 if any could not be added."
    )]
    Import(NodeImportArgs),
}

/// `cuttle node import`
#[derive(Debug, Args)]
pub struct NodeImportArgs {
    /// paddles' JSON list of nodes (`-` for standard input).
    #[arg(value_name = "FILE")]
    pub file: String,
    /// Import only the nodes of this machine type.
    #[arg(short = 'm', long, value_name = "TYPE")]
    pub machine_type: Option<String>,
}

/// `cuttle node add`
#[derive(Debug, Args)]
pub struct NodeAddArgs {
    /// Host name of the node, e.g. smithi001.
    pub name: String,
    /// Machine type the node belongs to, e.g. smithi.
    #[arg(short = 'm', long, value_name = "TYPE")]
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
    /// Its ssh host key, `KEYTYPE BASE64` (a line of `ssh-keyscan NODE` works), which
    /// teuthology's targets need for jobs with roles.
    #[arg(long, value_name = "KEY")]
    pub ssh_key: Option<String>,
}

/// `cuttle node list`
#[derive(Debug, Args)]
pub struct NodeListArgs {
    /// Only nodes of this machine type.
    #[arg(short = 'm', long, value_name = "TYPE")]
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
    #[arg(short = 'm', long, value_name = "TYPE", requires = "count")]
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
    /// Who will hold the nodes [default: $USER; with a developer's token, its own user,
    /// the only one it may lock for]. An admin's token locks for anyone.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// The job the nodes are locked for, if any.
    #[arg(short = 'j', long, value_name = "ID")]
    pub job_id: Option<String>,
}

/// `cuttle node unlock`
#[derive(Debug, Args)]
pub struct NodeUnlockArgs {
    /// Nodes to unlock.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Whose hand lock to undo [default: $USER; with a developer's token, its own user].
    /// Only an admin may unlock someone else's nodes, and nobody a running job's (kill the
    /// job instead).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
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
    #[arg(short = 'm', long, value_name = "TYPE")]
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
    /// New ssh host key, `KEYTYPE BASE64` (a line of `ssh-keyscan NODE` works); "" clears it.
    #[arg(long, value_name = "KEY")]
    pub ssh_key: Option<String>,
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

/// `cuttle preset ...`
#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    /// List your presets (an admin: --owner O, or --all).
    List(PresetListArgs),
    /// Show the flags a preset keeps, and when it was saved.
    Show(PresetNameArgs),
    /// Save the suite flags given as a new preset NAME.
    Add(Box<PresetSaveArgs>),
    /// Change the flags given of preset NAME; the others stay as saved.
    Edit(Box<PresetSaveArgs>),
    /// Delete a preset for good (runs scheduled from it stay).
    Delete(PresetNameArgs),
}

/// `cuttle autosuite ...`
#[derive(Debug, Subcommand)]
pub enum AutoSuiteCommand {
    /// List your AutoSuites, newest first (an admin: --owner O, or --all).
    List(AutoSuiteListArgs),
    /// Show an AutoSuite with its timeline.
    Show(AutoSuiteIdArgs),
    /// Keep a suite request until its build is ready (the flags of `cuttle suite`).
    Add(Box<SuiteCliArgs>),
    /// Change the flags given of a waiting AutoSuite; the others stay.
    Edit(Box<AutoSuiteEditArgs>),
    /// Delete an AutoSuite (a run it scheduled stays).
    Delete(AutoSuiteIdArgs),
}

/// `cuttle autosuite list`
#[derive(Debug, Args)]
pub struct AutoSuiteListArgs {
    /// Whose AutoSuites (default: yours; another's needs the admin role).
    #[arg(long, value_name = "OWNER", conflicts_with = "all")]
    pub owner: Option<String>,
    /// Everyone's (admins only).
    #[arg(long)]
    pub all: bool,
}

/// An AutoSuite by id.
#[derive(Debug, Args)]
pub struct AutoSuiteIdArgs {
    /// The AutoSuite's id (`cuttle autosuite list`).
    #[arg(value_name = "ID")]
    pub id: i64,
}

/// `cuttle autosuite edit`
#[derive(Debug, Args)]
pub struct AutoSuiteEditArgs {
    /// The AutoSuite's id (`cuttle autosuite list`).
    #[arg(id = "autosuite_id", value_name = "ID")]
    pub id: i64,
    /// The suite flags to change, as `cuttle suite` takes them.
    #[command(flatten)]
    pub suite: SuiteCliArgs,
}

/// `cuttle preset list`
#[derive(Debug, Args)]
pub struct PresetListArgs {
    /// Whose presets (default: yours).
    #[arg(long, value_name = "OWNER", conflicts_with = "all")]
    pub owner: Option<String>,
    /// Everyone's presets (admins only).
    #[arg(long)]
    pub all: bool,
}

/// A preset by name.
#[derive(Debug, Args)]
pub struct PresetNameArgs {
    /// The preset's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Whose preset (default: yours; another's needs the admin role).
    #[arg(long = "preset-owner", value_name = "OWNER")]
    pub owner: Option<String>,
}

/// `cuttle preset add|edit`
#[derive(Debug, Args)]
pub struct PresetSaveArgs {
    /// The preset's name: letters, digits and - _ .
    #[arg(id = "preset_name", value_name = "NAME")]
    pub preset_name: String,
    /// Whose preset (default: yours; another's needs the admin role).
    #[arg(long = "preset-owner", value_name = "OWNER")]
    pub preset_owner: Option<String>,
    /// The suite flags to save, as `cuttle suite` takes them.
    #[command(flatten)]
    pub suite: SuiteCliArgs,
}

/// `cuttle suite`
#[derive(Debug, Args)]
pub struct SuiteCliArgs {
    /// The suite: a path below qa/suites, e.g. rados/singleton (rados:singleton works too).
    #[arg(short = 's', long, value_name = "SUITE")]
    pub suite: Option<String>,
    /// A checkout of the suite repository (holding qa/suites), used as it is. With
    /// --dry-run it is read here; otherwise the path is on cuttle-api's host.
    #[arg(long, value_name = "DIR")]
    pub suite_dir: Option<String>,
    /// A git repository of suites (URL or path on cuttle-api's host); cuttle-api keeps a
    /// cached clone. Default: the lab's suite_repo setting.
    #[arg(long, value_name = "URL")]
    pub suite_repo: Option<String>,
    /// The suite repository's branch (default: the ceph branch).
    #[arg(long, value_name = "BRANCH")]
    pub suite_branch: Option<String>,
    /// The suite repository's commit (overrides --suite-branch's tip).
    #[arg(long, value_name = "SHA1")]
    pub suite_sha1: Option<String>,
    /// The directory of the suite repository holding suites/ (default qa).
    #[arg(long, value_name = "PATH")]
    pub suite_relpath: Option<String>,
    /// The ceph branch to test [default: main].
    #[arg(short = 'c', long = "ceph", value_name = "BRANCH")]
    pub ceph: Option<String>,
    /// The ceph commit to test (recorded in every job as sha1).
    #[arg(short = 'S', long, value_name = "SHA1")]
    pub sha1: Option<String>,
    /// The ceph repository recorded in every job.
    #[arg(long, value_name = "URL")]
    pub ceph_repo: Option<String>,
    /// The kernel: `distro` (the distribution's) or `none` (no kernel stanza) [default: distro].
    #[arg(short = 'k', long, value_name = "KERNEL")]
    pub kernel: Option<String>,
    /// The ceph packages flavor [default: default].
    #[arg(short = 'f', long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// The machine type every job runs on (one; a list is refused).
    #[arg(short = 'm', long, value_name = "TYPE", env = "CUTTLE_MACHINE_TYPE")]
    pub machine_type: Option<String>,
    /// Keep only jobs for this distribution (e.g. ubuntu).
    #[arg(short = 'd', long, value_name = "DISTRO")]
    pub distro: Option<String>,
    /// Keep only jobs for this distribution version (e.g. 22.04).
    #[arg(short = 'D', long, value_name = "VERSION")]
    pub distro_version: Option<String>,
    /// Job priority, lower is sooner [default: 1000].
    #[arg(short = 'p', long, value_name = "P")]
    pub priority: Option<u32>,
    /// Whose run it is. For `cuttle suite` [default: $USER; with a developer's token, its
    /// own user; with --preset, the preset's]; a saved preset or AutoSuite without one
    /// takes your token's user. A developer's token schedules only for its own user.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Schedule part WHICH (from 0) of OF parts; each part covers every facet.
    #[arg(long, value_name = "WHICH/OF")]
    pub subset: Option<String>,
    /// Seed of the `$` choices and nested subsets (default: drawn from 0..9999 and
    /// printed); the same seed gives the same jobs.
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Keep jobs whose description holds at least one of these (comma-separated).
    #[arg(long = "filter", value_name = "WORDS")]
    pub filter: Vec<String>,
    /// Drop jobs whose description holds any of these (comma-separated).
    #[arg(long, value_name = "WORDS")]
    pub filter_out: Vec<String>,
    /// Keep jobs whose description holds all of these (comma-separated).
    #[arg(long, value_name = "WORDS")]
    pub filter_all: Vec<String>,
    /// Match the filters against the jobs' fragment paths too (as Lua patterns).
    #[arg(short = 'F', long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub filter_fragments: Option<String>,
    /// Queue at most this many jobs (0: all).
    #[arg(short = 'l', long, value_name = "N", default_value_t = 0)]
    pub limit: u32,
    /// Queue each job this many times [default: 1].
    #[arg(short = 'n', short_alias = 'N', long, value_name = "N")]
    pub num: Option<u32>,
    /// Who gets the results e-mail when the run ends (comma-separated).
    #[arg(short = 'e', long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// Seconds to wait for the run before e-mailing results anyway.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// Expand and show the jobs; schedule nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Schedule again the jobs of this earlier run that ended so (see --rerun-statuses).
    #[arg(short = 'r', long, value_name = "RUN")]
    pub rerun: Option<String>,
    /// The statuses --rerun picks (comma-separated) [default: fail,dead].
    #[arg(short = 'R', long, value_name = "STATUSES")]
    pub rerun_statuses: Option<String>,
    /// Pass the priority floor (admins only).
    #[arg(long)]
    pub force_priority: bool,
    /// Refuse the run if it has more jobs than this (0: no limit, admins only).
    #[arg(long, value_name = "N")]
    pub job_threshold: Option<u32>,
    /// The teuthology branch the jobs run (default: qa/.teuthology_branch, else main).
    #[arg(short = 't', long, value_name = "BRANCH")]
    pub teuthology_branch: Option<String>,
    /// The teuthology commit the jobs run (default: resolved by cuttle-api).
    #[arg(long, value_name = "SHA1")]
    pub teuthology_sha1: Option<String>,
    /// Ignore the numbers in `%` files (no nested subsets).
    #[arg(long)]
    pub no_nested_subset: bool,
    /// The run's name (default: OWNER-TIMESTAMP-SUITE-BRANCH-KERNEL-FLAVOR-TYPE).
    #[arg(long, value_name = "RUN")]
    pub name: Option<String>,
    /// The architecture fragments' exclude_arch is compared with.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Start from your saved preset NAME (cuttle preset); every flag given here wins
    /// over the preset's.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// When cuttle-api checks builds with Shaman and the branch's packages are not
    /// ready yet: keep the request as an AutoSuite that schedules itself once they are
    /// (`cuttle autosuite list`), instead of refusing it.
    #[arg(long)]
    pub wait_for_build: bool,
    /// Accepted for teuthology-suite command lines; cuttle does not look sha1s up.
    #[arg(long, value_name = "BOOL", hide = true)]
    pub validate_sha1: Option<String>,
    /// Accepted for teuthology-suite command lines (cuttle asks nothing).
    #[arg(short = 'y', long, hide = true)]
    pub non_interactive: bool,
    /// Accepted for teuthology-suite command lines (say -v to cuttle with RUST_LOG).
    #[arg(short = 'v', long, action = clap::ArgAction::Count, hide = true)]
    pub verbose: u8,
    /// teuthology-suite's --newest: only 0 (no backtracking) is supported.
    #[arg(long, value_name = "N", hide = true)]
    pub newest: Option<u32>,
    /// teuthology-suite's --sleep-before-teardown: only 0 is supported.
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub sleep_before_teardown: Option<u32>,
    /// Accepted for teuthology-suite command lines: cuttle queues a run in one request.
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub throttle: Option<u32>,
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
    /// Owner of the run [default: FILE's owner, else $USER, else `cuttle`]. A developer's
    /// token schedules only for its own user.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Machine type the jobs run on; required without FILE.
    #[arg(short = 'm', long, value_name = "TYPE")]
    pub machine_type: Option<String>,
    /// beanstalkd priority, 0 (most urgent) to 65535; default 1000.
    #[arg(short = 'p', long, value_name = "P", allow_negative_numbers = true)]
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
    #[command(after_help = "Examples:
  cuttle run list --owner alice --limit 10
  cuttle run list -m smithi --status running
  cuttle run list --status fail --json | jq -r '.[].name'")]
    List(RunListArgs),
    /// Show one run and its jobs.
    #[command(after_help = "Examples:
  cuttle run show alice-2026-05-01_10:00:00-rados-main-distro-default-smithi
  cuttle run show RUN --json | jq '.jobs[] | select(.status == \"dead\") | .reason'")]
    Show(RunShowArgs),
    /// Wait until every job of a run has ended; exit 0 if all passed, 1 if not, 2 on timeout.
    #[command(
        long_about = "Wait until every job of run RUN has ended, asking cuttle-api every \
--interval seconds. On a terminal one progress line rewrites itself (`12/40 ended: pass=10 \
fail=1 dead=1; 3 running, 25 waiting`); otherwise a plain line is printed when the counts \
change, and at least once a minute. Then the run's result is printed, with the jobs that \
did not pass and why (--json: the run as `cuttle run show --json` prints it).\n\n\
Exit status: 0 when every job passed, 1 when any ended fail, dead or killed (or the run \
cannot be read), 2 when --timeout passed first (the run goes on), 3 when cuttle-api cannot \
be reached at the start. A cuttle-api that goes away while waiting is asked again until \
--timeout.",
        after_help = "Examples:
  cuttle run wait RUN                           # until it ends, however long
  cuttle run wait RUN --timeout 7200 --interval 60
  cuttle run wait RUN && echo all passed"
    )]
    Wait(RunWaitArgs),
}

/// `cuttle run list`
#[derive(Debug, Args)]
pub struct RunListArgs {
    /// Only runs of this owner (default: everyone's).
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Only runs with this status: queued, running, pass, fail, dead or killed.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs with jobs on this machine type.
    #[arg(short = 'm', long, value_name = "TYPE")]
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

/// `cuttle run wait`
#[derive(Debug, Args)]
pub struct RunWaitArgs {
    /// Run name.
    #[arg(value_name = "RUN")]
    pub name: String,
    /// Give up after this many seconds (exit 2; the run goes on) [default: wait for ever].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Seconds between two looks at the run.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub interval: u64,
}

/// `cuttle job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show one job: status and reason, nodes, the dispatcher that claimed it, its
    /// supervisor (pid@host), when it started, and its timeline of status changes.
    #[command(after_help = "Examples:
  cuttle job show 42
  cuttle job show 42 --json | jq -r .archive_url   # where its logs are served")]
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
#[command(group(
    ArgGroup::new("which_run")
        .required(true)
        .multiple(false)
        .args(["run_name", "run"])
))]
pub struct KillArgs {
    /// Name of the run to kill.
    #[arg(value_name = "RUN")]
    pub run_name: Option<String>,
    /// The run to kill, as teuthology-kill takes it (instead of RUN).
    #[arg(short = 'r', long = "run", value_name = "RUN")]
    pub run: Option<String>,
    /// Kill only this job of the run.
    #[arg(short = 'j', long = "job", value_name = "ID")]
    pub job_id: Option<String>,
    /// Who kills it, for the jobs' timelines [default: $USER, else `cuttle`]. Whether
    /// they may is decided by the token: the run's owner's, or an admin's.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

impl KillArgs {
    /// The run named by RUN or -r/--run (clap requires exactly one).
    pub fn run_name(&self) -> &str {
        self.run_name
            .as_deref()
            .or(self.run.as_deref())
            .unwrap_or_default()
    }
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
default; biggest first otherwise). AGE is how long ago the job was scheduled.",
        after_help = "Examples:
  cuttle queue list smithi
  cuttle queue list smithi --limit 20
  cuttle queue list smithi --json | jq '.jobs[] | {id, waiting_for}'"
    )]
    List(QueueListArgs),
    /// Show a machine type's buried beanstalkd jobs: their cuttle job, run and reason.
    #[command(
        long_about = "Show the buried jobs of machine type TYPE's beanstalkd tube: copies a \
dispatcher set aside because they can never run as they are (a job needing more nodes than \
the machine type has, a job put on the wrong tube, a body that is not a job). For each: its \
beanstalkd id, how long ago it was put, the cuttle job, run and status it belongs to and \
the recorded reason, or, for a body cuttle has no record of, why cuttle refuses it and its \
first line. KICK says whether `cuttle queue kick` would put it back (`yes`) or why not.\n\n\
beanstalkd itself shows only a tube's first buried job, so cuttle-api finds the copies of \
cuttle jobs in its records (jobs that died before they started, the newest 1000) and checks \
each on beanstalkd. A body with no record is only seen when it is the tube's first buried \
job: when beanstalkd counts more buried jobs than are listed, kick or delete the first to \
see the next.",
        after_help = "Examples:
  cuttle queue buried smithi
  cuttle queue buried smithi --json | jq '.jobs[] | {beanstalk_id, reason}'"
    )]
    Buried(QueueBuriedArgs),
    /// Put buried jobs back to ready (beanstalkd kick-job), so a dispatcher takes them again.
    #[command(
        long_about = "Put buried jobs of machine type TYPE back to ready (beanstalkd \
`kick-job`), so a dispatcher reserves them and cuttle-api decides again what to do with \
each. Needs the admin token.\n\n\
A copy of a cuttle job that has ended (usually `dead`: its dispatcher buried it with the \
reason) is never kicked: an ended job never runs again, so its dispatcher would only \
discard the copy. Schedule such a job again instead (`cuttle suite --rerun RUN \
--rerun-statuses dead`, after fixing what buried it, e.g. adding nodes) and delete the copy \
(`cuttle queue delete-buried`). The same goes for a copy on the wrong tube and a stale \
copy. What is left to kick: a body cuttle has no record of (it is classified again, and \
buried again if nothing changed) and the copy of a job still waiting to run.\n\n\
--all kicks every buried job of the tube that may be kicked, one at a time (never \
beanstalkd's `kick N`, which would kick the refused ones too), and lists the ones left \
with why.",
        after_help = "Examples:
  cuttle queue kick smithi -b 1234        # beanstalkd job 1234
  cuttle queue kick smithi -j 42          # the buried copy of cuttle job 42
  cuttle queue kick smithi --all"
    )]
    Kick(QueueKickArgs),
    /// Delete one buried job from the tube for good (its cuttle job keeps its record).
    #[command(
        long_about = "Delete one buried job of machine type TYPE's tube for good \
(beanstalkd `delete`). Needs the admin token. The cuttle job the copy belongs to keeps its \
record and gets a note in its timeline; if that job is still waiting to run (its copy was \
on the wrong tube), cuttle-api puts a fresh copy on its own machine type's tube.",
        after_help = "Examples:
  cuttle queue delete-buried smithi -b 1234
  cuttle queue delete-buried smithi -j 42"
    )]
    DeleteBuried(QueueDeleteBuriedArgs),
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
    /// Who asks, for the job's timeline [default: $USER, else `cuttle`]. Whether they may
    /// is decided by the token: the job's owner's, or an admin's.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

/// `cuttle queue buried`
#[derive(Debug, Args)]
pub struct QueueBuriedArgs {
    /// Machine type (the beanstalkd tube's name), e.g. smithi.
    #[arg(value_name = "TYPE")]
    pub machine_type: String,
    /// Show at most this many (the API's default is 100, its most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// `cuttle queue kick`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("which_buried")
        .required(true)
        .multiple(false)
        .args(["beanstalk_id", "job_id", "all"])
))]
pub struct QueueKickArgs {
    /// Machine type (the beanstalkd tube's name), e.g. smithi.
    #[arg(value_name = "TYPE")]
    pub machine_type: String,
    /// The buried job's beanstalkd id (`cuttle queue buried TYPE` lists them).
    #[arg(short = 'b', long, value_name = "ID")]
    pub beanstalk_id: Option<u64>,
    /// The cuttle job whose buried copy to kick.
    #[arg(short = 'j', long = "job", value_name = "ID")]
    pub job_id: Option<String>,
    /// Every buried job of the tube that may be kicked.
    #[arg(long)]
    pub all: bool,
}

/// `cuttle queue delete-buried`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("which_buried")
        .required(true)
        .multiple(false)
        .args(["beanstalk_id", "job_id"])
))]
pub struct QueueDeleteBuriedArgs {
    /// Machine type (the beanstalkd tube's name), e.g. smithi.
    #[arg(value_name = "TYPE")]
    pub machine_type: String,
    /// The buried job's beanstalkd id (`cuttle queue buried TYPE` lists them).
    #[arg(short = 'b', long, value_name = "ID")]
    pub beanstalk_id: Option<u64>,
    /// The cuttle job whose buried copy to delete.
    #[arg(short = 'j', long = "job", value_name = "ID")]
    pub job_id: Option<String>,
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
    /// Who does it, for the record [default: $USER, else `cuttle`].
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
}

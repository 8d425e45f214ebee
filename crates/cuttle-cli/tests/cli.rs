//! The `cuttle` command line as scripts see it: the contract spellings parse, usage errors
//! are refused, and the built binary reports an unreachable API with exit code 3 and one
//! line on stderr.
//!
//! Nothing here needs a running cuttle-api: end-to-end tests against a real server live
//! elsewhere.

use std::process::{Command, Output};

use clap::{CommandFactory, Parser};
use cuttle_cli::Cli;
use cuttle_cli::cli::{Command as Verb, NodeCommand, QueueCommand, RunCommand};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("cuttle").chain(args.iter().copied()))
}

/// Runs the built binary with `args`, without any CUTTLE_* settings of the caller.
fn cuttle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .env_remove("CUTTLE_API")
        .env_remove("CUTTLE_TOKEN")
        .output()
        .expect("run the cuttle binary")
}

/// A loopback URL with nothing listening on it.
fn unreachable_api() -> String {
    format!("http://127.0.0.1:{}", cuttle_testkit::free_port())
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_options_work_before_and_after_the_subcommand() {
    let cli = parse(&["--api", "http://h:1", "--json", "health"]).unwrap();
    assert_eq!(cli.api, "http://h:1");
    assert!(cli.json);
    let cli = parse(&["run", "list", "--api", "http://h:2", "--token", "t"]).unwrap();
    assert_eq!(cli.api, "http://h:2");
    assert_eq!(cli.token.as_deref(), Some("t"));
    assert!(!cli.json);
}

#[test]
fn lock_by_machine_type() {
    let cli = parse(&[
        "node",
        "lock",
        "--machine-type",
        "smithi",
        "--count",
        "3",
        "--owner",
        "alice",
        "--json",
    ])
    .unwrap();
    assert!(cli.json);
    let Verb::Node(NodeCommand::Lock(args)) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.machine_type.as_deref(), Some("smithi"));
    assert_eq!(args.count, Some(3));
    assert_eq!(args.owner.as_deref(), Some("alice"));
    assert!(args.names.is_empty());
}

#[test]
fn lock_by_name_and_the_two_forms_exclude_each_other() {
    let cli = parse(&["node", "lock", "smithi001", "smithi002", "--owner", "alice"]).unwrap();
    let Verb::Node(NodeCommand::Lock(args)) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.names, ["smithi001", "smithi002"]);

    // Both forms, neither form, and half of the by-type form are usage errors.
    for args in [
        &[
            "node",
            "lock",
            "smithi001",
            "--machine-type",
            "smithi",
            "--count",
            "1",
            "--owner",
            "a",
        ][..],
        &["node", "lock", "--owner", "a"][..],
        &["node", "lock", "--machine-type", "smithi", "--owner", "a"][..],
        &["node", "lock", "smithi001", "--count", "2", "--owner", "a"][..],
    ] {
        assert!(parse(args).is_err(), "{args:?} should be refused");
    }
    // Without --owner the lock is for the token's user.
    parse(&["node", "lock", "smithi001"]).unwrap();
}

#[test]
fn node_add_list_unlock_and_update_spellings() {
    parse(&[
        "node",
        "add",
        "smithi001",
        "--machine-type",
        "smithi",
        "--description",
        "rack 1",
        "--os-type",
        "ubuntu",
        "--os-version",
        "22.04",
    ])
    .unwrap();
    parse(&[
        "node",
        "list",
        "--machine-type",
        "smithi",
        "--locked",
        "--down",
        "--owner",
        "alice",
    ])
    .unwrap();
    assert!(parse(&["node", "list", "--locked", "--unlocked"]).is_err());
    assert!(parse(&["node", "list", "--up", "--down"]).is_err());
    parse(&[
        "node",
        "unlock",
        "smithi001",
        "smithi002",
        "--owner",
        "alice",
    ])
    .unwrap();
    assert!(parse(&["node", "unlock", "--owner", "alice"]).is_err());
    parse(&["node", "update", "smithi001", "--up"]).unwrap();
    parse(&[
        "node",
        "update",
        "smithi001",
        "--down",
        "--reason",
        "bad disk",
    ])
    .unwrap();
    parse(&["node", "update", "smithi001", "--machine-type", "mira"]).unwrap();
}

#[test]
fn down_without_a_reason_is_a_usage_error() {
    let error = parse(&["node", "update", "smithi001", "--down"]).unwrap_err();
    assert_eq!(
        error.kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert!(
        parse(&[
            "node",
            "update",
            "smithi001",
            "--up",
            "--down",
            "--reason",
            "x"
        ])
        .is_err()
    );
    assert!(parse(&["node", "update", "smithi001"]).is_err());
    // The down reason is stored as the description; giving both would silently lose one.
    let both = [
        "node",
        "update",
        "smithi001",
        "--down",
        "--reason",
        "r",
        "--description",
        "d",
    ];
    assert_eq!(
        parse(&both).unwrap_err().kind(),
        clap::error::ErrorKind::ArgumentConflict
    );
}

#[test]
fn schedule_with_flags() {
    let cli = parse(&[
        "schedule",
        "--name",
        "r",
        "--owner",
        "o",
        "--machine-type",
        "smithi",
        "--priority",
        "50",
        "--nodes",
        "2",
        "--jobs",
        "50",
        "--time-limit",
        "600",
    ])
    .unwrap();
    let Verb::Schedule(args) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.file, None);
    assert_eq!(args.name.as_deref(), Some("r"));
    assert_eq!(args.priority, Some(50));
    assert_eq!(args.nodes, Some(2));
    assert_eq!(args.jobs, 50);
    assert_eq!(args.time_limit, Some(600));
}

#[test]
fn schedule_with_a_file() {
    let cli = parse(&["schedule", "job.yaml", "--jobs", "3"]).unwrap();
    let Verb::Schedule(args) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.file.as_deref(), Some(std::path::Path::new("job.yaml")));
    assert_eq!(args.jobs, 3);
    assert_eq!(args.machine_type, None);

    let cli = parse(&["schedule", "--machine-type", "smithi"]).unwrap();
    let Verb::Schedule(args) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.jobs, 1, "--jobs defaults to 1");
}

#[test]
fn negative_numbers_reach_the_validator() {
    let cli = parse(&["schedule", "--machine-type", "smithi", "--priority", "-1"]).unwrap();
    let Verb::Schedule(args) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.priority, Some(-1));
}

#[test]
fn run_and_job_spellings() {
    let cli = parse(&[
        "run",
        "list",
        "--owner",
        "alice",
        "--status",
        "queued",
        "--machine-type",
        "smithi",
        "--branch",
        "main",
        "--limit",
        "5",
    ])
    .unwrap();
    let Verb::Run(RunCommand::List(args)) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.limit, Some(5));
    parse(&["run", "show", "some-run", "--json"]).unwrap();
    parse(&["job", "show", "42"]).unwrap();
    parse(&["health"]).unwrap();
}

#[test]
fn kill_and_queue_spellings() {
    let cli = parse(&["kill", "alice-run", "--job", "42", "--owner", "bob"]).unwrap();
    let Verb::Kill(args) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.run_name(), "alice-run");
    assert_eq!(args.job_id.as_deref(), Some("42"));
    assert_eq!(args.owner.as_deref(), Some("bob"));
    let Verb::Kill(args) = parse(&["kill", "alice-run"]).unwrap().command else {
        panic!()
    };
    assert_eq!((args.job_id, args.owner), (None, None));
    assert!(parse(&["kill"]).is_err(), "kill needs a run");

    let cli = parse(&["queue", "list", "smithi", "--limit", "5", "--json"]).unwrap();
    assert!(cli.json);
    let Verb::Queue(QueueCommand::List(args)) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(
        (args.machine_type.as_str(), args.limit),
        ("smithi", Some(5))
    );
    assert!(
        parse(&["queue", "list"]).is_err(),
        "list needs a machine type"
    );
    assert!(parse(&["queue", "list", "smithi", "--limit", "0"]).is_err());

    let cli = parse(&["queue", "pause", "smithi", "--owner", "alice"]).unwrap();
    let Verb::Queue(QueueCommand::Pause(args)) = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(args.owner.as_deref(), Some("alice"));
    let cli = parse(&["queue", "resume", "smithi"]).unwrap();
    assert!(matches!(cli.command, Verb::Queue(QueueCommand::Resume(_))));
    let cli = parse(&["queue", "tubes"]).unwrap();
    assert!(matches!(cli.command, Verb::Queue(QueueCommand::Tubes)));
}

#[test]
fn every_command_says_what_it_does() {
    fn check(command: &clap::Command, path: &str) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|about| about.to_string());
            assert!(
                about.as_deref().is_some_and(|about| about.len() > 20),
                "`{path}` has no sentence of help: {about:?}"
            );
            check(sub, &path);
        }
    }
    check(&Cli::command(), "cuttle");
}

#[test]
fn kill_help_says_who_may_kill_and_what_happens() {
    let output = cuttle(&["kill", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "owner",
        "$USER",
        "admin token",
        "beanstalkd",
        "supervisor",
        "--job",
    ] {
        assert!(help.contains(needle), "kill --help lacks {needle}:\n{help}");
    }
}

#[test]
fn help_says_what_cuttle_is() {
    let output = cuttle(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "cuttle-api",
        "Ceph",
        "CUTTLE_API",
        "CUTTLE_TOKEN",
        "cuttle kill",
        "cuttle queue",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn a_usage_error_exits_2() {
    let output = cuttle(&["node", "update", "smithi001", "--down"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn an_unreachable_api_exits_3_with_one_line() {
    let api = unreachable_api();
    let output = cuttle(&["--api", &api, "run", "list"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("cuttle: "), "{stderr}");
    assert!(stderr.contains(&api), "{stderr}");
    assert!(stderr.contains("CUTTLE_API"), "{stderr}");
}

#[test]
fn the_api_url_comes_from_the_environment() {
    let api = unreachable_api();
    let output = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["health"])
        .env("CUTTLE_API", &api)
        .env_remove("CUTTLE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&api));
}

#[test]
fn invalid_input_exits_1_before_connecting() {
    // The API is unreachable, so exit 1 (not 3) proves the input was checked first.
    let api = unreachable_api();
    for (args, needle) in [
        (
            &["schedule", "--machine-type", "smithi", "--priority", "-1"][..],
            "priority",
        ),
        (
            &["schedule", "--machine-type", "smithi", "--nodes", "0"][..],
            "node count",
        ),
        (
            &["schedule", "--machine-type", "smithi", "--jobs", "0"][..],
            "jobs",
        ),
        (&["schedule", "--owner", "alice"][..], "--machine-type"),
        (
            &["schedule", "/nonexistent/job.yaml"][..],
            "/nonexistent/job.yaml",
        ),
        (&["job", "show", "abc"][..], "job id"),
        (
            &["node", "add", "bad name", "--machine-type", "smithi"][..],
            "node name",
        ),
        (&["run", "list", "--status", "done"][..], "run status"),
        (&["kill", "bad run"][..], "run name"),
        (&["kill", "r", "--job", "x"][..], "job id"),
        (&["kill", "r", "--owner", "a b"][..], "owner"),
        (&["queue", "list", "smithi/1"][..], "machine type"),
        (&["queue", "pause", "smithi/1"][..], "machine type"),
        (
            &["queue", "resume", "smithi", "--owner", "a;b"][..],
            "owner",
        ),
    ] {
        let output = cuttle(&[&["--api", api.as_str()][..], args].concat());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("cuttle: "), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn teuthology_short_flags_mean_what_they_mean_there() {
    // -m machine type, -p priority (teuthology-suite, teuthology-schedule).
    let Verb::Schedule(args) = parse(&["schedule", "-m", "smithi", "-p", "90"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(args.machine_type.as_deref(), Some("smithi"));
    assert_eq!(args.priority, Some(90));
    for args in [
        &["node", "list", "-m", "smithi"][..],
        &["node", "lock", "-m", "smithi", "--count", "1"][..],
        &["node", "add", "smithi001", "-m", "smithi"][..],
        &["node", "import", "nodes.json", "-m", "smithi"][..],
        &["run", "list", "-m", "smithi"][..],
        &["suite", "-s", "rados/basic", "-m", "smithi", "-p", "100"][..],
    ] {
        assert!(parse(args).is_ok(), "{args:?}");
    }
    // -r run and -j job (teuthology-kill); -r is --rerun in suite, as in teuthology-suite.
    let Verb::Kill(args) = parse(&["kill", "-r", "alice-run", "-j", "42"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(args.run_name(), "alice-run");
    assert_eq!(args.job_id.as_deref(), Some("42"));
    let Verb::Suite(args) = parse(&["suite", "-s", "x", "-r", "old-run"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(args.rerun.as_deref(), Some("old-run"));
    let Verb::Queue(QueueCommand::Kick(args)) = parse(&["queue", "kick", "smithi", "-j", "42"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(args.job_id.as_deref(), Some("42"));
    let Verb::Node(NodeCommand::Lock(args)) = parse(&["node", "lock", "smithi001", "-j", "7"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(args.job_id.as_deref(), Some("7"));
}

#[test]
fn run_wait_and_buried_job_spellings() {
    let Verb::Run(RunCommand::Wait(args)) =
        parse(&["run", "wait", "r", "--timeout", "60", "--interval", "5"])
            .unwrap()
            .command
    else {
        panic!()
    };
    assert_eq!(
        (args.name.as_str(), args.timeout, args.interval),
        ("r", Some(60), 5)
    );
    let Verb::Run(RunCommand::Wait(args)) = parse(&["run", "wait", "r"]).unwrap().command else {
        panic!()
    };
    assert_eq!((args.timeout, args.interval), (None, 10));
    assert!(parse(&["run", "wait", "r", "--interval", "0"]).is_err());
    assert!(parse(&["run", "wait", "r", "--timeout", "0"]).is_err());

    assert!(parse(&["queue", "buried", "smithi", "--limit", "5"]).is_ok());
    assert!(parse(&["queue", "kick", "smithi", "--all"]).is_ok());
    assert!(parse(&["queue", "kick", "smithi", "-b", "12"]).is_ok());
    assert!(parse(&["queue", "kick", "smithi"]).is_err(), "kick what?");
    assert!(parse(&["queue", "kick", "smithi", "-b", "1", "-j", "2"]).is_err());
    assert!(parse(&["queue", "delete-buried", "smithi", "-b", "12"]).is_ok());
    assert!(parse(&["queue", "delete-buried", "smithi", "--all"]).is_err());
    assert!(parse(&["queue", "delete-buried", "smithi"]).is_err());
    for color in ["auto", "always", "never"] {
        assert!(parse(&["--color", color, "run", "list"]).is_ok());
    }
    assert!(parse(&["run", "list", "--color", "sometimes"]).is_err());
}

#[test]
fn the_main_commands_show_examples() {
    for command in [
        &["schedule"][..],
        &["suite"][..],
        &["run", "list"][..],
        &["run", "show"][..],
        &["run", "wait"][..],
        &["job", "show"][..],
        &["queue", "list"][..],
        &["queue", "buried"][..],
        &["node", "list"][..],
        &["node", "lock"][..],
        &["node", "unlock"][..],
        &["kill"][..],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = cuttle(&args);
        assert!(output.status.success(), "{command:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        let examples = help
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("`cuttle {}` has no examples:\n{help}", command.join(" ")))
            .1;
        let first = examples.lines().next().unwrap_or_default();
        assert!(
            first
                .trim_start()
                .starts_with(&format!("cuttle {}", command[0])),
            "{command:?}: {first:?}"
        );
    }
}

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = cuttle(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        for word in [
            "schedule",
            "suite",
            "kill",
            "queue",
            "buried",
            "delete-buried",
            "wait",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert!(
        String::from_utf8(cuttle(&["completions", "bash"]).stdout)
            .unwrap()
            .contains("--machine-type")
    );
    // Hidden: they do not clutter the help, and a shell that does not exist is a usage error.
    let help = String::from_utf8(cuttle(&["--help"]).stdout).unwrap();
    assert!(!help.contains("\n  completions"), "{help}");
    assert!(help.contains("cuttle completions bash"), "{help}");
    assert_eq!(cuttle(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let output = cuttle(&["man", out_dir.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let main = std::fs::read_to_string(out_dir.join("cuttle.1")).unwrap();
    for word in ["schedule", "suite", "kill", "queue", "node", "run"] {
        assert!(main.contains(word), "cuttle.1 lacks {word}");
    }
    let wait = std::fs::read_to_string(out_dir.join("cuttle-run-wait.1")).unwrap();
    assert!(wait.contains("timeout"), "{wait}");
    assert!(out_dir.join("cuttle-queue-kick.1").exists());
    // No pages for the hidden commands themselves.
    assert!(!out_dir.join("cuttle-completions.1").exists());
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(listing.contains("cuttle-queue-buried.1"), "{listing}");
    // A place that cannot be written is named, with the fix.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let output = cuttle(&["man", blocker.join("sub").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(
        message.contains("cannot create") && message.contains("pick a directory"),
        "{message}"
    );
}

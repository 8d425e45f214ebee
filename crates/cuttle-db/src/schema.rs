//! diesel's description of the tables in `migrations/{sqlite,postgres}`.
//!
//! Written by hand to match both migration sets (they differ only in how ids are
//! generated); the db crate's tests run every query on both backends, which is what keeps
//! this file and the migrations in step.

diesel::table! {
    runs (id) {
        id -> BigInt,
        name -> Text,
        owner -> Text,
        branch -> Text,
        sha1 -> Text,
        suite -> Text,
        machine_type -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        run_id -> BigInt,
        description -> Text,
        machine_type -> Text,
        priority -> Integer,
        n_nodes -> Integer,
        time_limit_s -> Nullable<Integer>,
        os_type -> Text,
        os_version -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        beanstalk_id -> Nullable<BigInt>,
        config_yaml -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        heartbeat_at -> Nullable<BigInt>,
        dispatcher -> Nullable<Text>,
        supervisor_pid -> Nullable<BigInt>,
        supervisor_host -> Nullable<Text>,
        started_at -> Nullable<BigInt>,
        queue_priority -> Nullable<Integer>,
        prepare_retries -> Integer,
    }
}

diesel::table! {
    job_events (id) {
        id -> BigInt,
        job_id -> BigInt,
        at -> BigInt,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    nodes (id) {
        id -> BigInt,
        name -> Text,
        machine_type -> Text,
        up -> Bool,
        locked_by -> Nullable<Text>,
        locked_job_id -> Nullable<BigInt>,
        locked_since -> Nullable<BigInt>,
        description -> Text,
        os_type -> Text,
        os_version -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        prepare_strikes -> Integer,
        ssh_key -> Text,
    }
}

diesel::table! {
    lock_events (id) {
        id -> BigInt,
        node -> Text,
        action -> Text,
        holder -> Text,
        job_id -> Nullable<BigInt>,
        by_whom -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        user_name -> Text,
        role -> Text,
        digest -> Text,
        prefix -> Text,
        created_at -> BigInt,
        created_by -> Text,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tubes (machine_type) {
        machine_type -> Text,
        paused -> Bool,
        paused_by -> Nullable<Text>,
        paused_at -> Nullable<BigInt>,
        lease_holder -> Nullable<Text>,
        lease_host -> Nullable<Text>,
        lease_pid -> Nullable<BigInt>,
        lease_acquired_at -> Nullable<BigInt>,
        lease_expires_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    run_suites (run_id) {
        run_id -> BigInt,
        suite_repo -> Text,
        suite_branch -> Text,
        suite_sha1 -> Text,
        teuthology_branch -> Text,
        teuthology_sha1 -> Text,
        seed -> BigInt,
        subset -> Nullable<Text>,
        email -> Nullable<Text>,
        results_timeout_s -> Nullable<BigInt>,
        rerun_of -> Nullable<Text>,
        summary_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    presets (id) {
        id -> BigInt,
        owner -> Text,
        name -> Text,
        args -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    autosuites (id) {
        id -> BigInt,
        owner -> Text,
        role -> Text,
        state -> Text,
        branch -> Text,
        sha1 -> Text,
        distro -> Text,
        distro_version -> Text,
        flavor -> Text,
        args -> Text,
        run_name -> Nullable<Text>,
        reason -> Nullable<Text>,
        build_url -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    autosuite_events (id) {
        id -> BigInt,
        autosuite_id -> BigInt,
        at -> BigInt,
        from_state -> Nullable<Text>,
        to_state -> Text,
        reason -> Nullable<Text>,
    }
}

diesel::joinable!(jobs -> runs (run_id));
diesel::joinable!(autosuite_events -> autosuites (autosuite_id));
diesel::joinable!(run_suites -> runs (run_id));
diesel::joinable!(job_events -> jobs (job_id));
diesel::allow_tables_to_appear_in_same_query!(
    runs,
    jobs,
    job_events,
    nodes,
    tubes,
    lock_events,
    tokens,
    run_suites,
    presets,
    autosuites,
    autosuite_events
);

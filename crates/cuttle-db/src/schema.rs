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

diesel::joinable!(jobs -> runs (run_id));
diesel::joinable!(job_events -> jobs (job_id));
diesel::allow_tables_to_appear_in_same_query!(runs, jobs, job_events, nodes, tubes);

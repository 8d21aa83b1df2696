//! Tests of the configuration: defaults, loading, validation and masking.

use super::*;

const NO_ENV: [(&str, &str); 0] = [];

#[test]
fn empty_file_gives_defaults() {
    let c = Config::from_yaml("", NO_ENV).unwrap();
    assert_eq!(c.store.backend, "sqlite");
    assert_eq!(c.api.listen, "127.0.0.1:9100");
    assert_eq!(c.quarantine.retention_days, 30);
    assert_eq!(c.telemetry.retention_days, 90);
    assert!(c.security.audit_logging);
    assert!((1..=8).contains(&c.workers.max_workers));
}

#[test]
fn every_problem_names_path_and_value() {
    let y = "workers:\n  max_workers: 99\nstore:\n  backend: oracle\napi:\n  listen: nowhere\n";
    let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("workers.max_workers: 99")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("store.backend: 'oracle'")));
    assert!(lines.iter().any(|l| l.starts_with("api.listen: 'nowhere'")));
}

#[test]
fn type_errors_and_unknown_keys_name_the_path() {
    let e = Config::from_yaml("workers:\n  max_workers: lots\n", NO_ENV).unwrap_err();
    assert_eq!(e[0].path, "workers.max_workers");
    assert!(e[0].message.contains("lots"), "{}", e[0].message);
    let e = Config::from_yaml("workers:\n  max_wrkers: 4\n", NO_ENV).unwrap_err();
    assert_eq!(e[0].path, "workers.max_wrkers");
    assert!(e[0].message.contains("unknown key"), "{}", e[0].message);
    let e = Config::from_yaml("workers: [1\n", NO_ENV).unwrap_err();
    assert!(e[0].message.contains("not valid YAML"));
}

#[test]
fn env_overrides_win_over_the_file() {
    let c = Config::from_yaml(
        "workers:\n  max_workers: 4\n",
        [
            ("FABRIC__WORKERS__MAX_WORKERS", "6"),
            ("FABRIC__API__TOKEN", "s3cret"),
            ("HOME", "/x"),
        ],
    )
    .unwrap();
    assert_eq!(c.workers.max_workers, 6);
    assert_eq!(c.api.token.as_deref(), Some("s3cret"));
    assert_eq!(c.redacted().api.token.as_deref(), Some(MASK));
}

#[test]
fn url_passwords_are_masked() {
    assert_eq!(
        redact_url("postgres://fab:pw@db:5432/x"),
        "postgres://fab:********@db:5432/x"
    );
    assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    let c = Config::from_yaml(
        "store:\n  backend: postgres\n  url: postgres://a:b@h/d\n",
        NO_ENV,
    )
    .unwrap();
    assert!(!format!("{:?}", c.redacted()).contains(":b@"));
}

#[test]
fn per_source_policies_are_validated_and_found() {
    let y = "retry_policies:\n  mail:\n    max_attempts: 5\n    jitter: 2\n";
    let e = Config::from_yaml(y, NO_ENV).unwrap_err();
    assert_eq!(e[0].path, "retry_policies.mail.jitter");
    let c = Config::from_yaml("retry_policies:\n  mail:\n    max_attempts: 5\n", NO_ENV).unwrap();
    assert_eq!(c.retry_policy_for(Some("mail")).max_attempts, 5);
    assert_eq!(c.retry_policy_for(Some("other")).max_attempts, 3);
}

#[test]
fn every_problem_is_listed_at_once_with_path_and_value() {
    let y = "workers:\n  max_workers: lots\n  max_wrkers: 4\n  lease_seconds: 0\n\
                 queue:\n  checkpoint_interval: 1000\n  retention_days: -1\n\
                 store:\n  backend: oracle\nretry:\n  strategy: sometimes\n\
                 retry_policies:\n  mail:\n    max_attempts: many\n    colour: red\n\
                 node:\n  specialties: [gpu, [x]]\nextra: 1\n";
    let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |path: &str, word: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{path}: ")) && l.contains(word)),
            "no {path} with {word} in {lines:#?}"
        )
    };
    has("workers.max_workers", "lots");
    has("workers.max_wrkers", "unknown key (value 4)");
    has("workers.lease_seconds", "0 is out of range 1..86400");
    has("queue.checkpoint_interval", "was removed");
    has("queue.retention_days", "-1");
    has("store.backend", "oracle");
    has("retry.strategy", "sometimes");
    has("retry_policies.mail.max_attempts", "many");
    has("retry_policies.mail.colour", "red");
    has("node.specialties[1]", "sequence");
    has("extra", "unknown key");
    assert_eq!(lines.len(), 11, "{lines:#?}");
}

#[test]
fn removed_keys_say_so() {
    let e = Config::from_yaml("workers:\n  hardware_cap_enabled: true\n", NO_ENV).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "workers.hardware_cap_enabled");
    assert!(e[0].message.contains("was removed"), "{}", e[0].message);
}

#[test]
fn an_empty_token_is_invalid() {
    let e = Config::from_yaml("api:\n  token: ''\n", NO_ENV).unwrap_err();
    assert_eq!(e[0].path, "api.token");
    let e = Config::from_yaml("", [("FABRIC__API__TOKEN", "'  '")]).unwrap_err();
    assert_eq!(e[0].path, "api.token");
}

#[test]
fn every_numeric_key_has_an_upper_bound_naming_key_and_value() {
    let y = "api:\n  max_body_bytes: 99999999999\nworkers:\n  job_timeout_seconds: 18446744073709551615\n\
                 \x20 poll_interval_ms: 9999999\n  shutdown_timeout_seconds: 9999999\n\
                 queue:\n  retention_days: 4000000000\nquarantine:\n  retention_days: 0\n\
                 telemetry:\n  retention_days: 99999\nnode:\n  capacity: 99999999\n\
                 \x20 heartbeat_ms: 99999999\n  timeout_ms: 999999999\n  leader_lease_ms: 999999999\n\
                 retry:\n  base_delay_seconds: 1e12\n  backoff_multiplier: 1000\n  transient_max_attempts: 0\n";
    let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for key in [
        "api.max_body_bytes",
        "workers.job_timeout_seconds",
        "workers.poll_interval_ms",
        "workers.shutdown_timeout_seconds",
        "queue.retention_days",
        "quarantine.retention_days",
        "telemetry.retention_days",
        "node.capacity",
        "node.heartbeat_ms",
        "node.timeout_ms",
        "node.leader_lease_ms",
        "retry.base_delay_seconds",
        "retry.backoff_multiplier",
        "retry.transient_max_attempts",
    ] {
        assert!(paths.contains(&key), "{key} not in {errs:#?}");
    }
    let e = errs
        .iter()
        .find(|e| e.path == "workers.job_timeout_seconds")
        .unwrap();
    assert!(e.message.contains("18446744073709551615"), "{e}");
}

#[test]
fn presets_are_selectable_and_partial_policies_start_from_them() {
    let y = "retry_policies:\n  imap:\n    preset: mail\n    max_attempts: 6\n\
                 \x20 mail:\n    base_delay_seconds: 60\n  repositories: {}\n  files:\n    max_attempts: 2\n";
    let c = Config::from_yaml(y, NO_ENV).unwrap();
    let imap = &c.retry_policies["imap"];
    assert_eq!(imap.preset, crate::retry::RetryPreset::Mail);
    assert_eq!(imap.max_attempts, 6);
    assert_eq!(imap.transient_max_attempts, Some(7));
    assert_eq!(imap.max_delay_seconds, 1800.0);
    let mail = &c.retry_policies["mail"];
    assert_eq!((mail.max_attempts, mail.base_delay_seconds), (5, 60.0));
    assert_eq!(mail.rate_limit_delay_seconds, 600.0);
    assert_eq!(
        c.retry_policies["repositories"],
        RetryPolicy::repositories()
    );
    assert_eq!(c.retry_policies["files"].max_delay_seconds, 300.0);
    let e = Config::from_yaml("retry:\n  preset: email\n", NO_ENV).unwrap_err();
    assert_eq!(e[0].path, "retry.preset");
    assert!(e[0].message.contains("email"), "{}", e[0].message);
}

#[test]
fn a_job_takes_its_sources_policy_else_its_kinds_else_retry() {
    let y = "retry_policies:\n  mail:\n    max_attempts: 6\n  shell:\n    max_attempts: 4\n";
    let c = Config::from_yaml(y, NO_ENV).unwrap();
    assert_eq!(c.retry_policy_of(Some("mail"), "shell").max_attempts, 6);
    assert_eq!(c.retry_policy_of(Some("other"), "shell").max_attempts, 4);
    assert_eq!(c.retry_policy_of(None, "noop").max_attempts, 3);
}

#[test]
fn show_lists_the_new_keys() {
    let shown = serde_yaml_ng::to_string(&Config::default().display_value()).unwrap();
    assert!(shown.contains("shell_env_allow"), "{shown}");
    assert!(shown.contains("preset: local_files"), "{shown}");
    assert!(!shown.contains("checkpoint_interval"), "{shown}");
    for key in [
        "audit_retention_days: 365",
        "recovery:\n  keep: 20",
        "logs:\n  max_bytes: 10485760\n  keep: 5",
        "backups:\n  keep: 10",
    ] {
        assert!(shown.contains(key), "{key} not in {shown}");
    }
}

#[test]
fn retention_keys_are_bounded_naming_key_and_value() {
    let y = "security:\n  audit_retention_days: 0\nrecovery:\n  keep: 1001\n\
                 logs:\n  max_bytes: 100\n  keep: 0\nbackups:\n  keep: 0\n";
    let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    for line in [
        "security.audit_retention_days: 0 is out of range 1..3650",
        "recovery.keep: 1001 is out of range 1..1000",
        "logs.max_bytes: 100 is out of range 4096..1073741824",
        "logs.keep: 0 is out of range 1..100",
        "backups.keep: 0 is out of range 1..1000",
    ] {
        assert!(lines.iter().any(|l| l == line), "{line} not in {lines:#?}");
    }
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let c = Config::from_yaml(
        "logs:\n  keep: 3\n",
        [
            ("FABRIC__LOGS__MAX_BYTES", "4096"),
            ("FABRIC__BACKUPS__KEEP", "2"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.logs.max_bytes, c.logs.keep, c.backups.keep),
        (4096, 3, 2)
    );
}

/// Found by `cargo fuzz run config_yaml`: an empty key was reported with an empty path.
#[test]
fn an_empty_or_blank_key_is_named_quoted() {
    let problems = Config::from_yaml(
        "'': 1
workers:
  ' ': 2
",
        NO_ENV,
    )
    .unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["''", "workers.' '"], "{problems:?}");
}

#[test]
fn the_issues_bus_section_parses_and_is_checked() {
    let y = "bus:\n  backend: redis\n  url: \"redis://:pw@127.0.0.1:6379\"\n  prefix: \"fabric\"\n\
                 \x20 emergency_threshold: 4000\n  backpressure_drop_threshold: 8000\n\
                 \x20 max_stream_length: 100000\n  retry_idle_ms: 30000\n  retry_max_attempts: 5\n\
                 \x20 signing: {secret_file: /path}\n";
    let c = Config::from_yaml(y, NO_ENV).unwrap();
    assert_eq!(c.bus.backend, BusBackend::Redis);
    assert_eq!(c.bus.emergency_threshold, 4000);
    let file = c.bus.signing.as_ref().and_then(|s| s.secret_file.clone());
    assert_eq!(file, Some("/path".into()));
    let shown = serde_yaml_ng::to_string(&c.display_value()).unwrap();
    assert!(!shown.contains(":pw@"), "{shown}");

    let c = Config::from_yaml(y, [("FABRIC__BUS__SIGNING__SECRET", "s3")]).unwrap();
    let s = c.bus.signing.unwrap();
    assert_eq!((s.secret, s.secret_file), (Some(Secret("s3".into())), None));

    // A drop threshold at or below the emergency threshold is valid (a full normal drops
    // before it would reroute: the original's "drop threshold 5" case); zero is not.
    let c = Config::from_yaml(
        "bus:\n  emergency_threshold: 4000\n  backpressure_drop_threshold: 5\n",
        NO_ENV,
    )
    .unwrap();
    assert_eq!(c.bus.backpressure_drop_threshold, 5);
    let e = Config::from_yaml(
        "bus:\n  emergency_threshold: 10\n  backpressure_drop_threshold: 0\n  retry_idle_ms: 0\n",
        NO_ENV,
    )
    .unwrap_err();
    let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bus.backpressure_drop_threshold: ") && l.contains('0')),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("bus.retry_idle_ms: ")),
        "{lines:?}"
    );
    let e = Config::from_yaml("bus:\n  backend: kafka\n", NO_ENV).unwrap_err();
    assert!(
        e[0].path == "bus.backend" && e[0].message.contains("kafka"),
        "{e:?}"
    );
}

#[test]
fn slos_default_replace_and_are_checked() {
    let c = Config::from_yaml("", NO_ENV).unwrap();
    assert_eq!(
        c.slo.keys().collect::<Vec<_>>(),
        ["job_latency", "job_success"]
    );
    let y = "slo:\n  api_ok:\n    indicator: success\n    objective: 0.999\n    window: 30d\n";
    let c = Config::from_yaml(y, NO_ENV).unwrap();
    assert_eq!(c.slo.keys().collect::<Vec<_>>(), ["api_ok"]);
    assert_eq!(c.slo["api_ok"].window_ms(), 30 * 86_400_000);
    let y = "slo:\n  fast:\n    indicator: latency\n    objective: 95\n    colour: red\n";
    let e = Config::from_yaml(y, NO_ENV).unwrap_err();
    let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("slo.fast.colour: unknown key")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("slo.fast.objective: 95")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("slo.fast.threshold_ms: is required")),
        "{lines:?}"
    );
}

proptest::proptest! {
    /// Arbitrary text, and arbitrary YAML shaped like a config, give a config or problems
    /// that each name a path, never a panic.
    #[test]
    fn arbitrary_yaml_never_panics(text in "\\PC{0,200}") {
        if let Err(problems) = Config::from_yaml(&text, NO_ENV) {
            proptest::prop_assert!(!problems.is_empty());
            for p in problems {
                proptest::prop_assert!(!p.path.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_values_of_known_keys_never_panic(
        section in proptest::sample::select(vec!["workers", "api", "store", "queue", "node", "retry", "retry_policies", "quarantine", "security"]),
        key in proptest::sample::select(vec!["max_workers", "token", "url", "retention_days", "capacity", "max_attempts", "mail", "preset", "backoff_multiplier", "timeout_ms", "redact_roots", "x"]),
        value in proptest::sample::select(vec!["-1", "0", "1e308", "18446744073709551616", "~", "[]", "{a: 1}", "''", "nan", ".inf", "true", "mail", "!tag 3"]),
    ) {
        let y = format!("{section}:\n  {key}: {value}\n");
        let env = [(format!("FABRIC__{}__{}", section.to_uppercase(), key.to_uppercase()), value.to_string())];
        for r in [Config::from_yaml(&y, NO_ENV), Config::from_yaml("", env)] {
            if let Err(problems) = r {
                for p in problems {
                    proptest::prop_assert!(!p.path.is_empty() && !p.message.is_empty());
                }
            }
        }
    }
}

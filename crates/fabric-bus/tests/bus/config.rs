//! `BusConfig` validation: defaults of issue 14 §7, and errors naming the bad field.

use fabric_bus::{BusBackend, BusConfig, BusError};

fn field_of(config: BusConfig) -> String {
    match fabric_bus::validate(&config) {
        Err(BusError::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_issues_and_valid() {
    let c = BusConfig::default();
    fabric_bus::validate(&c).unwrap();
    assert_eq!(c.backend, BusBackend::Inproc);
    assert_eq!(c.prefix, "fabric");
    assert_eq!(
        (c.emergency_threshold, c.backpressure_drop_threshold),
        (4000, 8000)
    );
    assert_eq!(c.max_stream_length, 100_000);
    assert_eq!((c.retry_idle_ms, c.retry_max_attempts), (30_000, 5));
    assert_eq!(
        [
            &c.streams.normal,
            &c.streams.emergency,
            &c.streams.telemetry,
            &c.streams.policy
        ],
        [
            "fabric.normal",
            "fabric.emergency",
            "fabric.telemetry",
            "fabric.policy"
        ]
    );
}

#[test]
fn each_bad_value_is_named() {
    let d = BusConfig::default;
    let e = field_of(BusConfig {
        backpressure_drop_threshold: 0,
        ..d()
    });
    assert_eq!(e, "bus.backpressure_drop_threshold");
    // At or below the emergency threshold is valid: a full normal drops, never reroutes.
    fabric_bus::validate(&BusConfig {
        backpressure_drop_threshold: 10,
        ..d()
    })
    .unwrap();
    assert_eq!(
        field_of(BusConfig {
            emergency_threshold: 0,
            ..d()
        }),
        "bus.emergency_threshold"
    );
    assert_eq!(
        field_of(BusConfig {
            max_stream_length: 0,
            ..d()
        }),
        "bus.max_stream_length"
    );
    assert_eq!(
        field_of(BusConfig {
            retry_idle_ms: 0,
            ..d()
        }),
        "bus.retry_idle_ms"
    );
    assert_eq!(
        field_of(BusConfig {
            retry_max_attempts: 0,
            ..d()
        }),
        "bus.retry_max_attempts"
    );
    assert_eq!(
        field_of(BusConfig {
            prefix: String::new(),
            ..d()
        }),
        "bus.prefix"
    );
    let mut same = d();
    same.streams.emergency = same.streams.normal.clone();
    assert_eq!(field_of(same), "bus.streams.emergency");
    let redis_http = BusConfig {
        backend: BusBackend::Redis,
        url: "http://127.0.0.1:6379".into(),
        ..d()
    };
    assert_eq!(field_of(redis_http), "bus.url");
}

#[test]
fn signing_needs_one_secret_and_a_plain_key_id() {
    use fabric_bus::{Secret, SigningConfig};
    let with = |s: SigningConfig| BusConfig {
        signing: Some(s),
        ..BusConfig::default()
    };
    let both = SigningConfig {
        secret: Some(Secret("s".into())),
        secret_file: Some("/nonexistent".into()),
        ..SigningConfig::default()
    };
    assert_eq!(field_of(with(both)), "bus.signing.secret_file");
    let colon = SigningConfig {
        key_id: "a:b".into(),
        ..SigningConfig::default()
    };
    assert_eq!(field_of(with(colon)), "bus.signing.key_id");
    // No secret anywhere: named when the secret is resolved.
    let none = SigningConfig::default();
    match fabric_bus::resolve_secret(&none, None) {
        Err(BusError::Config { field, .. }) => assert_eq!(field, "bus.signing.secret"),
        other => panic!("{other:?}"),
    }
    // The environment wins over the config; Debug never shows the secret.
    let inline = SigningConfig {
        secret: Some(Secret("from-config".into())),
        ..SigningConfig::default()
    };
    assert_eq!(
        fabric_bus::resolve_secret(&inline, Some("from-env".into())).unwrap(),
        "from-env"
    );
    assert_eq!(
        fabric_bus::resolve_secret(&inline, None).unwrap(),
        "from-config"
    );
    assert!(!format!("{:?}", with(inline)).contains("from-config"));
}

/// `open` with `bus.signing.secret_file` seals and verifies end to end.
#[tokio::test]
async fn open_with_a_secret_file_signs_messages() {
    use fabric_bus::{Message, SigningConfig};
    let path = std::env::temp_dir().join(format!("fabric-bus-secret-{}", std::process::id()));
    std::fs::write(&path, "s3cret\n").unwrap();
    let config = BusConfig {
        signing: Some(SigningConfig {
            secret_file: Some(path.clone()),
            ..SigningConfig::default()
        }),
        ..BusConfig::default()
    };
    let bus = fabric_bus::open(config).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    bus.init("g").await.unwrap();
    bus.publish(Message::normal("hello")).await.unwrap();
    let got = bus
        .read("g", "c", 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, "hello");
    assert_eq!(bus.metrics_snapshot().await.unwrap().get("rejected"), 0);
}

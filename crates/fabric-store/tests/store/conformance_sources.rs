//! Conformance cases of the ingestion layer's state: source definitions and runtime state,
//! and telemetry sums and pruning.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::{NewJob, Priority};
use fabric_store::{Outcome, Store};

use super::docs_cases::doc;
use super::{claim_req, done, T0};

pub async fn sources_keep_their_definition_and_state(s: &dyn Store) {
    use fabric_core::source::{SourceDef, SourceType};
    let def = |name: &str, path: &str| SourceDef {
        name: name.into(),
        source_type: SourceType::LocalFiles,
        path: path.into(),
        include: vec!["**/*.md".into()],
        exclude: vec![],
        schedule: Some("every 15m".into()),
        priority: Priority::HIGH,
        retry_policy: Some("mail".into()),
    };
    assert!(s.sources().await.unwrap().is_empty());
    s.put_source(def("notes", "/srv/notes"), T0).await.unwrap();
    s.put_source(def("docs", "/srv/docs"), T0).await.unwrap();
    let all = s.sources().await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.def.name.as_str()).collect::<Vec<_>>(),
        ["docs", "notes"]
    );
    let notes = s.source("notes").await.unwrap();
    assert_eq!(notes.def, def("notes", "/srv/notes"));
    assert_eq!((notes.state.as_str(), notes.quarantined), ("active", 0));
    // Paused with its reason; a new definition keeps the state; resumed.
    s.set_source_paused("notes", Some("disk swap"), T0 + 1)
        .await
        .unwrap();
    s.put_source(def("notes", "/srv/notes2"), T0 + 2)
        .await
        .unwrap();
    let p = s.source("notes").await.unwrap();
    assert_eq!(p.def.path, "/srv/notes2");
    assert_eq!(
        (p.state.as_str(), p.pause_reason.as_deref(), p.paused_at),
        ("paused", Some("disk swap"), Some(T0 + 1))
    );
    assert_eq!((p.created_at, p.updated_at), (T0, T0 + 2));
    s.set_source_paused("notes", None, T0 + 3).await.unwrap();
    let r = s.source("notes").await.unwrap();
    assert_eq!((r.state.as_str(), r.pause_reason), ("active", None));
    // Its quarantined jobs are counted.
    let mut j = NewJob::new("noop");
    j.source = Some("notes".into());
    j.max_attempts = 1;
    s.submit(vec![j], T0).await.unwrap();
    let job = s.claim(claim_req("w", 1, T0)).await.unwrap().remove(0);
    let lost = Outcome::Quarantine {
        reason: QuarantineReason::ParseError,
        error: "bad".into(),
        failure: "permanent".into(),
    };
    s.complete(vec![done(&job, "w", lost)]).await.unwrap();
    assert_eq!(s.source("notes").await.unwrap().quarantined, 1);
    assert_eq!(s.source("docs").await.unwrap().quarantined, 0);
    // Unknown names are NotFound; removal removes.
    for e in [
        s.source("nope").await.unwrap_err(),
        s.remove_source("nope").await.unwrap_err(),
        s.set_source_paused("nope", None, T0).await.unwrap_err(),
    ] {
        assert!(
            matches!(e, fabric_store::StoreError::NotFound { .. }),
            "{e}"
        );
    }
    s.record_source_scan("notes", T0 + 9, "ok", 12)
        .await
        .unwrap();
    // Its documents are the ones the document store holds for it.
    for path in ["a.md", "b.md"] {
        let d = doc("notes", path, path, &["some words"]);
        s.docs().put_document(d, T0).await.unwrap();
    }
    s.docs().remove_document("notes", "b.md").await.unwrap();
    let scanned = s.source("notes").await.unwrap();
    assert_eq!(
        (scanned.last_scan_at, scanned.last_outcome.as_deref()),
        (Some(T0 + 9), Some("ok"))
    );
    assert_eq!((scanned.files, scanned.documents), (12, 1));
    assert!(s.record_source_scan("nope", T0, "ok", 0).await.is_err());
    // The jobs of a source and kind after an id, by state (what `trigger --wait` follows).
    let c = s.counts_of("notes", "noop", 0).await.unwrap();
    assert_eq!((c.quarantined, c.total()), (1, 1));
    assert_eq!(
        s.counts_of("notes", "noop", job.id).await.unwrap().total(),
        0
    );
    assert_eq!(s.counts_of("notes", "scan", 0).await.unwrap().total(), 0);
    // Removal takes the source's runtime state with it, and no other source's.
    use fabric_core::source::state_key;
    for (src, what) in [
        ("docs", "index"),
        ("docs", "mbox:a_b.mbox"),
        ("docs_x", "index"),
    ] {
        s.fleet()
            .put_setting(&state_key(src, what), "{}")
            .await
            .unwrap();
    }
    s.fleet().put_setting("docs", "kept").await.unwrap();
    let defs: Vec<String> = s
        .source_defs()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(defs, ["docs", "notes"]);
    s.remove_source("docs").await.unwrap();
    assert_eq!(s.sources().await.unwrap().len(), 1);
    assert_eq!(
        s.fleet()
            .setting(&state_key("docs", "index"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.fleet()
            .setting(&state_key("docs", "mbox:a_b.mbox"))
            .await
            .unwrap(),
        None
    );
    assert!(s
        .fleet()
        .setting(&state_key("docs_x", "index"))
        .await
        .unwrap()
        .is_some());
    assert!(s.fleet().setting("docs").await.unwrap().is_some());
}

pub async fn telemetry_sums_per_source_and_outcome_and_prunes(s: &dyn Store) {
    use fabric_store::TelemetrySample;
    let sample =
        |at, source: &str, files, bytes, outcome: &str, reason: Option<&str>| TelemetrySample {
            at,
            source: source.into(),
            job_id: None,
            files,
            bytes,
            duration_ms: 100,
            outcome: outcome.into(),
            reason: reason.map(String::from),
        };
    s.record_telemetry(vec![
        sample(T0, "notes", 1, 1000, "ok", None),
        sample(T0 + 10, "notes", 2, 3000, "ok", None),
        sample(T0 + 20, "notes", 1, 10, "quarantined", Some("parse_error")),
        sample(T0 + 30, "mail", 5, 500, "ok", None),
        sample(T0 - 1000, "mail", 9, 9, "ok", None),
    ])
    .await
    .unwrap();
    let all = s.telemetry(T0, None).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let ok = all
        .iter()
        .find(|t| t.source == "notes" && t.outcome == "ok")
        .unwrap();
    assert_eq!(
        (ok.samples, ok.files, ok.bytes, ok.duration_ms),
        (2, 3, 4000, 200)
    );
    assert_eq!((ok.first_at, ok.last_at), (T0, T0 + 10));
    let q = all.iter().find(|t| t.outcome == "quarantined").unwrap();
    assert_eq!(q.reason.as_deref(), Some("parse_error"));
    let mail = s.telemetry(T0 - 5000, Some("mail")).await.unwrap();
    assert_eq!((mail.len(), mail[0].files), (1, 14));
    let samples = || async {
        s.telemetry(0, None)
            .await
            .unwrap()
            .iter()
            .map(|t| t.samples)
            .sum::<u64>()
    };
    assert_eq!(s.prune_telemetry(T0, true).await.unwrap(), 1);
    assert_eq!(samples().await, 5);
    assert_eq!(s.prune_telemetry(T0, false).await.unwrap(), 1);
    assert_eq!(samples().await, 4);
}

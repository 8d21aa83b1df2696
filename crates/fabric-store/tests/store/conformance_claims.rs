//! Conformance cases of claim filters by job kind: the daemon's workers skip the kinds
//! external workers serve, and an external worker claims only the kinds it asks for.

use fabric_core::NewJob;
use fabric_store::{ClaimRequest, Store};

const T0: i64 = 1_800_000_000_000;

pub async fn claim_filters_by_kind(s: &dyn Store) {
    let jobs = ["ocr", "noop", "ocr", "sleep"]
        .iter()
        .map(|k| NewJob::new(*k))
        .collect();
    s.submit(jobs, T0).await.unwrap();
    let claim = |kinds: &[&str], exclude: &[&str]| ClaimRequest {
        owner: "w".into(),
        limit: 10,
        lease_ms: 60_000,
        now: T0 + 1,
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        exclude_kinds: exclude.iter().map(|k| k.to_string()).collect(),
        ..ClaimRequest::default()
    };
    let kinds = |jobs: Vec<fabric_core::Job>| jobs.into_iter().map(|j| j.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(s.claim(claim(&[], &["ocr", "sleep"])).await.unwrap()),
        vec!["noop"]
    );
    assert_eq!(
        kinds(s.claim(claim(&["ocr"], &[])).await.unwrap()),
        vec!["ocr", "ocr"]
    );
    assert!(s
        .claim(claim(&["ocr", "noop"], &[]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        kinds(s.claim(claim(&[], &[])).await.unwrap()),
        vec!["sleep"]
    );
}

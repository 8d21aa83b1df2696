//! Conformance cases of cron schedules ([`fabric_store::ScheduleStore`]): definitions, pause
//! and resume, removal; firing that enqueues one job per due time and moves the next due
//! time forward in the same write; overlap skip; manual triggers; and concurrent leaders
//! firing a due time once.

use std::sync::Arc;

use fabric_core::cron_schedule::{CatchUp, Overlap, ScheduleDef};
use fabric_core::{JobState, NewJob, Priority};
use fabric_store::{
    ClaimRequest, Completion, JobFilter, NewSchedule, Outcome, ScheduleFiring, Store, StoreError,
};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn schedule(name: &str, overlap: Overlap) -> NewSchedule {
    let mut def = ScheduleDef::new(name, "* * * * *", "noop");
    def.payload = serde_json::json!({"report": name});
    def.overlap = overlap;
    def.catch_up = CatchUp::All;
    def.priority = Some(Priority::HIGH);
    NewSchedule {
        def,
        max_attempts: 4,
        next_due: Some(T0),
    }
}

fn firing(name: &str, expected: i64, due: &[i64], next: i64) -> ScheduleFiring {
    ScheduleFiring {
        name: name.into(),
        expected_next_due: expected,
        due: due.to_vec(),
        missed: 0,
        next_due: Some(next),
    }
}

/// Jobs whose unique key starts with `schedule:<name>:`, oldest first.
async fn jobs_of(s: &dyn Store, name: &str) -> Vec<fabric_core::Job> {
    let prefix = format!("schedule:{name}:");
    let mut jobs: Vec<_> = s
        .jobs(JobFilter {
            limit: 10_000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|j| {
            j.unique_key
                .as_deref()
                .is_some_and(|k| k.starts_with(&prefix))
        })
        .collect();
    jobs.sort_by_key(|j| j.id);
    jobs
}

pub async fn schedules_are_added_once_listed_paused_resumed_and_removed(s: &dyn Store) {
    let st = s.schedules();
    assert!(st
        .put_schedule(schedule("b", Overlap::Skip), T0 - MIN)
        .await
        .unwrap());
    assert!(st
        .put_schedule(schedule("a", Overlap::Allow), T0 - MIN)
        .await
        .unwrap());
    let mut again = schedule("a", Overlap::Skip);
    again.def.cron = "0 3 * * *".into();
    assert!(
        !st.put_schedule(again, T0).await.unwrap(),
        "a name is added once"
    );
    let all = st.schedules().await.unwrap();
    let names: Vec<&str> = all.iter().map(|r| r.def.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let a = st.schedule("a").await.unwrap();
    assert_eq!(
        a.def,
        schedule("a", Overlap::Allow).def,
        "the first definition stays"
    );
    assert_eq!((a.max_attempts, a.next_due, a.paused), (4, Some(T0), false));
    assert_eq!((a.runs, a.skipped, a.last_job_id), (0, 0, None));
    assert_eq!(a.created_at, T0 - MIN);

    let paused = st
        .set_schedule_paused("a", Some("maintenance".into()), None, T0)
        .await
        .unwrap();
    assert!(paused.paused);
    assert_eq!(paused.pause_reason.as_deref(), Some("maintenance"));
    assert_eq!((paused.paused_at, paused.next_due), (Some(T0), Some(T0)));
    let resumed = st
        .set_schedule_paused("a", None, Some(T0 + 5 * MIN), T0 + MIN)
        .await
        .unwrap();
    assert!(!resumed.paused);
    assert_eq!((resumed.pause_reason, resumed.paused_at), (None, None));
    assert_eq!(resumed.next_due, Some(T0 + 5 * MIN));

    st.remove_schedule("a").await.unwrap();
    let gone = |e: StoreError| {
        matches!(
            e,
            StoreError::NotFound {
                what: "schedule",
                ..
            }
        )
    };
    assert!(gone(st.remove_schedule("a").await.unwrap_err()));
    assert!(gone(st.schedule("a").await.unwrap_err()));
    assert!(gone(
        st.set_schedule_paused("a", None, None, T0)
            .await
            .unwrap_err()
    ));
    assert!(gone(st.trigger_schedule("a", T0).await.unwrap_err()));
    assert_eq!(st.schedules().await.unwrap().len(), 1);
}

pub async fn schedules_fire_one_job_per_due_time_and_move_forward(s: &dyn Store) {
    let st = s.schedules();
    st.put_schedule(schedule("r", Overlap::Allow), T0)
        .await
        .unwrap();
    let out = st
        .fire_schedule(firing("r", T0, &[T0], T0 + MIN), T0 + 10)
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(out.jobs.len(), 1);
    let jobs = jobs_of(s, "r").await;
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(
        j.unique_key.as_deref(),
        Some(format!("schedule:r:{T0}").as_str())
    );
    assert_eq!(
        (j.kind.as_str(), j.priority, j.max_attempts),
        ("noop", Priority::HIGH, 4)
    );
    assert_eq!(j.payload, serde_json::json!({"report": "r"}));
    assert_eq!(j.state, JobState::Pending);
    let rec = st.schedule("r").await.unwrap();
    assert_eq!(rec.next_due, Some(T0 + MIN));
    assert_eq!((rec.last_due, rec.last_job_id), (Some(T0), Some(j.id)));
    assert_eq!((rec.runs, rec.last_fired_at), (1, Some(T0 + 10)));

    // The same step again (another leader, or a retry): nothing is written.
    let again = st
        .fire_schedule(firing("r", T0, &[T0], T0 + MIN), T0 + 20)
        .await
        .unwrap();
    assert!(!again.applied && again.jobs.is_empty());
    assert_eq!(jobs_of(s, "r").await.len(), 1);
    assert_eq!(st.schedule("r").await.unwrap().next_due, Some(T0 + MIN));

    // A due time whose job exists already (its key) is not enqueued twice, and the schedule
    // moves on all the same; several due times in one step each get their job.
    let mut dup = NewJob::new("noop");
    dup.unique_key = Some(format!("schedule:r:{}", T0 + MIN));
    s.submit(vec![dup], T0).await.unwrap();
    let out = st
        .fire_schedule(
            ScheduleFiring {
                missed: 3,
                ..firing(
                    "r",
                    T0 + MIN,
                    &[T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN],
                    T0 + 4 * MIN,
                )
            },
            T0 + 3 * MIN,
        )
        .await
        .unwrap();
    assert!(out.applied);
    let due: Vec<i64> = out.jobs.iter().map(|(d, _)| *d).collect();
    assert_eq!(due, [T0 + 2 * MIN, T0 + 3 * MIN]);
    assert_eq!(out.skipped, 3);
    assert_eq!(jobs_of(s, "r").await.len(), 4);
    let rec = st.schedule("r").await.unwrap();
    assert_eq!(
        (rec.next_due, rec.last_due),
        (Some(T0 + 4 * MIN), Some(T0 + 3 * MIN))
    );
    assert_eq!((rec.runs, rec.skipped), (3, 3));

    // A paused schedule fires nothing.
    st.set_schedule_paused("r", Some("x".into()), None, T0)
        .await
        .unwrap();
    let paused = st
        .fire_schedule(
            firing("r", T0 + 4 * MIN, &[T0 + 4 * MIN], T0 + 5 * MIN),
            T0 + 4 * MIN,
        )
        .await
        .unwrap();
    assert!(!paused.applied);
    assert_eq!(jobs_of(s, "r").await.len(), 4);
}

pub async fn schedules_with_overlap_skip_skip_while_the_previous_run_is_going(s: &dyn Store) {
    let st = s.schedules();
    st.put_schedule(schedule("o", Overlap::Skip), T0)
        .await
        .unwrap();
    // Two due times in one step: the second overlaps the first's job, still pending.
    let out = st
        .fire_schedule(firing("o", T0, &[T0, T0 + MIN], T0 + 2 * MIN), T0 + MIN)
        .await
        .unwrap();
    assert_eq!((out.jobs.len(), out.skipped), (1, 1));
    let job = jobs_of(s, "o").await.remove(0);
    // Running: skipped again.
    let claimed = s
        .claim(ClaimRequest {
            owner: "w".into(),
            limit: 10,
            lease_ms: 60_000,
            now: T0 + 2 * MIN,
            ..ClaimRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let out = st
        .fire_schedule(
            firing("o", T0 + 2 * MIN, &[T0 + 2 * MIN], T0 + 3 * MIN),
            T0 + 2 * MIN,
        )
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!((out.jobs.len(), out.skipped), (0, 1));
    // Finished: the next due time runs.
    let c = &claimed[0];
    s.complete(vec![Completion {
        id: c.id,
        attempt: c.attempt,
        owner: "w".into(),
        started_at: T0 + 2 * MIN,
        finished_at: T0 + 3 * MIN,
        outcome: Outcome::Succeeded { result: None },
    }])
    .await
    .unwrap();
    let out = st
        .fire_schedule(
            firing("o", T0 + 3 * MIN, &[T0 + 3 * MIN], T0 + 4 * MIN),
            T0 + 3 * MIN,
        )
        .await
        .unwrap();
    assert_eq!((out.jobs.len(), out.skipped), (1, 0));
    let rec = st.schedule("o").await.unwrap();
    assert_eq!((rec.runs, rec.skipped), (2, 2));
    assert_eq!(rec.last_job_id, Some(out.jobs[0].1));
    assert_ne!(rec.last_job_id, Some(job.id));
}

pub async fn schedules_trigger_enqueues_a_run_now(s: &dyn Store) {
    let st = s.schedules();
    st.put_schedule(schedule("t", Overlap::Skip), T0)
        .await
        .unwrap();
    let sub = st.trigger_schedule("t", T0 + 7).await.unwrap();
    assert!(sub.created);
    let jobs = jobs_of(s, "t").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].unique_key.as_deref(),
        Some(format!("schedule:t:manual:{}", T0 + 7).as_str())
    );
    let again = st.trigger_schedule("t", T0 + 7).await.unwrap();
    assert_eq!(
        (again.id, again.created),
        (sub.id, false),
        "idempotent at one instant"
    );
    let rec = st.schedule("t").await.unwrap();
    assert_eq!(
        (rec.last_job_id, rec.runs, rec.next_due),
        (Some(sub.id), 1, Some(T0))
    );
    // The triggered run is the previous run for overlap skip.
    let out = st
        .fire_schedule(firing("t", T0, &[T0], T0 + MIN), T0)
        .await
        .unwrap();
    assert_eq!((out.jobs.len(), out.skipped), (0, 1));
}

pub async fn schedules_concurrent_leaders_fire_a_due_time_once(s: Arc<dyn Store>) {
    s.schedules()
        .put_schedule(schedule("c", Overlap::Allow), T0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.schedules()
                .fire_schedule(firing("c", T0, &[T0], T0 + MIN), T0 + i)
                .await
                .unwrap()
        }));
    }
    let mut applied = 0;
    let mut jobs = 0;
    for t in tasks {
        let out = t.await.unwrap();
        applied += usize::from(out.applied);
        jobs += out.jobs.len();
    }
    assert_eq!((applied, jobs), (1, 1));
    assert_eq!(jobs_of(&*s, "c").await.len(), 1);
    let rec = s.schedules().schedule("c").await.unwrap();
    assert_eq!((rec.runs, rec.next_due), (1, Some(T0 + MIN)));
}

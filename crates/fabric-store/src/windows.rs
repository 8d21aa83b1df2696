//! Finished jobs counted over several windows at once (SLOs, alert samples): one SQL text
//! that both backends run, scanning the recent jobs once for every window.

use serde::Serialize;

/// Jobs that finished at or after `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinishedWindow {
    /// Start of the window (epoch ms).
    pub since: i64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs quarantined (attempts exhausted or a permanent failure).
    pub quarantined: u64,
    /// Per threshold asked for, in order: jobs that succeeded more than that many ms after
    /// they were due (`finished_at - run_at`).
    pub slow: Vec<u64>,
}

/// The query: for each window, the succeeded, quarantined and slow counts, in that order.
/// Values are integers of Fabric's own, not user text, so they are written into the SQL.
pub(crate) fn sql(since: &[i64], slow_ms: &[i64]) -> String {
    let mut cols = Vec::new();
    for s in since {
        cols.push(format!(
            "coalesce(sum(CASE WHEN state = 'succeeded' AND finished_at >= {s} THEN 1 ELSE 0 END), 0)"
        ));
        cols.push(format!(
            "coalesce(sum(CASE WHEN state = 'quarantined' AND finished_at >= {s} THEN 1 ELSE 0 END), 0)"
        ));
        for t in slow_ms {
            cols.push(format!(
                "coalesce(sum(CASE WHEN state = 'succeeded' AND finished_at >= {s} \
                 AND finished_at - run_at > {t} THEN 1 ELSE 0 END), 0)"
            ));
        }
    }
    let oldest = since.iter().copied().min().unwrap_or(0);
    format!(
        "SELECT {} FROM jobs WHERE state IN ('succeeded', 'quarantined') AND finished_at >= {oldest}",
        cols.join(", ")
    )
}

/// The row of [`sql`] as windows.
pub(crate) fn windows(since: &[i64], slow_ms: &[i64], row: &[i64]) -> Vec<FinishedWindow> {
    let per = 2 + slow_ms.len();
    since
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |k: usize| row.get(i * per + k).copied().unwrap_or(0).max(0) as u64;
            FinishedWindow {
                since: *s,
                succeeded: at(0),
                quarantined: at(1),
                slow: (0..slow_ms.len()).map(|k| at(2 + k)).collect(),
            }
        })
        .collect()
}

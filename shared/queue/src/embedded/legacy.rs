//! Files written by drover before the `objects` table (one table per
//! index, JSON rows): [`migrate`] moves their jobs, claims and publish ids
//! into today's tables when such a file opens, then deletes the old tables.
//! Dead letters kept their table and format.

use std::sync::Arc;

use drover_shared::jobs::Job;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Deserialize;

use super::record::{HeldJob, ObjectRow, PendingJob, encode};
use super::storage;
use crate::QueueError;
use crate::model::{AttemptRecord, DeadLetter};

const PENDING: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pending");
const INFLIGHT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("inflight");
const DEDUPE: TableDefinition<'_, &str, u64> = TableDefinition::new("dedupe");
/// Every table of the old layout (the indexes are rebuilt, not moved).
const OLD_TABLES: [&str; 7] = [
    "pending",
    "ready",
    "inflight",
    "lease_ends",
    "dedupe",
    "dedupe_age",
    "meta",
];

#[derive(Deserialize)]
struct PendingRecord {
    job: Job,
    ready_at_ms: u64,
    seq: u64,
    history: Vec<AttemptRecord>,
}

#[derive(Deserialize)]
struct Lease {
    claim_id: String,
    job: Job,
    history: Vec<AttemptRecord>,
    expires_at_ms: u64,
}

fn job_bytes(job: &Job) -> Arc<[u8]> {
    serde_json::to_vec(job).expect("jobs serialize").into()
}

/// Moves an old layout's rows into `objects` and `ids`; rows that do not
/// decode go to `dead` as malformed. Returns how many objects moved.
pub(super) fn migrate(
    txn: &WriteTransaction,
    objects: &mut Table<'_, &'static [u8], &'static [u8]>,
    ids: &mut Table<'_, &'static [u8], u64>,
    dead: &mut Table<'_, &'static str, &'static [u8]>,
    now: u64,
) -> Result<usize, QueueError> {
    let names: Vec<String> = txn
        .list_tables()
        .map_err(storage)?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    if !names.iter().any(|n| OLD_TABLES.contains(&n.as_str())) {
        return Ok(0);
    }
    let mut rows: std::collections::BTreeMap<String, ObjectRow> = Default::default();
    let mut bad: Vec<DeadLetter> = Vec::new();
    let quarantine = |bad: &mut Vec<DeadLetter>, key: &str, bytes: &[u8], e: serde_json::Error| {
        tracing::error!(subject = %key, error = %e, "undecodable queue record moved to the dead letters");
        let error = format!("queue record {key:?} is malformed: {e}");
        bad.push(DeadLetter::malformed(key, bytes, error, now));
    };
    if names.iter().any(|n| n == "pending") {
        let t = txn.open_table(PENDING).map_err(storage)?;
        for row in t.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            match serde_json::from_slice::<PendingRecord>(v.value()) {
                Ok(p) => {
                    rows.entry(k.value().to_owned()).or_default().pending = Some(PendingJob {
                        ready_at_ms: p.ready_at_ms,
                        seq: p.seq,
                        attempt: p.job.attempt,
                        job: job_bytes(&p.job),
                        history: p.history,
                    });
                }
                Err(e) => quarantine(&mut bad, k.value(), v.value(), e),
            }
        }
    }
    if names.iter().any(|n| n == "inflight") {
        let t = txn.open_table(INFLIGHT).map_err(storage)?;
        for row in t.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            match serde_json::from_slice::<Lease>(v.value()) {
                Ok(l) => {
                    rows.entry(k.value().to_owned()).or_default().held = Some(HeldJob {
                        claim_id: l.claim_id,
                        expires_at_ms: l.expires_at_ms,
                        attempt: l.job.attempt,
                        job: job_bytes(&l.job),
                        history: l.history,
                    });
                }
                Err(e) => quarantine(&mut bad, k.value(), v.value(), e),
            }
        }
    }
    if names.iter().any(|n| n == "dedupe") {
        let t = txn.open_table(DEDUPE).map_err(storage)?;
        for row in t.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            ids.insert(k.value().as_bytes(), v.value())
                .map_err(storage)?;
        }
    }
    let mut buf = Vec::new();
    for (subject, row) in &rows {
        // Old tables beside `objects` (a downgrade, then this version
        // again): a row of today's layout keeps what it has, and takes
        // from the old one only the half it lacks.
        let current = objects
            .get(subject.as_bytes())
            .map_err(storage)?
            .map(|v| super::record::decode(v.value()));
        let row = match current {
            Some(Ok(mut cur)) => {
                if cur.pending.is_none() {
                    cur.pending = row.pending.clone();
                }
                if cur.held.is_none() {
                    cur.held = row.held.clone();
                }
                cur
            }
            Some(Err(e)) => {
                tracing::warn!(subject = %subject, error = %e, "an undecodable row is replaced by the earlier layout's");
                row.clone()
            }
            None => row.clone(),
        };
        buf.clear();
        encode(&row, &mut buf);
        objects
            .insert(subject.as_bytes(), buf.as_slice())
            .map_err(storage)?;
    }
    for d in bad {
        let key = super::state::dead_key(now, &d.job.id);
        let json = serde_json::to_vec(&d).expect("dead letters serialize");
        dead.insert(key.as_str(), json.as_slice())
            .map_err(storage)?;
    }
    for t in txn.list_tables().map_err(storage)? {
        if OLD_TABLES.contains(&redb::TableHandle::name(&t)) {
            txn.delete_table(t).map_err(storage)?;
        }
    }
    tracing::info!(
        objects = rows.len(),
        "queue file moved to the objects table layout"
    );
    Ok(rows.len())
}

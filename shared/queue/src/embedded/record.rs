//! The on-disk form of one object's row in the `objects` table: its
//! pending job, its claim, or both (a change that arrived during a claim).
//!
//! A small binary layout, not JSON: the writer thread encodes a row per
//! change, and the job itself is JSON that the caller encoded already (off
//! the writer thread), so a row is a header and a copy of those bytes.
//!
//! ```text
//! row     = version:u8 (1) flags:u8 [pending] [held]   flags: 1 pending, 2 held
//! pending = ready_at_ms:u64 seq:u64 attempt:u32 job history
//! held    = expires_at_ms:u64 attempt:u32 claim_id:(len:u16 bytes) job history
//! job     = len:u32 JSON bytes of the job
//! history = len:u32 JSON array of failed attempts (len 0: none)
//! ```
//!
//! Integers are little-endian. The job's own `attempt` field may be stale:
//! the header's `attempt` is the truth (so counting a failure does not
//! re-encode the job).

use std::sync::Arc;

use crate::model::AttemptRecord;

const VERSION: u8 = 1;
const PENDING: u8 = 1;
const HELD: u8 = 2;

/// The job an object waits to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PendingJob {
    /// Claimable from this time (ms since the epoch).
    pub ready_at_ms: u64,
    /// Orders jobs ready at the same time (publish order).
    pub seq: u64,
    /// Failed attempts so far.
    pub attempt: u32,
    /// The job, as JSON.
    pub job: Arc<[u8]>,
    /// Those failures, oldest first.
    pub history: Vec<AttemptRecord>,
}

/// The claim an object is under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HeldJob {
    /// Identifies the claim.
    pub claim_id: String,
    /// When the lease ends unless renewed (ms since the epoch).
    pub expires_at_ms: u64,
    /// Failed attempts before this one.
    pub attempt: u32,
    /// The job, as JSON.
    pub job: Arc<[u8]>,
    /// Those failures, oldest first.
    pub history: Vec<AttemptRecord>,
}

/// One object's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ObjectRow {
    pub pending: Option<PendingJob>,
    pub held: Option<HeldJob>,
}

impl ObjectRow {
    /// Nothing waits and nothing runs: the row can go.
    pub fn is_empty(&self) -> bool {
        self.pending.is_none() && self.held.is_none()
    }
}

/// Appends `row`'s encoding to `out`.
pub(super) fn encode(row: &ObjectRow, out: &mut Vec<u8>) {
    let flags =
        if row.pending.is_some() { PENDING } else { 0 } | if row.held.is_some() { HELD } else { 0 };
    out.extend_from_slice(&[VERSION, flags]);
    if let Some(p) = &row.pending {
        out.extend_from_slice(&p.ready_at_ms.to_le_bytes());
        out.extend_from_slice(&p.seq.to_le_bytes());
        out.extend_from_slice(&p.attempt.to_le_bytes());
        put_u32_bytes(out, &p.job);
        put_history(out, &p.history);
    }
    if let Some(h) = &row.held {
        out.extend_from_slice(&h.expires_at_ms.to_le_bytes());
        out.extend_from_slice(&h.attempt.to_le_bytes());
        // Claim ids are ours and short; a longer one would be a bug here.
        let id = &h.claim_id.as_bytes()[..h.claim_id.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
        put_u32_bytes(out, &h.job);
        put_history(out, &h.history);
    }
}

fn put_u32_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&bytes[..bytes.len().min(u32::MAX as usize)]);
}

fn put_history(out: &mut Vec<u8>, history: &[AttemptRecord]) {
    if history.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
    } else {
        let json = serde_json::to_vec(history).expect("attempt records serialize");
        put_u32_bytes(out, &json);
    }
}

/// Why a row did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadRow(pub String);

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BadRow> {
        if self.bytes.len() < n {
            return Err(BadRow(format!("the row ends inside its {what}")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &str) -> Result<u64, BadRow> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, BadRow> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u16(&mut self, what: &str) -> Result<u16, BadRow> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }

    fn sized(&mut self, what: &str) -> Result<&'a [u8], BadRow> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn history(&mut self) -> Result<Vec<AttemptRecord>, BadRow> {
        let json = self.sized("history")?;
        if json.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(json).map_err(|e| BadRow(format!("its history: {e}")))
    }
}

/// Decodes a row. The job bytes are not parsed here (see
/// [`ObjectRow`]'s users: the queue checks them when it opens the file).
pub(super) fn decode(bytes: &[u8]) -> Result<ObjectRow, BadRow> {
    let mut r = Reader { bytes };
    let head = r.take(2, "header")?;
    if head[0] != VERSION {
        return Err(BadRow(format!(
            "row format {} is not one this drover reads (it reads {VERSION})",
            head[0]
        )));
    }
    let flags = head[1];
    if flags & !(PENDING | HELD) != 0 {
        return Err(BadRow(format!("unknown flags {flags:#04x}")));
    }
    let mut row = ObjectRow::default();
    if flags & PENDING != 0 {
        row.pending = Some(PendingJob {
            ready_at_ms: r.u64("ready time")?,
            seq: r.u64("sequence")?,
            attempt: r.u32("attempt")?,
            job: r.sized("job")?.into(),
            history: r.history()?,
        });
    }
    if flags & HELD != 0 {
        let expires_at_ms = r.u64("lease end")?;
        let attempt = r.u32("attempt")?;
        let n = usize::from(r.u16("claim id")?);
        let claim_id = std::str::from_utf8(r.take(n, "claim id")?)
            .map_err(|_| BadRow("its claim id is not UTF-8".into()))?
            .to_owned();
        row.held = Some(HeldJob {
            claim_id,
            expires_at_ms,
            attempt,
            job: r.sized("job")?.into(),
            history: r.history()?,
        });
    }
    if !r.bytes.is_empty() {
        return Err(BadRow(format!("{} bytes after the row", r.bytes.len())));
    }
    if row.is_empty() {
        return Err(BadRow("the row holds neither a job nor a claim".into()));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> ObjectRow {
        ObjectRow {
            pending: Some(PendingJob {
                ready_at_ms: 1_700_000_000_123,
                seq: 42,
                attempt: 2,
                job: Arc::from(&b"{\"id\":\"new\"}"[..]),
                history: vec![AttemptRecord {
                    at_ms: 5,
                    error: "boom".into(),
                }],
            }),
            held: Some(HeldJob {
                claim_id: "abc-1f".into(),
                expires_at_ms: u64::MAX,
                attempt: 0,
                job: Arc::from(&b"{\"id\":\"old\"}"[..]),
                history: Vec::new(),
            }),
        }
    }

    #[test]
    fn rows_round_trip() {
        let mut one = both();
        for row in [
            both(),
            ObjectRow {
                held: None,
                ..both()
            },
            ObjectRow {
                pending: None,
                ..both()
            },
        ] {
            let mut out = Vec::new();
            encode(&row, &mut out);
            assert_eq!(decode(&out), Ok(row));
        }
        one.pending = None;
        let mut out = Vec::new();
        encode(&one, &mut out);
        assert_eq!(out[1], HELD);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_an_error() {
        let mut out = Vec::new();
        encode(&both(), &mut out);
        for n in 0..out.len() {
            assert!(
                decode(&out[..n]).is_err(),
                "{n} of {} bytes decoded",
                out.len()
            );
        }
        out.push(0);
        assert_eq!(decode(&out), Err(BadRow("1 bytes after the row".into())));
    }

    #[test]
    fn foreign_rows_name_what_is_wrong() {
        assert!(
            decode(b"{\"from\": \"the future\"}")
                .unwrap_err()
                .0
                .contains("format 123")
        );
        assert!(
            decode(&[VERSION, 0x80])
                .unwrap_err()
                .0
                .contains("unknown flags")
        );
        assert!(decode(&[VERSION, 0]).unwrap_err().0.contains("neither"));
    }
}

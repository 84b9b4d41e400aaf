//! The queue's redb file, and opening it again after a failed write.
//!
//! After any I/O error redb answers every later call on that [`Database`]
//! with `PreviousIo`, until the file is opened again. So a full disk that
//! failed one commit would fail the queue for good, even after space came
//! back. Instead the applier opens the file again before it reads the
//! state back ([`QueueFile::reopen`]), and tries at most every
//! [`REOPEN_EVERY`] while that fails, so a broken disk costs each caller a
//! fast error, not a reopen.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redb::Database;

use super::storage;
use crate::QueueError;

/// The least time between two attempts to open the file again.
pub(super) const REOPEN_EVERY: Duration = Duration::from_millis(200);
/// How long a reopen waits for readers (`drover jobs dead`) to let go.
const READERS_GONE_WITHIN: Duration = Duration::from_secs(5);

/// How the file is opened: [`Database::create`] on a path, or (in tests) a
/// storage backend that fails on demand.
pub(super) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

pub(super) struct QueueFile {
    opener: Opener,
    /// `None` while it is being opened again, or after that failed.
    db: Mutex<Option<Arc<Database>>>,
    /// The last failed reopen or read of the state: when, and why.
    failed: Mutex<Option<(Instant, String)>>,
}

impl QueueFile {
    pub(super) fn open(opener: Opener) -> Result<Self, QueueError> {
        let db = opener().map_err(storage)?;
        Ok(Self {
            opener,
            db: Mutex::new(Some(Arc::new(db))),
            failed: Mutex::new(None),
        })
    }

    /// The open database, for one transaction. Holders let go soon: a
    /// reopen waits for them.
    pub(super) fn get(&self) -> Result<Arc<Database>, QueueError> {
        let db = self
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        db.ok_or_else(|| {
            let why = self
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or_else(
                    || "it is being opened again".to_owned(),
                    |(_, why)| why.clone(),
                );
            storage(std::io::Error::other(format!(
                "the queue file is not open after a failed write: {why}"
            )))
        })
    }

    /// Closes the database and opens the file again (the applier only, with
    /// the committer idle). Fails at once if the last try (or the last read
    /// of the state, see [`QueueFile::failed_now`]) was less than
    /// [`REOPEN_EVERY`] ago.
    pub(super) fn reopen(&self) -> Result<Arc<Database>, String> {
        // Not held while closing or opening: `get` takes it when closed.
        let last = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((at, why)) = last
            && at.elapsed() < REOPEN_EVERY
        {
            return Err(why);
        }
        let old = self
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old
            && let Err(old) = close(old)
        {
            // A reader still holds it: keep it, try again later.
            *self.db.lock().unwrap_or_else(PoisonError::into_inner) = Some(old);
            return Err(self.failed_now("a reader held the old file open".to_owned()));
        }
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.opener)()))
            .unwrap_or_else(|_| {
                Err(redb::DatabaseError::Storage(redb::StorageError::Io(
                    std::io::Error::other("opening it panicked"),
                )))
            });
        match opened {
            Ok(db) => {
                let db = Arc::new(db);
                *self.db.lock().unwrap_or_else(PoisonError::into_inner) = Some(db.clone());
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!("queue: the file is open again");
                Ok(db)
            }
            Err(e) => Err(self.failed_now(format!("it could not be opened again: {e}"))),
        }
    }

    /// Records a failure to open the file or read the state from it, so
    /// the next [`QueueFile::reopen`] waits its turn; returns `why`.
    pub(super) fn failed_now(&self, why: String) -> String {
        *self.failed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), why.clone()));
        why
    }
}

/// Drops the last handle of `db`, waiting a little for readers; gives it
/// back if they hold on.
fn close(mut db: Arc<Database>) -> Result<(), Arc<Database>> {
    let start = Instant::now();
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                // After a panic inside a commit, redb's own checks can panic
                // as it closes; the file is closed all the same.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db))).is_err() {
                    tracing::error!("queue: redb panicked while closing the file");
                }
                return Ok(());
            }
            Err(still) if start.elapsed() < READERS_GONE_WITHIN => {
                db = still;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(still) => return Err(still),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU8, Ordering};

    use drover_shared::jobs::JobKind;
    use redb::StorageBackend;
    use redb::backends::FileBackend;

    use super::*;
    use crate::JobQueue as _;
    use crate::conformance::job;
    use crate::embedded::{EmbeddedConfig, EmbeddedQueue};
    use crate::model::{Claim, Outcome, PurgeScope};

    const WORKS: u8 = 0;
    const FAILS: u8 = 1;
    const PANICS: u8 = 2;

    /// A queue file on a disk whose fsync fails, or panics, while `mode`
    /// says so: a full or failing disk, or a bug below us.
    #[derive(Debug)]
    struct FailingDisk {
        file: FileBackend,
        mode: Arc<AtomicU8>,
    }

    impl StorageBackend for FailingDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.file.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            match self.mode.load(Ordering::SeqCst) {
                FAILS => Err(std::io::Error::other("no space left (injected)")),
                PANICS => panic!("fsync panicked (injected)"),
                _ => self.file.sync_data(),
            }
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.file.write(offset, data)
        }
        fn close(&self) -> Result<(), std::io::Error> {
            self.file.close()
        }
    }

    /// The queue, and how many times its file has been opened.
    fn on_failing_disk(path: PathBuf, mode: Arc<AtomicU8>) -> (EmbeddedQueue, Arc<AtomicU8>) {
        let opens = Arc::new(AtomicU8::new(0));
        let counted = opens.clone();
        let opener: Opener = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let io = |e: std::io::Error| redb::DatabaseError::Storage(e.into());
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            let file = FileBackend::new(f)?;
            let mode = mode.clone();
            Database::builder().create_with_backend(FailingDisk { file, mode })
        });
        let q = EmbeddedQueue::open_with(opener, EmbeddedConfig::default()).unwrap();
        (q, opens)
    }

    async fn publish(q: &EmbeddedQueue, name: &str) -> Result<(), QueueError> {
        q.publish(&job(JobKind::Bootstrap, name, 1)).await.map(drop)
    }

    async fn claim_all(q: &EmbeddedQueue) -> Vec<Claim> {
        q.claim(JobKind::Bootstrap, 16, Duration::ZERO)
            .await
            .unwrap()
    }

    fn names(claims: &[Claim]) -> Vec<&str> {
        let mut names: Vec<_> = claims.iter().map(|c| c.job.object.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    async fn claim_err(q: &EmbeddedQueue) -> QueueError {
        q.claim(JobKind::Bootstrap, 16, Duration::ZERO)
            .await
            .unwrap_err()
    }

    /// Waits (without a fixed sleep) until the queue answers again.
    async fn recovered(q: &EmbeddedQueue) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = q.depth().await {
            assert!(Instant::now() < deadline, "the queue never recovered: {e}");
            tokio::time::sleep(REOPEN_EVERY / 4).await;
        }
    }

    /// Finishes `claims`, then opens the same file with a plain queue (once
    /// the old one let go) and checks nothing is left.
    async fn finish_and_reopen(q: EmbeddedQueue, claims: Vec<Claim>, path: &std::path::Path) {
        for c in claims {
            q.finish(c, Outcome::Done).await.unwrap();
        }
        drop(q);
        let q = (0..200)
            .find_map(|_| {
                EmbeddedQueue::open(path, EmbeddedConfig::default())
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(20)))
                    .ok()
            })
            .expect("the queue file opens");
        let stats = q.stats().await.unwrap();
        assert!(
            stats.pending.is_empty() && stats.in_flight.is_empty(),
            "{stats:?}"
        );
    }

    /// A commit that fails (a full disk) fails its callers, and so does
    /// every call while the disk fails; once it works again the queue does
    /// too, without a restart. redb refuses a database after an I/O error
    /// until it is opened again, so without the reopen this stays broken.
    #[tokio::test]
    async fn a_failed_write_fails_its_callers_and_the_queue_comes_back_with_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let mode = Arc::new(AtomicU8::new(WORKS));
        let (q, opens) = on_failing_disk(path.clone(), mode.clone());
        publish(&q, "a").await.unwrap();
        publish(&q, "b").await.unwrap();

        mode.store(FAILS, Ordering::SeqCst);
        let e = publish(&q, "c").await.unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        // While the disk fails, so does every write (each a fast error).
        let e = q
            .claim(JobKind::Bootstrap, 16, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(e, QueueError::Storage(_)), "{e}");
        assert!(e.is_retryable(), "{e}");
        // ...and the file is opened again at most every REOPEN_EVERY, not
        // once per call.
        let (start, before) = (Instant::now(), opens.load(Ordering::SeqCst));
        for _ in 0..20 {
            q.depth().await.unwrap_err();
        }
        let tries = opens.load(Ordering::SeqCst) - before;
        let allowed = 1 + start.elapsed().as_millis() / REOPEN_EVERY.as_millis();
        assert!(
            u128::from(tries) <= allowed,
            "{tries} opens, at most {allowed}"
        );

        mode.store(WORKS, Ordering::SeqCst);
        recovered(&q).await;
        // Whether "c" reached the disk before the failed fsync is not
        // known (as with any database); the caller publishes it again, and
        // coalescing makes that one job either way.
        publish(&q, "c").await.unwrap();
        let claims = claim_all(&q).await;
        assert_eq!(names(&claims), ["a", "b", "c"]);
        finish_and_reopen(q, claims, &path).await;
    }

    /// A panic inside a commit (a batch's, a purge's, or the one that reads
    /// the state back) fails its callers with a message that says so,
    /// instead of leaving them (and every later caller) waiting on a dead
    /// thread; the queue then goes on.
    #[tokio::test]
    async fn a_panic_in_a_commit_fails_its_callers_and_the_queue_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let mode = Arc::new(AtomicU8::new(WORKS));
        let (q, _) = on_failing_disk(path.clone(), mode.clone());
        publish(&q, "a").await.unwrap();
        let held = claim_all(&q).await;
        assert_eq!(names(&held), ["a"]);

        mode.store(PANICS, Ordering::SeqCst);
        let e = q.purge(PurgeScope::Pending).await.unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        let e = publish(&q, "b").await.unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        tokio::time::sleep(REOPEN_EVERY).await;
        let e = claim_err(&q).await;
        assert!(e.to_string().contains("panicked"), "{e}");

        mode.store(WORKS, Ordering::SeqCst);
        recovered(&q).await;
        // The claim made before is still this worker's.
        q.finish(held[0].clone(), Outcome::Done).await.unwrap();
        publish(&q, "b").await.unwrap();
        publish(&q, "c").await.unwrap();
        let claims = claim_all(&q).await;
        assert_eq!(names(&claims), ["b", "c"]);
        finish_and_reopen(q, claims, &path).await;
    }
}

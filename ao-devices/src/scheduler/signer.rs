//! The background signer of assignments.
//!
//! A scheduler actor writes each assignment durably **unsigned** (hash chain, slot, timestamps,
//! body: everything but the signature; the hash chain is over the scheduled messages' IDs, not
//! over assignment signatures, devices.md §3.6) and answers its caller; the assignment is then
//! queued here. One thread signs queued assignments in batches (a batch on two threads), writes
//! the signed assignments and relinks `assignments/<pid>/<slot>` to them, all in one store
//! batch, and advances the process's signed watermark, which readers that serve assignments to
//! others wait on.
//!
//! Store keys (`scheduler-signing/<pid>/…`, decimal text):
//!
//! * `assigned`: the last slot written unsigned (with the assignments, in the same batch);
//! * `signed`: the last slot whose signed assignment is written (with it, in the same batch).
//!
//! On start, every process whose `signed` is below its `assigned` has the assignments in
//! between queued again ([`SignerHandle::start`]), so an assignment acknowledged before a crash
//! is signed after the restart. A node that stops gracefully signs its backlog first
//! ([`SignerHandle::finish`]): nothing is left for the next start.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ao_core::store::Op;
use ao_core::wallet::Wallet;
use ao_core::{Error, Message, Result, Store, cache};
use tokio::sync::watch;

use super::known_data::KnownData;
use super::server::assignment_path;

/// Most assignments signed and written in one batch.
const SIGN_BATCH: usize = 64;
/// Pause before a failed batch is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// How far the signer has come for one process.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignState {
    /// The last slot whose signed assignment is durable (−1: none).
    pub through: i64,
    /// Why the latest attempt failed (cleared on success).
    pub error: Option<String>,
}

/// The watermark of one process, shared by its actor, the signer and readers.
pub(crate) type SignWatch = Arc<watch::Sender<SignState>>;

/// A new watermark at `through`.
pub(crate) fn new_watch(through: i64) -> SignWatch {
    Arc::new(watch::Sender::new(SignState {
        through,
        error: None,
    }))
}

/// One assignment to sign.
pub(crate) struct SignJob {
    pub pid: String,
    pub slot: u64,
    pub unsigned: Message,
    pub watch: SignWatch,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<SignJob>,
    /// Assignments taken by the signer and not yet written.
    signing: usize,
    paused: bool,
    closed: bool,
    /// Set while the latest batch failed to be written (cleared by a success).
    failing: Option<String>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the signer thread.
    wake: Condvar,
    /// Wakes those waiting for the backlog to drain ([`SignerHandle::finish`]).
    progress: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The store path of a process's signing counters.
pub(crate) fn signing_path(pid: &str, which: &str) -> String {
    format!("scheduler-signing/{pid}/{which}")
}

/// Reads a decimal counter.
pub(crate) fn read_counter(store: &dyn Store, path: &str) -> Result<Option<u64>> {
    match store.read(path)? {
        None => Ok(None),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| Error::Store(format!("{path} is not a slot number"))),
    }
}

/// The write of a decimal counter.
pub(crate) fn counter_op(path: String, n: u64) -> Op {
    Op::Write {
        path,
        value: bytes::Bytes::from(n.to_string()),
    }
}

/// The running signer: a queue and its thread. Dropping it stops the thread; queued
/// assignments stay durable and unsigned, and are queued again on the next start.
pub(crate) struct SignerHandle {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl SignerHandle {
    /// Starts the signer and queues the assignments left unsigned by an earlier run. Returns
    /// the watermarks of the processes that had some.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        wallet: Arc<Wallet>,
        known: Arc<KnownData>,
    ) -> Result<(Self, HashMap<String, SignWatch>)> {
        let queue = Arc::new(Queue::default());
        let mut watches = HashMap::new();
        {
            let mut st = lock(&queue.state);
            for (pid, watch, jobs) in pending(store.as_ref())? {
                tracing::info!(process = %pid, count = jobs.len(), "re-signing assignments left unsigned");
                st.jobs.extend(jobs);
                watches.insert(pid, watch);
            }
        }
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("assignment-signer".into())
            .spawn(move || run(&q, store.as_ref(), &wallet, &known))
            .map_err(|e| Error::Internal(format!("cannot start the assignment signer: {e}")))?;
        Ok((
            Self {
                queue,
                thread: Some(thread),
            },
            watches,
        ))
    }

    /// Queues durable unsigned assignments.
    pub(crate) fn push(&self, jobs: impl IntoIterator<Item = SignJob>) {
        let mut st = lock(&self.queue.state);
        st.jobs.extend(jobs);
        self.queue.wake.notify_one();
    }

    /// Holds (or releases) signing; queued assignments wait. Fault injection for tests of
    /// recovery: a node stopped while paused leaves its acknowledged assignments unsigned.
    pub(crate) fn pause(&self, paused: bool) {
        lock(&self.queue.state).paused = paused;
        self.queue.wake.notify_one();
    }

    /// Assignments not yet signed and written (queued or being signed).
    pub(crate) fn backlog(&self) -> usize {
        let st = lock(&self.queue.state);
        st.jobs.len() + st.signing
    }

    /// Signs and writes every queued assignment (releasing a [`SignerHandle::pause`]) and
    /// returns when none is left, for a graceful stop: `Err` with the number left and the
    /// reason when the signer cannot write them (they are signed on the next start), or when
    /// `limit` passes first.
    pub(crate) fn finish(&self, limit: Duration) -> std::result::Result<(), (usize, String)> {
        let deadline = std::time::Instant::now() + limit;
        let mut st = lock(&self.queue.state);
        st.paused = false;
        self.queue.wake.notify_one();
        loop {
            let left = st.jobs.len() + st.signing;
            if left == 0 {
                return Ok(());
            }
            if let Some(e) = &st.failing {
                return Err((left, e.clone()));
            }
            if st.closed {
                return Err((left, "the signer stopped".into()));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err((left, format!("not done after {} s", limit.as_secs())));
            }
            st = self
                .queue
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for SignerHandle {
    fn drop(&mut self) {
        lock(&self.queue.state).closed = true;
        self.queue.wake.notify_one();
        self.queue.progress.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The unsigned assignments in the store, per process, with a watermark for each process.
fn pending(store: &dyn Store) -> Result<Vec<(String, SignWatch, Vec<SignJob>)>> {
    let mut out = Vec::new();
    for pid in store.children("scheduler-signing")? {
        match pending_of(store, &pid) {
            Ok(Some((watch, jobs))) => out.push((pid, watch, jobs)),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(process = %pid, error = %e, "cannot read the assignments left unsigned");
            }
        }
    }
    Ok(out)
}

fn pending_of(store: &dyn Store, pid: &str) -> Result<Option<(SignWatch, Vec<SignJob>)>> {
    let Some(assigned) = read_counter(store, &signing_path(pid, "assigned"))? else {
        return Ok(None);
    };
    let signed = read_counter(store, &signing_path(pid, "signed"))?;
    let first = signed.map_or(0, |s| s + 1);
    if first > assigned {
        return Ok(None);
    }
    let watch = new_watch(first as i64 - 1);
    let mut jobs = Vec::new();
    for slot in first..=assigned {
        let unsigned = cache::read_message(store, &assignment_path(pid, slot))?
            .ok_or_else(|| Error::Store(format!("assignment {pid}/{slot} is missing")))?;
        jobs.push(SignJob {
            pid: pid.to_owned(),
            slot,
            unsigned: unsigned.without("commitments"),
            watch: watch.clone(),
        });
    }
    Ok(Some((watch, jobs)))
}

fn run(queue: &Queue, store: &dyn Store, wallet: &Wallet, known: &KnownData) {
    loop {
        let batch: Vec<SignJob> = {
            let mut st = lock(&queue.state);
            loop {
                if st.closed {
                    return;
                }
                if !st.paused && !st.jobs.is_empty() {
                    break;
                }
                st = queue
                    .wake
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            let n = st.jobs.len().min(SIGN_BATCH);
            st.signing = n;
            st.jobs.drain(..n).collect()
        };
        loop {
            match sign_batch(store, wallet, known, &batch) {
                Ok(()) => {
                    // The backlog drops before the watermarks move: whoever sees a slot
                    // signed also sees it gone from the backlog.
                    {
                        let mut st = lock(&queue.state);
                        st.signing = 0;
                        st.failing = None;
                        queue.progress.notify_all();
                    }
                    for job in &batch {
                        job.watch.send_modify(|s| {
                            s.through = s.through.max(job.slot as i64);
                            s.error = None;
                        });
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, count = batch.len(), "signing assignments failed; retrying");
                    let text = e.to_string();
                    for job in &batch {
                        job.watch.send_modify(|s| s.error = Some(text.clone()));
                    }
                    {
                        let mut st = lock(&queue.state);
                        st.failing = Some(text.clone());
                        queue.progress.notify_all();
                        if st.closed {
                            return;
                        }
                    }
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

/// Signs a batch and writes it: each signed assignment, its slot link, and each process's
/// `signed` counter, in one store batch (without the binaries known to be stored: most are
/// those of the unsigned assignments).
fn sign_batch(
    store: &dyn Store,
    wallet: &Wallet,
    known: &KnownData,
    batch: &[SignJob],
) -> Result<()> {
    let unsigned: Vec<&Message> = batch.iter().map(|j| &j.unsigned).collect();
    let signed = sign_all(&unsigned, wallet)?;
    let mut ops = Vec::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (job, a) in batch.iter().zip(&signed) {
        let (uid, mut o) = cache::message_ops(a)?;
        without_stored_body(&mut o, &uid);
        ops.extend(o);
        ops.push(Op::MakeLink {
            existing: uid,
            new: assignment_path(&job.pid, job.slot),
        });
        let e = last.entry(job.pid.as_str()).or_insert(job.slot);
        *e = (*e).max(job.slot);
    }
    for (pid, slot) in last {
        ops.push(counter_op(signing_path(pid, "signed"), slot));
    }
    known.skip_known(&mut ops);
    let binaries = KnownData::written(&ops);
    store.apply(ops)?;
    known.learn(binaries);
    Ok(())
}

/// Leaves out of a signed assignment's writes those of its `body`: the scheduled message was
/// written with the unsigned assignment, and writing the same records again changes nothing
/// but costs the store a copy-on-write insert each. The body's writes are the run from its
/// group's creation to the link that makes it the assignment's `body`.
fn without_stored_body(ops: &mut Vec<Op>, uid: &str) {
    let body_link = format!("{uid}/body");
    let Some(end) = ops
        .iter()
        .position(|o| matches!(o, Op::MakeLink { new, .. } if *new == body_link))
    else {
        return;
    };
    let Op::MakeLink { existing: body, .. } = &ops[end] else {
        return;
    };
    let Some(start) = ops[..end]
        .iter()
        .position(|o| matches!(o, Op::MakeGroup { path } if path == body))
    else {
        return;
    };
    ops.drain(start..end);
}

/// Signs messages with the node wallet, on two threads when there are several.
pub(crate) fn sign_all(msgs: &[&Message], wallet: &Wallet) -> Result<Vec<Message>> {
    let sign = |m: &&Message| ao_core::signature::commit(m, wallet);
    if msgs.len() < 2 {
        return msgs.iter().map(sign).collect();
    }
    let (a, b) = msgs.split_at(msgs.len() / 2);
    std::thread::scope(|s| {
        let first = s.spawn(|| a.iter().map(sign).collect::<Result<Vec<_>>>());
        let second: Result<Vec<_>> = b.iter().map(sign).collect();
        let mut out = first
            .join()
            .map_err(|_| Error::Internal("signing thread panicked".into()))??;
        out.extend(second?);
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ao_core::MemoryStore;

    /// A signed assignment written without its body's records reads back whole (its body
    /// from the records the unsigned assignment wrote), and the writes left out would have
    /// changed nothing.
    #[test]
    fn a_signed_assignment_reuses_the_stored_body() {
        let wallet = Wallet::from_jwk(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/fixtures/wallets/test-wallet.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let body = ao_core::ans104::commit(
            &Message::new()
                .with("type", "Message")
                .with("action", "Eval")
                .with("data", "return 1"),
            &wallet,
        )
        .unwrap();
        let unsigned = Message::new()
            .with("slot", 3i64)
            .with("hash-chain", "abc")
            .with("body", body.clone());
        let store = MemoryStore::new();
        let (_, ops) = cache::message_ops(&unsigned).unwrap();
        store.apply(ops).unwrap();
        let signed = ao_core::signature::commit(&unsigned, &wallet).unwrap();
        let (uid, all) = cache::message_ops(&signed).unwrap();
        let mut reduced = all.clone();
        without_stored_body(&mut reduced, &uid);
        assert!(
            reduced.len() + 10 < all.len(),
            "{} of {}",
            reduced.len(),
            all.len()
        );
        store.apply(reduced).unwrap();
        let back = cache::read_message(&store, &uid).unwrap().unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.get_message("body"), Some(&body));
        assert_eq!(ao_core::verify::verify_signatures(&back).unwrap(), 1);
        // Writing everything again changes nothing.
        let before: Vec<String> = store.children(&uid).unwrap();
        store.apply(all).unwrap();
        assert_eq!(store.children(&uid).unwrap(), before);
    }
}

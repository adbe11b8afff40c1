//! The local scheduler unit: one actor (a tokio task) per process serialises slot assignment
//! (devices.md §3.6 "Slot assignment").
//!
//! A batch of requests waiting in an actor's mailbox is assigned together: contiguous slots, the
//! hash chain extended message by message, then everything written in **one** [`Store::apply`]
//! (message bodies, assignments, slot links, the message → slot index). Callers are answered
//! only after that batch is durable; if the write fails, nobody is answered with a slot and the
//! actor's counters do not move.
//!
//! The assignments are written **unsigned** and signed afterwards by the background signer
//! ([`super::signer`]): the signature (an RSA-4096 signature, milliseconds of CPU) is off the
//! path that acknowledges a message. Whatever serves an assignment to others waits for its
//! signed form ([`Scheduler::schedule`], [`Scheduler::signed_assignment`]); the process
//! executor reads the assignment as soon as it is durable ([`Scheduler::assignment`]).
//!
//! Store layout (see `docs/processes.md`):
//!
//! * `assignments/<pid>/<slot>` → link to the signed assignment message (its `body` is the
//!   scheduled message, stored as its own group, so `GET /<message-id>` finds it);
//! * `message-slots/<pid>/<message-id>` → the slot, as decimal text;
//! * `processes/<pid>` → link to the process message (written with slot 0);
//! * `scheduler-signing/<pid>/{assigned,signed}` → the signer's progress ([`super::signer`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ao_core::id::{IdScope, id};
use ao_core::store::Op;
use ao_core::util::{b64u, b64u_decode};
use ao_core::wallet::Wallet;
use ao_core::{Error, Message, Result, Store, Value, cache};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::known_data::KnownData;
use super::signer::{SignJob, SignWatch, SignerHandle, counter_op, new_watch, signing_path};

/// Most requests one actor assigns in one batch.
const MAX_BATCH: usize = 256;
/// Assignments kept in memory per process for the executor (it reads older ones from the store).
const RECENT: usize = 128;

/// The block fields of assignments. This node has no Arweave gateway, so they are fixed (zeros,
/// as HyperBEAM's debug mode writes) unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// `block-height`.
    pub height: i64,
    /// `block-hash`, base64url.
    pub hash: String,
    /// `block-timestamp` (seconds).
    pub timestamp: i64,
}

impl Default for BlockInfo {
    fn default() -> Self {
        Self {
            height: 0,
            hash: b64u(&[0u8; 32]),
            timestamp: 0,
        }
    }
}

/// A message assigned to a slot.
#[derive(Debug, Clone)]
pub struct Assigned {
    /// The process.
    pub process: String,
    /// The slot.
    pub slot: u64,
    /// The scheduled message's ID (`id(M, all)`, over its signatures).
    pub message_id: String,
    /// The assignment; its `body` is the message. Signed by the node when `signed`; otherwise
    /// durable but not (yet) signed, and not to be served to others as an assignment.
    pub assignment: Message,
    /// Whether `assignment` carries the node's signature.
    pub signed: bool,
}

/// Called with the slot as soon as it is assigned, before its batch is written
/// ([`Scheduler::schedule_early`]).
pub type OnAssigned = Box<dyn FnOnce(u64) + Send>;

struct Request {
    message: Message,
    message_id: String,
    early: Option<OnAssigned>,
    reply: oneshot::Sender<Result<Assigned>>,
}

/// How far the assignments of one process are durable, for executors that computed slots
/// whose batch was still being written ([`Scheduler::tentative_assignment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// The latest durable slot (−1: none).
    pub through: i64,
    /// How many batches failed to be written: a change means that the slots assigned beyond
    /// `through` were given up (and will be assigned again, to other messages).
    pub failures: u64,
}

/// A live per-process scheduler.
#[derive(Clone)]
struct Server {
    tx: mpsc::Sender<Request>,
    /// The latest assigned slot (−1 before the first).
    current: Arc<AtomicI64>,
    recent: Arc<Mutex<VecDeque<(u64, Message)>>>,
    /// The batch being written: assigned, not yet durable.
    tentative: Arc<Mutex<Vec<(u64, Message)>>>,
    durable: Arc<tokio::sync::watch::Sender<Durable>>,
}

/// The node's scheduler unit: per-process actors, created on demand, and the background signer.
pub struct Scheduler {
    store: Arc<dyn Store>,
    address: String,
    block: BlockInfo,
    sign: bool,
    /// `false` with `scheduling-mode: disabled`.
    enabled: bool,
    servers: Mutex<HashMap<String, Server>>,
    signer: std::result::Result<Arc<SignerHandle>, String>,
    /// Signed watermarks of the processes scheduled (or left with unsigned assignments).
    signing: Mutex<HashMap<String, SignWatch>>,
    /// Binaries known to be durable in `store`: batches leave out their writes.
    known: Arc<KnownData>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("address", &self.address)
            .field("live", &self.servers.lock().map(|s| s.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

/// The store path of a process's assignment at a slot.
pub fn assignment_path(pid: &str, slot: u64) -> String {
    format!("assignments/{pid}/{slot}")
}

/// The latest assigned slot of a process according to the store, and that assignment's hash
/// chain (raw bytes).
pub fn recover(store: &dyn Store, pid: &str) -> Result<Option<(u64, Vec<u8>)>> {
    let slots = store.children(&format!("assignments/{pid}"))?;
    let Some(last) = slots.iter().filter_map(|s| s.parse::<u64>().ok()).max() else {
        return Ok(None);
    };
    let chain = store
        .read(&format!("{}/hash-chain", assignment_path(pid, last)))?
        .ok_or_else(|| Error::Store(format!("assignment {pid}/{last} has no hash-chain")))?;
    let raw = b64u_decode(&chain)
        .ok_or_else(|| Error::Store(format!("assignment {pid}/{last}: bad hash-chain")))?;
    Ok(Some((last, raw)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scheduler {
    /// A scheduler signing with `wallet` and writing to `store`. It starts the background
    /// signer, which first signs the assignments an earlier run left unsigned.
    pub fn new(store: Arc<dyn Store>, wallet: Arc<Wallet>, block: BlockInfo) -> Self {
        let address = wallet.address_string();
        let known = Arc::new(KnownData::default());
        let (signer, signing) = match SignerHandle::start(store.clone(), wallet, known.clone()) {
            Ok((h, w)) => (Ok(Arc::new(h)), w),
            Err(e) => {
                tracing::error!(error = %e, "the assignment signer did not start; scheduling with signatures fails");
                (Err(e.to_string()), HashMap::new())
            }
        };
        Self {
            address,
            store,
            block,
            sign: true,
            enabled: true,
            servers: Mutex::new(HashMap::new()),
            signer,
            signing: Mutex::new(signing),
            known,
        }
    }

    /// The binaries known to be durable in the store (see [`KnownData`]).
    pub(crate) fn known_data(&self) -> &KnownData {
        &self.known
    }

    /// Whether assignments are signed (the default, as HyperBEAM does). Unsigned assignments
    /// save one RSA-4096 signature (about 3.5 ms of CPU) per message, for nodes whose
    /// schedules are never shown to other parties. (Assignments an earlier signing run left
    /// unsigned are signed either way.)
    #[must_use]
    pub fn with_signing(mut self, sign: bool) -> Self {
        self.sign = sign;
        self
    }

    /// Whether this node assigns slots at all (node option `scheduling-mode`, `disabled`
    /// turns it off): a node that only computes, relays or serves reads refuses every new
    /// assignment with a 503; schedules already written stay readable.
    #[must_use]
    pub fn with_scheduling(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// This scheduler's address (the node wallet's).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The block fields written into assignments.
    pub fn block(&self) -> &BlockInfo {
        &self.block
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The processes with a live scheduler actor.
    pub fn live(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.servers).keys().cloned().collect();
        v.sort_unstable();
        v
    }

    fn server(&self, pid: &str) -> Result<Server> {
        let mut servers = lock(&self.servers);
        if let Some(s) = servers.get(pid) {
            return Ok(s.clone());
        }
        let (next, chain) = match recover(self.store.as_ref(), pid)? {
            Some((last, chain)) => (last + 1, chain),
            None => (0, Vec::new()),
        };
        let watch = lock(&self.signing)
            .entry(pid.to_owned())
            .or_insert_with(|| new_watch(next as i64 - 1))
            .clone();
        let signer = match (&self.signer, self.sign) {
            (Ok(s), true) => Some(s.clone()),
            (Err(e), true) => {
                return Err(Error::Internal(format!(
                    "the assignment signer is not running: {e}"
                )));
            }
            (_, false) => None,
        };
        let (tx, rx) = mpsc::channel(4096);
        let server = Server {
            tx,
            current: Arc::new(AtomicI64::new(next as i64 - 1)),
            recent: Arc::new(Mutex::new(VecDeque::new())),
            tentative: Arc::new(Mutex::new(Vec::new())),
            durable: Arc::new(tokio::sync::watch::Sender::new(Durable {
                through: next as i64 - 1,
                failures: 0,
            })),
        };
        let actor = Actor {
            pid: pid.to_owned(),
            next,
            chain,
            store: self.store.clone(),
            block: self.block.clone(),
            signer,
            watch,
            current: server.current.clone(),
            recent: server.recent.clone(),
            tentative: server.tentative.clone(),
            durable: server.durable.clone(),
            known: self.known.clone(),
        };
        tokio::spawn(actor.run(rx));
        servers.insert(pid.to_owned(), server.clone());
        Ok(server)
    }

    /// Assigns the next slot of `pid` to `message` (only its committed keys; the caller has
    /// verified it) and returns the signed assignment (unless signing is off). The slot is
    /// durable before the signature is made.
    pub async fn schedule(&self, pid: &str, message: Message) -> Result<Assigned> {
        let mut a = self.schedule_durable(pid, message).await?;
        if self.sign && !a.signed {
            a.assignment = self
                .signed_assignment(pid, a.slot)
                .await?
                .ok_or_else(|| Error::Store(format!("assignment {pid}/{} is missing", a.slot)))?;
            a.signed = true;
        }
        Ok(a)
    }

    /// Assigns the next slot of `pid` to `message` and returns as soon as the assignment is
    /// durable, before it is signed: for callers that answer with the slot (or a result), not
    /// with the assignment itself.
    pub async fn schedule_durable(&self, pid: &str, message: Message) -> Result<Assigned> {
        let rx = self.submit(pid, message, None).await?;
        rx.await
            .map_err(|_| Error::Internal(format!("the scheduler of {pid} dropped a request")))?
    }

    /// Assigns the next slot of `pid` to `message` and returns the slot as soon as it is
    /// assigned, while its batch is being written, with the outcome of that write to await (the
    /// assignment once durable). An executor may compute the slot meanwhile (from
    /// [`Scheduler::tentative_assignment`]) but must not answer with, or store, anything about it
    /// before the slot is durable ([`Scheduler::durable`]).
    pub async fn schedule_early(
        &self,
        pid: &str,
        message: Message,
        on_assigned: OnAssigned,
    ) -> Result<oneshot::Receiver<Result<Assigned>>> {
        // A process scheduled again keeps its slot 0: `on_assigned` is dropped uncalled.
        self.submit(pid, message, Some(on_assigned)).await
    }

    async fn submit(
        &self,
        pid: &str,
        message: Message,
        early: Option<OnAssigned>,
    ) -> Result<oneshot::Receiver<Result<Assigned>>> {
        if !self.enabled {
            return Err(Error::status(
                503,
                Value::Message(
                    Message::new()
                        .with("status", 503i64)
                        .with("error", "scheduling-disabled")
                        .with(
                            "body",
                            format!(
                                "Scheduling is disabled on this node (scheduling-mode: \
                                 disabled); {pid} cannot be scheduled here."
                            ),
                        ),
                ),
            ));
        }
        let message_id = b64u(&id(&message, IdScope::Signed)?);
        let server = self.server(pid)?;
        let (reply, rx) = oneshot::channel();
        server
            .tx
            .send(Request {
                message,
                message_id,
                early,
                reply,
            })
            .await
            .map_err(|_| Error::Internal(format!("the scheduler of {pid} stopped")))?;
        Ok(rx)
    }

    /// How far the assignments of `pid` are durable, as a watch.
    pub fn durable(&self, pid: &str) -> Result<tokio::sync::watch::Receiver<Durable>> {
        Ok(self.server(pid)?.durable.subscribe())
    }

    /// [`Scheduler::assignment`], or the assignment of a batch still being written: for an
    /// executor that waits for [`Scheduler::durable`] before it answers or stores anything
    /// computed from it.
    pub fn tentative_assignment(&self, pid: &str, slot: u64) -> Result<Option<Message>> {
        if let Some(s) = lock(&self.servers).get(pid) {
            let tentative = lock(&s.tentative);
            if let Some((_, m)) = tentative.iter().find(|(n, _)| *n == slot) {
                return Ok(Some(m.clone()));
            }
        }
        self.assignment(pid, slot)
    }

    /// The latest assigned slot of `pid` (`None` before the first).
    pub fn current(&self, pid: &str) -> Result<Option<u64>> {
        let c = self.server(pid)?.current.load(Ordering::Acquire);
        Ok(u64::try_from(c).ok())
    }

    /// Waits until the assignments of `pid` up to `slot` are signed and durable (at once when
    /// signing is off). 503 while the signer cannot write them.
    pub async fn signed_through(&self, pid: &str, slot: u64) -> Result<()> {
        let watch = lock(&self.signing).get(pid).cloned();
        let Some(watch) = watch else {
            return Ok(());
        };
        let mut rx = watch.subscribe();
        let state = rx
            .wait_for(|s| s.through >= slot as i64 || s.error.is_some())
            .await
            .map_err(|_| Error::Internal("the assignment signer stopped".into()))?
            .clone();
        if state.through >= slot as i64 {
            return Ok(());
        }
        Err(Error::status(
            503,
            format!(
                "assignment {slot} of {pid} is not signed yet: {}",
                state.error.unwrap_or_default()
            ),
        ))
    }

    /// The assignment of `pid` at `slot` as served to others: signed (waiting for the signer
    /// when it is not yet), from the store. `None` beyond the current slot.
    pub async fn signed_assignment(&self, pid: &str, slot: u64) -> Result<Option<Message>> {
        match self.current(pid)? {
            Some(c) if slot <= c => {}
            _ => return Ok(None),
        }
        self.signed_through(pid, slot).await?;
        cache::read_message(self.store.as_ref(), &assignment_path(pid, slot))
    }

    /// Assignments waiting for the background signer.
    pub fn signing_backlog(&self) -> usize {
        self.signer.as_ref().map_or(0, |s| s.backlog())
    }

    /// Signs every assignment still waiting for the background signer (releasing a
    /// [`Scheduler::pause_signing`]) and returns once all are durable: a graceful stop calls it
    /// before the store closes, so the next start has nothing to re-sign. Blocks the calling
    /// thread. An error says how many are left (they are signed on the next start) and why:
    /// the signer cannot write them, or `limit` passed first.
    pub fn finish_signing(&self, limit: std::time::Duration) -> Result<()> {
        let Ok(signer) = &self.signer else {
            return Ok(());
        };
        let backlog = signer.backlog();
        if backlog > 0 {
            tracing::info!(
                count = backlog,
                "signing the assignments still queued before stopping"
            );
        }
        signer.finish(limit).map_err(|(left, why)| {
            Error::Internal(format!(
                "{left} assignments are left unsigned (they are signed on the next start): {why}"
            ))
        })
    }

    /// Holds (or releases) the background signer. Fault injection for recovery tests and
    /// drills: assignments made while it is held are durable and acknowledged but unsigned.
    pub fn pause_signing(&self, paused: bool) {
        if let Ok(s) = &self.signer {
            s.pause(paused);
        }
    }

    /// The assignment of `pid` at `slot` as the executor needs it, from memory or the store:
    /// durable, but possibly not signed yet. Use [`Scheduler::signed_assignment`] for anything
    /// served to others.
    pub fn assignment(&self, pid: &str, slot: u64) -> Result<Option<Message>> {
        if let Some(s) = lock(&self.servers).get(pid) {
            let recent = lock(&s.recent);
            if let Some((first, _)) = recent.front()
                && slot >= *first
                && let Some((n, m)) = recent.get((slot - first) as usize)
                && *n == slot
            {
                return Ok(Some(m.clone()));
            }
        }
        cache::read_message(self.store.as_ref(), &assignment_path(pid, slot))
    }

    /// The slot a message was assigned in `pid`'s schedule.
    pub fn slot_of(&self, pid: &str, message_id: &str) -> Result<Option<u64>> {
        Ok(self
            .store
            .read(&format!("message-slots/{pid}/{message_id}"))?
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()))
    }
}

struct Actor {
    pid: String,
    next: u64,
    chain: Vec<u8>,
    store: Arc<dyn Store>,
    block: BlockInfo,
    /// The signer to queue assignments on; `None` when signing is off.
    signer: Option<Arc<SignerHandle>>,
    watch: SignWatch,
    current: Arc<AtomicI64>,
    recent: Arc<Mutex<VecDeque<(u64, Message)>>>,
    tentative: Arc<Mutex<Vec<(u64, Message)>>>,
    durable: Arc<tokio::sync::watch::Sender<Durable>>,
    known: Arc<KnownData>,
}

/// One assignment to build: everything but the signature.
struct Draft {
    slot: u64,
    message_id: String,
    unsigned: Message,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.assign(batch).await;
        }
    }

    async fn assign(&mut self, batch: Vec<Request>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut chain = self.chain.clone();
        let mut drafts = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut earlies = Vec::with_capacity(batch.len());
        // A process spawned twice (concurrent spawns) keeps its one slot 0.
        let mut respawns = Vec::new();
        for req in batch {
            if req.message_id == self.pid && self.next + drafts.len() as u64 > 0 {
                respawns.push(req.reply);
                continue;
            }
            let slot = self.next + drafts.len() as u64;
            let mut h = Sha256::new();
            h.update(&chain);
            h.update(req.message_id.as_bytes());
            chain = h.finalize().to_vec();
            let path = match req.message.get("path") {
                Some(Value::Binary(p)) if !p.is_empty() => Value::Binary(p.clone()),
                _ => Value::from("compute"),
            };
            let unsigned = Message::new()
                .with("path", path)
                .with("data-protocol", "ao")
                .with("variant", "ao.N.1")
                .with("epoch", "0")
                .with("process", self.pid.as_str())
                .with("slot", slot as i64)
                .with("block-height", self.block.height)
                .with("block-hash", self.block.hash.as_str())
                .with("block-timestamp", self.block.timestamp)
                .with("timestamp", now)
                .with("hash-chain", b64u(&chain))
                .with("body", req.message);
            drafts.push(Draft {
                slot,
                message_id: req.message_id,
                unsigned,
            });
            earlies.push((slot, req.early));
            replies.push(req.reply);
        }
        // Executors may start on the batch while it is written (see `schedule_early`).
        *lock(&self.tentative) = drafts
            .iter()
            .map(|d| (d.slot, d.unsigned.clone()))
            .collect();
        for (slot, early) in earlies {
            if let Some(on_assigned) = early {
                on_assigned(slot);
            }
        }
        // Once the batch is durable, the blocking task that wrote it publishes it and answers
        // the callers itself: a hop back to this task would delay every acknowledgement.
        let outlets = Outlets {
            pid: self.pid.clone(),
            current: self.current.clone(),
            recent: self.recent.clone(),
            tentative: self.tentative.clone(),
            durable: self.durable.clone(),
            watch: self.watch.clone(),
            signer: self.signer.clone(),
        };
        let store = self.store.clone();
        let known = self.known.clone();
        let written = tokio::task::spawn_blocking(move || {
            let pid = outlets.pid.as_str();
            let built = (|| -> Result<()> {
                let mut ops = Vec::new();
                for d in &drafts {
                    ops.extend(assignment_ops(pid, d.slot, &d.message_id, &d.unsigned)?);
                }
                if outlets.signer.is_some()
                    && let Some(last) = drafts.last()
                {
                    ops.push(counter_op(signing_path(pid, "assigned"), last.slot));
                }
                known.skip_known(&mut ops);
                let binaries = KnownData::written(&ops);
                store.apply(ops)?;
                known.learn(binaries);
                Ok(())
            })();
            match built {
                Ok(()) => {
                    let count = drafts.len();
                    outlets.publish(drafts, replies);
                    Ok(count)
                }
                Err(e) => {
                    outlets.give_up_tentative();
                    let text = e.to_string();
                    for r in replies {
                        let _ = r.send(Err(Error::Store(format!("scheduling failed: {text}"))));
                    }
                    Err(e)
                }
            }
        })
        .await;
        match written {
            Ok(Ok(count)) => {
                self.next += count as u64;
                self.chain = chain;
            }
            Ok(Err(e)) => {
                tracing::error!(process = %self.pid, error = %e, "scheduling failed; no slot assigned");
                let text = e.to_string();
                for r in respawns {
                    let _ = r.send(Err(Error::Store(format!("scheduling failed: {text}"))));
                }
                return;
            }
            Err(join) => {
                // The callers' reply channels went with the task: they are told the scheduler
                // dropped their request.
                self.give_up_tentative();
                tracing::error!(process = %self.pid, error = %join, "the scheduler's write task failed");
                for r in respawns {
                    let _ = r.send(Err(Error::Internal("the scheduler failed".into())));
                }
                return;
            }
        }
        self.answer_respawns(respawns);
    }

    /// A batch that could not be written: its slots are given up (they will be assigned again)
    /// and executors that computed them are told so.
    fn give_up_tentative(&self) {
        lock(&self.tentative).clear();
        self.durable.send_modify(|d| d.failures += 1);
    }

    fn answer_respawns(&self, respawns: Vec<oneshot::Sender<Result<Assigned>>>) {
        if respawns.is_empty() {
            return;
        }
        let zero = lock(&self.recent)
            .iter()
            .find(|(s, _)| *s == 0)
            .map(|(_, m)| m.clone());
        let zero = match zero {
            Some(z) => Ok(Some(z)),
            None => cache::read_message(self.store.as_ref(), &assignment_path(&self.pid, 0)),
        };
        for r in respawns {
            let answer = match &zero {
                Ok(Some(a)) => Ok(Assigned {
                    process: self.pid.clone(),
                    slot: 0,
                    message_id: self.pid.clone(),
                    assignment: a.clone(),
                    signed: a.commitments().is_some(),
                }),
                Ok(None) => Err(Error::Internal(format!(
                    "slot 0 of {} is missing",
                    self.pid
                ))),
                Err(e) => Err(Error::Store(e.to_string())),
            };
            let _ = r.send(answer);
        }
    }
}

/// What an actor publishes a durable batch through, for the task that wrote it.
struct Outlets {
    pid: String,
    current: Arc<AtomicI64>,
    recent: Arc<Mutex<VecDeque<(u64, Message)>>>,
    tentative: Arc<Mutex<Vec<(u64, Message)>>>,
    durable: Arc<tokio::sync::watch::Sender<Durable>>,
    watch: SignWatch,
    signer: Option<Arc<SignerHandle>>,
}

impl Outlets {
    /// Publishes a durable batch (the current slot, the recent assignments, the durable and
    /// signed watermarks, the signer's queue) and answers its callers.
    fn publish(&self, drafts: Vec<Draft>, replies: Vec<oneshot::Sender<Result<Assigned>>>) {
        let Some(last) = drafts.last().map(|d| d.slot as i64) else {
            return;
        };
        self.current.store(last, Ordering::Release);
        match &self.signer {
            Some(signer) => signer.push(drafts.iter().map(|d| SignJob {
                pid: self.pid.clone(),
                slot: d.slot,
                unsigned: d.unsigned.clone(),
                watch: self.watch.clone(),
            })),
            None => self.watch.send_modify(|s| s.through = s.through.max(last)),
        }
        {
            let mut recent = lock(&self.recent);
            for d in &drafts {
                recent.push_back((d.slot, d.unsigned.clone()));
            }
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        lock(&self.tentative).clear();
        self.durable.send_modify(|d| d.through = last);
        for (r, d) in replies.into_iter().zip(drafts) {
            let _ = r.send(Ok(Assigned {
                process: self.pid.clone(),
                slot: d.slot,
                message_id: d.message_id,
                assignment: d.unsigned,
                signed: false,
            }));
        }
    }

    fn give_up_tentative(&self) {
        lock(&self.tentative).clear();
        self.durable.send_modify(|d| d.failures += 1);
    }
}

/// The store writes of one assignment: the assignment (and its body) as messages, aliases of
/// the body's commitment IDs, the slot link, the message → slot index, and for slot 0 the
/// process index.
fn assignment_ops(pid: &str, slot: u64, message_id: &str, assignment: &Message) -> Result<Vec<Op>> {
    let (uid, mut ops) = cache::message_ops(assignment)?;
    if let Some(body) = assignment.get_message("body") {
        let body_uid = b64u(&id(body, IdScope::All)?);
        if let Some(c) = body.commitments() {
            for cid in c.keys() {
                if cid.as_str() != body_uid {
                    ops.push(Op::MakeLink {
                        existing: body_uid.clone(),
                        new: cid.as_str().to_owned(),
                    });
                }
            }
        }
        if slot == 0 {
            ops.push(Op::MakeLink {
                existing: body_uid,
                new: format!("processes/{pid}"),
            });
        }
    }
    ops.push(Op::MakeLink {
        existing: uid,
        new: assignment_path(pid, slot),
    });
    ops.push(Op::Write {
        path: format!("message-slots/{pid}/{message_id}"),
        value: bytes::Bytes::from(slot.to_string()),
    });
    Ok(ops)
}

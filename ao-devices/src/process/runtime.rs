//! Processes as supervised actors (architecture-sketch.md "Processes as actors").
//!
//! * Each process that is used gets an **executor actor**: a mailbox and the executor owning the
//!   process's live aos instance, the slot it has computed to, and recent results. A thread of
//!   tokio's blocking pool serves the mailbox in passes (and lingers briefly for the next
//!   command), so compute, dry runs and snapshots of one process are serialised by
//!   construction while different processes run in parallel. Queued compute requests are merged:
//!   one pass computes to the highest slot asked for and answers all of them.
//! * Evaluations run on tokio's blocking pool, never on the async workers, each under a budget:
//!   fuel (`process-fuel`), or wall-clock time (`process-time-ms`) when the node's engine is
//!   built with `wasm-budget=wall-clock`. A runaway evaluation ends as an AO error result for
//!   that slot and delays nobody else beyond its budget.
//! * **Supervision**: a panic inside an actor's evaluation is caught at the actor boundary
//!   (`catch_unwind` around each pass), logged, and the actor restarts from its last good state (the
//!   stored results, the latest snapshot, and a replay of the assignments since). A trap or an
//!   exhausted budget poisons only that instance: the slot's result is an error, and the next
//!   evaluation restores the state before it (snapshot + replay, skipping failed slots).
//! * **Eviction**: a supervisor task keeps the bytes of live instances under
//!   `process-memory-budget`, evicting the least recently used idle ones, and evicts any
//!   instance idle for `process-idle-seconds`. Eviction snapshots first; the next request wakes
//!   the process from that snapshot.
//! * **Snapshots** are taken every `process-snapshot-every` slots (0: only on eviction) and are
//!   written in the same store batch as the results they cover, so a stored snapshot never runs
//!   ahead of the stored results.
//! * **Results and snapshots are derived data**, written with [`Store::apply_deferred`]: the
//!   store may acknowledge them before they are on disk (only the assignments, written by the
//!   scheduler, must be durable before a caller is answered). A crash may lose the latest of
//!   them, never a part of a batch and never a batch without the ones before it; on restart
//!   the actor starts from what `computed/<pid>/latest` and the snapshot say and recomputes the
//!   slots after, from their durable assignments.
//!
//! Store layout (see `docs/processes.md`): `computed/<pid>/slot/<n>` and
//! `computed/<pid>/<message-id>` → the slot's result record; `computed/<pid>/latest` → the
//! highest slot with a stored result; `process-snapshots/<pid>` → the latest snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ao_core::id::{IdScope, id};
use ao_core::store::Op;
use ao_core::util::b64u;
use ao_core::wallet::Wallet;
use ao_core::{Error, Message, Result, Store, Value, cache};
use ao_wasm::{AosInstance, CompiledModule, Instance, Limits, Snapshot, WasmConfig, WasmEngine};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::genesis::{self, Evaluation, ProcessEnv};
use super::snapshot;
use crate::scheduler::server::{Assigned, BlockInfo, Scheduler};

/// Options of the process runtime, read from the node options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessOptions {
    /// `process-snapshot-every`: take a snapshot every N computed slots (0: only on eviction).
    pub snapshot_every: u64,
    /// `process-memory-budget`: bytes of live instance memory kept before evicting.
    pub memory_budget: u64,
    /// `process-idle-seconds`: evict an instance unused for this long.
    pub idle: Duration,
    /// `process-fuel`: fuel one evaluation may use (when the engine counts fuel).
    pub fuel: u64,
    /// `process-time-ms`: the time one evaluation may run (when the engine budgets wall-clock
    /// time, node option `wasm-budget=wall-clock`).
    pub time: Duration,
    /// `process-evict-replay`: evict without a snapshot when at most this many slots would
    /// have to be replayed to rebuild the state.
    pub evict_replay: u64,
    /// `scheduler-sign-assignments` (default true): sign every assignment with the node wallet.
    pub sign_assignments: bool,
    /// `scheduling-mode`: HyperBEAM's `local_confirmation` (the default: a slot is answered
    /// once its assignment is durable), `aggressive` and `remote_confirmation` (accepted, and
    /// run as `local_confirmation`: this node never answers before the write, and has no
    /// bundler to wait for), or `disabled` (no new assignments; false here).
    pub scheduling: bool,
    /// Results kept in memory per process.
    pub results_kept: usize,
    /// How often the supervisor checks the budget.
    pub supervise_every: Duration,
    /// The most outbox messages one push delivers, the pushes it leads to included
    /// (`push-max-messages`): a process whose every message sends two more doubles the pushes
    /// at each hop.
    pub push_max_messages: u64,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            snapshot_every: 1000,
            memory_budget: default_memory_budget(),
            idle: Duration::from_secs(300),
            fuel: 10_000_000_000,
            time: Duration::from_secs(30),
            evict_replay: 2,
            sign_assignments: true,
            scheduling: true,
            results_kept: 64,
            supervise_every: Duration::from_millis(250),
            push_max_messages: 10_000,
        }
    }
}

/// The default `process-memory-budget`: a quarter of the memory available when the node
/// starts, between 256 MiB and 1.5 GiB (1 GiB where it cannot be read). 100 warm aos
/// processes take about 1 GiB: a fixed 1 GiB budget had them evict each other continually.
pub fn default_memory_budget() -> u64 {
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let available = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kib| kib * 1024);
        match available {
            Some(bytes) => (bytes / 4).clamp(256 << 20, 3 << 29),
            None => 1 << 30,
        }
    })
}

fn int_option(opts: &Message, key: &str) -> Result<Option<u64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| Error::BadRequest(format!("node option {key} must be a number"))),
    }
}

impl ProcessOptions {
    /// Reads the `process-*` node options over the defaults.
    pub fn from_options(opts: &Message) -> Result<Self> {
        let mut o = Self::default();
        if let Some(n) = int_option(opts, "process-snapshot-every")? {
            o.snapshot_every = n;
        }
        if let Some(n) = int_option(opts, "process-memory-budget")? {
            o.memory_budget = n;
        }
        if let Some(n) = int_option(opts, "process-idle-seconds")? {
            o.idle = Duration::from_secs(n);
        }
        if let Some(n) = int_option(opts, "process-fuel")? {
            o.fuel = n;
        }
        if let Some(n) = int_option(opts, "process-time-ms")? {
            o.time = Duration::from_millis(n.max(1));
        }
        if let Some(n) = int_option(opts, "process-evict-replay")? {
            o.evict_replay = n;
        }
        if let Some(n) = int_option(opts, "push-max-messages")? {
            o.push_max_messages = n;
        }
        if let Some(v) = opts.get("scheduling-mode") {
            let mode = match v {
                Value::Atom(a) => a.as_str().to_owned(),
                other => other.as_str().unwrap_or_default().to_owned(),
            };
            o.scheduling = match mode.replace('-', "_").as_str() {
                "local_confirmation" => true,
                "aggressive" | "remote_confirmation" => {
                    tracing::warn!(
                        "scheduling-mode {mode} runs as local_confirmation: slots are answered \
                         once their assignments are durable"
                    );
                    true
                }
                "disabled" => false,
                _ => {
                    return Err(Error::BadRequest(format!(
                        "node option scheduling-mode must be local_confirmation, aggressive, \
                         remote_confirmation or disabled, not {mode:?}"
                    )));
                }
            };
        }
        if let Some(v) = opts.get("scheduler-sign-assignments") {
            o.sign_assignments = !matches!(v.as_str(), Some("false"))
                && !matches!(v, Value::Atom(a) if a.as_str() == "false");
        }
        Ok(o)
    }

    /// Sets [`ProcessOptions::snapshot_every`].
    #[must_use]
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// Sets [`ProcessOptions::memory_budget`].
    #[must_use]
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Sets [`ProcessOptions::fuel`].
    #[must_use]
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Sets [`ProcessOptions::time`].
    #[must_use]
    pub fn with_time(mut self, time: Duration) -> Self {
        self.time = time;
        self
    }

    /// Sets [`ProcessOptions::evict_replay`].
    #[must_use]
    pub fn with_evict_replay(mut self, slots: u64) -> Self {
        self.evict_replay = slots;
        self
    }

    /// Sets [`ProcessOptions::push_max_messages`].
    #[must_use]
    pub fn with_push_max_messages(mut self, n: u64) -> Self {
        self.push_max_messages = n;
        self
    }

    /// Sets [`ProcessOptions::sign_assignments`].
    #[must_use]
    pub fn with_signed_assignments(mut self, sign: bool) -> Self {
        self.sign_assignments = sign;
        self
    }

    /// Sets [`ProcessOptions::idle`].
    #[must_use]
    pub fn with_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }
}

/// The result of one slot.
#[derive(Debug, Clone)]
pub struct SlotResult {
    /// The slot.
    pub slot: u64,
    /// The ID of the message evaluated.
    pub message_id: String,
    /// `{data, outbox, raw, error?}`.
    pub results: Message,
    /// The AO result object (`{Output, Messages, Spawns, Assignments, Error}`) as JSON text.
    pub raw: String,
    /// Whether the evaluation did not complete (a trap, an exhausted budget).
    pub failed: bool,
}

impl SlotResult {
    fn from_eval(slot: u64, message_id: String, e: Evaluation, failed: bool) -> Self {
        let mut results = Message::new()
            .with("data", e.data)
            .with("outbox", e.outbox)
            .with("raw", e.raw.as_str());
        if let Some(err) = e.error {
            results.insert("error", err);
        }
        Self {
            slot,
            message_id,
            results,
            raw: e.raw,
            failed,
        }
    }

    fn record(&self, pid: &str) -> Message {
        let mut m = Message::new()
            .with("process", pid)
            .with("slot", self.slot as i64)
            .with("message", self.message_id.as_str())
            .with("results", self.results.clone());
        if self.failed {
            m.insert("failed", "true");
        }
        m
    }

    fn from_record(r: &Message) -> Result<Self> {
        let results = r
            .get_message("results")
            .cloned()
            .ok_or_else(|| Error::Store("result record without results".into()))?;
        Ok(Self {
            slot: r.get("slot").and_then(Value::as_integer).unwrap_or(0) as u64,
            message_id: r.get_str("message").unwrap_or_default().to_owned(),
            raw: results.get_str("raw").unwrap_or("{}").to_owned(),
            failed: r.get("failed").is_some_and(Value::is_true),
            results,
        })
    }
}

/// Per-process counters the supervisor reads.
#[derive(Debug, Default)]
pub struct ProcessStats {
    /// Bytes of the live instance's memory (0 when evicted).
    pub live_bytes: AtomicU64,
    /// When it was last used (supervisor clock, ms).
    pub last_used: AtomicU64,
    /// Whether a request is being served.
    pub busy: AtomicBool,
    /// The highest slot computed (−1: none).
    pub computed: AtomicI64,
    /// How many times the actor was restarted after a panic.
    pub restarts: AtomicU64,
    /// How many times the instance was evicted.
    pub evictions: AtomicU64,
}

enum Cmd {
    Compute {
        to: u64,
        reply: oneshot::Sender<Result<Arc<SlotResult>>>,
    },
    Latest {
        reply: oneshot::Sender<Result<Option<Arc<SlotResult>>>>,
    },
    DryRun {
        message: Message,
        reply: oneshot::Sender<Result<Evaluation>>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<(u64, Bytes)>>,
    },
    Evict,
    Crash,
}

#[derive(Clone)]
struct Handle {
    mailbox: Arc<Mailbox>,
    process: Message,
    stats: Arc<ProcessStats>,
}

struct Shared {
    store: Arc<dyn Store>,
    scheduler: Arc<Scheduler>,
    engine: WasmEngine,
    options: ProcessOptions,
    started: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The node's processes: the scheduler unit, executor actors and their supervisor.
pub struct Processes {
    shared: Arc<Shared>,
    procs: Mutex<HashMap<String, Handle>>,
    supervisor: Mutex<bool>,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("scheduler", &self.shared.scheduler)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a message is a process definition.
pub fn is_process_message(m: &Message) -> bool {
    m.get_str("type")
        .is_some_and(|t| t.eq_ignore_ascii_case("process"))
}

/// An error result with a status, copied for every waiter of a failed pass.
fn copy_err(e: &Error) -> Error {
    match e {
        Error::Status { status, body } => Error::Status {
            status: *status,
            body: body.clone(),
        },
        Error::MessageNotFound(s) => Error::MessageNotFound(s.clone()),
        Error::NotFound(s) => Error::NotFound(s.clone()),
        other => Error::status(other.http_status(), other.to_string()),
    }
}

fn no_assignment(pid: &str, slot: u64) -> Error {
    Error::status(
        503,
        Value::Message(
            Message::new()
                .with("status", 503i64)
                .with("body", "No assignment found for next slot.")
                .with("phase", "get-schedule")
                .with("process", pid)
                .with("attempted-slot", slot as i64),
        ),
    )
}

/// The slot-0 assignment of a process spawned before, as a spawn answers it.
fn spawned_before(pid: String, assignment: Message) -> Assigned {
    Assigned {
        process: pid.clone(),
        slot: 0,
        message_id: pid,
        signed: assignment.commitments().is_some(),
        assignment,
    }
}

impl Processes {
    /// A runtime over a store, signing assignments with `wallet`.
    pub fn new(
        store: Arc<dyn Store>,
        wallet: Arc<Wallet>,
        engine: WasmEngine,
        options: ProcessOptions,
    ) -> Self {
        let scheduler = Arc::new(
            Scheduler::new(store.clone(), wallet, BlockInfo::default())
                .with_signing(options.sign_assignments)
                .with_scheduling(options.scheduling),
        );
        Self {
            shared: Arc::new(Shared {
                store,
                scheduler,
                engine,
                options,
                started: Instant::now(),
            }),
            procs: Mutex::new(HashMap::new()),
            supervisor: Mutex::new(false),
        }
    }

    /// A runtime with default engine settings.
    pub fn with_defaults(
        store: Arc<dyn Store>,
        wallet: Arc<Wallet>,
        options: ProcessOptions,
    ) -> Result<Self> {
        let engine = WasmEngine::new(WasmConfig::default())?;
        Ok(Self::new(store, wallet, engine, options))
    }

    /// The scheduler unit.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.shared.scheduler
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The options.
    pub fn options(&self) -> &ProcessOptions {
        &self.shared.options
    }

    /// The stored process definition of `pid`, if this node knows it.
    pub fn process(&self, pid: &str) -> Result<Option<Message>> {
        if let Some(h) = lock(&self.procs).get(pid) {
            return Ok(Some(h.process.clone()));
        }
        read_process(self.shared.store.as_ref(), pid)
    }

    /// The IDs of every process this node has scheduled.
    pub fn list(&self) -> Result<Vec<String>> {
        self.shared.store.children("processes")
    }

    /// Counters of a process's actor, if it has one.
    pub fn stats(&self, pid: &str) -> Option<Arc<ProcessStats>> {
        lock(&self.procs).get(pid).map(|h| h.stats.clone())
    }

    /// Total bytes of live instances.
    pub fn live_bytes(&self) -> u64 {
        lock(&self.procs)
            .values()
            .map(|h| h.stats.live_bytes.load(Ordering::Relaxed))
            .sum()
    }

    fn handle(self: &Arc<Self>, pid: &str) -> Result<Handle> {
        if let Some(h) = lock(&self.procs).get(pid) {
            return Ok(h.clone());
        }
        let process = read_process(self.shared.store.as_ref(), pid)?
            .ok_or_else(|| Error::MessageNotFound(format!("process {pid}")))?;
        self.ensure_supervisor();
        let mut procs = lock(&self.procs);
        if let Some(h) = procs.get(pid) {
            return Ok(h.clone());
        }
        let stats = Arc::new(ProcessStats::default());
        let exec = Exec::new(pid, process.clone(), self.shared.clone(), stats.clone())?;
        let h = Handle {
            mailbox: Mailbox::new(exec),
            process,
            stats,
        };
        procs.insert(pid.to_owned(), h.clone());
        Ok(h)
    }

    fn ensure_supervisor(self: &Arc<Self>) {
        let mut started = lock(&self.supervisor);
        if !*started {
            *started = true;
            tokio::spawn(supervise(Arc::downgrade(self)));
        }
    }

    async fn ask<T>(
        self: &Arc<Self>,
        pid: &str,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Cmd,
    ) -> Result<T> {
        let h = self.handle(pid)?;
        h.stats
            .last_used
            .store(self.shared.now_ms(), Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        h.mailbox
            .send(make(reply))
            .map_err(|_| Error::Internal(format!("the actor of {pid} stopped")))?;
        rx.await.map_err(|_| {
            Error::status(
                500,
                format!("process {pid} failed while serving this request and was restarted"),
            )
        })?
    }

    /// Schedules a process definition at slot 0 (spawn) and returns its signed assignment.
    /// Spawning an already scheduled process returns its slot-0 assignment.
    pub async fn spawn(self: &Arc<Self>, process: Message) -> Result<Assigned> {
        let pid = b64u(&id(&process, IdScope::Signed)?);
        if let Some(a) = self.shared.scheduler.signed_assignment(&pid, 0).await? {
            return Ok(spawned_before(pid, a));
        }
        self.shared.scheduler.schedule(&pid, process).await
    }

    /// [`Processes::spawn`], returning once slot 0 is durable, possibly before its assignment
    /// is signed.
    pub async fn spawn_durable(self: &Arc<Self>, process: Message) -> Result<Assigned> {
        let pid = b64u(&id(&process, IdScope::Signed)?);
        if let Some(a) = self.shared.scheduler.assignment(&pid, 0)? {
            return Ok(spawned_before(pid, a));
        }
        self.shared.scheduler.schedule_durable(&pid, process).await
    }

    /// Schedules a message on a known process and returns its signed assignment.
    pub async fn schedule(self: &Arc<Self>, pid: &str, message: Message) -> Result<Assigned> {
        self.handle(pid)?;
        self.shared.scheduler.schedule(pid, message).await
    }

    /// [`Processes::schedule`], returning once the slot is durable, possibly before its
    /// assignment is signed.
    pub async fn schedule_durable(
        self: &Arc<Self>,
        pid: &str,
        message: Message,
    ) -> Result<Assigned> {
        self.handle(pid)?;
        self.shared.scheduler.schedule_durable(pid, message).await
    }

    /// A hook for [`Scheduler::schedule_early`] that asks the actor of `pid` to compute up to
    /// the slot assigned, and the reply to await ([`Processes::computed`]). The reply fails if
    /// no slot is assigned or the actor stopped.
    pub(crate) fn compute_on_assign(
        self: &Arc<Self>,
        pid: &str,
    ) -> Result<(
        oneshot::Receiver<Result<Arc<SlotResult>>>,
        crate::scheduler::server::OnAssigned,
    )> {
        let h = self.handle(pid)?;
        h.stats
            .last_used
            .store(self.shared.now_ms(), Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let on_assigned = Box::new(move |slot: u64| {
            // A stopped actor drops the reply: the caller is told it failed.
            let _ = h.mailbox.send(Cmd::Compute { to: slot, reply });
        });
        Ok((rx, on_assigned))
    }

    /// Awaits a reply of [`Processes::compute_on_assign`].
    pub(crate) async fn computed(
        pid: &str,
        rx: oneshot::Receiver<Result<Arc<SlotResult>>>,
    ) -> Result<Arc<SlotResult>> {
        rx.await.map_err(|_| {
            Error::status(
                500,
                format!("process {pid} failed while serving this request and was restarted"),
            )
        })?
    }

    /// Computes `pid` up to `slot` and returns that slot's result.
    pub async fn compute(self: &Arc<Self>, pid: &str, slot: u64) -> Result<Arc<SlotResult>> {
        self.ask(pid, |reply| Cmd::Compute { to: slot, reply })
            .await
    }

    /// Computes `pid` up to its current slot.
    pub async fn now(self: &Arc<Self>, pid: &str) -> Result<Arc<SlotResult>> {
        self.handle(pid)?;
        let current = self
            .shared
            .scheduler
            .current(pid)?
            .ok_or_else(|| no_assignment(pid, 0))?;
        self.compute(pid, current).await
    }

    /// The latest computed result, without computing.
    pub async fn latest(self: &Arc<Self>, pid: &str) -> Result<Option<Arc<SlotResult>>> {
        self.ask(pid, |reply| Cmd::Latest { reply }).await
    }

    /// Evaluates `message` on a copy of the current state; nothing is scheduled or stored.
    pub async fn dry_run(self: &Arc<Self>, pid: &str, message: Message) -> Result<Evaluation> {
        self.ask(pid, |reply| Cmd::DryRun { message, reply }).await
    }

    /// Takes a snapshot now (stored, and returned as `(slot, encoded bytes)`).
    pub async fn snapshot(self: &Arc<Self>, pid: &str) -> Result<(u64, Bytes)> {
        self.ask(pid, |reply| Cmd::Snapshot { reply }).await
    }

    /// Asks a process to snapshot and drop its instance.
    pub async fn evict(self: &Arc<Self>, pid: &str) -> Result<()> {
        let h = self.handle(pid)?;
        h.mailbox
            .send(Cmd::Evict)
            .map_err(|_| Error::Internal(format!("the actor of {pid} stopped")))
    }

    /// Fault injection for supervision tests and chaos drills: makes the actor of `pid` panic
    /// inside its next evaluation pass.
    pub async fn inject_panic(self: &Arc<Self>, pid: &str) -> Result<()> {
        let h = self.handle(pid)?;
        h.mailbox
            .send(Cmd::Crash)
            .map_err(|_| Error::Internal(format!("the actor of {pid} stopped")))
    }
}

/// Reads a process definition: `processes/<pid>`, else the message stored under `pid` if it is
/// a process.
pub fn read_process(store: &dyn Store, pid: &str) -> Result<Option<Message>> {
    if let Some(m) = cache::read_message(store, &format!("processes/{pid}"))? {
        return Ok(Some(m));
    }
    match cache::read_message(store, pid) {
        Ok(Some(m)) if is_process_message(&m) => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(Error::BadRequest(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn supervise(rt: Weak<Processes>) {
    loop {
        let every = match rt.upgrade() {
            Some(rt) => rt.shared.options.supervise_every,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(rt) = rt.upgrade() else { return };
        let now = rt.shared.now_ms();
        let opts = &rt.shared.options;
        let handles: Vec<(String, Handle)> = lock(&rt.procs)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut live: Vec<(u64, u64, &str, &Handle)> = handles
            .iter()
            .filter_map(|(pid, h)| {
                let bytes = h.stats.live_bytes.load(Ordering::Relaxed);
                (bytes > 0).then(|| {
                    (
                        h.stats.last_used.load(Ordering::Relaxed),
                        bytes,
                        pid.as_str(),
                        h,
                    )
                })
            })
            .collect();
        let mut total: u64 = live.iter().map(|l| l.1).sum();
        live.sort_unstable_by_key(|l| l.0);
        for (last_used, bytes, pid, h) in live {
            let idle = now.saturating_sub(last_used) >= opts.idle.as_millis() as u64;
            let over = total > opts.memory_budget;
            if !(idle || over) || h.stats.busy.load(Ordering::Relaxed) {
                continue;
            }
            if h.mailbox.send(Cmd::Evict).is_ok() {
                tracing::debug!(
                    process = pid,
                    bytes,
                    idle,
                    over,
                    "evicting process instance"
                );
                total = total.saturating_sub(bytes);
                // Counted as gone now, so one pass does not evict more than needed.
                h.stats.live_bytes.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// How long an executor's thread waits for more commands after a pass before it leaves: the
/// next command of a busy process then wakes that thread directly.
const LINGER: Duration = Duration::from_millis(5);

/// Most commands one pass serves.
const MAX_PASS: usize = 256;

/// The mailbox of a process's executor actor. A command wakes the thread serving the mailbox,
/// or, when none does, starts one on tokio's blocking pool; the thread serves queued commands in
/// passes and leaves after [`LINGER`] without any, putting the executor back.
struct Mailbox {
    state: Mutex<MailboxState>,
    wake: std::sync::Condvar,
}

struct MailboxState {
    cmds: std::collections::VecDeque<Cmd>,
    /// The executor, while no thread serves the mailbox.
    exec: Option<Exec>,
    /// Set when the actor could not be restarted after a panic.
    stopped: bool,
}

impl Mailbox {
    fn new(exec: Exec) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(MailboxState {
                cmds: std::collections::VecDeque::new(),
                exec: Some(exec),
                stopped: false,
            }),
            wake: std::sync::Condvar::new(),
        })
    }

    /// Queues a command (handing it back if the actor stopped). Call within the runtime.
    fn send(self: &Arc<Self>, cmd: Cmd) -> std::result::Result<(), Cmd> {
        let mut st = lock(&self.state);
        if st.stopped {
            return Err(cmd);
        }
        st.cmds.push_back(cmd);
        match st.exec.take() {
            Some(exec) => {
                drop(st);
                let mailbox = self.clone();
                tokio::task::spawn_blocking(move || mailbox.run(exec));
            }
            None => self.wake.notify_one(),
        }
        Ok(())
    }

    /// Serves the mailbox until it stays empty for [`LINGER`]. A panic in a pass is caught
    /// here: it is logged and the executor rebuilt from its last good state.
    fn run(&self, mut exec: Exec) {
        loop {
            let cmds: Vec<Cmd> = {
                let mut st = lock(&self.state);
                if st.cmds.is_empty() {
                    st = self
                        .wake
                        .wait_timeout_while(st, LINGER, |s| s.cmds.is_empty())
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                if st.cmds.is_empty() {
                    st.exec = Some(exec);
                    return;
                }
                let n = st.cmds.len().min(MAX_PASS);
                st.cmds.drain(..n).collect()
            };
            let stats = exec.stats.clone();
            stats.busy.store(true, Ordering::Relaxed);
            let served =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec.serve(cmds)));
            stats.busy.store(false, Ordering::Relaxed);
            if served.is_ok() {
                continue;
            }
            let pid = exec.pid.clone();
            tracing::error!(process = %pid, "process actor panicked; restarting it from its last good state");
            stats.restarts.fetch_add(1, Ordering::Relaxed);
            stats.live_bytes.store(0, Ordering::Relaxed);
            match Exec::new(&pid, exec.process.clone(), exec.shared.clone(), stats) {
                Ok(e) => exec = e,
                Err(e) => {
                    tracing::error!(process = %pid, error = %e, "cannot restart process actor");
                    let mut st = lock(&self.state);
                    st.stopped = true;
                    // Their callers are told the actor failed.
                    st.cmds.clear();
                    return;
                }
            }
        }
    }
}

/// What an executor actor owns.
struct Exec {
    pid: String,
    process: Message,
    shared: Arc<Shared>,
    stats: Arc<ProcessStats>,
    module: Option<(Arc<CompiledModule>, Limits, ProcessEnv)>,
    instance: Option<AosInstance>,
    /// The slot the live instance's state corresponds to (−1: fresh).
    inst_slot: i64,
    /// The highest slot with a result (−1: none).
    done: i64,
    /// The slot of the latest stored snapshot (−1: none).
    snap_slot: i64,
    results: BTreeMap<u64, Arc<SlotResult>>,
    /// Results computed and not yet written ([`Exec::flush`]).
    unwritten: Vec<Arc<SlotResult>>,
    /// Other writes waiting for [`Exec::flush`] (snapshots).
    pending: Vec<Op>,
    pending_latest: Option<u64>,
}

fn computed_path(pid: &str, slot: u64) -> String {
    format!("computed/{pid}/slot/{slot}")
}

/// The highest slot with a stored result.
pub fn stored_latest(store: &dyn Store, pid: &str) -> Result<Option<u64>> {
    Ok(store
        .read(&format!("computed/{pid}/latest"))?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()))
}

/// A stored slot result.
pub fn stored_result(store: &dyn Store, pid: &str, slot: u64) -> Result<Option<SlotResult>> {
    match cache::read_message(store, &computed_path(pid, slot))? {
        Some(r) => Ok(Some(SlotResult::from_record(&r)?)),
        None => Ok(None),
    }
}

impl Exec {
    fn new(
        pid: &str,
        process: Message,
        shared: Arc<Shared>,
        stats: Arc<ProcessStats>,
    ) -> Result<Self> {
        let done = stored_latest(shared.store.as_ref(), pid)?.map_or(-1, |s| s as i64);
        let snap_slot = shared
            .store
            .read(&format!("process-snapshot-slots/{pid}"))?
            .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<i64>().ok())
            .unwrap_or(-1);
        stats.computed.store(done, Ordering::Relaxed);
        Ok(Self {
            pid: pid.to_owned(),
            process,
            shared,
            stats,
            module: None,
            instance: None,
            inst_slot: -1,
            done,
            snap_slot,
            results: BTreeMap::new(),
            unwritten: Vec::new(),
            pending: Vec::new(),
            pending_latest: None,
        })
    }

    fn serve(&mut self, cmds: Vec<Cmd>) {
        let target = cmds
            .iter()
            .filter_map(|c| match c {
                Cmd::Compute { to, .. } => Some(*to),
                _ => None,
            })
            .max();
        // Slots may be computed while their batch is being written; nothing computed from them
        // is answered or stored before they are durable, and if the batch fails the state goes
        // back to what the store holds.
        let durable = match target {
            Some(_) => self.shared.scheduler.durable(&self.pid).ok(),
            None => None,
        };
        let failures = durable.as_ref().map(|d| d.borrow().failures);
        let mut advanced = target.map(|to| self.advance(to));
        if let (Some(mut rx), Some(failures)) = (durable, failures)
            && self.done > rx.borrow().through
        {
            let done = self.done;
            let state = futures::executor::block_on(
                rx.wait_for(|d| d.through >= done || d.failures != failures),
            )
            .map(|d| *d);
            if !matches!(state, Ok(d) if d.through >= done) {
                self.give_up_tentative();
                advanced = Some(Err(Error::status(
                    503,
                    format!(
                        "scheduling failed: the slots after {} of {} were given up",
                        state.map_or(-1, |d| d.through),
                        self.pid
                    ),
                )));
            }
        }
        for cmd in cmds {
            match cmd {
                Cmd::Compute { to, reply } => {
                    let r = match &advanced {
                        Some(Err(e)) if to as i64 > self.done => Err(copy_err(e)),
                        _ => self.result(to),
                    };
                    let _ = reply.send(r);
                }
                Cmd::Latest { reply } => {
                    let r = match u64::try_from(self.done) {
                        Ok(s) => self.result(s).map(Some),
                        Err(_) => Ok(None),
                    };
                    let _ = reply.send(r);
                }
                Cmd::DryRun { message, reply } => {
                    let _ = reply.send(self.dry_run(&message));
                }
                Cmd::Snapshot { reply } => {
                    let _ = reply.send(self.snapshot_now());
                }
                Cmd::Evict => {
                    if let Err(e) = self.evict() {
                        tracing::warn!(process = %self.pid, error = %e, "eviction failed");
                    }
                }
                Cmd::Crash => panic!("fault injected into process {}", self.pid),
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!(process = %self.pid, error = %e, "writing computed results failed");
        }
        let bytes = self
            .instance
            .as_ref()
            .map_or(0, |i| i.instance().memory_size());
        self.stats.live_bytes.store(bytes, Ordering::Relaxed);
        self.stats.computed.store(self.done, Ordering::Relaxed);
        self.stats
            .last_used
            .store(self.shared.now_ms(), Ordering::Relaxed);
    }

    /// Forgets what was computed from assignments that were given up (their batch could not be
    /// written): the actor starts again from what the store holds, keeping the loaded module.
    fn give_up_tentative(&mut self) {
        tracing::warn!(process = %self.pid, "slots computed before their assignments were durable were given up");
        self.pending.clear();
        self.unwritten.clear();
        self.pending_latest = None;
        let module = self.module.take();
        match Exec::new(
            &self.pid,
            self.process.clone(),
            self.shared.clone(),
            self.stats.clone(),
        ) {
            Ok(fresh) => *self = fresh,
            Err(e) => {
                // Recompute from the start rather than trust any state.
                tracing::error!(process = %self.pid, error = %e, "cannot reread the process's state");
                self.results.clear();
                self.instance = None;
                self.inst_slot = -1;
                self.done = -1;
                self.snap_slot = -1;
            }
        }
        self.module = module;
    }

    /// The writes of a slot's result record: the record, `computed/<pid>/slot/<n>` and
    /// `computed/<pid>/<message-id>`.
    fn result_ops(&self, r: &SlotResult, ops: &mut Vec<Op>) -> Result<()> {
        let (uid, record) = cache::message_ops(&r.record(&self.pid))?;
        ops.extend(record);
        if !r.message_id.is_empty() {
            ops.push(Op::MakeLink {
                existing: uid.clone(),
                new: format!("computed/{}/{}", self.pid, r.message_id),
            });
        }
        ops.push(Op::MakeLink {
            existing: uid,
            new: computed_path(&self.pid, r.slot),
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.unwritten.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::new();
        for r in std::mem::take(&mut self.unwritten) {
            let mut one = Vec::new();
            if let Err(e) = self.result_ops(&r, &mut one) {
                // One result that cannot be stored must not take the batch's others with it:
                // the slot is recorded as failed, with the reason.
                tracing::error!(process = %self.pid, slot = r.slot, error = %e, "a result cannot be stored");
                let reason = format!("the result cannot be stored: {e}");
                let failed = Arc::new(SlotResult::from_eval(
                    r.slot,
                    r.message_id.clone(),
                    genesis::failure(&reason),
                    true,
                ));
                self.results.insert(r.slot, failed.clone());
                one.clear();
                self.result_ops(&failed, &mut one)?;
            }
            ops.append(&mut one);
        }
        // After the results they cover (a snapshot), in the same batch.
        ops.append(&mut self.pending);
        if let Some(l) = self.pending_latest.take() {
            ops.push(Op::Write {
                path: format!("computed/{}/latest", self.pid),
                value: Bytes::from(l.to_string()),
            });
        }
        // Derived data: a crash may lose it, and the actor recomputes it (see the module
        // documentation), so it does not wait for the disk. (Nothing is learnt from it.)
        self.shared.scheduler.known_data().skip_known(&mut ops);
        self.shared.store.apply_deferred(ops)
    }

    fn result(&mut self, slot: u64) -> Result<Arc<SlotResult>> {
        if slot as i64 > self.done {
            return Err(no_assignment(&self.pid, slot));
        }
        if let Some(r) = self.results.get(&slot) {
            return Ok(r.clone());
        }
        let r = stored_result(self.shared.store.as_ref(), &self.pid, slot)?
            .ok_or_else(|| Error::NotFound(format!("result of slot {slot} of {}", self.pid)))?;
        Ok(Arc::new(r))
    }

    fn is_failed(&self, slot: u64) -> Result<bool> {
        if let Some(r) = self.results.get(&slot) {
            return Ok(r.failed);
        }
        Ok(self
            .shared
            .store
            .read(&format!("{}/failed", computed_path(&self.pid, slot)))?
            .is_some())
    }

    fn load_module(&mut self) -> Result<()> {
        if self.module.is_some() {
            return Ok(());
        }
        let exec_dev = self
            .process
            .get_str("execution-device")
            .unwrap_or("genesis-wasm@1.0")
            .to_ascii_lowercase();
        let aos_stack = exec_dev == "stack@1.0"
            && self
                .process
                .get("device-stack")
                .is_some_and(|s| format!("{s:?}").to_ascii_lowercase().contains("json-iface"));
        if exec_dev != "genesis-wasm@1.0" && !aos_stack {
            return Err(Error::status(
                422,
                format!(
                    "execution device {exec_dev:?} is not supported by this node's process runtime \
                     (it runs aos processes: genesis-wasm@1.0, or stack@1.0 with json-iface@1.0)"
                ),
            ));
        }
        let module_id = self
            .process
            .get_str("module")
            .or_else(|| self.process.get_str("image"))
            .ok_or_else(|| Error::status(422, "the process names no Module (or image)"))?
            .to_owned();
        let store = self.shared.store.as_ref();
        let module_msg = cache::read_message(store, &module_id)?
            .ok_or_else(|| Error::MessageNotFound(format!("module {module_id}")))?;
        let bytes = module_msg
            .get("body")
            .or_else(|| module_msg.get("data"))
            .and_then(Value::as_bytes)
            .ok_or_else(|| Error::status(422, format!("module {module_id} has no WASM body")))?
            .clone();
        let module = self.shared.engine.load(&bytes, store)?;
        let mut limits = Instance::default_limits(&module)
            .with_fuel(self.shared.options.fuel)
            .with_time(self.shared.options.time);
        if let Some(tag) = self
            .process
            .get_str("memory-limit")
            .or_else(|| module_msg.get_str("memory-limit"))
        {
            limits = limits.with_memory_limit_tag(tag);
        }
        let env = ProcessEnv::new(&self.pid, &self.process, &module_id, &module_msg);
        self.module = Some((module, limits, env));
        Ok(())
    }

    /// Makes the live instance hold the state after slot `self.done`.
    fn ensure_instance(&mut self) -> Result<()> {
        if self.instance.is_some() && self.inst_slot == self.done {
            return Ok(());
        }
        self.load_module()?;
        let Some((module, limits, _)) = &self.module else {
            return Err(Error::Internal("module not loaded".into()));
        };
        let (module, limits) = (module.clone(), *limits);
        let stored = self
            .shared
            .store
            .read(&format!("process-snapshots/{}", self.pid))?;
        let mut restored = None;
        if let Some(b) = stored {
            let (slot, data) = snapshot::decode(&b)?;
            if slot as i64 <= self.done {
                let snap = Snapshot::from_bytes(Bytes::from(data))?;
                restored = Some((AosInstance::restore(&module, limits, &snap)?, slot as i64));
            }
        }
        let (inst, slot) = match restored {
            Some(r) => r,
            None => (AosInstance::new(&module, limits)?, -1),
        };
        self.instance = Some(inst);
        self.inst_slot = slot;
        // Replay the slots computed since, skipping those whose evaluation failed.
        for s in (slot + 1)..=self.done {
            let s = s as u64;
            if self.is_failed(s)? {
                self.inst_slot = s as i64;
                continue;
            }
            let a = self
                .shared
                .scheduler
                .tentative_assignment(&self.pid, s)?
                .ok_or_else(|| no_assignment(&self.pid, s))?;
            let (_, failed) = self.eval(s, &a)?;
            if failed.is_some() {
                self.instance = None;
                return Err(Error::status(
                    500,
                    format!("replaying slot {s} of {} failed", self.pid),
                ));
            }
        }
        Ok(())
    }

    /// Evaluates the assignment of slot `s` on the live instance.
    fn eval(&mut self, s: u64, assignment: &Message) -> Result<(Evaluation, Option<String>)> {
        let body = assignment
            .get_message("body")
            .ok_or_else(|| Error::Store(format!("assignment {s} of {} has no body", self.pid)))?;
        let Some((_, _, env)) = &self.module else {
            return Err(Error::Internal("module not loaded".into()));
        };
        let msg_json = genesis::message_json(body, Some(assignment), env)?;
        let inst = self
            .instance
            .as_mut()
            .ok_or_else(|| Error::Internal("no live instance".into()))?;
        match inst.handle(&msg_json, &env.env_json) {
            Ok(out) => {
                self.inst_slot = s as i64;
                let ev = match genesis::parse_result(&out, env) {
                    Ok(ev) => ev,
                    Err(e) => genesis::failure(&e.to_string()),
                };
                Ok((ev, None))
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(process = %self.pid, slot = s, error = %reason, "evaluation failed; the slot's result is an error");
                self.instance = None;
                self.inst_slot = -1;
                Ok((genesis::failure(&reason), Some(reason)))
            }
        }
    }

    fn advance(&mut self, to: u64) -> Result<()> {
        while (self.done) < to as i64 {
            let s = (self.done + 1) as u64;
            let a = self
                .shared
                .scheduler
                .tentative_assignment(&self.pid, s)?
                .ok_or_else(|| no_assignment(&self.pid, s))?;
            self.ensure_instance()?;
            let message_id = a
                .get_message("body")
                .map(|b| id(b, IdScope::Signed).map(|i| b64u(&i)))
                .transpose()?
                .unwrap_or_default();
            let (ev, failed) = self.eval(s, &a)?;
            let r = Arc::new(SlotResult::from_eval(s, message_id, ev, failed.is_some()));
            self.record(r)?;
            if failed.is_none()
                && self.shared.options.snapshot_every > 0
                && self.done - self.snap_slot >= self.shared.options.snapshot_every as i64
            {
                self.snapshot_to_pending()?;
            }
        }
        Ok(())
    }

    /// Records a slot's result; its writes are built by [`Exec::flush`], after the pass has
    /// answered.
    fn record(&mut self, r: Arc<SlotResult>) -> Result<()> {
        self.done = r.slot as i64;
        self.pending_latest = Some(r.slot);
        self.unwritten.push(r.clone());
        self.results.insert(r.slot, r);
        while self.results.len() > self.shared.options.results_kept.max(1) {
            self.results.pop_first();
        }
        Ok(())
    }

    fn snapshot_to_pending(&mut self) -> Result<Bytes> {
        let inst = self
            .instance
            .as_mut()
            .ok_or_else(|| Error::Internal("no live instance to snapshot".into()))?;
        let snap = inst.snapshot()?;
        let slot = u64::try_from(self.inst_slot)
            .map_err(|_| Error::status(409, "nothing computed yet: no state to snapshot"))?;
        let encoded = Bytes::from(snapshot::encode(slot, &snap.to_bytes()));
        self.pending.push(Op::Write {
            path: format!("process-snapshots/{}", self.pid),
            value: encoded.clone(),
        });
        self.pending.push(Op::Write {
            path: format!("process-snapshot-slots/{}", self.pid),
            value: Bytes::from(slot.to_string()),
        });
        self.snap_slot = self.inst_slot;
        Ok(encoded)
    }

    fn snapshot_now(&mut self) -> Result<(u64, Bytes)> {
        self.ensure_instance()?;
        let b = self.snapshot_to_pending()?;
        Ok((self.snap_slot as u64, b))
    }

    fn evict(&mut self) -> Result<()> {
        if self.instance.is_none() {
            return Ok(());
        }
        if self.inst_slot >= 0
            && self.inst_slot - self.snap_slot > self.shared.options.evict_replay as i64
        {
            self.snapshot_to_pending()?;
            self.flush()?;
        }
        self.instance = None;
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn dry_run(&mut self, message: &Message) -> Result<Evaluation> {
        if let Some(current) = self.shared.scheduler.current(&self.pid)? {
            self.advance(current)?;
        }
        self.ensure_instance()?;
        let Some((module, limits, env)) = &self.module else {
            return Err(Error::Internal("module not loaded".into()));
        };
        let inst = self
            .instance
            .as_mut()
            .ok_or_else(|| Error::Internal("no live instance".into()))?;
        let snap = inst.snapshot()?;
        let mut copy = AosInstance::restore(module, *limits, &snap)?;
        let msg_json = genesis::message_json(message, None, env)?;
        match copy.handle(&msg_json, &env.env_json) {
            Ok(out) => genesis::parse_result(&out, env),
            Err(e) => Ok(genesis::failure(&e.to_string())),
        }
    }
}

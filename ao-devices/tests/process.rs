//! `process@1.0`, `scheduler@1.0` and `genesis-wasm@1.0` end to end through the resolver, with
//! HyperBEAM's aos module (`aos-2-pure-xs`, exnref translation) and ANS-104-signed messages as
//! aoconnect sends them. Ports the process acceptance tests of devices.md §9 that need no
//! `patch@1.0`/`stack@1.0`, plus concurrency, isolation, supervision and recovery.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ao_core::wallet::Wallet;
use ao_core::{MemoryStore, Message, Resolver, Store, Value, cache};
use ao_devices::process::{ProcessOptions, Processes};
use ao_wasm::{CompiledModule, WasmConfig, WasmEngine};

fn fixture(path: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../shared/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {p}: {e}"))
}

type Wallets = std::sync::Mutex<Vec<(String, Arc<Wallet>)>>;

fn wallet(name: &str) -> Arc<Wallet> {
    static W: OnceLock<Wallets> = OnceLock::new();
    let cache = W.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    if let Some((_, w)) = c.iter().find(|(n, _)| n == name) {
        return w.clone();
    }
    let w = Arc::new(Wallet::from_jwk(&fixture(&format!("wallets/{name}"))).unwrap());
    c.push((name.to_owned(), w.clone()));
    w
}

/// One engine for the whole test binary, with the aos module kept compiled.
fn engine() -> (WasmEngine, &'static Vec<u8>) {
    static E: OnceLock<(WasmEngine, Vec<u8>, Arc<CompiledModule>)> = OnceLock::new();
    let (e, bytes, _) = E.get_or_init(|| {
        let e = WasmEngine::new(WasmConfig::default()).unwrap();
        let bytes = fixture("wasm/aos-2-pure-xs.exnref.wasm");
        let m = e.compile(&bytes).unwrap();
        (e, bytes, m)
    });
    (e.clone(), bytes)
}

struct Node {
    resolver: Resolver,
    rt: Arc<Processes>,
    store: Arc<dyn Store>,
    module: String,
    client: Arc<Wallet>,
}

fn node_on(store: Arc<dyn Store>, options: ProcessOptions) -> Node {
    node_with(engine().0, store, options)
}

fn node_with(wasm: WasmEngine, store: Arc<dyn Store>, options: ProcessOptions) -> Node {
    let bytes = engine().1;
    let module = cache::write_message(
        store.as_ref(),
        &Message::new()
            .with("body", bytes.clone())
            .with("content-type", "application/wasm")
            .with("data-protocol", "ao")
            .with("type", "Module")
            .with(
                "module-format",
                "wasm64-unknown-emscripten-draft_2024_02_15",
            )
            .with("memory-limit", "1-gb"),
    )
    .unwrap();
    let node_wallet = wallet("test-wallet.json");
    let rt = Arc::new(Processes::new(
        store.clone(),
        node_wallet.clone(),
        wasm,
        options,
    ));
    let resolver = Resolver::builder(ao_devices::builtin().build())
        .store(store.clone())
        .extension(node_wallet)
        .extension(rt.clone())
        .build();
    Node {
        resolver,
        rt,
        store,
        module,
        client: wallet("key-1.json"),
    }
}

fn node(options: ProcessOptions) -> Node {
    node_on(Arc::new(MemoryStore::new()), options)
}

impl Node {
    fn process_message(&self, name: &str) -> Message {
        let addr = self.rt.scheduler().address().to_owned();
        let m = Message::new()
            .with("device", "process@1.0")
            .with("scheduler-device", "scheduler@1.0")
            .with("push-device", "push@1.0")
            .with("execution-device", "genesis-wasm@1.0")
            .with("authority", addr.as_str())
            .with("scheduler", addr.as_str())
            .with("module", self.module.as_str())
            .with("name", name)
            .with("data-protocol", "ao")
            .with("type", "Process")
            .with("variant", "ao.N.1")
            .with("data", "1984");
        ao_core::ans104::commit(&m, &self.client).unwrap()
    }

    fn eval_message(&self, pid: &str, code: &str) -> Message {
        let m = Message::new()
            .with("target", pid)
            .with("action", "Eval")
            .with("data-protocol", "ao")
            .with("type", "Message")
            .with("variant", "ao.N.1")
            .with("data", code);
        ao_core::ans104::commit(&m, &self.client).unwrap()
    }

    async fn spawn(&self, name: &str) -> String {
        let p = self.process_message(name);
        let out = self
            .resolver
            .resolve(p.clone(), p.with("path", "push"))
            .await
            .unwrap();
        let a = out.as_message().unwrap();
        assert_eq!(a.get("slot"), Some(&Value::Integer(0)));
        a.get_str("process").unwrap().to_owned()
    }

    /// `POST /<pid>~process@1.0/push` of an Eval as aoconnect sends it (the item's keys are
    /// merged into the loaded process, as the HyperPATH rules do).
    async fn try_push(&self, pid: &str, code: &str) -> ao_core::Result<Value> {
        let msg = self.eval_message(pid, code);
        let mut base = cache::read_message(self.store.as_ref(), pid)
            .unwrap()
            .unwrap();
        for (k, v) in msg.iter() {
            base.insert(k.clone(), v.clone());
        }
        self.resolver
            .resolve(base, msg.with("path", "push").with("method", "POST"))
            .await
    }

    /// [`Node::try_push`] that succeeds: the slot and the results.
    async fn push(&self, pid: &str, code: &str) -> (u64, Message) {
        let out = self.try_push(pid, code).await.unwrap();
        let m = out.as_message().unwrap().clone();
        let slot = m.get("slot").and_then(Value::as_integer).unwrap() as u64;
        (slot, m.get_message("results").unwrap().clone())
    }

    async fn eval(&self, pid: &str, code: &str) -> String {
        let (_, results) = self.push(pid, code).await;
        data(&results)
    }

    async fn path(&self, p: &str) -> Value {
        self.resolver.resolve_path(p).await.unwrap()
    }
}

fn data(results: &Message) -> String {
    match results.get("data") {
        Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Integer(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// A redb store in a data directory (opened again after a node let go of it).
fn redb_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(ao_store::RedbStore::open(ao_store::StoreConfig::in_data_dir(dir)).unwrap())
}

/// Waits (at most 10 s) until a dropped node has let go of `store`, so it can be reopened.
async fn node_released(store: &Arc<dyn Store>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(store) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn opts() -> ProcessOptions {
    ProcessOptions::default()
}

/// What the HTTP layer adds beside a signed ANS-104 item (the `accept` header every fetch sends,
/// codec choices) is not part of the item: it is neither stored with the process nor scheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_beside_a_signed_item_are_not_scheduled() {
    let n = node(opts());
    let added = |m: Message| {
        m.with("accept", "*/*")
            .with("accept-codec", "httpsig@1.0")
            .with("accept-bundle", "true")
    };
    let p = n.process_message("added-keys");
    let out = n
        .resolver
        .resolve(p.clone(), added(p.clone()).with("path", "push"))
        .await
        .unwrap();
    let pid = out
        .as_message()
        .unwrap()
        .get_str("process")
        .unwrap()
        .to_owned();
    let stored = cache::read_message(n.store.as_ref(), &pid)
        .unwrap()
        .unwrap();
    for k in ["accept", "accept-codec", "accept-bundle"] {
        assert!(stored.get(k).is_none(), "{k} stored with the process");
    }
    assert_eq!(ao_core::verify::verify_signatures(&stored).unwrap(), 1);

    let msg = n.eval_message(&pid, "return 3");
    let mut base = stored.clone();
    for (k, v) in msg.iter() {
        base.insert(k.clone(), v.clone());
    }
    let out = n
        .resolver
        .resolve(
            base,
            added(msg.clone())
                .with("path", "push")
                .with("method", "POST"),
        )
        .await
        .unwrap();
    let slot = out
        .as_message()
        .unwrap()
        .get("slot")
        .and_then(Value::as_integer);
    assert_eq!(slot, Some(1));
    let assignment = n.rt.scheduler().assignment(&pid, 1).unwrap().unwrap();
    let body = assignment.get_message("body").unwrap();
    for k in ["accept", "accept-codec", "accept-bundle"] {
        assert!(body.get(k).is_none(), "{k} scheduled with the message");
    }
    assert_eq!(body.get_str("action"), Some("Eval"));
    assert_eq!(ao_core::verify::verify_signatures(body).unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aos_evals_compute_and_read_back() {
    let n = node(opts());
    let pid = n.spawn("evals").await;
    // aos_compute_test: "return 1+1" → "2", "return 2+2" → "4".
    assert_eq!(n.eval(&pid, "return 1+1").await, "2");
    assert_eq!(n.eval(&pid, "return 2+2").await, "4");
    // Reads by HyperPATH: the state at a slot, and now.
    let v = n
        .path(&format!(
            "/{pid}~process@1.0/compute&slot+integer=1/results/data"
        ))
        .await;
    assert_eq!(v.as_str(), Some("2"));
    let v = n
        .path(&format!("/{pid}~process@1.0/now/results/data"))
        .await;
    assert_eq!(v.as_str(), Some("4"));
    // aoconnect's forms: `/<pid>/slot/current`, `compute/results=N`.
    let v = n.path(&format!("/{pid}/slot/current")).await;
    assert_eq!(v, Value::Integer(2));
    let v = n.path(&format!("/{pid}/compute/results=1/data")).await;
    assert_eq!(v.as_str(), Some("2"));
    // The schedule: three assignments, slot 0 being the process itself.
    let v = n.path(&format!("/{pid}~process@1.0/schedule")).await;
    let s = v.as_message().unwrap();
    let assignments = s.get_message("assignments").unwrap();
    assert_eq!(assignments.len(), 3);
    let zero = assignments.get_message("0").unwrap();
    assert_eq!(zero.get_str("process"), Some(pid.as_str()));
    assert_eq!(
        zero.get_message("body").unwrap().get_str("type"),
        Some("Process")
    );
    assert!(zero.is_committed(), "assignments are signed");
    ao_core::verify::verify_signatures(zero).unwrap();
    assert_eq!(s.get("continues"), Some(&Value::bool(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_messages_are_browsable() {
    let n = node(opts());
    let pid = n.spawn("deep").await;
    // aos_browsable_state_test: Data = {Deep=4, Bool=true} → results/outbox/1/data/Deep = 4.
    let (slot, results) = n
        .push(
            &pid,
            "Send({ Target = ao.id, Action = 'Ping', Data = { Deep = 4, Bool = true } }); return 'sent'",
        )
        .await;
    assert_eq!(data(&results), "sent");
    let v = n
        .path(&format!(
            "/{pid}~process@1.0/compute&slot+integer={slot}/results/outbox/1/data/deep"
        ))
        .await;
    assert_eq!(v, Value::Integer(4));
    let out = results
        .get_message("outbox")
        .unwrap()
        .get_message("1")
        .unwrap();
    assert_eq!(out.get_str("action"), Some("Ping"));
    assert_eq!(out.get_str("from-process"), Some(pid.as_str()));
    assert_eq!(out.get_str("from-image"), Some(n.module.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_eviction_restore_and_replay() {
    // restore_test: "X = 42", "X = 1337", "return X" across a restore → "1337"; with a
    // snapshot every slot, and with none (replay from the start).
    for every in [1, 0] {
        let n = node(opts().with_snapshot_every(every));
        let pid = n.spawn("restore").await;
        n.eval(&pid, "X = 42").await;
        n.eval(&pid, "X = 1337").await;
        n.rt.evict(&pid).await.unwrap();
        assert_eq!(
            n.eval(&pid, "return X").await,
            "1337",
            "snapshot-every {every}"
        );
        // A new runtime on the same store: no live state at all.
        let m = node_on(n.store.clone(), opts().with_snapshot_every(every));
        assert_eq!(m.eval(&pid, "return X").await, "1337");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_and_dry_run() {
    let n = node(opts());
    let pid = n.spawn("now").await;
    n.eval(&pid, "X = 2").await;
    // now_results_test: `now/results/data`.
    let msg = n.eval_message(&pid, "return X * 2");
    n.rt.schedule(&pid, msg).await.unwrap();
    let v = n
        .path(&format!("/{pid}~process@1.0/now/results/data"))
        .await;
    assert_eq!(v.as_str(), Some("4"));
    // A dry run evaluates on a copy: `X = 100` is not kept and takes no slot.
    let before = n.rt.scheduler().current(&pid).unwrap();
    let dry = n.eval_message(&pid, "X = 100; return X");
    let base = n
        .path(&format!("/{pid}~process@1.0/as=execution"))
        .await
        .as_message()
        .unwrap()
        .clone();
    assert_eq!(base.get_str("device"), Some("genesis-wasm@1.0"));
    let out = n
        .resolver
        .resolve(base, dry.with("path", "compute"))
        .await
        .unwrap();
    assert_eq!(data(out.as_message().unwrap()), "100");
    assert_eq!(n.rt.scheduler().current(&pid).unwrap(), before);
    assert_eq!(n.eval(&pid, "return X").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_client_error() {
    let n = node(opts());
    let pid = n.spawn("errors").await;
    // A tampered signature: 400.
    let mut msg = n.eval_message(&pid, "return 1");
    msg.insert("data", "return 2");
    let err = n
        .resolver
        .resolve(
            Message::new().with("device", "scheduler@1.0"),
            msg.with("path", "schedule").with("method", "POST"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    // An unknown process: 404.
    let ghost = "pRoCeSs_iD_0000000000000000000000000000000A";
    let err = n
        .resolver
        .resolve_path(&format!("/~scheduler@1.0/slot?target={ghost}"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 404, "{err}");
    // A slot that is not a number, and one not assigned yet.
    let err = n
        .resolver
        .resolve_path(&format!("/{pid}/compute/results=banana"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    let err = n
        .resolver
        .resolve_path(&format!("/{pid}~process@1.0/compute&slot+integer=9"))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 503, "{err}");
    // A Lua error is a result, not a failure.
    let (_, results) = n.push(&pid, "error('boom')").await;
    assert!(data(&results).contains("boom"));
    assert!(results.get_str("error").unwrap().contains("boom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_to_several_processes_keep_slots_contiguous() {
    let n = Arc::new(node(opts().with_snapshot_every(8)));
    let mut pids = Vec::new();
    for i in 0..4 {
        pids.push(n.spawn(&format!("counter-{i}")).await);
    }
    let per_process = 12;
    let mut tasks = Vec::new();
    for pid in &pids {
        for _ in 0..per_process {
            let n = n.clone();
            let pid = pid.clone();
            tasks.push(tokio::spawn(async move {
                let (slot, _) = n.push(&pid, "Count = (Count or 0) + 1; return Count").await;
                (pid, slot)
            }));
        }
    }
    let mut slots: std::collections::HashMap<String, BTreeSet<u64>> = Default::default();
    for t in tasks {
        let (pid, slot) = t.await.unwrap();
        assert!(
            slots.entry(pid).or_default().insert(slot),
            "slot given twice"
        );
    }
    for pid in &pids {
        let got: Vec<u64> = slots[pid].iter().copied().collect();
        let want: Vec<u64> = (1..=per_process).collect();
        assert_eq!(got, want, "slots of {pid}");
        assert_eq!(n.eval(pid, "return Count").await, per_process.to_string());
        // Every slot's result is the counter after that many increments.
        for s in 1..=per_process {
            let v = n.path(&format!("/{pid}/compute/results={s}/data")).await;
            assert_eq!(v, Value::from(s.to_string().as_str()), "{pid} slot {s}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_process_is_stopped_and_does_not_hold_others() {
    let n = Arc::new(node(opts().with_fuel(2_000_000_000)));
    let stuck = n.spawn("stuck").await;
    let other = n.spawn("other").await;
    n.eval(&stuck, "Y = 7").await;
    let looping = {
        let n = n.clone();
        let stuck = stuck.clone();
        tokio::spawn(async move { n.push(&stuck, "while true do end").await })
    };
    // The other process keeps answering while the loop burns its budget.
    for i in 0..3 {
        assert_eq!(n.eval(&other, &format!("return {i}")).await, i.to_string());
    }
    let (_, results) = looping.await.unwrap();
    assert!(
        results.get_str("error").unwrap().contains("budget"),
        "{results:?}"
    );
    // The stuck process resumes from the state before the failed slot.
    assert_eq!(n.eval(&stuck, "return Y").await, "7");
}

/// The node options `wasm-budget=wall-clock` and `process-time-ms` give processes a
/// wall-clock budget (epoch interruption) instead of fuel, with the same guarantees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_budget_from_node_options_stops_a_runaway_process() {
    let opts = Message::new()
        .with("wasm-budget", "wall-clock")
        .with("process-time-ms", "300");
    let engine = WasmEngine::new(WasmConfig::from_options(&opts).unwrap()).unwrap();
    let options = ProcessOptions::from_options(&opts).unwrap();
    assert_eq!(options.time, Duration::from_millis(300));
    let n = Arc::new(node_with(engine, Arc::new(MemoryStore::new()), options));
    let stuck = n.spawn("stuck").await;
    let other = n.spawn("other").await;
    n.eval(&stuck, "Y = 7").await;
    let looping = {
        let n = n.clone();
        let stuck = stuck.clone();
        tokio::spawn(async move { n.push(&stuck, "while true do end").await })
    };
    for i in 0..3 {
        assert_eq!(n.eval(&other, &format!("return {i}")).await, i.to_string());
    }
    let (_, results) = looping.await.unwrap();
    let error = results.get_str("error").unwrap();
    assert!(error.contains("time budget of 300 ms"), "{results:?}");
    assert_eq!(n.eval(&stuck, "return Y").await, "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_from_its_last_good_state() {
    let n = node(opts().with_snapshot_every(2));
    let pid = n.spawn("crashy").await;
    let other = n.spawn("bystander").await;
    for i in 1..=3 {
        n.eval(&pid, &format!("Z = {i}")).await;
    }
    n.eval(&other, "W = 'fine'").await;
    n.rt.inject_panic(&pid).await.unwrap();
    // The panic is caught at the actor boundary; the next request is served by a restarted
    // actor that rebuilt the state (snapshot at slot 2, then a replay of slot 3).
    let mut restarted = false;
    for _ in 0..50 {
        if n.rt
            .stats(&pid)
            .unwrap()
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted);
    assert_eq!(n.eval(&pid, "return Z").await, "3");
    assert_eq!(n.eval(&other, "return W").await, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_survives_a_restart_and_the_chain_continues() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let n = node_on(store.clone(), opts());
    let pid = n.spawn("durable").await;
    n.eval(&pid, "A = 1").await;
    n.eval(&pid, "A = A + 1").await;
    let before = ao_devices::scheduler::server::recover(store.as_ref(), &pid)
        .unwrap()
        .unwrap();
    drop(n);
    let m = node_on(store.clone(), opts());
    let (slot, results) = m.push(&pid, "return A").await;
    assert_eq!(slot, 3);
    assert_eq!(data(&results), "2");
    // The new assignment's chain extends the recovered one.
    let a = m.rt.scheduler().assignment(&pid, 3).unwrap().unwrap();
    let body = a.get_message("body").unwrap();
    let mid = ao_core::id::id_string(body, ao_core::IdScope::Signed).unwrap();
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, &before.1);
    sha2::Digest::update(&mut h, mid.as_bytes());
    let want = ao_core::util::b64u(&sha2::Digest::finalize(h));
    assert_eq!(a.get_str("hash-chain"), Some(want.as_str()));
    // aos-2 schedule form.
    let v = m
        .resolver
        .resolve_path(&format!(
            "/{pid}~process@1.0/schedule?from+integer=1&to+integer=2&accept=application/aos-2"
        ))
        .await
        .unwrap();
    let doc = v.as_message().unwrap();
    let json: serde_json::Value = serde_json::from_str(doc.get_str("body").unwrap()).unwrap();
    assert_eq!(json["edges"].as_array().unwrap().len(), 2);
    assert_eq!(json["edges"][0]["cursor"], "1");
    assert_eq!(json["page_info"]["has_next_page"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawning_twice_keeps_one_slot_zero() {
    let n = Arc::new(node(opts()));
    let p = n.process_message("twice");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (n, p) = (n.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            let out = n
                .resolver
                .resolve(p.clone(), p.with("path", "push"))
                .await
                .unwrap();
            let a = out.as_message().unwrap().clone();
            (
                a.get("slot").cloned(),
                a.get_str("process").unwrap().to_owned(),
            )
        }));
    }
    let mut pid = String::new();
    for t in tasks {
        let (slot, p) = t.await.unwrap();
        assert_eq!(slot, Some(Value::Integer(0)));
        pid = p;
    }
    assert_eq!(n.rt.scheduler().current(&pid).unwrap(), Some(0));
    assert_eq!(n.eval(&pid, "return 'once'").await, "once");
    assert_eq!(n.rt.scheduler().current(&pid).unwrap(), Some(1));
}

/// The signed assignments of `pid` from `from` to `to`, as `schedule` GET serves them; each
/// signature is verified and made by the node.
async fn verified_schedule(n: &Node, pid: &str, from: u64, to: u64) -> Vec<Message> {
    let v = n
        .resolver
        .resolve_path(&format!(
            "/{pid}~process@1.0/schedule?from+integer={from}&to+integer={to}"
        ))
        .await
        .unwrap();
    let list = v.as_message().unwrap().get_message("assignments").unwrap();
    let node_address = n.rt.scheduler().address().to_owned();
    (from..=to)
        .map(|s| {
            let a = list.get_message(&s.to_string()).unwrap().clone();
            assert_eq!(a.get("slot"), Some(&Value::Integer(s as i64)));
            assert_eq!(
                ao_core::verify::verify_signatures(&a).unwrap(),
                1,
                "slot {s}"
            );
            let committers: Vec<String> = a
                .commitments()
                .unwrap()
                .iter()
                .filter_map(|(_, c)| Some(c.as_message()?.get_str("committer")?.to_owned()))
                .collect();
            assert_eq!(committers, std::slice::from_ref(&node_address), "slot {s}");
            a
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_acknowledged_before_signing_are_signed_after_a_restart() {
    use ao_devices::scheduler::server::assignment_path;
    let dir = tempfile::tempdir().unwrap();
    let open = || redb_store(dir.path());
    let store = open();
    let n = node_on(store.clone(), opts());
    let pid = n.spawn("unsigned-then-signed").await;
    // The signer is held: messages are acknowledged with their slots and computed, but their
    // assignments are not signed.
    n.rt.scheduler().pause_signing(true);
    assert_eq!(n.push(&pid, "A = 1").await.0, 1);
    assert_eq!(n.push(&pid, "A = A + 1").await.0, 2);
    let (slot, results) = n.push(&pid, "return A").await;
    assert_eq!((slot, data(&results)), (3, "2".to_owned()));
    let mut chains = Vec::new();
    for s in 1..=3 {
        let a = cache::read_message(store.as_ref(), &assignment_path(&pid, s))
            .unwrap()
            .unwrap();
        assert!(a.commitments().is_none(), "slot {s} is stored unsigned");
        chains.push(a.get_str("hash-chain").unwrap().to_owned());
    }
    assert_eq!(n.rt.scheduler().signing_backlog(), 3);
    // What serves assignments to others waits for the signature instead of serving these.
    let path = format!("/{pid}~process@1.0/schedule?from+integer=0&to+integer=3");
    let read = n.resolver.resolve_path(&path);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), read)
            .await
            .is_err(),
        "an unsigned assignment was served"
    );
    // Stop the node as it is (the signer never ran) and reopen the store.
    drop(n);
    node_released(&store).await;
    drop(store);
    let store = open();
    let m = node_on(store.clone(), opts());
    let signed = verified_schedule(&m, &pid, 0, 3).await;
    for (a, chain) in signed[1..].iter().zip(&chains) {
        assert_eq!(a.get_str("hash-chain"), Some(chain.as_str()));
    }
    for s in 0..=3 {
        let a = cache::read_message(store.as_ref(), &assignment_path(&pid, s))
            .unwrap()
            .unwrap();
        assert_eq!(ao_core::verify::verify_signatures(&a).unwrap(), 1);
    }
    assert_eq!(m.rt.scheduler().signing_backlog(), 0);
    // The schedule continues after the re-signed slots.
    let (slot, results) = m.push(&pid, "return A + 40").await;
    assert_eq!((slot, data(&results)), (4, "42".to_owned()));
    verified_schedule(&m, &pid, 4, 4).await;
}

/// A store with injected faults: deferred (derived) writes can be made to vanish, as a crash
/// may lose the latest of them, and the next durable batch can be made to fail (slowly);
/// everything else goes to the inner store.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Store>,
    lose: std::sync::atomic::AtomicBool,
    fail_next_apply: std::sync::atomic::AtomicBool,
}

impl Faulty {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            lose: false.into(),
            fail_next_apply: false.into(),
        }
    }
}

impl Store for Faulty {
    fn apply(&self, ops: Vec<ao_core::store::Op>) -> ao_core::Result<()> {
        if self
            .fail_next_apply
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(300));
            return Err(ao_core::Error::Store("injected write failure".into()));
        }
        self.inner.apply(ops)
    }
    fn apply_deferred(&self, ops: Vec<ao_core::store::Op>) -> ao_core::Result<()> {
        if self.lose.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.apply_deferred(ops)
    }
    fn get_raw(&self, path: &str) -> ao_core::Result<Option<ao_core::store::Entry>> {
        self.inner.get_raw(path)
    }
    fn children(&self, path: &str) -> ao_core::Result<Vec<String>> {
        self.inner.children(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_lost_in_a_crash_are_recomputed_from_the_assignments() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let lossy = Arc::new(Faulty::new(inner.clone()));
    let n = node_on(lossy.clone(), opts().with_snapshot_every(2));
    let pid = n.spawn("recomputed").await;
    for i in 1..=3 {
        assert_eq!(
            n.eval(&pid, "C = (C or 0) + 1; return C").await,
            i.to_string()
        );
    }
    // (Results are written just after the reply.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ao_devices::process::runtime::stored_latest(inner.as_ref(), &pid).unwrap() != Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "slot 3's result was never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // From here on the results and snapshots written never reach the store, as if the node
    // crashed before they were on disk; the messages themselves are durably scheduled.
    lossy.lose.store(true, std::sync::atomic::Ordering::SeqCst);
    for i in 4..=7 {
        assert_eq!(
            n.eval(&pid, "C = (C or 0) + 1; return C").await,
            i.to_string()
        );
    }
    drop(n);
    assert_eq!(
        ao_devices::process::runtime::stored_latest(inner.as_ref(), &pid).unwrap(),
        Some(3)
    );
    // Restarted on what the store kept: slots 4–7 are computed again from their assignments,
    // and the state is the one of a run without the loss.
    let m = node_on(inner.clone(), opts().with_snapshot_every(2));
    assert_eq!(m.eval(&pid, "return C").await, "7");
    let r = m
        .path(&format!(
            "/{pid}~process@1.0/compute&slot+integer=5/results/data"
        ))
        .await;
    assert_eq!(r.as_str(), Some("5"));
    assert_eq!(
        ao_devices::process::runtime::stored_latest(inner.as_ref(), &pid).unwrap(),
        Some(8)
    );
}

/// A slot is computed while its assignment is being written; when that write fails, the
/// message is refused and what was computed from it is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_whose_write_fails_is_given_up_with_what_was_computed_from_it() {
    let faulty = Arc::new(Faulty::new(Arc::new(MemoryStore::new())));
    let n = node_on(faulty.clone(), opts());
    let pid = n.spawn("given-up").await;
    assert_eq!(n.eval(&pid, "C = (C or 0) + 1; return C").await, "1");
    // The background signer's write of slot 1 must not be the one that fails.
    while n.rt.scheduler().signing_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The write of the next slot fails after 300 ms, long after its evaluation.
    faulty
        .fail_next_apply
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let msg = n.eval_message(&pid, "C = C + 100; return C");
    let err = n
        .resolver
        .resolve(
            Message::new().with("device", "process@1.0"),
            msg.with("path", "push").with("method", "POST"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected write failure"), "{err}");
    // The slot goes to the next message, evaluated on the state before the failed one.
    let (slot, results) = n.push(&pid, "C = (C or 0) + 1; return C").await;
    assert_eq!((slot, data(&results)), (2, "2".to_owned()));
    assert_eq!(n.eval(&pid, "return C").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_signs_the_queued_assignments_first() {
    use ao_devices::scheduler::server::assignment_path;
    let dir = tempfile::tempdir().unwrap();
    let open = || redb_store(dir.path());
    let store = open();
    let n = node_on(store.clone(), opts());
    let pid = n.spawn("signed-before-stopping").await;
    // Acknowledged, computed, not signed: the signer is held.
    n.rt.scheduler().pause_signing(true);
    for i in 1..=5 {
        assert_eq!(n.push(&pid, &format!("B = {i}")).await.0, i);
    }
    assert_eq!(n.rt.scheduler().signing_backlog(), 5);
    // Stopping: the queue is signed (the hold released) and written before the store closes.
    let rt = n.rt.clone();
    tokio::task::spawn_blocking(move || rt.scheduler().finish_signing(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.rt.scheduler().signing_backlog(), 0);
    for s in 0..=5 {
        let a = cache::read_message(store.as_ref(), &assignment_path(&pid, s))
            .unwrap()
            .unwrap();
        assert_eq!(
            ao_core::verify::verify_signatures(&a).unwrap(),
            1,
            "slot {s}"
        );
    }
    drop(n);
    node_released(&store).await;
    drop(store);
    // The next start finds nothing to re-sign, and serves the schedule at once.
    let store = open();
    let m = node_on(store.clone(), opts());
    assert_eq!(m.rt.scheduler().signing_backlog(), 0);
    m.rt.scheduler().pause_signing(true);
    let signed = tokio::time::timeout(Duration::from_secs(10), verified_schedule(&m, &pid, 0, 5))
        .await
        .expect("the schedule waited for a signer that is held");
    assert_eq!(signed.len(), 6);
    // A stop with a signer that cannot finish in time says so instead of hanging.
    m.rt.scheduler().pause_signing(false);
    let pid2 = m.spawn("left-for-the-next-start").await;
    m.rt.scheduler().pause_signing(true);
    assert_eq!(m.push(&pid2, "C = 1").await.0, 1);
    assert!(m.rt.scheduler().signing_backlog() > 0);
    let rt = m.rt.clone();
    let stopped = tokio::task::spawn_blocking(move || {
        rt.scheduler().finish_signing(Duration::from_millis(0))
    })
    .await
    .unwrap();
    assert!(stopped.unwrap_err().to_string().contains("left unsigned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_serves_verified_signed_assignments_under_load() {
    let n = Arc::new(node(opts()));
    let pid = n.spawn("signed-schedule").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (n, pid) = (n.clone(), pid.clone());
        tasks.push(tokio::spawn(async move {
            n.push(&pid, &format!("return {i}")).await.0
        }));
    }
    let mut slots = BTreeSet::new();
    for t in tasks {
        slots.insert(t.await.unwrap());
    }
    assert_eq!(slots, (1..=12).collect());
    // Read at once, while the signer may still be working: every assignment served is signed.
    let signed = verified_schedule(&n, &pid, 0, 12).await;
    let bodies: BTreeSet<String> = signed[1..]
        .iter()
        .map(|a| data(a.get_message("body").unwrap()))
        .collect();
    assert_eq!(bodies, (0..12).map(|i| format!("return {i}")).collect());
    // A schedule POST answers with the signed assignment.
    let msg = n.eval_message(&pid, "return 'posted'");
    let out = n
        .resolver
        .resolve(
            Message::new().with("device", "scheduler@1.0"),
            msg.with("path", "schedule").with("method", "POST"),
        )
        .await
        .unwrap();
    let a = out.as_message().unwrap();
    assert_eq!(a.get("slot"), Some(&Value::Integer(13)));
    assert_eq!(ao_core::verify::verify_signatures(a).unwrap(), 1);
}

/// `scheduling-mode: disabled` (a node that computes and serves reads but assigns nothing):
/// a new message is refused with a 503 that says why; what is scheduled still computes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_scheduling_disabled_refuses_new_slots_and_still_computes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let pid = {
        let a = node_on(store.clone(), opts());
        let pid = a.spawn("scheduling-off").await;
        assert_eq!(a.push(&pid, "return 1+1").await.0, 1);
        a.rt.scheduler()
            .finish_signing(Duration::from_secs(60))
            .unwrap();
        pid
    };
    let options =
        ProcessOptions::from_options(&Message::new().with("scheduling-mode", "disabled")).unwrap();
    let b = node_on(store.clone(), options);
    let err = b.try_push(&pid, "return 2+2").await.unwrap_err();
    assert_eq!(err.http_status(), 503, "{err}");
    assert!(err.to_string().contains("disabled") || format!("{err:?}").contains("disabled"));
    let v = b
        .path(&format!("/{pid}~process@1.0/now/results/data"))
        .await;
    assert_eq!(v.as_str(), Some("2"));
    let v = b.path(&format!("/{pid}/slot/current")).await;
    assert_eq!(v, Value::Integer(1));
    // An unknown mode is refused when the node starts.
    assert!(
        ProcessOptions::from_options(&Message::new().with("scheduling-mode", "sometimes")).is_err()
    );
}

/// Two processes whose every `Fan` message sends two more to the other: one push delivers at
/// most `push-max-messages` messages (the chain it leads to included), then answers 429 for the
/// rest, instead of doubling at each hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_delivers_at_most_its_budget() {
    let n = node(opts().with_push_max_messages(6));
    let (a, b) = (n.spawn("fan-a").await, n.spawn("fan-b").await);
    for (me, peer) in [(&a, &b), (&b, &a)] {
        let code = format!(
            "Peer = '{peer}'; Handlers.add('fan', Handlers.utils.hasMatchingTag('Action', 'Fan'), \
             function(m) Send({{ Target = Peer, Action = 'Fan' }}); \
             Send({{ Target = Peer, Action = 'Fan' }}) end); return 'ok'"
        );
        assert_eq!(n.eval(me, &code).await, "ok");
    }
    let out = n
        .try_push(&a, "Send({ Target = Peer, Action = 'Fan' }); return 'go'")
        .await
        .unwrap();
    let text = format!("{out:?}");
    let slot = |pid: &str| {
        let pid = pid.to_owned();
        let n = &n;
        async move {
            match n.path(&format!("/{pid}/slot/current")).await {
                Value::Integer(i) => i,
                other => panic!("{other:?}"),
            }
        }
    };
    // Slots 0 (spawn) and 1 (the handler) on each, 2 the push's own Eval on A: the six
    // messages pushed alternate B, A, B, … depth first.
    let pushed = (slot(&a).await - 2) + (slot(&b).await - 1);
    assert_eq!(pushed, 6, "{text}");
    // The refusals are reported in place, down the chain.
    assert!(text.contains("429"), "{text}");
}

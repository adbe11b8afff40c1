//! `push@1.0` against a fake `process@1.0` that keeps schedules in memory and computes results
//! from a tiny script (the real process and scheduler devices live elsewhere; this one follows
//! the same key contract: `schedule` with `{method: POST, body: <signed message>}` answers the
//! assigned `slot`, `compute` with a `slot` answers the state with its `results`, and `push`
//! is handed to the push device).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ao_core::wallet::Wallet;
use ao_core::{
    BoxFuture, Context, Device, Error, IdScope, MemoryStore, Message, Resolver, Result, Store,
    Value, msg,
};
use ao_devices::push::process_id;
use ao_devices::stack::get_path;
use futures::executor::block_on;

const WALLETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/wallets");

fn wallet(name: &str) -> Wallet {
    Wallet::load(&std::path::Path::new(WALLETS).join(name)).expect("fixture wallet")
}

#[derive(Debug, Default)]
struct Schedules {
    by_process: HashMap<String, Vec<Message>>,
    /// Processes whose scheduler "lives on another node": `schedule` redirects.
    remote: HashSet<String>,
}

/// The fake `process@1.0`.
#[derive(Debug, Clone)]
struct FakeProcess(Arc<Mutex<Schedules>>);

impl FakeProcess {
    fn schedule(&self, base: &Message, req: &Message) -> Result<Value> {
        let pid = process_id(base)?;
        if req.get_str("method") != Some("POST") {
            return Err(Error::BadRequest("schedule: POST only".into()));
        }
        let body = req
            .get_message("body")
            .cloned()
            .ok_or_else(|| Error::BadRequest("schedule: no body".into()))?;
        let mut s = self.0.lock().unwrap();
        if s.remote.contains(&pid) {
            return Ok(Value::Message(msg! {
                "status" => 307i64,
                "location" => format!("https://elsewhere.example/{pid}/schedule"),
            }));
        }
        let list = s.by_process.entry(pid.clone()).or_default();
        list.push(body.clone());
        Ok(Value::Message(msg! {
            "status" => 200i64,
            "slot" => (list.len() - 1) as i64,
            "process" => pid,
            "body" => body,
        }))
    }

    fn compute(&self, base: &Message, req: &Message) -> Result<Value> {
        let pid = process_id(base)?;
        let slot = req
            .get("slot")
            .and_then(Value::as_integer)
            .ok_or_else(|| Error::BadRequest("compute: no slot".into()))?;
        let message = self
            .0
            .lock()
            .unwrap()
            .by_process
            .get(&pid)
            .and_then(|l| l.get(usize::try_from(slot).ok()?).cloned())
            .ok_or_else(|| Error::status(503, "No assignment found for next slot."))?;
        let from = message.get_str("from-process").unwrap_or("").to_owned();
        let mut outbox = Message::new();
        let data = match message.get_str("action") {
            Some("ping") => {
                outbox.insert("1", msg! { "target" => from, "action" => "pong" });
                "pinged"
            }
            Some("echo") => {
                outbox.insert("1", msg! { "target" => from, "action" => "echo" });
                "echoed"
            }
            Some("pong") => "GOT PONG",
            _ => {
                if let Some(to) = message.get_str("send-to") {
                    outbox.insert(
                        "1",
                        msg! { "target" => format!("{to}?hint=local"), "action" => message.get_str("send-action").unwrap_or("ping") },
                    );
                }
                if let Some(extra) = message.get_message("extra") {
                    for (k, v) in extra.iter() {
                        outbox.insert(k.clone(), v.clone());
                    }
                }
                "sent"
            }
        };
        let results = msg! { "data" => data, "outbox" => outbox };
        Ok(Value::Message(
            base.clone().with("at-slot", slot).with("results", results),
        ))
    }
}

impl Device for FakeProcess {
    fn id(&self) -> &str {
        "process@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        match key {
            "schedule" => {
                let out = self.schedule(base, req);
                Some(Box::pin(async move { out }))
            }
            "compute" => {
                let out = self.compute(base, req);
                Some(Box::pin(async move { out }))
            }
            "push" => Some(Box::pin(async move {
                let mut as_push = base.clone().with("device", "push@1.0");
                if !as_push.contains("process") {
                    as_push.insert("process", base.clone());
                }
                ctx.resolve(as_push, req.clone()).await
            })),
            _ => None,
        }
    }
}

struct World {
    r: Resolver,
    store: Arc<dyn Store>,
    schedules: Arc<Mutex<Schedules>>,
    node: Wallet,
    a: String,
    b: String,
}

fn world_with(node_wallet: bool) -> World {
    let schedules = Arc::new(Mutex::new(Schedules::default()));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let node = wallet("key-1.json");
    let mut builder = Resolver::builder(
        common::registry()
            .replace(FakeProcess(schedules.clone()))
            .build(),
    )
    .store(store.clone());
    if node_wallet {
        builder = builder.extension(Arc::new(wallet("key-1.json")));
    }
    let r = builder.build();
    let owner = wallet("key-2.json");
    let mut ids = Vec::new();
    for name in ["A", "B"] {
        let p = ao_core::signature::commit(
            &msg! { "device" => "process@1.0", "type" => "Process", "name" => name },
            &owner,
        )
        .unwrap();
        ao_core::cache::write_message(store.as_ref(), &p).unwrap();
        ids.push(ao_core::id::id_string(&p, IdScope::All).unwrap());
    }
    World {
        r,
        store,
        schedules,
        node,
        b: ids.pop().unwrap(),
        a: ids.pop().unwrap(),
    }
}

fn world() -> World {
    world_with(true)
}

impl World {
    fn load(&self, id: &str) -> Message {
        ao_core::cache::read_message(self.store.as_ref(), id)
            .unwrap()
            .expect("stored process")
    }

    fn push(&self, pid: &str, req: Message) -> Result<Value> {
        block_on(self.r.resolve(self.load(pid), req.with("path", "push")))
    }

    fn user_message(&self, extra: Message) -> Message {
        let mut m = msg! { "type" => "Message" };
        for (k, v) in extra.iter() {
            m.insert(k.clone(), v.clone());
        }
        ao_core::signature::commit(&m, &wallet("key-2.json")).unwrap()
    }

    fn scheduled(&self, pid: &str) -> Vec<Message> {
        self.schedules
            .lock()
            .unwrap()
            .by_process
            .get(pid)
            .cloned()
            .unwrap_or_default()
    }
}

fn as_msg(v: Result<Value>) -> Message {
    match v {
        Ok(Value::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn text(m: &Message, path: &str) -> Option<String> {
    get_path(m, path).and_then(|v| match v {
        Value::Integer(i) => Some(i.to_string()),
        other => other.as_str().map(str::to_owned),
    })
}

#[test]
fn ping_pong_between_two_local_processes() {
    let w = world();
    let first = w.user_message(msg! { "send-to" => w.b.as_str() });
    let out = as_msg(w.push(&w.a, msg! { "body" => first.clone() }));

    // The user's message was scheduled on A at slot 0 and pushed.
    assert_eq!(text(&out, "slot").as_deref(), Some("0"));
    assert_eq!(text(&out, "process").as_deref(), Some(w.a.as_str()));
    // result-depth 1: A's results are included.
    assert_eq!(text(&out, "data").as_deref(), Some("sent"));

    // A → B at B's slot 0, which answered with a pong to A at A's slot 1.
    assert_eq!(text(&out, "1/target").as_deref(), Some(w.b.as_str()));
    assert_eq!(text(&out, "1/slot").as_deref(), Some("0"));
    assert_eq!(
        text(&out, "1/resulted-in/process").as_deref(),
        Some(w.b.as_str())
    );
    assert_eq!(text(&out, "1/resulted-in/slot").as_deref(), Some("0"));
    // Below depth 1 only the tree of slots is returned.
    assert_eq!(text(&out, "1/resulted-in/data"), None);
    assert_eq!(
        text(&out, "1/resulted-in/1/target").as_deref(),
        Some(w.a.as_str())
    );
    assert_eq!(text(&out, "1/resulted-in/1/slot").as_deref(), Some("1"));
    assert_eq!(
        text(&out, "1/resulted-in/1/resulted-in/slot").as_deref(),
        Some("1")
    );
    assert_eq!(
        get_path(&out, "1/resulted-in/1/resulted-in/1"),
        None,
        "the pong produced no further messages"
    );

    // What the schedulers received: signed by the node, with the origin keys.
    let on_b = w.scheduled(&w.b);
    assert_eq!(on_b.len(), 1);
    let ping = &on_b[0];
    assert_eq!(ping.get_str("action"), Some("ping"));
    assert_eq!(ping.get_str("from-process"), Some(w.a.as_str()));
    assert_eq!(ping.get_str("type"), Some("Message"));
    assert_eq!(ping.get_str("data-protocol"), Some("ao"));
    assert_eq!(ping.get_str("variant"), Some("ao.N.1"));
    assert_eq!(
        ping.get_str("target"),
        Some(format!("{}?hint=local", w.b).as_str())
    );
    assert!(ao_core::message_device::verify(ping, &Message::new()).unwrap());
    assert_eq!(
        ao_core::message_device::committers(ping),
        vec![w.node.address_string()]
    );
    assert_eq!(
        text(&out, "1/id"),
        Some(ao_core::id::id_string(ping, IdScope::All).unwrap())
    );

    let on_a = w.scheduled(&w.a);
    assert_eq!(on_a.len(), 2);
    assert_eq!(on_a[0], first);
    assert_eq!(on_a[1].get_str("action"), Some("pong"));
    assert_eq!(on_a[1].get_str("from-process"), Some(w.b.as_str()));
    assert!(ao_core::message_device::verify(&on_a[1], &Message::new()).unwrap());
}

#[test]
fn push_of_an_assigned_slot_and_result_depth() {
    let w = world();
    w.schedules.lock().unwrap().by_process.insert(
        w.a.clone(),
        vec![w.user_message(msg! { "send-to" => w.b.as_str() })],
    );
    let out = as_msg(w.push(&w.a, msg! { "slot" => 0i64, "result-depth" => 0i64 }));
    assert_eq!(text(&out, "data"), None);
    assert_eq!(
        text(&out, "1/resulted-in/1/resulted-in/slot").as_deref(),
        Some("1")
    );
    assert_eq!(w.scheduled(&w.b).len(), 1);
    assert_eq!(w.scheduled(&w.a).len(), 2);

    let out = as_msg(w.push(&w.a, msg! { "slot" => 1i64, "result-depth" => 2i64 }));
    // Slot 1 is the pong: no outbox, just its results.
    assert_eq!(text(&out, "data").as_deref(), Some("GOT PONG"));
    assert_eq!(text(&out, "slot").as_deref(), Some("1"));
}

#[test]
fn failed_entries_are_reported_in_place() {
    let w = world();
    w.schedules.lock().unwrap().remote.insert(w.b.clone());
    let missing = "x".repeat(43);
    let msg0 = w.user_message(msg! {
        "send-to" => w.b.as_str(),
        "extra" => msg! {
            "2" => msg! { "data" => "no target" },
            "3" => msg! { "target" => missing.as_str(), "data" => "nobody" },
            "4" => "not a message",
        },
    });
    w.schedules
        .lock()
        .unwrap()
        .by_process
        .insert(w.a.clone(), vec![msg0]);
    let out = as_msg(w.push(&w.a, msg! { "slot" => 0i64 }));
    // B's scheduler is remote: a typed 501.
    assert_eq!(text(&out, "1/response").as_deref(), Some("error"));
    assert_eq!(text(&out, "1/status").as_deref(), Some("501"));
    assert_eq!(
        text(&out, "1/details/error").as_deref(),
        Some("remote-push-unsupported")
    );
    assert!(text(&out, "1/details/location").is_some());
    // No target, and a non-message entry: 422.
    assert_eq!(text(&out, "2/status").as_deref(), Some("422"));
    assert_eq!(text(&out, "2/outbox-index").as_deref(), Some("2"));
    assert_eq!(text(&out, "4/status").as_deref(), Some("422"));
    // A target that is not in the store: 404.
    assert_eq!(text(&out, "3/status").as_deref(), Some("404"));
    assert_eq!(
        text(&out, "3/reason").as_deref(),
        Some("Could not access target process!")
    );
    assert!(w.scheduled(&w.b).is_empty());
}

#[test]
fn remote_scheduler_for_the_initial_message_is_a_typed_error() {
    let w = world();
    w.schedules.lock().unwrap().remote.insert(w.a.clone());
    let err = w
        .push(
            &w.a,
            msg! { "body" => w.user_message(msg! { "data" => "hi" }) },
        )
        .unwrap_err();
    match err {
        Error::Status {
            status: 501,
            body: Value::Message(body),
        } => assert_eq!(body.get_str("error"), Some("remote-push-unsupported")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_spawn_answers_its_assignment() {
    let w = world();
    let spawn = w.user_message(msg! { "type" => "Process", "name" => "C" });
    let out = as_msg(w.push(&w.a, msg! { "body" => spawn.clone() }));
    assert_eq!(text(&out, "slot").as_deref(), Some("0"));
    assert_eq!(out.get_message("body"), Some(&spawn));
}

#[test]
fn endless_echo_stops_at_the_depth_limit() {
    let w = world();
    let first = w.user_message(msg! { "send-to" => w.b.as_str(), "send-action" => "echo" });
    let out = as_msg(w.push(&w.a, msg! { "body" => first }));
    // Walk down the tree to the entry that failed.
    let mut node = out;
    let mut hops = 0;
    let failure = loop {
        let entry = node.get_message("1").cloned().expect("an outbox entry");
        if entry.get_str("response") == Some("error") {
            break entry;
        }
        node = entry
            .get_message("resulted-in")
            .cloned()
            .expect("a downstream push");
        hops += 1;
    };
    assert!(hops > 1);
    assert!(
        failure
            .get_str("reason")
            .unwrap()
            .contains("deeper than the limit"),
        "{failure:?}"
    );
}

#[test]
fn bad_push_requests() {
    let w = world();
    // Pushing without a wallet when there is something to push.
    let nw = world_with(false);
    nw.schedules.lock().unwrap().by_process.insert(
        nw.a.clone(),
        vec![nw.user_message(msg! { "send-to" => nw.b.as_str() })],
    );
    assert!(matches!(
        nw.push(&nw.a, msg! { "slot" => 0i64 }),
        Err(Error::Internal(_))
    ));
    // Async pushes need a tokio runtime; these tests resolve in a plain executor.
    assert!(matches!(
        w.push(&w.a, msg! { "slot" => 0i64, "push-mode" => "async" }),
        Err(Error::Status { status: 501, .. })
    ));
    assert!(matches!(
        w.push(&w.a, msg! { "slot" => 0i64, "push-mode" => "sideways" }),
        Err(Error::BadRequest(_))
    ));
    // A slot with nothing assigned: the process's error comes back.
    assert!(matches!(
        w.push(&w.a, msg! { "slot" => 9i64 }),
        Err(Error::Status { status: 503, .. })
    ));
    // A body of no known type.
    assert!(matches!(
        w.push(&w.a, msg! { "body" => msg! { "data" => "untyped" } }),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        w.push(&w.a, msg! { "slot" => 0i64, "result-depth" => "deep" }),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn async_push_answers_at_once_and_delivers_in_the_background() {
    let w = world();
    w.schedules.lock().unwrap().by_process.insert(
        w.a.clone(),
        vec![w.user_message(msg! { "send-to" => w.b.as_str() })],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        w.r.resolve(
            w.load(&w.a),
            msg! { "path" => "push", "slot" => 0i64, "push-mode" => "async" },
        )
        .await
    });
    let out = as_msg(out);
    assert_eq!(text(&out, "status").as_deref(), Some("202"));
    assert_eq!(text(&out, "slot").as_deref(), Some("0"));
    assert_eq!(text(&out, "process").as_deref(), Some(w.a.as_str()));
    // No results in the answer: they are computed afterwards.
    assert_eq!(text(&out, "data"), None);
    // The ping reaches B and B's pong comes back to A, without anyone waiting for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while w.scheduled(&w.a).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let on_b = w.scheduled(&w.b);
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].get_str("action"), Some("ping"));
    let on_a = w.scheduled(&w.a);
    assert_eq!(on_a.len(), 2, "the pong is scheduled on A");
    assert_eq!(on_a[1].get_str("action"), Some("pong"));
    assert!(ao_core::message_device::verify(&on_a[1], &Message::new()).unwrap());
}

//! Crash safety: SIGKILL the node while clients push to two processes, restart it on the same
//! data directory, and check that every message acknowledged with a slot is still scheduled
//! at that slot, and that computing to the last slot gives the state a run without the crash
//! gives (a counter equal to the number of messages scheduled); every assignment then served
//! carries a verifying node signature. And a graceful stop (SIGTERM) signs the assignments
//! still queued for the background signer before the store closes.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ao_core::wallet::Wallet;
use ao_core::{Message, ans104};
use serde_json::Value as Json;

fn item(wallet: &Wallet, msg: Message) -> Vec<u8> {
    ans104::encode(&ans104::commit(&msg, wallet).unwrap()).unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Json, String> {
    let r = client
        .post(url)
        .header("content-type", "application/ans104")
        .header("codec-device", "ans104@1.0")
        .header("require-codec", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let module = support::add_module(
        data.path(),
        "wasm/aos-2-pure-xs.exnref.wasm",
        "wasm64-unknown-emscripten-draft_2024_02_15",
    );
    let env = [("HB_PROCESS_SNAPSHOT_EVERY", "5")];
    let node = support::NodeProc::start(data.path(), &env);
    let wallet = Arc::new(
        Wallet::from_jwk(&std::fs::read(support::fixture("wallets/key-1.json")).unwrap()).unwrap(),
    );
    let client = reqwest::Client::new();
    let mut pids = Vec::new();
    for name in ["crash-a", "crash-b"] {
        let p = Message::new()
            .with("device", "process@1.0")
            .with("type", "Process")
            .with("scheduler", node.address.as_str())
            .with("execution-device", "genesis-wasm@1.0")
            .with("module", module.as_str())
            .with("name", name);
        let r = post(&client, &format!("{}/push", node.url), item(&wallet, p))
            .await
            .unwrap();
        pids.push(r["process"].as_str().unwrap().to_owned());
    }

    // Load: four clients per process, each pushing increments until the node dies.
    let acked: Arc<std::sync::Mutex<Vec<(String, u64, String)>>> = Default::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for pid in &pids {
        for _ in 0..4 {
            let (client, wallet, acked, count) =
                (client.clone(), wallet.clone(), acked.clone(), count.clone());
            let (pid, url) = (pid.clone(), format!("{}/{pid}~process@1.0/push", node.url));
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    let m = Message::new()
                        .with("type", "Message")
                        .with("target", pid.as_str())
                        .with("action", "Eval")
                        .with("data", "Count = (Count or 0) + 1; return Count");
                    match post(&client, &url, item(&wallet, m)).await {
                        Ok(r) => {
                            let slot = r["slot"].as_u64().unwrap();
                            let id = r["id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().push((pid.clone(), slot, id));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
    }
    while count.load(Ordering::Relaxed) < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);

    let node = support::NodeProc::start(data.path(), &env);
    let mut by_pid: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for (pid, slot, id) in &acked {
        by_pid.entry(pid).or_default().push((*slot, id));
    }
    for pid in &pids {
        let current: u64 = get_text(&client, &format!("{}/{pid}/slot/current", node.url))
            .await
            .trim()
            .parse()
            .unwrap();
        // Every acknowledged message is at its slot in the recovered schedule.
        let r = client
            .get(format!(
                "{}/{pid}~process@1.0/schedule?from+integer=1&to+integer={current}",
                node.url
            ))
            .header("accept", "application/aos-2")
            .send()
            .await
            .unwrap();
        let schedule: Json = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let scheduled: HashMap<u64, String> = schedule["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["cursor"].as_str().unwrap().parse().unwrap(),
                    e["node"]["message"]["Id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            scheduled.len() as u64,
            current,
            "slots 1..={current} of {pid}"
        );
        for (slot, id) in by_pid.get(pid.as_str()).cloned().unwrap_or_default() {
            assert_eq!(
                scheduled.get(&slot).map(String::as_str),
                Some(id),
                "{pid} slot {slot}"
            );
        }
        // Every assignment served, acknowledged before the crash or not, carries a verifying
        // signature of the node (those left unsigned were signed on restart).
        let r = client
            .get(format!(
                "{}/{pid}~process@1.0/schedule?from+integer=0&to+integer={current}",
                node.url
            ))
            .send()
            .await
            .unwrap();
        let headers = r.headers().clone();
        let reply = support::decode_reply(&headers, r.bytes().await.unwrap());
        let list = reply.get_message("assignments").unwrap();
        assert_eq!(list.len() as u64, current + 1, "{pid}");
        for slot in 0..=current {
            let a = list.get_message(&slot.to_string()).unwrap();
            assert_eq!(
                ao_core::verify::verify_signatures(a).unwrap(),
                1,
                "{pid} slot {slot}"
            );
        }
        // Computing to the last slot: one increment per scheduled message, as without a crash.
        let counter = get_text(
            &client,
            &format!("{}/{pid}~process@1.0/now/results/data", node.url),
        )
        .await;
        assert_eq!(counter, current.to_string(), "{pid}");
    }
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_signs_the_queued_assignments_before_the_store_closes() {
    let data = tempfile::tempdir().unwrap();
    let module = support::add_module(
        data.path(),
        "wasm/aos-2-pure-xs.exnref.wasm",
        "wasm64-unknown-emscripten-draft_2024_02_15",
    );
    let env = [("RUST_LOG", "warn,ao_devices::scheduler=info")];
    let node = support::NodeProc::start(data.path(), &env);
    let wallet = Arc::new(
        Wallet::from_jwk(&std::fs::read(support::fixture("wallets/key-1.json")).unwrap()).unwrap(),
    );
    let client = reqwest::Client::new();
    let p = Message::new()
        .with("device", "process@1.0")
        .with("type", "Process")
        .with("scheduler", node.address.as_str())
        .with("execution-device", "genesis-wasm@1.0")
        .with("module", module.as_str())
        .with("name", "signed-at-stop");
    let r = post(&client, &format!("{}/push", node.url), item(&wallet, p))
        .await
        .unwrap();
    let pid = r["process"].as_str().unwrap().to_owned();
    // A burst of pushes, acknowledged before their assignments are signed; then SIGTERM at
    // once, while the signer is (most likely) still behind.
    let items: Vec<Vec<u8>> = (0..120)
        .map(|i| {
            item(
                &wallet,
                Message::new()
                    .with("type", "Message")
                    .with("target", pid.as_str())
                    .with("action", "Eval")
                    .with("nonce", i.to_string())
                    .with("data", "Count = (Count or 0) + 1; return Count"),
            )
        })
        .collect();
    let url = format!("{}/{pid}~process@1.0/push", node.url);
    let queue = Arc::new(std::sync::Mutex::new(items));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, queue) = (client.clone(), url.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(body) = next else { return };
                post(&client, &url, body).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the node did not stop cleanly: {status:?}"
    );
    let log = std::fs::read_to_string(data.path().join("node.log")).unwrap();
    assert!(!log.contains("stopping with unsigned assignments"), "{log}");
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("still queued before stopping"))
    {
        println!("{line}");
    }
    // The closed store: every assignment signed by the node, nothing left for the next start.
    let store =
        ao_store::RedbStore::open_read_only(ao_store::StoreConfig::in_data_dir(data.path()))
            .unwrap();
    let counter = |which: &str| -> Option<String> {
        ao_core::Store::read(&store, &format!("scheduler-signing/{pid}/{which}"))
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(counter("assigned").as_deref(), Some("120"));
    assert_eq!(counter("signed").as_deref(), Some("120"));
    for slot in 0..=120 {
        let a = ao_core::cache::read_message(&store, &format!("assignments/{pid}/{slot}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            ao_core::verify::verify_signatures(&a).unwrap(),
            1,
            "slot {slot}"
        );
    }
}

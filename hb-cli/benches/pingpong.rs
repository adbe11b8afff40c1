//! Cross-node ping-pong on loopback: two `hb-cli serve` nodes, process `ping` scheduled on A
//! and `pong` on C (each knowing the other's scheduler from its location record). One round
//! trip is one client push to ping on A whose `Send` reaches pong on C through `push@1.0`,
//! whose answer reaches ping on A again; the client's push returns when the whole chain is
//! done. Reports round trips per second (sequential, one client) and the time of one.
//!
//!   cargo bench -p hb-cli --bench pingpong [-- ROUND_TRIPS]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ao_core::{Message, Wallet, ans104, codec, signature};

fn serve(dir: &Path) -> support::NodeProc {
    support::Serve::new(dir).env("RUST_LOG", "error").start()
}

fn item(wallet: &Wallet, msg: Message) -> Vec<u8> {
    ans104::encode(&ans104::commit(&msg, wallet).unwrap()).unwrap()
}

async fn post_item(c: &reqwest::Client, url: &str, body: Vec<u8>) -> serde_json::Value {
    let r = c
        .post(url)
        .header("content-type", "application/ans104")
        .header("codec-device", "ans104@1.0")
        .header("require-codec", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

async fn post_signed(c: &reqwest::Client, url: &str, msg: &Message, wallet: &Wallet) {
    let http = codec::to_http(&signature::commit(msg, wallet).unwrap()).unwrap();
    let mut req = c.post(url);
    for (k, v) in &http.headers {
        req = req.header(k.as_str(), v.as_ref());
    }
    if let Some(b) = http.body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
}

fn process(scheduler: &str, authority: &str, module: &str) -> Message {
    Message::new()
        .with("device", "process@1.0")
        .with("type", "Process")
        .with("scheduler", scheduler)
        .with("authority", authority)
        .with("execution-device", "genesis-wasm@1.0")
        .with("module", module)
}

fn eval(target: &str, code: &str) -> Message {
    Message::new()
        .with("type", "Message")
        .with("target", target)
        .with("action", "Eval")
        .with("data", code)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let aos = "wasm/aos-2-pure-xs.exnref.wasm";
    let format = "wasm64-unknown-emscripten-draft_2024_02_15";
    let module = support::add_module(da.path(), aos, format);
    support::add_module(dc.path(), aos, format);
    let c_node = serve(dc.path());
    std::fs::write(
        da.path().join("config.json"),
        serde_json::json!({ "scheduler-location-notify-peers": [c_node.url] }).to_string(),
    )
    .unwrap();
    let a = serve(da.path());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let user =
        Wallet::from_jwk(&std::fs::read(support::fixture("wallets/key-1.json")).unwrap()).unwrap();
    let wallet_a = Wallet::load(&da.path().join("wallet.json")).unwrap();
    let wallet_c = Wallet::load(&dc.path().join("wallet.json")).unwrap();
    let location = |node: &str| format!("{node}/~scheduler@1.0/location");
    post_signed(
        &c,
        &location(&a.url),
        &Message::new().with("url", a.url.as_str()),
        &wallet_a,
    )
    .await;
    post_signed(
        &c,
        &location(&a.url),
        &Message::new()
            .with("type", "scheduler-location")
            .with("url", c_node.url.as_str())
            .with("nonce", 1i64),
        &wallet_c,
    )
    .await;
    // C learns A's location from A's notification.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .get(format!("{}?address={}", location(&c_node.url), a.address))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "C never learnt A's location");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pong_def = item(&user, process(&c_node.address, &a.address, &module));
    let pong = post_item(&c, &format!("{}/push", a.url), pong_def).await["process"]
        .as_str()
        .unwrap()
        .to_owned();
    let ping_def = item(&user, process(&a.address, &c_node.address, &module));
    let ping = post_item(&c, &format!("{}/push", a.url), ping_def.clone()).await["process"]
        .as_str()
        .unwrap()
        .to_owned();
    post_item(&c, &format!("{}/push", c_node.url), ping_def).await;
    let pong_code = "Handlers.add('ping', Handlers.utils.hasMatchingTag('Action', 'Ping'), \
        function(msg) Send({Target = msg.From, Action = 'Pong', Data = msg.Data}) end) return 1";
    post_item(
        &c,
        &format!("{}/{pong}~process@1.0/push", a.url),
        item(&user, eval(&pong, pong_code)),
    )
    .await;
    let ping_code = "Pongs = 0 Handlers.add('pong', Handlers.utils.hasMatchingTag('Action', 'Pong'), \
        function(msg) Pongs = Pongs + 1 end) return 1";
    let push_ping = format!("{}/{ping}~process@1.0/push", a.url);
    post_item(&c, &push_ping, item(&user, eval(&ping, ping_code))).await;

    // Items are signed before the clock starts: the client's signing is not the node's work.
    let send = |n: usize| {
        item(
            &user,
            eval(
                &ping,
                &format!("Send({{Target = '{pong}', Action = 'Ping', Data = '{n}'}}) return {n}"),
            ),
        )
    };
    let warmup: Vec<Vec<u8>> = (0..5).map(&send).collect();
    for body in warmup {
        post_item(&c, &push_ping, body).await;
    }
    let bodies: Vec<Vec<u8>> = (0..rounds).map(|n| send(1000 + n)).collect();
    let started = Instant::now();
    for body in bodies {
        post_item(&c, &push_ping, body).await;
    }
    let elapsed = started.elapsed();
    let r = c
        .get(format!("{}/{ping}~process@1.0/now/results/data", a.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let count = post_item(&c, &push_ping, item(&user, eval(&ping, "return Pongs"))).await;
    println!("cross-node ping-pong, {rounds} round trips (one client, sequential)");
    println!(
        "  {:.1} round trips/s, {:.1} ms each",
        rounds as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / rounds as f64
    );
    println!("  ping counted pongs: {}", count["raw"]["Output"]);
}

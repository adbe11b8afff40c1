//! A small network of `hb-cli serve` nodes on 127.0.0.1: routing, relaying, route strategies,
//! route administration and peer failures, as operators and clients see them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ao_core::codec;
use ao_core::{Message, Value, Wallet, signature};
use support::{NodeProc, Serve};

/// Starts a node on a free port with its own data directory (and config file, if any).
fn serve(dir: &Path, config: Option<&Path>) -> NodeProc {
    serve_on(dir, config, 0)
}

/// Starts a node on `port` (0: a free one).
fn serve_on(dir: &Path, config: Option<&Path>, port: u16) -> NodeProc {
    let mut serve = Serve::new(dir).port(port);
    if let Some(c) = config {
        serve = serve.config(c);
    }
    serve.start()
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `?k=v` with the value percent-encoded.
fn q(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn get_message(c: &reqwest::Client, url: &str) -> (u16, Message) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (
        status,
        support::decode_reply(&headers, r.bytes().await.unwrap()),
    )
}

async fn post_signed(
    c: &reqwest::Client,
    url: &str,
    msg: &Message,
    wallet: &Wallet,
) -> (u16, String) {
    let http = codec::to_http(&signature::commit(msg, wallet).unwrap()).unwrap();
    let mut req = c.post(url);
    for (k, v) in &http.headers {
        req = req.header(k.as_str(), v.as_ref());
    }
    if let Some(b) = http.body {
        req = req.body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Resolves `/~router@1.0/route?route-path=<path>` `n` times, 16 at a time; the URLs chosen.
async fn route_many(c: &reqwest::Client, node: &str, path: &str, n: usize) -> Vec<String> {
    let url = format!("{node}/~router@1.0/route?route-path={}", q(path));
    let mut out = Vec::with_capacity(n);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (c, url) = (c.clone(), url.clone());
        set.spawn(async move { get(&c, &url).await });
        if set.len() >= 16 || i + 1 == n {
            while let Some(r) = set.join_next().await {
                let (status, body) = r.unwrap();
                assert_eq!(status, 200, "{body}");
                out.push(body);
            }
        }
    }
    out
}

fn count(urls: &[String], prefix: &str) -> usize {
    urls.iter().filter(|u| u.starts_with(prefix)).count()
}

/// Node A routes a template to B (through the `preprocess` request hook), relays to B and C,
/// and picks nodes by strategy; its operator adds routes, nobody else can.
#[tokio::test]
async fn three_nodes_route_relay_and_choose() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let b = serve(db.path(), None);
    let c_node = serve(dc.path(), None);
    let (bu, cu) = (b.url.clone(), c_node.url.clone());
    // A peer that is down: a port that was free a moment ago.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // A's operator: a wallet of their own (the node's signature authorizes nothing).
    let operator = Wallet::load(&fixtures().join("wallets/key-2.json")).unwrap();
    let config = serde_json::json!({
        "operator": operator.address_string(),
        "on": { "request": { "device": "router@1.0", "path": "preprocess" } },
        "routes": [
            { "template": "^/~meta@1.0/info/address", "node": { "prefix": bu } },
            { "template": "^/random/", "strategy": "Random",
              "nodes": [ { "prefix": bu }, { "prefix": cu } ] },
            { "template": "^/weighted/", "strategy": "By-Weight",
              "nodes": [ { "prefix": bu, "weight": 1 }, { "prefix": cu, "weight": 3 } ] },
            { "template": "/.*~process@1.0/slot$", "strategy": "By-Base",
              "nodes": [ { "prefix": bu }, { "prefix": cu }, { "prefix": dead } ] },
            { "template": "/.*~process@1.0/now$", "strategy": "Nearest",
              "nodes": [ { "prefix": bu, "wallet": b.address },
                         { "prefix": cu, "wallet": c_node.address } ] },
            { "template": "^/two-of-three/", "strategy": "Random", "choose": 2,
              "nodes": [ { "prefix": bu }, { "prefix": cu }, { "prefix": dead } ] },
            { "template": "^/failover/", "nodes": [
                { "match": "^/failover", "with": dead },
                { "match": "^/failover", "with": cu } ] },
            { "template": { "x-route-to": "c" }, "node": { "prefix": cu } }
        ]
    });
    let config_file = da.path().join("a.json");
    std::fs::write(&config_file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let a = serve(da.path(), Some(&config_file));
    eprintln!(
        "A {} {}\nB {} {}\nC {} {}",
        a.url, a.address, b.url, b.address, c_node.url, c_node.address
    );
    let c = client();

    // The request hook forwards matching requests to B; others are answered locally.
    assert_eq!(
        get(&c, &format!("{}/~meta@1.0/info/address", a.url)).await,
        (200, b.address.clone())
    );
    assert_eq!(
        get(&c, &format!("{}/~meta@1.0/info/operator", a.url)).await,
        (200, operator.address_string())
    );
    // A message template: a request carrying `x-route-to: c` goes to C.
    let r = c
        .get(format!("{}/~meta@1.0/info/operator", a.url))
        .header("x-route-to", "c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), c_node.address);

    // relay@1.0/call: a relative path is routed (to B), an absolute URL goes where it says.
    assert_eq!(
        get(
            &c,
            &format!(
                "{}/~relay@1.0/call?relay-path={}",
                a.url,
                q("/~meta@1.0/info/address")
            )
        )
        .await,
        (200, b.address.clone())
    );
    assert_eq!(
        get(
            &c,
            &format!(
                "{}/~relay@1.0/call?relay-path={}",
                a.url,
                q(&format!("{cu}/~meta@1.0/info/address"))
            )
        )
        .await,
        (200, c_node.address.clone())
    );
    // A whole message relayed: B's signed node message, still signed by B.
    let (status, info) = get_message(
        &c,
        &format!(
            "{}/~relay@1.0/call?relay-path={}",
            a.url,
            q(&format!("{bu}/~meta@1.0/info"))
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info.get_str("address"), Some(b.address.as_str()));
    assert_eq!(
        ao_core::message_device::committers(&info),
        vec![b.address.clone()]
    );
    // Strategy All: the nodes in turn; the dead one fails over to C.
    assert_eq!(
        get(
            &c,
            &format!(
                "{}/~relay@1.0/call?relay-path={}",
                a.url,
                q("/failover/~meta@1.0/info/address")
            )
        )
        .await,
        (200, c_node.address.clone())
    );
    // relay@1.0/cast answers at once.
    assert_eq!(
        get(
            &c,
            &format!(
                "{}/~relay@1.0/cast?relay-path={}",
                a.url,
                q("/~meta@1.0/info/address")
            )
        )
        .await,
        (200, "OK".to_owned())
    );
    // No route: 404.
    let (status, _) = get(
        &c,
        &format!("{}/~relay@1.0/call?relay-path={}", a.url, q("/nowhere")),
    )
    .await;
    assert_eq!(status, 404);
    // A link-local address (a cloud VM's metadata service) is refused by default: 403.
    let (status, body) = get(
        &c,
        &format!(
            "{}/~relay@1.0/call?relay-path={}",
            a.url,
            q("http://169.254.169.254/latest/meta-data/")
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("link-local"), "{body}");

    // Random: both nodes, about equally often (400 draws; ±6 standard deviations).
    let picks = route_many(&c, &a.url, "/random/x", 400).await;
    let (nb, nc) = (count(&picks, &bu), count(&picks, &cu));
    assert_eq!(nb + nc, 400);
    assert!((140..=260).contains(&nb), "Random: B {nb} of 400");
    assert!(
        picks.iter().all(|u| u.ends_with("/random/x")),
        "prefix ++ path"
    );

    // By-Weight 1:3: C about three times as often as B (expected 300 of 400, σ ≈ 8.7).
    let picks = route_many(&c, &a.url, "/weighted/x", 400).await;
    let (nb, nc) = (count(&picks, &bu), count(&picks, &cu));
    assert_eq!(nb + nc, 400);
    assert!((240..=360).contains(&nc), "By-Weight: C {nc} of 400");
    assert!(nb > 0, "By-Weight: B is chosen sometimes");

    // By-Base: the base (the ID the path starts with) modulo the number of nodes (3 nodes: 256 ≡ 1 mod 3, so the sum
    // of the ID's bytes mod 3), the same node every time for the same base.
    let prefixes = [bu.as_str(), cu.as_str(), dead.as_str()];
    for i in 0u8..12 {
        let native: Vec<u8> = (0..32u8)
            .map(|j| j.wrapping_mul(37).wrapping_add(i))
            .collect();
        let id = ao_core::util::b64u(&native);
        let expected = native.iter().map(|&x| u32::from(x)).sum::<u32>() % 3;
        let path = format!("/{id}~process@1.0/slot");
        let picks = route_many(&c, &a.url, &path, 3).await;
        let want = format!("{}{path}", prefixes[expected as usize]);
        assert!(picks.iter().all(|u| *u == want), "By-Base {id}: {picks:?}");
    }
    // Nearest: the node whose wallet is nearest the base ID on the ring.
    let nearest = |id: &str| format!("/{id}~process@1.0/now");
    let picks = route_many(&c, &a.url, &nearest(&c_node.address), 3).await;
    assert!(picks.iter().all(|u| u.starts_with(&cu)), "{picks:?}");
    let picks = route_many(&c, &a.url, &nearest(&b.address), 3).await;
    assert!(picks.iter().all(|u| u.starts_with(&bu)), "{picks:?}");
    // One above B's wallet is still nearest B.
    let mut near_b = ao_core::util::decode_id(&b.address).unwrap();
    near_b[31] = near_b[31].wrapping_add(1);
    let picks = route_many(&c, &a.url, &nearest(&ao_core::util::b64u(&near_b)), 3).await;
    assert!(picks.iter().all(|u| u.starts_with(&bu)), "{picks:?}");

    // choose 2: a route with two distinct nodes.
    let (status, route) = get_message(
        &c,
        &format!(
            "{}/~router@1.0/route?route-path={}",
            a.url,
            q("/two-of-three/x")
        ),
    )
    .await;
    assert_eq!(status, 200);
    let Some(Value::List(nodes)) = route.get("nodes") else {
        panic!("no list of nodes in {route:?}")
    };
    let uris: Vec<&str> = nodes
        .iter()
        .map(|n| n.as_message().unwrap().get_str("uri").unwrap())
        .collect();
    assert_eq!(uris.len(), 2, "{route:?}");
    assert_ne!(uris[0], uris[1]);
    assert!(uris.iter().all(|u| u.ends_with("/two-of-three/x")));

    // Routes: listed; added only with a route owner's (the operator's) signature.
    let (status, routes) = get_message(&c, &format!("{}/~router@1.0/routes", a.url)).await;
    assert_eq!(status, 200);
    let listed = routes
        .keys()
        .filter(|k| k.as_str().parse::<u32>().is_ok())
        .count();
    assert_eq!(listed, 8, "{routes:?}");
    let added = Message::new()
        .with("template", "^/added/")
        .with("node", format!("{cu}/~meta@1.0/info/address"))
        .with("priority", 0i64);
    let routes_url = format!("{}/~router@1.0/routes", a.url);
    let key1 = Wallet::load(&fixtures().join("wallets/key-1.json")).unwrap();
    let (status, body) = post_signed(&c, &routes_url, &added, &key1).await;
    assert_eq!(status, 403, "{body}");
    let unsigned = c
        .post(&routes_url)
        .header("template", "^/x/")
        .header("node", "http://x")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let (status, _) = get(
        &c,
        &format!("{}/~relay@1.0/call?relay-path={}", a.url, q("/added/x")),
    )
    .await;
    assert_eq!(status, 404, "the refused route was not added");
    // Nor does A's own signature add one (A signs replies whose keys anyone chooses).
    let wallet_a = Wallet::load(&da.path().join("wallet.json")).unwrap();
    let (status, body) = post_signed(&c, &routes_url, &added, &wallet_a).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_signed(&c, &routes_url, &added, &operator).await;
    assert_eq!((status, body.as_str()), (200, "Route added."));
    assert_eq!(
        get(&c, &format!("{}/~router@1.0/routes/1/template", a.url)).await,
        (200, "^/added/".to_owned()),
        "priority 0 sorts first"
    );
    assert_eq!(
        get(
            &c,
            &format!("{}/~relay@1.0/call?relay-path={}", a.url, q("/added/x")),
        )
        .await,
        (200, c_node.address.clone())
    );
    // The first match is the added route.
    let (status, matched) = get_message(
        &c,
        &format!("{}/~router@1.0/match?route-path={}", a.url, q("/added/y")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(matched.get_str("reference"), Some("routes/1"));
}

fn pause(node: &NodeProc, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(node.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal}");
    if signal == "STOP" {
        // The signal is delivered asynchronously: wait until every thread has stopped.
        let tasks = PathBuf::from(format!("/proc/{}/task", node.pid()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all_stopped = std::fs::read_dir(&tasks).unwrap().all(|t| {
                let stat =
                    std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                // The state follows the `(comm)` field.
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
            });
            if all_stopped {
                break;
            }
            assert!(Instant::now() < deadline, "the node did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The target is stopped mid-test: a hung peer gives 504 within the client's timeout, a dead
/// one 502, and the node keeps serving its own requests.
#[cfg(unix)]
#[tokio::test]
async fn stopped_peers_give_502_or_504_and_the_node_keeps_serving() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut b = serve(db.path(), None);
    let config = serde_json::json!({
        "http-request-timeout": 1500,
        "on": { "request": { "device": "router@1.0", "path": "preprocess" } },
        "routes": [ { "template": "^/~meta@1.0/info/address", "node": { "prefix": b.url } } ]
    });
    std::fs::write(da.path().join("config.json"), config.to_string()).unwrap();
    let a = serve(da.path(), None);
    let c = client();
    let address_url = format!("{}/~meta@1.0/info/address", a.url);
    let local_url = format!("{}/~meta@1.0/info/operator", a.url);
    let relay_url = format!(
        "{}/~relay@1.0/call?relay-path={}",
        a.url,
        q(&format!("{}/~meta@1.0/info/address", b.url))
    );
    assert_eq!(get(&c, &address_url).await, (200, b.address.clone()));

    // B hangs (SIGSTOP): its socket accepts, nothing answers. 504 within the timeout.
    pause(&b, "STOP");
    for url in [&address_url, &relay_url] {
        let started = Instant::now();
        let (status, body) = get(&c, url).await;
        assert_eq!(
            status, 504,
            "{url}: {body} (A is {}, B is {})",
            a.address, b.address
        );
        assert!(body.contains("did not answer"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(get(&c, &local_url).await, (200, a.address.clone()));

    // B is gone: 502.
    pause(&b, "CONT");
    b.kill_in_place();
    for url in [&address_url, &relay_url] {
        let started = Instant::now();
        let (status, body) = get(&c, url).await;
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("unreachable"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // A keeps serving, locally and (through a fresh route) to a live peer.
    assert_eq!(get(&c, &local_url).await, (200, a.address.clone()));
    let (status, info) = get_message(&c, &format!("{}/~meta@1.0/info", a.url)).await;
    assert_eq!(status, 200);
    assert_eq!(info.get_str("address"), Some(a.address.as_str()));
    assert!(matches!(
        info.get("routes"),
        Some(Value::Message(_) | Value::List(_))
    ));
}

/// Routes added by an owner's POST are kept in the store: a restarted node still has them.
#[tokio::test]
async fn added_routes_survive_a_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = serve(db.path(), None);
    let operator = Wallet::load(&fixtures().join("wallets/key-2.json")).unwrap();
    std::fs::write(
        da.path().join("config.json"),
        serde_json::json!({ "operator": operator.address_string() }).to_string(),
    )
    .unwrap();
    let a = serve(da.path(), None);
    let c = client();
    let routes_url = format!("{}/~router@1.0/routes", a.url);
    let added = Message::new()
        .with("template", "^/kept/")
        .with("node", format!("{}/~meta@1.0/info/address", b.url))
        .with("priority", 1i64);
    let (status, body) = post_signed(&c, &routes_url, &added, &operator).await;
    assert_eq!((status, body.as_str()), (200, "Route added."));
    let relayed = format!("{}/~relay@1.0/call?relay-path={}", a.url, q("/kept/x"));
    assert_eq!(get(&c, &relayed).await, (200, b.address.clone()));
    drop(a);
    let a = serve(da.path(), None);
    let relayed = format!("{}/~relay@1.0/call?relay-path={}", a.url, q("/kept/x"));
    assert_eq!(
        get(&c, &format!("{}/~router@1.0/routes/1/template", a.url)).await,
        (200, "^/kept/".to_owned())
    );
    assert_eq!(get(&c, &relayed).await, (200, b.address.clone()));
}

const AOS: &str = "wasm/aos-2-pure-xs.exnref.wasm";
const AOS_FORMAT: &str = "wasm64-unknown-emscripten-draft_2024_02_15";

fn item(wallet: &Wallet, msg: Message) -> Vec<u8> {
    ao_core::ans104::encode(&ao_core::ans104::commit(&msg, wallet).unwrap()).unwrap()
}

/// POSTs a signed ANS-104 item; the status and the body (JSON when `json`).
async fn post_item(
    c: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    json: bool,
) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let mut r = c
        .post(url)
        .header("content-type", "application/ans104")
        .header("codec-device", "ans104@1.0");
    if json {
        r = r.header("require-codec", "application/json");
    }
    let r = r.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap())
}

async fn post_json(c: &reqwest::Client, url: &str, body: Vec<u8>) -> serde_json::Value {
    let (status, _, bytes) = post_item(c, url, body, true).await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&bytes)))
}

/// An aos process scheduled by `scheduler` that trusts messages signed by `authority` (the
/// node that pushes to it).
fn process(scheduler: &str, authority: &str, module: &str, name: &str) -> Message {
    Message::new()
        .with("authority", authority)
        .with("device", "process@1.0")
        .with("type", "Process")
        .with("scheduler", scheduler)
        .with("execution-device", "genesis-wasm@1.0")
        .with("module", module)
        .with("name", name)
}

fn eval(target: &str, code: &str) -> Message {
    Message::new()
        .with("type", "Message")
        .with("target", target)
        .with("action", "Eval")
        .with("data", code)
}

/// The messages of a process's schedule (as aos-2 JSON), from `node`.
async fn schedule_json(c: &reqwest::Client, node: &str, pid: &str) -> serde_json::Value {
    let r = c
        .get(format!("{node}/{pid}~process@1.0/schedule"))
        .header("accept", "application/aos-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// How many messages of the schedule were signed by `owner`.
fn signed_by(schedule: &serde_json::Value, owner: &str) -> usize {
    schedule["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["message"]["Owner"] == owner)
        .count()
}

/// How many messages of the schedule carry `data`.
fn with_data(schedule: &serde_json::Value, data: &str) -> usize {
    schedule["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["message"]["Data"] == data)
        .count()
}

fn path_of<'a>(m: &'a Message, path: &str) -> Option<&'a Value> {
    let mut v: Option<&Value> = None;
    let mut cur = m;
    for k in path.split('/') {
        v = cur.get(k);
        if let Some(Value::Message(next)) = v {
            cur = next;
        }
    }
    v
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scheduler location records, redirects and proxying to a process's scheduler on another
/// node, and ping → pong between processes on two nodes through push@1.0; then the pong node
/// is stopped: the caller gets 504/502, and the undelivered push waits in the outbox and is
/// delivered exactly once when the node is back.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_schedulers_and_ping_pong_across_nodes() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let module = support::add_module(da.path(), AOS, AOS_FORMAT);
    assert_eq!(support::add_module(dc.path(), AOS, AOS_FORMAT), module);
    let quick = serde_json::json!({ "outbox-retry-interval": 300, "http-request-timeout": 3000 });
    std::fs::write(dc.path().join("config.json"), quick.to_string()).unwrap();
    let mut c_node = serve(dc.path(), None);
    let c_port: u16 = c_node.url.rsplit(':').next().unwrap().parse().unwrap();
    std::fs::write(
        db.path().join("config.json"),
        serde_json::json!({ "scheduler-follow-redirects": false }).to_string(),
    )
    .unwrap();
    let b = serve(db.path(), None);
    let operator = Wallet::load(&fixtures().join("wallets/key-2.json")).unwrap();
    let config = serde_json::json!({
        "operator": operator.address_string(),
        "scheduler-location-notify-peers": [c_node.url, b.url],
        "http-request-timeout": 2000,
        "outbox-retry-interval": 300,
    });
    std::fs::write(da.path().join("config.json"), config.to_string()).unwrap();
    let a = serve(da.path(), None);
    let c = client();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let user = Wallet::load(&fixtures().join("wallets/key-1.json")).unwrap();
    let wallet_c = Wallet::load(&dc.path().join("wallet.json")).unwrap();

    // Location records. A's operator has A sign its record (its URL: where A listens); A
    // tells B and C.
    let location = |node: &str| format!("{node}/~scheduler@1.0/location");
    let record_a = Message::new().with("nonce", 1i64);
    let (status, body) = post_signed(&c, &location(&a.url), &record_a, &operator).await;
    assert_eq!(status, 200, "{body}");
    // The same nonce again is stale.
    let (status, body) = post_signed(&c, &location(&a.url), &record_a, &operator).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nonce"), "{body}");
    for peer in [&c_node.url, &b.url] {
        let url = format!("{}/body/url?address={}", location(peer), a.address);
        let want = (200, a.url.clone());
        wait_until(
            "the peers to cache A's location",
            Duration::from_secs(20),
            || {
                let (c, url, want) = (c.clone(), url.clone(), want.clone());
                async move { get(&c, &url).await == want }
            },
        )
        .await;
    }
    // C's record, signed by C, gossiped to A and B; an older or equal nonce is refused.
    let record_c = Message::new()
        .with("data-protocol", "ao")
        .with("variant", "ao.N.1")
        .with("type", "scheduler-location")
        .with("url", c_node.url.as_str())
        .with("nonce", 5i64)
        .with("time-to-live", 3_600_000i64);
    for node in [&a.url, &b.url] {
        let (status, body) = post_signed(&c, &location(node), &record_c, &wallet_c).await;
        assert_eq!(status, 200, "{body}");
        let stale = record_c.clone().with("nonce", 4i64);
        let (status, body) = post_signed(&c, &location(node), &stale, &wallet_c).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("nonce"), "{body}");
    }
    let unsigned = c
        .post(location(&a.url))
        .header("url", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 400);
    assert_eq!(
        get(
            &c,
            &format!("{}/body/url?address={}", location(&a.url), c_node.address)
        )
        .await,
        (200, c_node.url.clone())
    );
    let (status, _) = get(
        &c,
        &format!("{}?address={}", location(&a.url), "x".repeat(43)),
    )
    .await;
    assert_eq!(status, 404);

    // Pong lives on C: spawned through A, which proxies to C (and keeps the definition).
    let pong_def = item(&user, process(&c_node.address, &a.address, &module, "pong"));
    let r = post_json(&c, &format!("{}/push", a.url), pong_def.clone()).await;
    let pong = r["process"].as_str().unwrap().to_owned();
    assert_eq!(r["slot"], 0);
    // Ping lives on A; C learns its definition the same way (A answers the spawn again).
    let ping_def = item(&user, process(&a.address, &c_node.address, &module, "ping"));
    let r = post_json(&c, &format!("{}/push", a.url), ping_def.clone()).await;
    let ping = r["process"].as_str().unwrap().to_owned();
    let r = post_json(&c, &format!("{}/push", c_node.url), ping_def).await;
    assert_eq!(r["process"], ping.as_str());
    assert_eq!(r["slot"], 0);

    // B does not proxy: a 307 to the same request on C.
    let (status, headers, _) =
        post_item(&no_redirects, &format!("{}/push", b.url), pong_def, true).await;
    assert_eq!(status, 307);
    assert_eq!(headers["location"], format!("{}/push", c_node.url).as_str());
    let slot_path = format!("/{pong}~process@1.0/slot");
    let r = no_redirects
        .get(format!("{}{slot_path}", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        format!("{}{slot_path}", c_node.url).as_str()
    );
    // A client that follows it reaches C.
    let (status, slot) = get_message(&c, &format!("{}{slot_path}", b.url)).await;
    assert_eq!(status, 200);
    assert_eq!(slot.get("current").and_then(Value::as_integer), Some(0));
    // A proxies slot and schedule reads; the assignments are C's.
    assert_eq!(
        get(&c, &format!("{}{slot_path}/current", a.url)).await,
        (200, "0".to_owned())
    );
    let schedule = schedule_json(&c, &a.url, &pong).await;
    assert_eq!(schedule["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        schedule["edges"][0]["node"]["assignment"]["Owner"],
        c_node.address.as_str()
    );

    // Handlers: pong answers pings; ping records pongs. Pong's is sent through A.
    let pong_code = "Handlers.add('ping', Handlers.utils.hasMatchingTag('Action', 'Ping'), \
        function(msg) Send({Target = msg.From, Action = 'Pong', Data = 'pong to ' .. msg.Data}) end) \
        return 'pong ready'";
    let r = post_json(
        &c,
        &format!("{}/{pong}~process@1.0/push", a.url),
        item(&user, eval(&pong, pong_code)),
    )
    .await;
    assert_eq!(r["slot"], 1, "{r}");
    let ping_code = "Handlers.add('pong', Handlers.utils.hasMatchingTag('Action', 'Pong'), \
        function(msg) Got = msg.Data; print('GOT PONG: ' .. msg.Data) end) return 'ping ready'";
    post_json(
        &c,
        &format!("{}/{ping}~process@1.0/push", a.url),
        item(&user, eval(&ping, ping_code)),
    )
    .await;

    // Ping → pong → ping, across the two nodes.
    let send = |n: u32| {
        format!("Send({{Target = '{pong}', Action = 'Ping', Data = 'ping {n}'}}) return 'sent'")
    };
    post_json(
        &c,
        &format!("{}/{ping}~process@1.0/push", a.url),
        item(&user, eval(&ping, &send(1))),
    )
    .await;
    let (status, data) = get(
        &c,
        &format!("{}/{ping}~process@1.0/now/results/data", a.url),
    )
    .await;
    assert_eq!(status, 200);
    assert!(data.contains("GOT PONG: pong to ping 1"), "{data}");
    let on_c = schedule_json(&c, &c_node.url, &pong).await;
    // The ping reached pong signed by A (the node that pushed it), once.
    assert_eq!(signed_by(&on_c, &a.address), 1, "{on_c}");
    assert_eq!(with_data(&on_c, "ping 1"), 1, "{on_c}");

    // C hangs: a proxied request gets a 504 within A's timeout.
    pause(&c_node, "STOP");
    let started = Instant::now();
    let (status, body) = get(&c, &format!("{}{slot_path}", a.url)).await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    pause(&c_node, "CONT");
    // C is gone: 502, and a ping waits in A's outbox.
    c_node.kill_in_place();
    let (status, body) = get(&c, &format!("{}{slot_path}", a.url)).await;
    assert_eq!(status, 502, "{body}");
    let (status, headers, bytes) = post_item(
        &c,
        &format!("{}/{ping}~process@1.0/push", a.url),
        item(&user, eval(&ping, &send(2))),
        false,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let reply = support::decode_reply(&headers, bytes);
    let entry = |k: &str| path_of(&reply, &format!("pushed/1/{k}")).cloned();
    assert_eq!(entry("response"), Some(Value::from("queued")), "{reply:?}");
    assert_eq!(entry("status").and_then(|v| v.as_integer()), Some(502));
    let outbox_url = format!("{}/~relay@1.0/outbox/pending", a.url);
    assert_eq!(get(&c, &outbox_url).await, (200, "1".to_owned()));

    // C is back on its port: the outbox delivers the ping, C answers with a pong.
    let c_node = serve_on(dc.path(), None, c_port);
    wait_until("the outbox to deliver", Duration::from_secs(30), || {
        let (c, url) = (c.clone(), outbox_url.clone());
        async move { get(&c, &url).await == (200, "0".to_owned()) }
    })
    .await;
    let ping_data = format!("{}/{ping}~process@1.0/now/results/data", a.url);
    wait_until("pong's answer", Duration::from_secs(30), || {
        let (c, url) = (c.clone(), ping_data.clone());
        async move { get(&c, &url).await.1.contains("GOT PONG: pong to ping 2") }
    })
    .await;
    // Delivered exactly once, even after more retry rounds.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let on_c = schedule_json(&c, &c_node.url, &pong).await;
    assert_eq!(signed_by(&on_c, &a.address), 2, "{on_c}");
    assert_eq!(with_data(&on_c, "ping 2"), 1, "{on_c}");

    // Location records that point in a circle (A says C, C says A): the proxying stops.
    let circle = Message::new()
        .with("type", "scheduler-location")
        .with("nonce", 1i64);
    for (node, url) in [(&a.url, &c_node.url), (&c_node.url, &a.url)] {
        let record = circle.clone().with("url", url.as_str());
        let (status, body) = post_signed(&c, &location(node), &record, &user).await;
        assert_eq!(status, 200, "{body}");
    }
    let lost = item(
        &user,
        process(&user.address_string(), &a.address, &module, "lost"),
    );
    let (status, _, body) = post_item(&c, &format!("{}/push", a.url), lost, true).await;
    assert_eq!(status, 508, "{}", String::from_utf8_lossy(&body));
    drop(c_node);
}

//! `hb-cli serve` as an operator and a client see it: a real binary on a free port.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ao_core::codec;
use ao_core::{Message, Wallet, signature, verify};

fn serve(dir: &Path) -> support::NodeProc {
    support::Serve::new(dir).start()
}

fn serve_with(dir: &Path, extra: &[&str]) -> support::NodeProc {
    support::Serve::new(dir).args(extra).start()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The body of a GET, as text.
async fn get_text(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    msg: &Message,
    wallet: Option<&Wallet>,
) -> reqwest::Response {
    let msg = match wallet {
        Some(w) => signature::commit(msg, w).unwrap(),
        None => msg.clone(),
    };
    let http = codec::to_http(&msg).unwrap();
    let mut req = client.post(url);
    for (k, v) in &http.headers {
        req = req.header(k.as_str(), v.as_ref());
    }
    if let Some(b) = http.body {
        req = req.body(b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn identity_signed_replies_and_operator_updates() {
    let dir = tempfile::tempdir().unwrap();
    // The operator administers the node with a wallet of their own.
    let operator = Wallet::load(&fixtures().join("wallets/key-2.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({ "operator": operator.address_string() }).to_string(),
    )
    .unwrap();
    let node = serve(dir.path());
    let wallet = Wallet::load(&dir.path().join("wallet.json")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("wallet.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the wallet is private");
    }
    let c = client();
    let address = get_text(&c, format!("{}/~meta@1.0/info/address", node.url)).await;
    assert_eq!(address, wallet.address_string());

    // Replies are signed by the node: the signature verifies and names the node.
    let r = c
        .get(format!("{}/~meta@1.0/info", node.url))
        .send()
        .await
        .unwrap();
    let headers = r.headers().clone();
    let info = support::decode_reply(&headers, r.bytes().await.unwrap());
    assert_eq!(verify::verify_signatures(&info).unwrap(), 1);
    assert_eq!(
        ao_core::message_device::committers(&info),
        vec![address.clone()]
    );

    // Operator-only updates: accepted signed by the operator, refused otherwise.
    let update = Message::new().with("greeting-option", "hello operator");
    let url = format!("{}/~meta@1.0/info", node.url);
    let key1 = Wallet::load(&fixtures().join("wallets/key-1.json")).unwrap();
    assert_eq!(
        post_signed(&c, &url, &update, Some(&key1)).await.status(),
        403
    );
    assert_eq!(post_signed(&c, &url, &update, None).await.status(), 403);
    // Nor is the node's own signature the operator's.
    assert_eq!(
        post_signed(&c, &url, &update, Some(&wallet)).await.status(),
        403
    );
    let accepted = post_signed(&c, &url, &update, Some(&operator)).await;
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await.unwrap());
    let v = get_text(&c, format!("{}/~meta@1.0/info/greeting-option", node.url)).await;
    assert_eq!(v, "hello operator");
}

#[tokio::test]
async fn captured_client_requests_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    let c = client();
    for name in [
        "aoconnect-request-httpsig.json",
        "aoconnect-request-httpsig-multiline.json",
        "hbsig-httpsig-nested.json",
    ] {
        let capture: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures().join("clients").join(name)).unwrap())
                .unwrap();
        let url = capture["url"]
            .as_str()
            .unwrap()
            .replace("http://localhost:8734", &node.url);
        let method =
            reqwest::Method::from_bytes(capture["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut req = c.request(method, url);
        for h in capture["headers"].as_array().unwrap() {
            req = req.header(h[0].as_str().unwrap(), h[1].as_str().unwrap());
        }
        if let Some(b) = capture.get("body").and_then(|b| b.as_str()) {
            req = req.body(b.to_owned());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap();
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let result = support::decode_reply(&headers, body);
        // `set` on an empty message answers the request's own (committed) keys, and the
        // request's signature came along as its commitment.
        assert!(
            ["count", "list", "data"].iter().any(|k| result.contains(k)),
            "{name}: {result:?}"
        );
        assert!(
            ao_core::message_device::committers(&result)
                .contains(&"y5Zhhr9FuQguEi-QgOKOgb2q2qZldcXo2wLd7_13bkQ".to_owned()),
            "{name}: the client's commitment is kept: {result:?}"
        );
    }
}

#[tokio::test]
async fn two_nodes_side_by_side() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = (serve(a.path()), serve(b.path()));
    assert_ne!(na.url, nb.url);
    let c = client();
    let addr_a = get_text(&c, format!("{}/~meta@1.0/info/address", na.url)).await;
    let addr_b = get_text(&c, format!("{}/~meta@1.0/info/address", nb.url)).await;
    assert_eq!(addr_a.len(), 43);
    assert_ne!(addr_a, addr_b);
}

/// The budget kind is a node option: `--wasm-budget` (or `HB_WASM_BUDGET`, or the config
/// file); a value the engine does not know stops the node at start with the option's name.
#[tokio::test]
async fn the_wasm_budget_is_a_node_option() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve_with(dir.path(), &["--wasm-budget", "wall-clock"]);
    let budget = get_text(
        &client(),
        format!("{}/~meta@1.0/info/wasm-budget", node.url),
    )
    .await;
    assert_eq!(budget, "wall-clock");
    drop(node);

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .args(["serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir"])
        .arg(dir.path())
        .env("HB_WASM_BUDGET", "epochs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wasm-budget"), "{err}");
}

/// A process spawned unsigned (the node's default `verify-requests=if-signed` takes it) is
/// served under the ID its spawn answered with, although the request headers merged into the
/// loaded process change that message's unsigned ID.
#[tokio::test]
async fn an_unsigned_process_is_served_under_the_id_its_spawn_answered() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    let c = client();
    let spawn = Message::new()
        .with("type", "Process")
        .with("device", "process@1.0")
        .with("execution-device", "genesis-wasm@1.0")
        .with("name", "unsigned");
    let r = post_signed(&c, &format!("{}/push", node.url), &spawn, None).await;
    assert_eq!(r.status(), 200);
    let pid = r.headers()["process"].to_str().unwrap().to_owned();
    assert_eq!(pid.len(), 43);
    let msg = Message::new()
        .with("type", "Message")
        .with("target", pid.as_str())
        .with("k", "v");
    let r = post_signed(
        &c,
        &format!("{}/{pid}~process@1.0/schedule", node.url),
        &msg,
        None,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["slot"], "1");
    for path in [
        format!("{pid}~process@1.0/slot/current"),
        format!("{pid}/slot/current"),
    ] {
        let r = c
            .get(format!("{}/{path}", node.url))
            .header("x-extra", "merged into the loaded process")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), "1", "{path}");
    }
}

/// Operator actions need the operator's signature: naming the operator as a "verified signer"
/// in the path or the query (a private key, which a request cannot set) does not stand in
/// for it.
#[tokio::test]
async fn a_request_cannot_claim_verified_signers() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    let c = client();
    let operator = get_text(&c, format!("{}/~meta@1.0/info/address", node.url)).await;
    for (n, path) in [
        format!("~meta@1.0/info&priv-verified-signers+list=%22{operator}%22"),
        format!("~meta@1.0/info?priv-verified-signers+list=%22{operator}%22"),
        format!("~meta@1.0/info?1.priv-verified-signers+list=%22{operator}%22"),
    ]
    .iter()
    .enumerate()
    {
        let key = format!("claimed-{n}");
        let r = c
            .post(format!("{}/{path}", node.url))
            .header(key.as_str(), "yes")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let r = c
            .get(format!("{}/~meta@1.0/info/{key}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}: the option was set");
    }
}

/// The node signs content others choose (every reply; `commit` where allowed), so its own
/// signature must authorize nothing: replaying a signed reply that echoes `operator=<attacker>`
/// as an operator update used to make the attacker the node's operator.
#[tokio::test]
async fn the_nodes_own_signature_authorizes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The node's own address is even named as the operator and a cache writer.
    let wallet = fixtures().join("wallets/test-wallet.json");
    std::fs::copy(&wallet, dir.path().join("wallet.json")).unwrap();
    let address = Wallet::load(&wallet).unwrap().address_string();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({ "operator": address, "cache-writers": [address] }).to_string(),
    )
    .unwrap();
    let node = serve(dir.path());
    let c = client();
    assert_eq!(
        get_text(&c, format!("{}/~meta@1.0/info/address", node.url)).await,
        address
    );
    let attacker = "a".repeat(43);
    // `commit` does not sign for others.
    let r = c
        .post(format!(
            "{}/set&operator={attacker}&taken=yes/commit",
            node.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    // A signed reply whose keys the request chose…
    let r = c
        .post(format!("{}/set&operator={attacker}&taken=yes", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply = r.headers().clone();
    assert_eq!(reply.get("operator").unwrap(), attacker.as_str());
    assert!(reply.contains_key("signature"), "replies are signed");
    // …replayed, with its signature, as an operator update: refused, nothing set.
    let mut replay = c.post(format!("{}/~meta@1.0/info", node.url));
    for (k, v) in &reply {
        if !matches!(k.as_str(), "content-length" | "date" | "host") {
            replay = replay.header(k, v);
        }
    }
    let r = replay.send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator"), "{body}");
    for key in ["taken", "operator"] {
        let v = get_text(&c, format!("{}/~meta@1.0/info/{key}", node.url)).await;
        assert_ne!(
            v,
            if key == "taken" {
                "yes"
            } else {
                attacker.as_str()
            }
        );
    }
    // Nor is such a replay a cache writer's.
    let r = c
        .post(format!("{}/set&target=x&taken=yes", node.url))
        .send()
        .await
        .unwrap();
    let reply = r.headers().clone();
    let mut replay = c.post(format!("{}/~cache@1.0/write", node.url));
    for (k, v) in &reply {
        if !matches!(k.as_str(), "content-length" | "date" | "host") {
            replay = replay.header(k, v);
        }
    }
    assert_eq!(replay.send().await.unwrap().status(), 403);
}

#[test]
fn id_command_prints_the_vector_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.json");
    std::fs::write(&file, br#"{"a":"b"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .arg("id")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("UfSqKA58Hwk99Jg5fsYGY4iKDfnnUAW9MQdMv2-Fw40"),
        "{text}"
    );
    // Bad input: a clear error and exit code 1, no panic.
    std::fs::write(&file, b"{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .arg("id")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
}

#[test]
fn wallet_and_resolve_commands() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("w.json");
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .args(["wallet", "new"])
        .arg(&wallet)
        .output()
        .unwrap();
    assert!(out.status.success());
    let created = String::from_utf8(out.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .args(["wallet", "address"])
        .arg(&wallet)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), created);
    let out = Command::new(env!("CARGO_BIN_EXE_hb-cli"))
        .args(["resolve", "/~message@1.0&a=1&b+integer=2/b", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains('2'));
}

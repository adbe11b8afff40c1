//! What a client sees from a healthy node.

use std::time::Duration;

use ao_core::codec::{self, httpsig::HttpMessage};
use ao_core::{BoxFuture, Context, Device, Message, Result, Value};
use bytes::Bytes;

use crate::support::{self, TEST_ADDRESS};

fn decode(resp_headers: &reqwest::header::HeaderMap, body: Bytes) -> Message {
    let mut http = HttpMessage::default();
    for (k, v) in resp_headers {
        http.headers
            .insert(k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes()));
    }
    http.body = (!body.is_empty()).then_some(body);
    codec::from_http(&http).unwrap()
}

#[tokio::test]
async fn info_and_address() {
    let node = support::start().await;
    let r = node
        .client
        .get(format!("{}/~meta@1.0/info/address", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ao-result"], "body");
    assert_eq!(
        r.text().await.unwrap(),
        TEST_ADDRESS,
        "the body is exactly the address"
    );

    let r = node
        .client
        .get(format!("{}/~meta@1.0/info", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let info = decode(&headers, r.bytes().await.unwrap());
    assert_eq!(info.get_str("address"), Some(TEST_ADDRESS));
    assert_eq!(info.get_str("mode"), Some("test"));
    assert_eq!(info.get("status"), Some(&Value::Integer(200)));

    let r = node
        .client
        .get(format!("{}/~meta@1.0/build/node", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ao-node");
    node.handle.shutdown().await;
}

#[tokio::test]
async fn message_resolutions_and_typed_paths() {
    let node = support::start().await;
    let get = |p: &str| node.client.get(format!("{}{p}", node.url)).send();
    let r = get("/~message@1.0&greeting=\"Hello\"&count+integer=42/count")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["ao-types"],
        "body=\"integer\", status=\"integer\""
    );
    assert_eq!(r.text().await.unwrap(), "42");
    let r = get("/~message@1.0&a=1&b=2/set&c=3/keys").await.unwrap();
    let headers = r.headers().clone();
    let keys = decode(&headers, r.bytes().await.unwrap());
    // A list result arrives as a numbered message.
    let listed: Vec<&str> = keys
        .iter()
        .filter(|(k, _)| k.as_str() != "status")
        .filter_map(|(_, v)| v.as_str())
        .collect();
    for k in ["a", "b", "c"] {
        assert!(listed.contains(&k), "{k} in {listed:?}");
    }
    let r = get("/~message@1.0&x+float=2.5/x").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "2.50000000000000000000e+00");
    // Query keys apply to every message of the path.
    let r = get("/~message@1.0/k?k=from-query").await.unwrap();
    assert_eq!(r.text().await.unwrap(), "from-query");
    // A missing key is a 404.
    let r = get("/~message@1.0&a=1/missing").await.unwrap();
    assert_eq!(r.status(), 404);
    node.handle.shutdown().await;
}

#[tokio::test]
async fn json_when_asked() {
    let node = support::start().await;
    let r = node
        .client
        .get(format!("{}/~message@1.0&a=1&n+integer=5", node.url))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["codec-device"], "json@1.0");
    let msg = codec::from_json(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(msg.get("n"), Some(&Value::Integer(5)));
    assert_eq!(msg.get_str("a"), Some("1"));
    let r = node
        .client
        .get(format!("{}/~message@1.0&a=1/a", node.url))
        .header("accept-codec", "json@1.0")
        .send()
        .await
        .unwrap();
    let msg = codec::from_json(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(msg.get_str("body"), Some("1"));
    assert_eq!(msg.get_str("ao-result"), Some("body"));
    // Errors too: of a request that decodes, or of one that does not.
    let r = node
        .client
        .get(format!("{}/~message@1.0/missing", node.url))
        .header("accept-codec", "json@1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["codec-device"], "json@1.0");
    let msg = codec::from_json(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(msg.get("status"), Some(&Value::Integer(404)));
    let r = node
        .client
        .post(format!("{}/~message@1.0/greeting", node.url))
        .header("codec-device", "json@1.0")
        .header("accept", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["codec-device"], "json@1.0");
    let msg = codec::from_json(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(msg.get("status"), Some(&Value::Integer(400)));
    node.handle.shutdown().await;
}

#[tokio::test]
async fn cors_options_and_root_redirect() {
    let node = support::start().await;
    let r = node
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/anything", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-headers"], "*");
    let r = node
        .client
        .get(format!("{}/~meta@1.0/info/address", node.url))
        .header("access-control-request-headers", "x-custom")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["access-control-allow-headers"], "x-custom");
    let r = node
        .client
        .get(format!("{}/", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/~meta@1.0/info");
    node.handle.shutdown().await;
}

#[tokio::test]
async fn metrics_count_requests() {
    let node = support::start().await;
    for _ in 0..3 {
        node.client
            .get(format!("{}/~meta@1.0/info/address", node.url))
            .send()
            .await
            .unwrap();
    }
    let text = node
        .client
        .get(format!("{}/~hyperbuddy@1.0/metrics/body", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("ao_http_requests_total{device=\"meta@1.0\",status=\"200\"} 3"),
        "{text}"
    );
    node.handle.shutdown().await;
}

/// `slow@1.0`: `wait` sleeps, to have a request in flight.
struct Slow;

impl Device for Slow {
    fn id(&self) -> &str {
        "slow@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        _: &'a Message,
        _: &'a Message,
        _: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (key == "wait").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Ok(Value::from("done"))
            })
        })
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let node = support::start_with(
        support::config(),
        ao_devices::builtin().register(Slow).build(),
    )
    .await;
    let url = format!("{}/~slow@1.0/wait", node.url);
    let client = node.client.clone();
    let in_flight =
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = node.handle.addr();
    node.handle.shutdown().await;
    assert_eq!(in_flight.await.unwrap(), "done");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A request body in another codec than httpsig, named by `codec-device` (spec §7.1): the text
/// codecs every node has decode it; a body that does not decode is a 400.
#[tokio::test]
async fn request_bodies_in_the_json_and_flat_codecs() {
    let node = support::start().await;
    for (codec, body, want) in [
        (
            "json@1.0",
            &b"{\"greeting\":\"hello\",\"n\":7}"[..],
            "hello",
        ),
        ("flat@1.0", &b"greeting: bonjour\n"[..], "bonjour"),
    ] {
        let r = node
            .client
            .post(format!("{}/~message@1.0/greeting", node.url))
            .header("codec-device", codec)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{codec}");
        assert_eq!(r.text().await.unwrap(), want, "{codec}");
    }
    let r = node
        .client
        .post(format!("{}/~message@1.0/greeting", node.url))
        .header("codec-device", "json@1.0")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    node.handle.shutdown().await;
}

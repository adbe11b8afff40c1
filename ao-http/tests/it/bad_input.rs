//! Bad input gets a 4xx or a closed connection, never a 500, and the node keeps serving.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

async fn still_serving(node: &support::TestNode) {
    let r = node
        .client
        .get(format!("{}/~meta@1.0/info/address", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn garbage_and_malformed_bodies() {
    let node = support::start().await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let cases: Vec<Case<'_>> = vec![
        (
            "garbage multipart",
            vec![("content-type", "multipart/form-data; boundary=\"zz\"")],
            b"\x00\xff garbage".to_vec(),
        ),
        (
            "part without disposition",
            vec![("content-type", "multipart/form-data; boundary=\"zz\"")],
            b"--zz\r\nx: y\r\n\r\nv\r\n--zz--".to_vec(),
        ),
        (
            "bad ao-types",
            vec![("ao-types", "x=\"integer"), ("x", "1")],
            Vec::new(),
        ),
        (
            "unknown type",
            vec![("ao-types", "x=\"nonsense\""), ("x", "1")],
            Vec::new(),
        ),
        (
            "bad signature-input",
            vec![
                ("signature", "s=:AAAA:"),
                ("signature-input", "s=(\"a\";keyid="),
            ],
            Vec::new(),
        ),
        (
            "unsupported codec",
            vec![("codec-device", "nope@1.0")],
            b"x".to_vec(),
        ),
    ];
    for (name, headers, body) in cases {
        let mut req = node
            .client
            .post(format!("{}/~message@1.0/keys", node.url))
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{name}: got {status}: {}",
            r.text().await.unwrap()
        );
    }
    still_serving(&node).await;
    node.handle.shutdown().await;
}

#[tokio::test]
async fn malformed_paths() {
    let node = support::start().await;
    for p in [
        "/a/(b/c",
        "/~/x",
        "/a&=v/x",
        &format!("/{}", "x".repeat(600)),
        &"/a".repeat(300),
    ] {
        let r = node
            .client
            .get(format!("{}{p}", node.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{p}: {status}");
    }
    // Deeper than the sub-resolution limit.
    let deep = format!("/{}x{}", "(".repeat(40), ")".repeat(40));
    let r = node
        .client
        .get(format!("{}{deep}", node.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // A request target longer than the limit.
    let long = format!("/~message@1.0&k={}", "v".repeat(20_000));
    let r = node
        .client
        .get(format!("{}{long}", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    still_serving(&node).await;
    node.handle.shutdown().await;
}

#[tokio::test]
async fn oversized_body() {
    let node = support::start().await;
    let r = node
        .client
        .post(format!("{}/~message@1.0/keys", node.url))
        .body(vec![b'a'; 2_000_000])
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may close the connection before the client finished sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    still_serving(&node).await;
    node.handle.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_header_value() {
    let node = support::start().await;
    let mut s = tokio::net::TcpStream::connect(node.handle.addr())
        .await
        .unwrap();
    s.write_all(b"GET /~message@1.0&a=1/a HTTP/1.1\r\nhost: x\r\nx-bad: \xff\xfe\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let head = String::from_utf8_lossy(&out);
    let status: u16 = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    assert!(status == 200 || (400..500).contains(&status), "{head}");
    still_serving(&node).await;
    node.handle.shutdown().await;
}

#[tokio::test]
async fn slow_loris_is_cut_off() {
    let node = support::start().await;
    let mut s = tokio::net::TcpStream::connect(node.handle.addr())
        .await
        .unwrap();
    s.write_all(b"GET /~meta@1.0/info HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    // The header-read timeout is 500 ms in the test config: the server answers 408 or closes.
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header timeout"
    );
    let head = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || head.starts_with("HTTP/1.1 408"), "{head}");
    still_serving(&node).await;
    node.handle.shutdown().await;
}

/// Sends `head` (and whatever body part it holds) on a fresh connection, then reads what the
/// server answers: the response head, or nothing if it closed the connection. Panics if the
/// connection is still open after 5 s.
async fn answer_to(node: &support::TestNode, head: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(node.handle.addr())
        .await
        .unwrap();
    s.write_all(head).await.unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("no answer within 5 s")
        .unwrap_or(0);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_sent() {
    let node = support::start().await;
    // The test limit is 1,000,000 bytes; not a byte of the body is sent.
    let head = answer_to(
        &node,
        b"POST /push HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("1000000"), "the limit is named: {head}");
    still_serving(&node).await;
    node.handle.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_off() {
    let node = support::start().await;
    // 10 of the 100 announced bytes, then nothing: the body-read timeout is 500 ms in the
    // test config.
    let head = answer_to(
        &node,
        b"POST /push HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    still_serving(&node).await;
    node.handle.shutdown().await;
}

//! Starting a test node.

use std::sync::Arc;
use std::time::Duration;

use ao_core::{DeviceRegistry, MemoryStore, Message, Resolver};
use ao_devices::meta::NodeState;
use ao_http::metrics::{HyperbuddyDevice, Metrics};
use ao_http::{HttpConfig, Node, ServerHandle};

pub(crate) const TEST_ADDRESS: &str = "vcaPe4JWnrSOCktDHBgXge-zWUb6JRkqbom5w9t7i-4";

pub(crate) struct TestNode {
    pub(crate) handle: ServerHandle,
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
}

pub(crate) fn config() -> HttpConfig {
    let opts = Message::new()
        .with("port", 0i64)
        .with("bind", "127.0.0.1")
        .with("max-body-bytes", 1_000_000i64)
        .with("header-read-timeout", 500i64)
        .with("body-read-timeout", 500i64)
        .with("request-timeout", 5_000i64);
    HttpConfig::from_options(&opts).unwrap()
}

pub(crate) async fn start_with(config: HttpConfig, registry: DeviceRegistry) -> TestNode {
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(NodeState::new(
        Message::new().with("port", 0i64).with("mode", "test"),
        TEST_ADDRESS,
    ));
    let resolver = Resolver::builder(registry)
        .store(Arc::new(MemoryStore::new()))
        .extension(metrics.clone())
        .extension(state)
        .build();
    let node = Arc::new(Node::new(resolver, config, metrics));
    let handle = ao_http::serve(node, std::future::pending()).await.unwrap();
    let url = format!("http://{}", handle.addr());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    TestNode {
        handle,
        url,
        client,
    }
}

pub(crate) async fn start() -> TestNode {
    start_with(
        config(),
        ao_devices::builtin().register(HyperbuddyDevice).build(),
    )
    .await
}

//! Composing the crates into a node: options, wallet, store, devices, resolver, HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use ao_core::wallet::Wallet;
use ao_core::{Message, Resolver, Store, Value};
use ao_devices::meta::NodeState;
use ao_devices::process::{ProcessOptions, Processes};
use ao_http::metrics::{HyperbuddyDevice, Metrics};
use ao_http::{HttpConfig, ServerHandle};
use ao_store::{Durability, RedbStore, StoreConfig};

use crate::config;

/// Where a node's options come from.
#[derive(Debug, Clone)]
pub(crate) struct NodeOptions {
    pub(crate) data_dir: PathBuf,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) flags: Message,
}

impl NodeOptions {
    pub(crate) fn new(data_dir: &Path, config_file: Option<&Path>, flags: Message) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            config_file: config_file.map(Path::to_owned),
            flags,
        }
    }
}

/// How long a stopping node keeps signing queued assignments before it closes the store.
const STOP_SIGNING_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A composed node.
pub(crate) struct Node {
    pub(crate) options: Message,
    pub(crate) resolver: Resolver,
    pub(crate) store: Arc<RedbStore>,
    pub(crate) wallet: Arc<Wallet>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) http: HttpConfig,
    /// The process runtime (scheduler unit, background assignment signer, executors).
    pub(crate) processes: Arc<Processes>,
    /// The background task that retries the relay outbox (started by `serve`).
    outbox_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.wallet.address_string())
            .finish_non_exhaustive()
    }
}

/// The store's options: `store-durability` (`immediate`, `eventual`, `none`),
/// `store-cache-bytes`, `store-wal-bytes` (the size of each of the write-ahead log's two
/// files before the writer switches to the other; `0` turns the log off), `store-memtable-bytes` (acknowledged writes kept in memory before a
/// checkpoint writes them into the database) and `store-recent-keys` (the size of the table of
/// recent records before it is merged into the main one).
fn store_config(opts: &Message, data_dir: &Path) -> Result<StoreConfig> {
    let mut c = StoreConfig::in_data_dir(data_dir);
    if let Some(d) = opts.get_str("store-durability") {
        c = c.with_durability(match d {
            "immediate" => Durability::Immediate,
            "eventual" => Durability::Eventual,
            "none" => Durability::None,
            other => {
                anyhow::bail!("store-durability must be immediate, eventual or none, not {other:?}")
            }
        });
    }
    if let Some(n) = count_option(opts, "store-cache-bytes")? {
        c = c.with_cache_bytes(n);
    }
    if let Some(n) = count_option(opts, "store-wal-bytes")? {
        c.wal_bytes = n;
    }
    if let Some(n) = count_option(opts, "store-memtable-bytes")? {
        c.memtable_bytes = n;
    }
    if let Some(n) = count_option(opts, "store-recent-keys")? {
        c.recent_keys = n;
    }
    Ok(c)
}

/// Whether a boolean option is set to true (`true` as an atom or a string).
fn option_is_true(opts: &Message, name: &str) -> bool {
    match opts.get(name) {
        Some(Value::Atom(a)) => a.as_str() == "true",
        Some(v) => v.as_str() == Some("true"),
        None => false,
    }
}

/// An option holding a count (of bytes, of keys): a non-negative integer, or a string of digits.
fn count_option(opts: &Message, name: &str) -> Result<Option<u64>> {
    let Some(v) = opts.get(name) else {
        return Ok(None);
    };
    let n = match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        v => v.as_str().and_then(|s| s.trim().parse().ok()),
    };
    n.map(Some)
        .with_context(|| format!("{name} must be a non-negative integer"))
}

/// Every device the node loads: the built-ins of `ao-devices`, the WASM devices, and the
/// metrics page.
pub(crate) fn registry(
    wasm: &Arc<ao_wasm::devices::WasmRuntime>,
) -> ao_core::DeviceRegistryBuilder {
    let (wasm64, wasi, json_iface) = wasm.devices();
    ao_devices::builtin()
        .register(HyperbuddyDevice)
        .register(wasm64)
        .register(wasi)
        .register(json_iface)
}

impl Node {
    /// Opens a node on a data directory: loads (or generates) the wallet, opens the store and
    /// builds the resolver.
    pub(crate) fn open(o: NodeOptions) -> Result<Self> {
        std::fs::create_dir_all(&o.data_dir)
            .with_context(|| format!("creating the data directory {}", o.data_dir.display()))?;
        let options = config::load(o.config_file.as_deref(), &o.data_dir, &o.flags)?;
        let http = HttpConfig::from_options(&options)?;
        let wallet_path = config::wallet_path(&options, &o.data_dir);
        let wallet = Arc::new(Wallet::load_or_generate(&wallet_path).with_context(|| {
            format!("loading or creating the wallet {}", wallet_path.display())
        })?);
        let store = Arc::new(RedbStore::open(store_config(&options, &o.data_dir)?)?);
        let metrics = Arc::new(Metrics::new());
        {
            let s = store.clone();
            metrics.gauge(
                "ao_store_bytes",
                "Size of the store file in bytes.",
                move || {
                    std::fs::metadata(s.path())
                        .map(|m| m.len() as f64)
                        .unwrap_or(0.0)
                },
            );
        }
        let state = NodeState::new(options.clone(), wallet.address_string())
            .with_signer_check(Box::new(codec::signed_by));
        // One wasmtime engine for the node: `wasm-64@1.0` instances and processes share it
        // (and its budget kind, `wasm-budget`).
        let engine = ao_wasm::WasmEngine::new(ao_wasm::WasmConfig::from_options(&options)?)?;
        let wasm = ao_wasm::devices::WasmRuntime::new(engine.clone());
        // The process runtime is the node's (not built on first use) so that stopping the node
        // can finish its work: see `close`.
        let processes = Arc::new(Processes::new(
            store.clone() as Arc<dyn Store>,
            wallet.clone(),
            engine.clone(),
            ProcessOptions::from_options(&options)?,
        ));
        let registry = registry(&wasm).build();
        // One outbound client per node (pooled connections), for relay@1.0 and router@1.0.
        let client = ao_http::HttpClient::new(
            ao_http::ClientConfig::from_options(&options)?,
            Some(wallet.clone()),
        )?;
        let mut resolver = Resolver::builder(registry);
        // `message@1.0/commit` signs with the node wallet only where the operator allows it.
        if !option_is_true(&options, "commit-with-node-wallet") {
            resolver = resolver.extension(Arc::new(ao_core::message_device::RefuseCommit));
        }
        let resolver = resolver
            .store(store.clone() as Arc<dyn Store>)
            .extension(metrics.clone())
            .extension(Arc::new(state))
            .extension(wallet.clone())
            .extension(wasm)
            .extension(Arc::new(engine))
            .extension(processes.clone())
            .extension(Arc::new(ao_devices::relay::Client::new(Arc::new(client))))
            .extension(Arc::new(ao_devices::router::RouterState::restore(
                store.as_ref(),
            )?))
            .build();
        Ok(Self {
            options,
            resolver,
            store,
            wallet,
            metrics,
            http,
            processes,
            outbox_task: std::sync::Mutex::new(None),
        })
    }

    /// Records the address the server listens on (for the default scheduler location URL): an
    /// unspecified IP (`0.0.0.0`) becomes the `host` option, else `localhost`.
    pub(crate) fn set_listen_url(&self, addr: std::net::SocketAddr) {
        let host = if addr.ip().is_unspecified() {
            self.options
                .get_str("host")
                .unwrap_or("localhost")
                .to_owned()
        } else {
            addr.ip().to_string()
        };
        if let Some(state) = self.resolver.context().extension::<NodeState>() {
            state.set_listen_url(format!("http://{host}:{}", addr.port()));
        }
    }

    /// The node's address.
    pub(crate) fn address(&self) -> String {
        self.wallet.address_string()
    }

    /// Starts the HTTP server.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<ServerHandle> {
        let codec = Arc::new(codec::NodeCodec::new(self.wallet.clone(), &self.options)?);
        // The `on` option's request/response hooks (e.g. router@1.0 preprocess, relay@1.0).
        let hooks = ao_http::hooks::from_options(&self.options, &self.resolver);
        let node = ao_http::Node::new(
            self.resolver.clone(),
            self.http.clone(),
            self.metrics.clone(),
        )
        .with_codec(codec)
        .with_hooks(hooks);
        self.start_outbox()?;
        Ok(ao_http::serve(Arc::new(node), stop).await?)
    }

    /// Retries the relay outbox (messages a peer could not take yet) every
    /// `outbox-retry-interval` ms (default 5000; 0 turns retries off).
    fn start_outbox(&self) -> Result<()> {
        let ms = match self.options.get("outbox-retry-interval") {
            None => 5000,
            Some(Value::Integer(i)) => u64::try_from(*i).context("outbox-retry-interval")?,
            Some(v) => v
                .as_str()
                .and_then(|s| s.trim().parse().ok())
                .context("outbox-retry-interval must be a number of milliseconds")?,
        };
        if ms == 0 {
            return Ok(());
        }
        let resolver = self.resolver.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let ctx = resolver.context();
                match ao_devices::relay::outbox::deliver_pending(&ctx).await {
                    Ok(r) if r.delivered > 0 || r.waiting > 0 => {
                        tracing::info!(delivered = r.delivered, waiting = r.waiting, "outbox round")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox round failed"),
                }
            }
        });
        if let Ok(mut slot) = self.outbox_task.lock()
            && let Some(old) = slot.replace(task)
        {
            old.abort();
        }
        Ok(())
    }

    /// Signs the assignments still waiting for the background signer (for at most
    /// [`STOP_SIGNING_LIMIT`]; what is left is signed on the next start), then flushes and
    /// closes the store.
    pub(crate) fn close(&self) -> Result<()> {
        if let Ok(mut slot) = self.outbox_task.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
        if let Err(e) = self
            .processes
            .scheduler()
            .finish_signing(STOP_SIGNING_LIMIT)
        {
            tracing::warn!(error = %e, "stopping with unsigned assignments");
        }
        self.store.close().context("closing the store")?;
        Ok(())
    }
}

pub(crate) mod codec {
    //! The node's codec and signature policy for HTTP: ANS-104 bodies, request verification,
    //! signed replies.

    use std::sync::Arc;

    use ao_core::codec::httpsig::HttpMessage;
    use ao_core::signature::RequestLine;
    use ao_core::verify::Policy;
    use ao_core::wallet::Wallet;
    use ao_core::{Message, Result};
    use ao_http::handler::RequestCodec;
    use bytes::Bytes;

    /// ANS-104 decoding, the verification policy and reply signing, with the node wallet.
    pub(crate) struct NodeCodec {
        wallet: Arc<Wallet>,
        policy: Policy,
        sign_replies: bool,
        signed: SignedCache,
    }

    /// Signed replies by the unsigned ID of their content. An RSA-4096 signature costs
    /// milliseconds; a node answers the same content (its info, a computed result) again and
    /// again, and a signature over the same content stays valid, so each distinct reply is
    /// signed once while it is in this bounded cache.
    type Entries = (
        std::collections::HashMap<[u8; 32], HttpMessage>,
        std::collections::VecDeque<[u8; 32]>,
    );

    struct SignedCache {
        entries: std::sync::Mutex<Entries>,
        capacity: usize,
    }

    impl SignedCache {
        fn new(capacity: usize) -> Self {
            Self {
                entries: std::sync::Mutex::new(Default::default()),
                capacity,
            }
        }

        /// The signed, encoded reply for this content: from the cache, or signed now.
        fn get_or_sign(
            &self,
            msg: Message,
            sign: impl FnOnce(&Message) -> Result<Message>,
        ) -> Result<HttpMessage> {
            let key = ao_core::id::unsigned_id(&msg)?;
            if let Ok(e) = self.entries.lock()
                && let Some(hit) = e.0.get(&key)
            {
                return Ok(hit.clone());
            }
            let signed = ao_core::codec::to_http(&sign(&msg)?)?;
            if let Ok(mut e) = self.entries.lock() {
                if e.0.len() >= self.capacity
                    && let Some(old) = e.1.pop_front()
                {
                    e.0.remove(&old);
                }
                if e.0.insert(key, signed.clone()).is_none() {
                    e.1.push_back(key);
                }
            }
            Ok(signed)
        }
    }

    /// The `verify-requests` option: `off`, `if-signed` (the default) or `require-signed`.
    pub(crate) fn policy(options: &Message) -> anyhow::Result<Policy> {
        Ok(match options.get_str("verify-requests") {
            None | Some("if-signed") => Policy::IfSigned,
            Some("off") => Policy::Off,
            Some("require-signed") => Policy::RequireSigned,
            Some(other) => anyhow::bail!(
                "verify-requests must be off, if-signed or require-signed, not {other:?}"
            ),
        })
    }

    impl NodeCodec {
        pub(crate) fn new(wallet: Arc<Wallet>, options: &Message) -> anyhow::Result<Self> {
            Ok(Self {
                wallet,
                policy: policy(options)?,
                sign_replies: options.get_str("force-signed") != Some("false"),
                signed: SignedCache::new(4096),
            })
        }
    }

    impl NodeCodec {
        fn decode_item(&self, body: &Bytes) -> Result<Message> {
            let item = ao_core::ans104::DataItem::parse(body)?;
            let mut msg = ao_core::ans104::from_item(&item)?;
            if item.is_signed() {
                match item.verify() {
                    Ok(()) => {
                        if let Some(signer) = item.committer() {
                            msg.insert(
                                ao_http::handler::VERIFIED_SIGNERS,
                                ao_core::Value::List(vec![ao_core::Value::from(signer)]),
                            );
                        }
                    }
                    Err(e) if self.policy != Policy::Off => return Err(e.into()),
                    Err(_) => {}
                }
            }
            Ok(msg)
        }
    }

    impl RequestCodec for NodeCodec {
        /// ANS-104 items are verified on their own bytes (rebuilding an item from its message
        /// does not always give the same bytes, e.g. with empty tag values), and the verified
        /// signer is recorded so the re-encoding check is not needed afterwards.
        fn decode(&self, codec: &str, body: &Bytes) -> Option<Result<Message>> {
            match codec {
                "ans104@1.0" => Some(self.decode_item(body)),
                _ => None,
            }
        }

        /// Signatures are always checked, so operator actions can rely on the signers; the
        /// policy decides whether a failure rejects the request.
        fn verify(
            &self,
            msg: &Message,
            received: Option<(&HttpMessage, &RequestLine)>,
        ) -> Result<Vec<String>> {
            if let Some(ao_core::Value::List(signers)) =
                msg.private(ao_http::handler::VERIFIED_SIGNERS)
            {
                return Ok(signers
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect());
            }
            let checked = ao_core::verify::apply_policy(Policy::IfSigned, msg, received);
            match (checked, self.policy) {
                (Ok(()), Policy::RequireSigned)
                    if ao_core::verify::signature_commitments(msg).is_empty() =>
                {
                    Err(ao_core::VerifyError::Unsigned.into())
                }
                (Ok(()), _) => Ok(ao_core::message_device::committers(msg)),
                (Err(_), Policy::Off) => Ok(Vec::new()),
                (Err(e), _) => Err(e),
            }
        }

        fn encode(&self, codec: &str, msg: &Message) -> Option<Result<(String, Vec<u8>)>> {
            match codec {
                "ans104@1.0" => {
                    Some(ao_core::ans104::encode(msg).map(|b| ("application/ans104".to_owned(), b)))
                }
                _ => None,
            }
        }

        fn sign(&self, msg: Message) -> Result<Message> {
            if self.sign_replies {
                ao_core::signature::commit(&msg, &self.wallet)
            } else {
                Ok(msg)
            }
        }

        fn sign_http(&self, msg: Message) -> Result<HttpMessage> {
            if self.sign_replies {
                self.signed
                    .get_or_sign(msg, |m| ao_core::signature::commit(m, &self.wallet))
            } else {
                ao_core::codec::to_http(&msg)
            }
        }
    }

    /// Whether a request was signed by `operator`: the HTTP layer recorded it as a verified
    /// signer, or (for requests that did not come over HTTP) one of its commitments by that
    /// address verifies.
    pub(crate) fn signed_by(request: &Message, operator: &str) -> Result<bool> {
        if let Some(ao_core::Value::List(signers)) =
            request.private(ao_http::handler::VERIFIED_SIGNERS)
            && signers.iter().any(|s| s.as_str() == Some(operator))
        {
            return Ok(true);
        }
        let Some(commitments) = request.commitments() else {
            return Ok(false);
        };
        for (id, c) in commitments.iter() {
            if c.as_message().and_then(|c| c.get_str("committer")) == Some(operator)
                && ao_core::verify::verify_commitment(request, id.as_str()).is_ok()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_options_reach_the_store_config() {
        let dir = Path::new("data");
        let opts = Message::new()
            .with("store-durability", "eventual")
            .with("store-cache-bytes", 1024i64)
            .with("store-wal-bytes", "0")
            .with("store-memtable-bytes", 4096i64)
            .with("store-recent-keys", "5000");
        let c = store_config(&opts, dir).unwrap();
        assert_eq!(c.durability, Durability::Eventual);
        assert_eq!(c.cache_bytes, 1024);
        assert_eq!(c.wal_bytes, 0);
        assert_eq!(c.memtable_bytes, 4096);
        assert_eq!(c.recent_keys, 5000);
        let defaults = store_config(&Message::new(), dir).unwrap();
        assert_eq!(defaults, StoreConfig::in_data_dir(dir));
        for bad in [
            Message::new().with("store-wal-bytes", "lots"),
            Message::new().with("store-memtable-bytes", -1i64),
            Message::new().with("store-recent-keys", "many"),
            Message::new().with("store-durability", "sometimes"),
        ] {
            let err = store_config(&bad, dir).unwrap_err().to_string();
            assert!(err.starts_with("store-"), "{err}");
        }
    }

    /// Device ids are unique and well formed (the builder checks both), and every device the
    /// node loads is documented in `docs/devices.md`.
    #[test]
    fn every_device_is_documented() {
        let wasm = ao_wasm::devices::WasmRuntime::new(
            ao_wasm::WasmEngine::new(ao_wasm::WasmConfig::default()).unwrap(),
        );
        let registry = registry(&wasm).build();
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/devices.md"))
                .unwrap();
        for id in registry.ids() {
            assert!(
                doc.contains(&format!("`{id}`")),
                "{id} is missing from docs/devices.md"
            );
        }
    }
}

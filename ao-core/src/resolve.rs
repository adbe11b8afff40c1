//! Resolution: applying requests to messages through devices (spec §2), step by step, leaving a
//! hashpath on every message produced (spec §3).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::codec::structured::list_to_message;
use crate::device::{BoxFuture, DeviceRegistry};
use crate::path::{self, Request, Step};
use crate::{Error, Key, Message, Result, Store, Value};

/// What resolution does with the hashpath of each result (HyperBEAM's `hashpath` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashpathMode {
    /// Record `hashpath(base, request)` on every message produced (the default).
    #[default]
    Update,
    /// Clear it.
    Reset,
    /// Leave whatever the device produced.
    Ignore,
}

/// The private key under which [`Context::load`] records the ID a message was loaded by from
/// the store. A message has several IDs (unsigned, one per commitment), and extra keys a
/// request merges into a loaded message change its unsigned ID; a device that names things by
/// the ID they were asked for (a process spawned unsigned) reads it here. Private, so never
/// encoded, stored or part of an ID, and never set by a request (decoders drop private keys).
pub const LOADED_ID: &str = "priv-loaded-id";

/// Resolution options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Hashpath handling.
    pub hashpath: HashpathMode,
    /// How deeply resolutions may nest (devices resolving sub-requests, `(…)` paths) before the
    /// request is refused with [`Error::TooDeep`].
    pub max_depth: usize,
    /// Limits for parsing HyperPATHs.
    pub path_limits: path::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hashpath: HashpathMode::Update,
            max_depth: 64,
            path_limits: path::Limits::default(),
        }
    }
}

/// Services a node makes available to devices (a wallet, a scheduler, an HTTP client…), by type.
#[derive(Clone, Default)]
pub struct Extensions {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.len())
            .finish()
    }
}

impl Extensions {
    /// Adds (or replaces) a service.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.map.insert(TypeId::of::<T>(), value);
    }

    /// A service by type.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .cloned()?
            .downcast::<T>()
            .ok()
    }
}

struct Shared {
    registry: DeviceRegistry,
    store: Option<Arc<dyn Store>>,
    options: Options,
    extensions: Extensions,
}

/// Resolves requests. Cheap to clone; shared by every request a node serves.
#[derive(Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("registry", &self.shared.registry)
            .field("store", &self.shared.store)
            .field("options", &self.shared.options)
            .finish()
    }
}

/// Builds a [`Resolver`].
#[derive(Debug)]
#[must_use]
pub struct ResolverBuilder {
    registry: DeviceRegistry,
    store: Option<Arc<dyn Store>>,
    options: Options,
    extensions: Extensions,
}

impl ResolverBuilder {
    /// Sets the store messages are loaded from by ID.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the options.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Adds a service for devices.
    pub fn extension<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Builds the resolver.
    pub fn build(self) -> Resolver {
        Resolver {
            shared: Arc::new(Shared {
                registry: self.registry,
                store: self.store,
                options: self.options,
                extensions: self.extensions,
            }),
        }
    }
}

impl Resolver {
    /// A builder over a device registry.
    pub fn builder(registry: DeviceRegistry) -> ResolverBuilder {
        ResolverBuilder {
            registry,
            store: None,
            options: Options::default(),
            extensions: Extensions::default(),
        }
    }

    /// A resolver with only `message@1.0` and no store.
    pub fn basic() -> Self {
        Self::builder(DeviceRegistry::builder().build()).build()
    }

    /// The root context of a new resolution.
    pub fn context(&self) -> Context {
        Context {
            resolver: self.clone(),
            depth: 0,
        }
    }

    /// The device registry.
    pub fn registry(&self) -> &DeviceRegistry {
        &self.shared.registry
    }

    /// The store, if any.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.shared.store.as_ref()
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// A service by type.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.shared.extensions.get::<T>()
    }

    /// Resolves `request` against `base` (see [`Context::resolve`]).
    pub async fn resolve(&self, base: Message, request: Message) -> Result<Value> {
        self.context().resolve(base, request).await
    }

    /// Parses a HyperPATH and resolves it.
    pub async fn resolve_path(&self, hyperpath: &str) -> Result<Value> {
        let steps = path::parse(hyperpath, &self.shared.options.path_limits)?;
        self.context().resolve_steps(steps).await
    }

    /// Resolves a singleton request (path with query, plus the request's other keys).
    pub async fn resolve_singleton(&self, singleton: &Message) -> Result<Value> {
        let steps = path::from_singleton(singleton, &self.shared.options.path_limits)?;
        self.context().resolve_steps(steps).await
    }
}

/// The context of one resolution: the resolver and how deep the current call is nested.
#[derive(Clone, Debug)]
pub struct Context {
    resolver: Resolver,
    depth: usize,
}

impl Context {
    /// The resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The store, if any.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.resolver.store()
    }

    /// A service by type.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.resolver.extension::<T>()
    }

    fn child(&self) -> Result<Self> {
        let max = self.resolver.shared.options.max_depth;
        if self.depth >= max {
            return Err(Error::TooDeep(max));
        }
        Ok(Self {
            resolver: self.resolver.clone(),
            depth: self.depth + 1,
        })
    }

    /// Resolves `request` against `base`: the request's path is split on `/`, and each part is
    /// applied in turn (every other key of the request goes with each part).
    pub fn resolve(&self, base: Message, request: Message) -> BoxFuture<'_, Result<Value>> {
        Box::pin(async move {
            let ctx = self.child()?;
            let parts: Vec<String> = match request.get("path") {
                Some(Value::Binary(b)) => std::str::from_utf8(b)
                    .map_err(|_| Error::Path("path is not UTF-8".into()))?
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                Some(Value::List(l)) => l
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => return Err(Error::BadRequest("request has no path".into())),
            };
            let mut current = Value::Message(base);
            for part in parts {
                let step = request.clone().with("path", part);
                current = ctx.stage(current, step).await?;
            }
            Ok(current)
        })
    }

    /// Resolves a key (or `/`-separated path) of a message.
    pub async fn get(&self, base: Message, key: &str) -> Result<Value> {
        self.resolve(base, Message::new().with("path", key)).await
    }

    /// Resolves a parsed HyperPATH (HyperBEAM's `resolve_many`).
    pub fn resolve_steps(&self, steps: Vec<Step>) -> BoxFuture<'_, Result<Value>> {
        Box::pin(async move {
            let ctx = self.child()?;
            let mut iter = steps.into_iter();
            let Some(first) = iter.next() else {
                return Err(Error::Path("empty request".into()));
            };
            let mut current = ctx.start(first).await?;
            for step in iter {
                current = match step {
                    Step::Message(req) => {
                        let req = ctx.materialise(req).await?;
                        ctx.stage(current, req).await?
                    }
                    Step::Id(id) => {
                        let loaded = ctx.load(&id)?;
                        ctx.stage(current, loaded).await?
                    }
                    Step::Resolve(sub) => {
                        let req = match ctx.resolve_steps(sub).await? {
                            Value::Message(m) => m,
                            literal => Message::new().with("path", literal),
                        };
                        ctx.stage(current, req).await?
                    }
                    Step::As { device, request } => {
                        let req = ctx.materialise(request).await?;
                        let base = as_message(current)?.with("device", device.as_str());
                        if req
                            .get("path")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                        {
                            Value::Message(merge(base, &req))
                        } else {
                            ctx.resolve(base, req).await?
                        }
                    }
                };
            }
            Ok(current)
        })
    }

    async fn start(&self, first: Step) -> Result<Value> {
        match first {
            Step::Message(req) => Ok(Value::Message(self.materialise(req).await?)),
            Step::Id(id) => Ok(Value::Message(self.load(&id)?)),
            Step::Resolve(sub) => self.resolve_steps(sub).await,
            Step::As { device, request } => {
                let req = self.materialise(request).await?;
                let path = req
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if crate::key::is_id_shaped(path.as_bytes()) {
                    let loaded = self.load(&path)?;
                    let extra = req.without("path");
                    return Ok(Value::Message(
                        merge(loaded, &extra).with("device", device.as_str()),
                    ));
                }
                let base = Message::new().with("device", device.as_str());
                if path.is_empty() {
                    Ok(Value::Message(merge(base, &req.without("path"))))
                } else {
                    self.resolve(base, req).await
                }
            }
        }
    }

    /// Resolves a request's pending sub-resolutions and sets their results.
    async fn materialise(&self, req: Request) -> Result<Message> {
        let mut msg = req.message;
        for (key, sub) in req.lazy {
            let v = self.resolve_steps(sub).await?;
            msg.insert(key, v);
        }
        Ok(msg)
    }

    /// Loads a message by ID from the store, recording the ID privately under [`LOADED_ID`].
    pub fn load(&self, id: &str) -> Result<Message> {
        let store = self
            .store()
            .ok_or_else(|| Error::MessageNotFound(id.to_owned()))?;
        let mut msg = crate::cache::read_message(store.as_ref(), id)?
            .ok_or_else(|| Error::MessageNotFound(id.to_owned()))?;
        msg.insert(LOADED_ID, id);
        Ok(msg)
    }

    /// One resolution stage: the key is the first part of the request's path.
    async fn stage(&self, current: Value, request: Message) -> Result<Value> {
        let base = as_message(current)?;
        let key = match request.get("path") {
            Some(Value::Binary(b)) => {
                let text =
                    std::str::from_utf8(b).map_err(|_| Error::Path("path is not UTF-8".into()))?;
                text.split('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or("")
                    .to_owned()
            }
            _ => return Err(Error::BadRequest("request has no path".into())),
        };
        if key.is_empty() {
            return Err(Error::BadRequest("request has an empty path".into()));
        }
        let registry = &self.resolver.shared.registry;
        let device_name = match base.get("device") {
            None => "message@1.0".to_owned(),
            Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => return Err(Error::DeviceNotLoadable(format!("{other:?}"))),
        };
        let device = registry
            .get(&device_name)
            .ok_or_else(|| Error::DeviceNotLoadable(device_name.clone()))?;
        let fut = if device.info().exported(&key) {
            device.call(&key, &base, &request, self)
        } else {
            None
        };
        let result = match fut {
            Some(fut) => fut.await,
            None => {
                let md = registry
                    .get("message@1.0")
                    .ok_or_else(|| Error::DeviceNotLoadable("message@1.0".into()))?;
                match md.call(&key, &base, &request, self) {
                    Some(fut) => fut.await,
                    None => Err(Error::NotFound(key.clone())),
                }
            }
        }?;
        Ok(match result {
            Value::Message(mut m) => {
                match self.resolver.shared.options.hashpath {
                    HashpathMode::Update => {
                        let hp = crate::hashpath::hashpath(&base, &request)?;
                        m.set_hashpath(Some(Arc::from(hp)));
                    }
                    HashpathMode::Reset => m.set_hashpath(None),
                    HashpathMode::Ignore => {}
                }
                Value::Message(m)
            }
            other => other,
        })
    }
}

/// A value as the base of the next step: a message, or a list as a numbered message.
fn as_message(v: Value) -> Result<Message> {
    match v {
        Value::Message(m) => Ok(m),
        Value::List(l) => Ok(list_to_message(&l)),
        other => Err(Error::NotFound(format!(
            "cannot resolve a key of a {} value",
            other.kind()
        ))),
    }
}

fn merge(mut base: Message, extra: &Message) -> Message {
    for (k, v) in extra.iter() {
        base.insert(Key::clone(k), v.clone());
    }
    base
}

//! Devices: what gives a message its behaviour (spec §2.3–§2.4), and the registry of the devices
//! a node has loaded.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::resolve::Context;
use crate::{Key, Message, Result, Value};

/// A boxed, sendable future: what a device returns for a key.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which keys a device answers itself (spec §2.4). `info` is always exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// When set, only these keys reach the device; others fall back to `message@1.0`.
    pub exports: Option<Vec<Key>>,
    /// These keys always fall back to `message@1.0`.
    pub excludes: Vec<Key>,
}

impl DeviceInfo {
    /// Exports every key.
    pub fn all() -> Self {
        Self::default()
    }

    /// Exports only the given keys.
    pub fn exports<I: IntoIterator<Item = S>, S: AsRef<str>>(keys: I) -> Self {
        Self {
            exports: Some(keys.into_iter().map(|k| Key::new(k.as_ref())).collect()),
            excludes: Vec::new(),
        }
    }

    /// Adds keys that always fall back to `message@1.0`.
    #[must_use]
    pub fn excluding<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, keys: I) -> Self {
        self.excludes
            .extend(keys.into_iter().map(|k| Key::new(k.as_ref())));
        self
    }

    /// Whether `key` reaches the device.
    pub fn exported(&self, key: &str) -> bool {
        let key = crate::key::normalize(key);
        if key == "info" {
            return true;
        }
        if self.excludes.iter().any(|k| k.as_str() == key) {
            return false;
        }
        match &self.exports {
            Some(list) => list.iter().any(|k| k.as_str() == key),
            None => true,
        }
    }
}

/// A device: resolves keys of the messages that name it.
///
/// # Contract
///
/// * [`Device::id`] is the unique, versioned name a message's `device` key selects, such as
///   `process@1.0` (`name@major.minor`, lower case).
/// * [`Device::call`] is given the key being resolved (the first part of the request's path),
///   the base message and the request. It returns `None` when it has no behaviour for that key,
///   and the resolver then answers with `message@1.0` (the stored value of the key): this is both
///   HyperBEAM's "no function of that name" fallback and the place for a catch-all or default
///   handler, which simply matches every key.
/// * A device must be deterministic in its inputs where HyperBEAM's is: the hashpath the resolver
///   records assumes that resolving the same request against the same base gives the same result.
/// * Errors stop the resolution chain and become the response status ([`crate::Error::http_status`]).
///
/// # Why a boxed future
///
/// Some devices wait: the scheduler for a durable write, relay for another node, a process for a
/// WASM evaluation that may take a while. An `async` entry point lets them wait without holding a
/// thread, so one node serves many slow requests at once. Returning a boxed future (rather than
/// an `async fn` in the trait) keeps the trait object-safe, so the registry can hold
/// `Arc<dyn Device>`; the allocation it costs is small next to a resolution step.
pub trait Device: Send + Sync + 'static {
    /// The device's unique name, e.g. `message@1.0`.
    fn id(&self) -> &str;

    /// Which keys reach [`Device::call`]. Defaults to every key.
    fn info(&self) -> DeviceInfo {
        DeviceInfo::all()
    }

    /// Resolves `key` of `base` given `request`, or returns `None` to fall back to `message@1.0`.
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>>;
}

impl<D: Device + ?Sized> Device for Arc<D> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (**self).call(key, base, request, ctx)
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (**self).call(key, base, request, ctx)
    }
}

/// Whether `id` is a well-formed device name: `name@major.minor` (lower case, digits).
pub fn is_valid_id(id: &str) -> bool {
    let Some((name, version)) = id.split_once('@') else {
        return false;
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let version_ok = match version.split_once('.') {
        Some((maj, min)) => {
            !maj.is_empty()
                && maj.bytes().all(|b| b.is_ascii_digit())
                && !min.is_empty()
                && min.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    };
    name_ok && version_ok
}

/// The devices a node has loaded, frozen at start-up. Lookups normalise the name, so
/// `Message@1.0` finds `message@1.0`.
#[derive(Clone)]
pub struct DeviceRegistry {
    by_id: HashMap<Key, Arc<dyn Device>>,
}

impl fmt::Debug for DeviceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.by_id.keys().map(Key::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("DeviceRegistry")
            .field("devices", &ids)
            .finish()
    }
}

impl DeviceRegistry {
    /// A builder holding only `message@1.0`.
    pub fn builder() -> DeviceRegistryBuilder {
        DeviceRegistryBuilder::new()
    }

    /// The device of a name.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Device>> {
        self.by_id
            .get(id)
            .or_else(|| self.by_id.get(crate::key::normalize(id).as_ref()))
    }

    /// The loaded device names, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.by_id.keys().map(Key::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// Builds a [`DeviceRegistry`]: add, replace or remove devices, then freeze it.
#[must_use]
pub struct DeviceRegistryBuilder {
    devices: BTreeMap<Key, Arc<dyn Device>>,
}

impl fmt::Debug for DeviceRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRegistryBuilder")
            .field("devices", &self.devices.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for DeviceRegistryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceRegistryBuilder {
    /// A builder holding only `message@1.0`, which every node has.
    pub fn new() -> Self {
        let mut b = Self {
            devices: BTreeMap::new(),
        };
        let md: Arc<dyn Device> = Arc::new(crate::message_device::MessageDevice);
        b.devices.insert(Key::new(md.id()), md);
        b
    }

    /// Adds a device.
    ///
    /// # Panics
    ///
    /// If the id is malformed or already taken: both are programming errors in the node's
    /// composition, caught by its tests.
    pub fn register(mut self, device: impl Device) -> Self {
        let device: Arc<dyn Device> = Arc::new(device);
        let id = device.id().to_owned();
        assert!(
            is_valid_id(&id),
            "device id {id:?} is not of the form name@major.minor"
        );
        let previous = self.devices.insert(Key::new(&id), device);
        assert!(previous.is_none(), "device {id:?} registered twice");
        self
    }

    /// Adds or replaces a device.
    pub fn replace(mut self, device: impl Device) -> Self {
        let device: Arc<dyn Device> = Arc::new(device);
        self.devices.insert(Key::new(device.id()), device);
        self
    }

    /// Removes a device (no-op if absent).
    pub fn remove(mut self, id: &str) -> Self {
        self.devices.remove(id);
        self
    }

    /// Freezes the registry.
    pub fn build(self) -> DeviceRegistry {
        DeviceRegistry {
            by_id: self.devices.into_iter().collect(),
        }
    }
}

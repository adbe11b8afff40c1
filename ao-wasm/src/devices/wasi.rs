//! `wasi@1.0`: the WASI state of a process (`devices.md` §3.10).

use ao_core::device::{BoxFuture, Device, DeviceInfo};
use ao_core::resolve::Context;
use ao_core::{Error, Message, Result, Value};

use super::{output_prefix, path, set_path};

/// The `wasi@1.0` device.
///
/// `init` installs `<prefix>/stdlib/wasi_snapshot_preview1 = {device: wasi@1.0}` (prefix
/// `wasm` when unset), the standard `file-descriptors` and an empty `vfs`, so the state (and its
/// hashpath) looks as HyperBEAM's does. `compute` is a no-op. The WASI calls themselves are
/// served natively by the host (HyperBEAM's deterministic behaviour: `fd_write` captured,
/// `clock_time_get` answering errno 1), and `wasm-64@1.0` appends guest output to `vfs/dev/*`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasiDevice;

impl Device for WasiDevice {
    fn id(&self) -> &str {
        "wasi@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["init", "compute", "normalize", "snapshot"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        _request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        Some(Box::pin(async move {
            match key {
                "init" => Ok(Value::Message(init(base))),
                "compute" | "normalize" => Ok(Value::Message(base.clone())),
                "snapshot" => Ok(Value::Message(Message::new())),
                other => Err(Error::NotFound(other.to_owned())),
            }
        }))
    }
}

fn fd(name: &str) -> Message {
    Message::new()
        .with("filename", name)
        .with("offset", Value::Integer(0))
}

fn init(base: &Message) -> Message {
    let prefix = match output_prefix(base) {
        p if p.is_empty() => "wasm".to_owned(),
        p => p,
    };
    let state = set_path(
        base.clone(),
        &path(&prefix, "stdlib/wasi_snapshot_preview1"),
        Value::Message(Message::new().with("device", "wasi@1.0")),
    );
    let fds = Message::new()
        .with("0", fd("/dev/stdin"))
        .with("1", fd("/dev/stdout"))
        .with("2", fd("/dev/stderr"));
    let dev = Message::new()
        .with("stdin", "")
        .with("stdout", "")
        .with("stderr", "");
    state
        .with("file-descriptors", fds)
        .with("vfs", Message::new().with("dev", dev))
}

//! Instance snapshots: what a process needs to be evicted and resumed bit-identically.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Result, WasmError, WasmValue};

const MAGIC: &[u8; 8] = b"AOWSNAP1";

/// The state of an instance.
///
/// * `memory`: the whole linear memory from offset 0 — exactly what HyperBEAM's `wasm-64@1.0`
///   `snapshot` returns as `body` ([`Snapshot::from_memory`] accepts such a body);
/// * `globals`: every exported mutable global;
/// * `stack_pointer`: the emscripten stack pointer, when the module exports its accessors
///   (aos exports them; it is back at its initial value between calls, but a snapshot taken
///   elsewhere need not be);
/// * the host's own state (ao-loader's deterministic clock counter).
///
/// Internal globals that are not exported cannot be read through wasmtime; aos keeps none that
/// outlive a `handle` call apart from the stack pointer.
#[derive(Clone, PartialEq)]
pub struct Snapshot {
    memory: Bytes,
    globals: Vec<(String, WasmValue)>,
    stack_pointer: Option<WasmValue>,
    date_now: Option<f64>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("memory", &self.memory.len())
            .field("globals", &self.globals)
            .field("stack_pointer", &self.stack_pointer)
            .field("date_now", &self.date_now)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(
        memory: Bytes,
        globals: Vec<(String, WasmValue)>,
        stack_pointer: Option<WasmValue>,
        date_now: f64,
    ) -> Self {
        Self {
            memory,
            globals,
            stack_pointer,
            date_now: Some(date_now),
        }
    }

    /// A memory-only snapshot (HyperBEAM's `snapshot/<device>/body`).
    pub fn from_memory(memory: impl Into<Bytes>) -> Self {
        Self {
            memory: memory.into(),
            globals: Vec::new(),
            stack_pointer: None,
            date_now: None,
        }
    }

    /// The linear memory.
    pub fn memory(&self) -> &Bytes {
        &self.memory
    }

    /// The exported mutable globals.
    pub fn globals(&self) -> &[(String, WasmValue)] {
        &self.globals
    }

    /// The emscripten stack pointer, if saved.
    pub fn stack_pointer(&self) -> Option<WasmValue> {
        self.stack_pointer
    }

    pub(crate) fn date_now(&self) -> Option<f64> {
        self.date_now
    }

    /// Serialises the snapshot (little-endian, versioned by an 8-byte magic).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.memory.len() + 64);
        out.put_slice(MAGIC);
        out.put_u32_le(self.globals.len() as u32);
        for (name, v) in &self.globals {
            out.put_u32_le(name.len() as u32);
            out.put_slice(name.as_bytes());
            put_value(&mut out, v);
        }
        match &self.stack_pointer {
            Some(v) => {
                out.put_u8(1);
                put_value(&mut out, v);
            }
            None => out.put_u8(0),
        }
        match self.date_now {
            Some(t) => {
                out.put_u8(1);
                out.put_f64_le(t);
            }
            None => out.put_u8(0),
        }
        out.put_u64_le(self.memory.len() as u64);
        out.put_slice(&self.memory);
        out.freeze()
    }

    /// Parses [`Snapshot::to_bytes`] output.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self> {
        let mut b: Bytes = bytes.into();
        let bad = |what: &str| WasmError::Snapshot(format!("truncated or malformed: {what}"));
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err(WasmError::Snapshot("not an ao-wasm snapshot".into()));
        }
        b.advance(MAGIC.len());
        let count = get_u32(&mut b).ok_or_else(|| bad("global count"))?;
        let mut globals = Vec::new();
        for _ in 0..count {
            let len = get_u32(&mut b).ok_or_else(|| bad("name length"))? as usize;
            if b.remaining() < len {
                return Err(bad("name"));
            }
            let name = String::from_utf8(b.split_to(len).to_vec()).map_err(|_| bad("name"))?;
            let v = get_value(&mut b).ok_or_else(|| bad("global value"))?;
            globals.push((name, v));
        }
        let stack_pointer = match get_u8(&mut b).ok_or_else(|| bad("stack flag"))? {
            0 => None,
            _ => Some(get_value(&mut b).ok_or_else(|| bad("stack pointer"))?),
        };
        let date_now = match get_u8(&mut b).ok_or_else(|| bad("clock flag"))? {
            0 => None,
            _ => {
                if b.remaining() < 8 {
                    return Err(bad("clock"));
                }
                Some(b.get_f64_le())
            }
        };
        if b.remaining() < 8 {
            return Err(bad("memory length"));
        }
        let len = b.get_u64_le();
        if b.remaining() as u64 != len {
            return Err(bad("memory"));
        }
        Ok(Self {
            memory: b,
            globals,
            stack_pointer,
            date_now,
        })
    }
}

fn put_value(out: &mut BytesMut, v: &WasmValue) {
    match v {
        WasmValue::I32(x) => {
            out.put_u8(0);
            out.put_u64_le(u64::from(*x as u32));
        }
        WasmValue::I64(x) => {
            out.put_u8(1);
            out.put_u64_le(*x as u64);
        }
        WasmValue::F32(x) => {
            out.put_u8(2);
            out.put_u64_le(u64::from(x.to_bits()));
        }
        WasmValue::F64(x) => {
            out.put_u8(3);
            out.put_u64_le(x.to_bits());
        }
    }
}

fn get_u8(b: &mut Bytes) -> Option<u8> {
    (b.remaining() >= 1).then(|| b.get_u8())
}

fn get_u32(b: &mut Bytes) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32_le())
}

fn get_value(b: &mut Bytes) -> Option<WasmValue> {
    if b.remaining() < 9 {
        return None;
    }
    let tag = b.get_u8();
    let bits = b.get_u64_le();
    Some(match tag {
        0 => WasmValue::I32(bits as u32 as i32),
        1 => WasmValue::I64(bits as i64),
        2 => WasmValue::F32(f32::from_bits(bits as u32)),
        3 => WasmValue::F64(f64::from_bits(bits)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = Snapshot::new(
            Bytes::from_static(b"\x01\x02\x03"),
            vec![
                ("g".into(), WasmValue::I32(-5)),
                ("h".into(), WasmValue::F64(1.5)),
            ],
            Some(WasmValue::I64(1 << 40)),
            10_007.0,
        );
        let back = Snapshot::from_bytes(s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert!(Snapshot::from_bytes(Bytes::from_static(b"nope")).is_err());
        let mut cut = s.to_bytes().to_vec();
        cut.pop();
        assert!(Snapshot::from_bytes(cut).is_err());
    }
}

//! Paths of the node's cache beyond messages (spec §8.3, devices.md `process@1.0`), as helpers
//! over any [`Store`]. They are plain groups and links (`Op::MakeLink`).

use ao_core::store::{Op, join};
use ao_core::{Message, Result, Store, cache};

/// `computed/<process>/slot/<slot>`: the state of a process after a slot.
pub fn computed_slot_path(process: &str, slot: u64) -> String {
    format!("computed/{process}/slot/{slot}")
}

/// `computed/<process>/<id>`: the state of a process by the ID of its result message.
pub fn computed_id_path(process: &str, id: &str) -> String {
    join(&["computed", process, id])
}

/// Writes a process's state after `slot` and links it at [`computed_slot_path`] and
/// [`computed_id_path`], in one atomic batch. Returns the state's ID.
pub fn write_computed(
    store: &dyn Store,
    process: &str,
    slot: u64,
    state: &Message,
) -> Result<String> {
    let (id, mut ops) = cache::message_ops(state)?;
    ops.push(Op::MakeLink {
        existing: id.clone(),
        new: computed_slot_path(process, slot),
    });
    ops.push(Op::MakeLink {
        existing: id.clone(),
        new: computed_id_path(process, &id),
    });
    store.apply(ops)?;
    Ok(id)
}

/// Reads a process's state after `slot`, if cached.
pub fn read_computed(store: &dyn Store, process: &str, slot: u64) -> Result<Option<Message>> {
    cache::read_message(store, &computed_slot_path(process, slot))
}

/// The highest slot with a cached state for `process`.
pub fn latest_computed_slot(store: &dyn Store, process: &str) -> Result<Option<u64>> {
    let slots = store
        .list(&join(&["computed", process, "slot"]))?
        .unwrap_or_default();
    Ok(slots.iter().filter_map(|s| s.parse::<u64>().ok()).max())
}

/// Links a hashpath (`<base>/<leaf>`) to the path or ID of the result it produced.
pub fn link_hashpath(store: &dyn Store, hashpath: &str, result: &str) -> Result<()> {
    store.make_link(result, hashpath)
}

/// Where a compiled WASM module is kept: `wasm/compiled/<blake3(module) hex>/<engine key hex>`.
/// The engine key is the engine's compatibility hash, so an engine upgrade misses rather than
/// deserializes an incompatible artifact.
pub fn compiled_module_path(module: &[u8], engine_key: &[u8]) -> String {
    format!(
        "wasm/compiled/{}/{}",
        crate::format::hex(blake3::hash(module).as_bytes()),
        crate::format::hex(engine_key)
    )
}

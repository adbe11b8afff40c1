//! Fuel metering ([`crate::Budget::Fuel`]): a deterministic budget counted by code added to the
//! module itself, rather than by wasmtime's own fuel.
//!
//! The module is rewritten before it is compiled:
//!
//! * a mutable `i64` global, exported as [`FUEL_EXPORT`], holds the fuel left;
//! * every function entry and every loop iteration costs [`STEP_COST`] units: if fewer are
//!   left, the counter is set to zero and the code traps, else it goes down by that much;
//! * each bulk operation (`memory.copy`, `memory.fill`, `memory.init`, `table.copy`,
//!   `table.fill`, `table.init`, `table.grow`, and the GC proposal's array operations that take
//!   a length) costs one unit per byte or element plus one, charged the same way before it runs.
//!
//! Any endless execution enters functions or loop heads endlessly (the code between two of them
//! is finite straight-line code, bulk operations aside, which are charged by their length), so
//! it runs out of fuel; and since the count depends only on the path taken, an evaluation runs
//! out at the same point on every node. A trap with the counter at zero is the budget's.
//! [`STEP_COST`] makes a unit about one wasm instruction on the Lua interpreter, as wasmtime's
//! fuel counts. wasmtime's fuel keeps the count in a value carried through every call and
//! updated in every block; one global taken down at function and loop heads costs a third as
//! much (8–12 % of an aos evaluation instead of 20–30 %).
//!
//! Nothing else changes: function, global and local indices of the original code stay as they
//! were (the global is appended after the module's own; scratch locals are appended after a
//! function's own, and only where a bulk operation needs them).

use wasmparser::{
    BinaryReader, CompositeInnerType, FunctionBody, ImportSectionReader, MemorySectionReader,
    Operator, TableSectionReader, TypeRef, TypeSectionReader, WasmFeatures,
};

use crate::{Result, WasmError};

/// The metering's version, part of the engine's artifact compatibility digest under
/// [`crate::Budget::Fuel`]: change it whenever the code added changes.
pub(crate) const VERSION: &str = "ao-wasm fuel metering 1";

/// The export name of the fuel-left global.
pub(crate) const FUEL_EXPORT: &str = "__ao_fuel_left";

/// Fuel units one function entry or loop iteration costs: the Lua interpreter runs about this
/// many wasm instructions between two of them.
pub(crate) const STEP_COST: i64 = 32;

/// wasmparser's (and so wasmtime's) limits that metering could push a valid module past.
const MAX_LOCALS: u64 = 50_000;
const MAX_FUNCTION_SIZE: usize = 7_654_321;
const MAX_GLOBALS_OR_EXPORTS: u32 = 1_000_000;

/// The fuel a start function runs on (instantiation comes before any call sets a budget).
pub(crate) const START_FUEL: i64 = 20_000_000_000;

pub(crate) const SECTION_TYPE: u8 = 1;
pub(crate) const SECTION_IMPORT: u8 = 2;
pub(crate) const SECTION_FUNCTION: u8 = 3;
pub(crate) const SECTION_TABLE: u8 = 4;
pub(crate) const SECTION_MEMORY: u8 = 5;
pub(crate) const SECTION_GLOBAL: u8 = 6;
pub(crate) const SECTION_EXPORT: u8 = 7;
pub(crate) const SECTION_CODE: u8 = 10;

fn bad(reason: impl std::fmt::Display) -> WasmError {
    WasmError::Compile(format!("cannot meter the module: {reason}"))
}

pub(crate) fn reader(bytes: &[u8], offset: usize) -> BinaryReader<'_> {
    BinaryReader::new_features(bytes, offset, WasmFeatures::all())
}

pub(crate) fn leb_u64(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn leb_i64(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

pub(crate) fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb_u64(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// One section of the module: its id, and the offset and bytes of its contents.
pub(crate) struct Section<'a> {
    pub(crate) id: u8,
    pub(crate) offset: usize,
    pub(crate) bytes: &'a [u8],
}

pub(crate) fn sections(module: &[u8]) -> Result<Vec<Section<'_>>> {
    const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    if module.get(..8) != Some(&HEADER[..]) {
        return Err(bad("not a core wasm module (version 1)"));
    }
    let mut r = reader(&module[8..], 8);
    let mut out = Vec::new();
    while !r.eof() {
        let id = r.read_u8().map_err(bad)?;
        let len = r.read_var_u32().map_err(bad)? as usize;
        let offset = r.original_position();
        let bytes = r.read_bytes(len).map_err(bad)?;
        out.push(Section { id, offset, bytes });
    }
    Ok(out)
}

/// What the rewrite needs to know about the module.
#[derive(Default)]
pub(crate) struct Shape {
    /// Parameter counts of the function types, by type index.
    pub(crate) params: Vec<u32>,
    /// Type index of each defined function.
    pub(crate) func_types: Vec<u32>,
    /// Whether each memory (imports first) has 64-bit addresses.
    memory64: Vec<bool>,
    /// Whether each table (imports first) has 64-bit indices.
    table64: Vec<bool>,
    globals: u32,
}

pub(crate) fn shape(sections: &[Section<'_>]) -> Result<Shape> {
    let mut s = Shape::default();
    for sec in sections {
        let r = reader(sec.bytes, sec.offset);
        match sec.id {
            SECTION_TYPE => {
                for group in TypeSectionReader::new(r).map_err(bad)? {
                    for ty in group.map_err(bad)?.into_types() {
                        s.params.push(match &ty.composite_type.inner {
                            CompositeInnerType::Func(f) => f.params().len() as u32,
                            // Not a function type: no function body refers to it.
                            _ => 0,
                        });
                    }
                }
            }
            SECTION_IMPORT => {
                for import in ImportSectionReader::new(r).map_err(bad)?.into_imports() {
                    match import.map_err(bad)?.ty {
                        TypeRef::Global(_) => s.globals += 1,
                        TypeRef::Memory(m) => s.memory64.push(m.memory64),
                        TypeRef::Table(t) => s.table64.push(t.table64),
                        _ => {}
                    }
                }
            }
            SECTION_FUNCTION => {
                let mut r = r;
                let n = r.read_var_u32().map_err(bad)?;
                for _ in 0..n {
                    s.func_types.push(r.read_var_u32().map_err(bad)?);
                }
            }
            SECTION_TABLE => {
                for t in TableSectionReader::new(r).map_err(bad)? {
                    s.table64.push(t.map_err(bad)?.ty.table64);
                }
            }
            SECTION_MEMORY => {
                for m in MemorySectionReader::new(r).map_err(bad)? {
                    s.memory64.push(m.map_err(bad)?.memory64);
                }
            }
            SECTION_GLOBAL => {
                let mut r = r;
                s.globals += r.read_var_u32().map_err(bad)?;
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The module with step metering added (see the module documentation).
pub(crate) fn instrument(module: &[u8]) -> Result<Vec<u8>> {
    let initial = START_FUEL;
    let sections = sections(module)?;
    let shape = shape(&sections)?;
    let counter = shape.globals;
    let mut out = module[..8].to_vec();
    let mut have_globals = false;
    let mut have_exports = false;
    for sec in &sections {
        // The global and export sections come after the memory/tag sections and before the
        // start/element/code sections: add them where they are missing.
        if !have_globals && sec.id != 0 && section_rank(sec.id) > section_rank(SECTION_GLOBAL) {
            section(
                SECTION_GLOBAL,
                &with_counter_global(&[0], initial)?,
                &mut out,
            );
            have_globals = true;
        }
        if !have_exports && sec.id != 0 && section_rank(sec.id) > section_rank(SECTION_EXPORT) {
            section(
                SECTION_EXPORT,
                &with_counter_export(&[0], counter)?,
                &mut out,
            );
            have_exports = true;
        }
        match sec.id {
            SECTION_GLOBAL => {
                section(
                    SECTION_GLOBAL,
                    &with_counter_global(sec.bytes, initial)?,
                    &mut out,
                );
                have_globals = true;
            }
            SECTION_EXPORT => {
                check_export_names(sec)?;
                section(
                    SECTION_EXPORT,
                    &with_counter_export(sec.bytes, counter)?,
                    &mut out,
                );
                have_exports = true;
            }
            SECTION_CODE => section(SECTION_CODE, &metered_code(sec, &shape, counter)?, &mut out),
            id => section(id, sec.bytes, &mut out),
        }
    }
    if !have_globals {
        section(
            SECTION_GLOBAL,
            &with_counter_global(&[0], initial)?,
            &mut out,
        );
    }
    if !have_exports {
        section(
            SECTION_EXPORT,
            &with_counter_export(&[0], counter)?,
            &mut out,
        );
    }
    Ok(out)
}

/// The position of a known section in the order the binary format requires (custom sections,
/// id 0, may appear anywhere and are never used for placement).
pub(crate) fn section_rank(id: u8) -> u8 {
    match id {
        // type, import, function, table, memory
        1..=5 => id,
        // tag (13) sits between memory and global
        13 => 6,
        // global, export, start, element
        6..=9 => id + 1,
        // data count (12) sits between element and code
        12 => 11,
        // code, data
        10 | 11 => id + 2,
        _ => u8::MAX,
    }
}

/// A global section's contents with the counter appended (`(mut i64) (i64.const initial)`).
fn with_counter_global(contents: &[u8], initial: i64) -> Result<Vec<u8>> {
    let mut r = reader(contents, 0);
    let n = r.read_var_u32().map_err(bad)?;
    if n >= MAX_GLOBALS_OR_EXPORTS {
        return Err(bad("metering would exceed the limit on globals"));
    }
    let mut b = Vec::with_capacity(contents.len() + 8);
    leb_u64(u64::from(n) + 1, &mut b);
    b.extend_from_slice(&contents[r.original_position()..]);
    b.extend_from_slice(&[0x7e, 0x01, 0x42]);
    leb_i64(initial, &mut b);
    b.push(0x0b);
    Ok(b)
}

/// An export section's contents with the counter's export appended.
fn with_counter_export(contents: &[u8], counter: u32) -> Result<Vec<u8>> {
    let mut r = reader(contents, 0);
    let n = r.read_var_u32().map_err(bad)?;
    if n >= MAX_GLOBALS_OR_EXPORTS {
        return Err(bad("metering would exceed the limit on exports"));
    }
    let mut b = Vec::with_capacity(contents.len() + FUEL_EXPORT.len() + 8);
    leb_u64(u64::from(n) + 1, &mut b);
    b.extend_from_slice(&contents[r.original_position()..]);
    leb_u64(FUEL_EXPORT.len() as u64, &mut b);
    b.extend_from_slice(FUEL_EXPORT.as_bytes());
    b.push(0x03);
    leb_u64(u64::from(counter), &mut b);
    Ok(b)
}

fn check_export_names(sec: &Section<'_>) -> Result<()> {
    let exports =
        wasmparser::ExportSectionReader::new(reader(sec.bytes, sec.offset)).map_err(bad)?;
    for e in exports {
        if e.map_err(bad)?.name == FUEL_EXPORT {
            return Err(bad(format!("the module already exports {FUEL_EXPORT:?}")));
        }
    }
    Ok(())
}

/// A function entry or loop iteration: [`STEP_COST`] units.
fn step(counter: u32, out: &mut Vec<u8>) {
    let c = u64::from(counter);
    // global.get C; i64.const COST; i64.lt_u; if; i64.const 0; global.set C; unreachable; end
    out.push(0x23);
    leb_u64(c, out);
    out.push(0x42);
    leb_i64(STEP_COST, out);
    out.extend_from_slice(&[0x54, 0x04, 0x40, 0x42, 0x00, 0x24]);
    leb_u64(c, out);
    out.extend_from_slice(&[0x00, 0x0b]);
    // global.get C; i64.const COST; i64.sub; global.set C
    out.push(0x23);
    leb_u64(c, out);
    out.push(0x42);
    leb_i64(STEP_COST, out);
    out.extend_from_slice(&[0x7d, 0x24]);
    leb_u64(c, out);
}

/// Scratch locals appended to a function that has bulk operations.
struct Scratch {
    len32: u32,
    len64: u64,
    cost: u64,
}

/// Charges a bulk operation whose length operand (on top of the stack, left there) is 64-bit
/// or 32-bit.
fn charge_bulk(counter: u32, wide: bool, s: &Scratch, out: &mut Vec<u8>) {
    let c = u64::from(counter);
    if wide {
        // local.tee len64; local.get len64
        out.push(0x22);
        leb_u64(s.len64, out);
        out.push(0x20);
        leb_u64(s.len64, out);
    } else {
        // local.tee len32; local.get len32; i64.extend_i32_u
        out.push(0x22);
        leb_u64(u64::from(s.len32), out);
        out.push(0x20);
        leb_u64(u64::from(s.len32), out);
        out.push(0xad);
    }
    // i64.const 1; i64.add; local.set cost
    out.extend_from_slice(&[0x42, 0x01, 0x7c, 0x21]);
    leb_u64(s.cost, out);
    // global.get C; local.get cost; i64.lt_u; if; i64.const 0; global.set C; unreachable; end
    out.push(0x23);
    leb_u64(c, out);
    out.push(0x20);
    leb_u64(s.cost, out);
    out.extend_from_slice(&[0x54, 0x04, 0x40, 0x42, 0x00, 0x24]);
    leb_u64(c, out);
    out.extend_from_slice(&[0x00, 0x0b]);
    // global.get C; local.get cost; i64.sub; global.set C
    out.push(0x23);
    leb_u64(c, out);
    out.push(0x20);
    leb_u64(s.cost, out);
    out.extend_from_slice(&[0x7d, 0x24]);
    leb_u64(c, out);
}

/// Whether a bulk operation's length operand is 64-bit, or `None` for other operators.
fn bulk_len_is_64(op: &Operator<'_>, shape: &Shape) -> Result<Option<bool>> {
    let mem = |i: u32| {
        shape
            .memory64
            .get(i as usize)
            .copied()
            .ok_or_else(|| bad("no such memory"))
    };
    let table = |i: u32| {
        shape
            .table64
            .get(i as usize)
            .copied()
            .ok_or_else(|| bad("no such table"))
    };
    Ok(Some(match *op {
        Operator::MemoryFill { mem: m } => mem(m)?,
        Operator::MemoryCopy { dst_mem, src_mem } => mem(dst_mem)? && mem(src_mem)?,
        // Lengths of these are `i32` whatever the memory or table.
        Operator::MemoryInit { .. }
        | Operator::TableInit { .. }
        | Operator::ArrayFill { .. }
        | Operator::ArrayCopy { .. }
        | Operator::ArrayNew { .. }
        | Operator::ArrayNewDefault { .. }
        | Operator::ArrayNewData { .. }
        | Operator::ArrayNewElem { .. }
        | Operator::ArrayInitData { .. }
        | Operator::ArrayInitElem { .. } => false,
        Operator::TableFill { table: t } | Operator::TableGrow { table: t } => table(t)?,
        Operator::TableCopy {
            dst_table,
            src_table,
        } => table(dst_table)? && table(src_table)?,
        _ => return Ok(None),
    }))
}

fn metered_code(sec: &Section<'_>, shape: &Shape, counter: u32) -> Result<Vec<u8>> {
    let mut r = reader(sec.bytes, sec.offset);
    let n = r.read_var_u32().map_err(bad)?;
    if n as usize != shape.func_types.len() {
        return Err(bad("function and code sections disagree"));
    }
    let mut out = Vec::with_capacity(sec.bytes.len() + sec.bytes.len() / 8);
    leb_u64(u64::from(n), &mut out);
    for &ty in &shape.func_types {
        let len = r.read_var_u32().map_err(bad)? as usize;
        let start = r.original_position();
        let body_bytes = r.read_bytes(len).map_err(bad)?;
        let params = *shape
            .params
            .get(ty as usize)
            .ok_or_else(|| bad("no such function type"))?;
        let body = metered_body(body_bytes, start, params, shape, counter)?;
        leb_u64(body.len() as u64, &mut out);
        out.extend_from_slice(&body);
    }
    Ok(out)
}

fn metered_body(
    bytes: &[u8],
    offset: usize,
    params: u32,
    shape: &Shape,
    counter: u32,
) -> Result<Vec<u8>> {
    let at = |pos: usize| pos - offset;
    let body = FunctionBody::new(reader(bytes, offset));
    let mut locals = body.get_locals_reader().map_err(bad)?;
    let groups = locals.get_count();
    let mut declared = u64::from(params);
    for _ in 0..groups {
        let (count, _) = locals.read().map_err(bad)?;
        declared += u64::from(count);
    }
    let ops_start = at(locals.original_position());
    let mut needs_scratch = false;
    let mut scan = body.get_operators_reader().map_err(bad)?;
    while !scan.eof() {
        if bulk_len_is_64(&scan.read().map_err(bad)?, shape)?.is_some() {
            needs_scratch = true;
        }
    }
    if needs_scratch && declared + 3 > MAX_LOCALS {
        return Err(bad(
            "metering would exceed the limit on a function's locals",
        ));
    }
    let scratch = Scratch {
        len32: u32::try_from(declared).map_err(|_| bad("too many locals"))?,
        len64: declared + 1,
        cost: declared + 2,
    };
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4 + 32);
    // The local declarations: the function's own, then the scratch ones.
    let mut r = reader(bytes, offset);
    r.read_var_u32().map_err(bad)?;
    let declarations = &bytes[at(r.original_position())..ops_start];
    if needs_scratch {
        leb_u64(u64::from(groups) + 2, &mut out);
        out.extend_from_slice(declarations);
        out.extend_from_slice(&[0x01, 0x7f, 0x02, 0x7e]);
    } else {
        leb_u64(u64::from(groups), &mut out);
        out.extend_from_slice(declarations);
    }
    step(counter, &mut out);
    let mut ops = body.get_operators_reader().map_err(bad)?;
    let mut copied = ops_start;
    while !ops.eof() {
        let before = at(ops.original_position());
        let op = ops.read().map_err(bad)?;
        if let Some(wide) = bulk_len_is_64(&op, shape)? {
            out.extend_from_slice(&bytes[copied..before]);
            charge_bulk(counter, wide, &scratch, &mut out);
            copied = before;
        } else if matches!(op, Operator::Loop { .. }) {
            let after = at(ops.original_position());
            out.extend_from_slice(&bytes[copied..after]);
            step(counter, &mut out);
            copied = after;
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    if out.len() > MAX_FUNCTION_SIZE {
        return Err(bad("metering would exceed the limit on a function's size"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/wasm/test.wasm"
    );

    #[test]
    fn metered_modules_validate() {
        let bytes = std::fs::read(FAC).unwrap();
        let metered = instrument(&bytes).unwrap();
        wasmparser::Validator::new_with_features(WasmFeatures::all())
            .validate_all(&metered)
            .unwrap();
    }

    #[test]
    fn metered_aos_validates_and_damaged_aos_is_refused_cleanly() {
        let path = FAC.replace("test.wasm", "aos-2-pure-xs.exnref.wasm");
        let bytes = std::fs::read(path).unwrap();
        let metered = instrument(&bytes).unwrap();
        wasmparser::Validator::new_with_features(WasmFeatures::all())
            .validate_all(&metered)
            .unwrap();
        for cut in (0..bytes.len()).step_by(997) {
            let _ = instrument(&bytes[..cut]);
        }
    }

    #[test]
    fn damaged_modules_are_errors_not_panics() {
        let bytes = std::fs::read(FAC).unwrap();
        for cut in 0..bytes.len() {
            let _ = instrument(&bytes[..cut]);
        }
        for i in 8..bytes.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let _ = instrument(&b);
            }
        }
    }
}

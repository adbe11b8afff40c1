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
//!
//! A function whose whole run is bounded by its code gets no entry step ([`unchecked`]): one
//! with no loop, no indirect call and no call of an import, whose direct callees are all such
//! functions, and whose operators plus its callees' (each call site counted) are at most
//! [`UNCHECKED_OPS`]. Recursion is a cycle of direct calls and never qualifies; the bound on
//! the total keeps a chain of functions each calling the next many times (whose run grows
//! exponentially with the chain's length) from escaping the budget. Between two steps there
//! is then at most a function's straight-line code and a bounded number of such calls, so the
//! argument above holds. In the aos builds about a ninth of the functions qualify.
//! [`STEP_COST`] makes a unit about one wasm instruction on the Lua interpreter, as wasmtime's
//! fuel counts. wasmtime's fuel keeps the count in a value carried through every call and
//! updated in every block; one global taken down at function and loop heads costs a third as
//! much (8–12 % of an aos evaluation instead of 20–30 %).
//!
//! Nothing else changes: function, global and local indices of the original code stay as they
//! were (the global is appended after the module's own; scratch locals are appended after a
//! function's own, and only where a bulk operation needs them).

use wasmparser::{FunctionBody, Operator};

use crate::rewrite::{
    SECTION_CODE, SECTION_EXPORT, Section, Shape, leb_i64, leb_u64, locals, reader, section,
    sections, shape, with_bodies, with_exported_global,
};
use crate::{Result, WasmError};

/// The metering's version, part of the engine's artifact compatibility digest under
/// [`crate::Budget::Fuel`]: change it whenever the code added changes.
pub(crate) const VERSION: &str = "ao-wasm fuel metering 3";

/// The export name of the fuel-left global.
pub(crate) const FUEL_EXPORT: &str = "__ao_fuel_left";

/// Fuel units one function entry or loop iteration costs: the Lua interpreter runs about this
/// many wasm instructions between two of them.
pub(crate) const STEP_COST: i64 = 32;

/// The most operators a function left without an entry step may run, its callees' included.
pub(crate) const UNCHECKED_OPS: u64 = 1024;

/// wasmparser's (and so wasmtime's) limits that metering could push a valid module past
/// (those on globals and exports are `rewrite.rs`'s).
const MAX_LOCALS: u64 = 50_000;
const MAX_FUNCTION_SIZE: usize = 7_654_321;

/// The fuel a start function runs on (instantiation comes before any call sets a budget).
pub(crate) const START_FUEL: i64 = 20_000_000_000;

fn bad(reason: impl std::fmt::Display) -> WasmError {
    WasmError::Compile(format!("cannot meter the module: {reason}"))
}

/// The module with step metering added (see the module documentation).
pub(crate) fn instrument(module: &[u8]) -> Result<Vec<u8>> {
    let sections = sections(module).map_err(bad)?;
    let shape = shape(&sections).map_err(bad)?;
    let counter = shape.globals;
    for sec in sections.iter().filter(|s| s.id == SECTION_EXPORT) {
        check_export_names(sec)?;
    }
    // The counter: `(mut i64) (i64.const START_FUEL)`.
    let mut global = vec![0x7e, 0x01, 0x42];
    leb_i64(START_FUEL, &mut global);
    global.push(0x0b);
    with_exported_global(
        module,
        &sections,
        &shape,
        &global,
        FUEL_EXPORT,
        bad,
        |sec, out| {
            let metered;
            let bytes = if sec.id == SECTION_CODE {
                let unchecked = unchecked(sec, &shape)?;
                let mut next = 0;
                metered = with_bodies(sec, &shape, bad, |bytes, offset, params| {
                    let entry_step = !unchecked.get(next).copied().unwrap_or(false);
                    next += 1;
                    metered_body(bytes, offset, params, &shape, counter, entry_step)
                })?;
                &metered[..]
            } else {
                sec.bytes
            };
            section(sec.id, bytes, out);
            Ok(())
        },
    )
}

/// Which defined functions need no entry step (see the module documentation), by their
/// index among the defined functions.
fn unchecked(code: &Section<'_>, shape: &Shape) -> Result<Vec<bool>> {
    let n = shape.func_types.len();
    // Whether a function may run unboundedly by itself, its operator count, and the defined
    // functions it calls directly (once per call site).
    let mut open = vec![false; n];
    let mut ops = vec![0_u64; n];
    let mut callees: Vec<Vec<u32>> = vec![Vec::new(); n];
    let bodies =
        wasmparser::CodeSectionReader::new(reader(code.bytes, code.offset)).map_err(bad)?;
    if bodies.count() as usize != n {
        return Err(bad("function and code sections disagree"));
    }
    for (f, body) in bodies.into_iter().enumerate() {
        let mut r = body.map_err(bad)?.get_operators_reader().map_err(bad)?;
        while !r.eof() {
            ops[f] += 1;
            match r.read().map_err(bad)? {
                Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                    match function_index.checked_sub(shape.imported_funcs) {
                        Some(g) if (g as usize) < n => callees[f].push(g),
                        // An import (which may call back into the module), or invalid.
                        _ => open[f] = true,
                    }
                }
                Operator::Loop { .. }
                | Operator::CallIndirect { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::CallRef { .. }
                | Operator::ReturnCallRef { .. } => open[f] = true,
                _ => {}
            }
        }
    }
    // Callees before callers: a function is ready once all its callees are unchecked; one on
    // a cycle, or calling a function that is not, never is.
    let mut callers: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (f, cs) in callees.iter().enumerate() {
        for &g in cs {
            callers[g as usize].push(f as u32);
        }
    }
    let mut pending: Vec<usize> = callees.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&f| !open[f] && pending[f] == 0).collect();
    let mut cost = vec![0_u64; n];
    let mut unchecked = vec![false; n];
    while let Some(f) = ready.pop() {
        let total = callees[f]
            .iter()
            .fold(ops[f], |t, &g| t.saturating_add(cost[g as usize]));
        if total > UNCHECKED_OPS {
            continue;
        }
        cost[f] = total;
        unchecked[f] = true;
        for &caller in &callers[f] {
            let c = caller as usize;
            pending[c] -= 1;
            if pending[c] == 0 && !open[c] {
                ready.push(c);
            }
        }
    }
    Ok(unchecked)
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
///
/// The counter is taken down first and tested for a negative value after, which traps in
/// exactly the cases a test of `counter < STEP_COST` before would (the counter is never
/// negative between steps and at most `i64::MAX`, so the subtraction cannot wrap), and
/// leaves the same count; the compiled code is shorter (the test reads the value just
/// computed instead of loading the counter again).
fn step(counter: u32, out: &mut Vec<u8>) {
    let c = u64::from(counter);
    // global.get C; i64.const COST; i64.sub; global.set C
    out.push(0x23);
    leb_u64(c, out);
    out.push(0x42);
    leb_i64(STEP_COST, out);
    out.extend_from_slice(&[0x7d, 0x24]);
    leb_u64(c, out);
    // global.get C; i64.const 0; i64.lt_s; if; i64.const 0; global.set C; unreachable; end
    out.push(0x23);
    leb_u64(c, out);
    out.extend_from_slice(&[0x42, 0x00, 0x53, 0x04, 0x40, 0x42, 0x00, 0x24]);
    leb_u64(c, out);
    out.extend_from_slice(&[0x00, 0x0b]);
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

fn metered_body(
    bytes: &[u8],
    offset: usize,
    params: u32,
    shape: &Shape,
    counter: u32,
    entry_step: bool,
) -> Result<Vec<u8>> {
    let at = |pos: usize| pos - offset;
    let body = FunctionBody::new(reader(bytes, offset));
    let own = locals(bytes, offset, params).map_err(bad)?;
    let (declared, ops_start) = (own.next, own.ops_start);
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
    if needs_scratch {
        own.write_with(2, &[0x01, 0x7f, 0x02, 0x7e], &mut out);
    } else {
        own.write_with(0, &[], &mut out);
    }
    if entry_step {
        step(counter, &mut out);
    }
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
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&metered)
            .unwrap();
    }

    #[test]
    fn metered_aos_validates_and_damaged_aos_is_refused_cleanly() {
        let path = FAC.replace("test.wasm", "aos-2-pure-xs.exnref.wasm");
        let bytes = std::fs::read(path).unwrap();
        let metered = instrument(&bytes).unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
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

    /// The defined functions of a WAT module that get no entry step.
    fn unchecked_of(wat: &str) -> Vec<bool> {
        let bytes = wat::parse_str(wat).unwrap();
        let sections = sections(&bytes).unwrap();
        let shape = shape(&sections).unwrap();
        let code = sections.iter().find(|s| s.id == SECTION_CODE).unwrap();
        unchecked(code, &shape).unwrap()
    }

    #[test]
    fn only_functions_bounded_by_their_code_skip_the_entry_step() {
        let big_leaf = "i32.const 0 drop ".repeat(600);
        let wat = format!(
            r#"(module
              (import "env" "host" (func $host))
              (type $t (func))
              (table 1 funcref)
              (func $leaf)
              (func $calls_leaf call $leaf call $leaf)
              (func $tail return_call $calls_leaf)
              (func $loop (loop))
              (func $calls_loop call $loop)
              (func $self call $self)
              (func $ping call $pong)
              (func $pong call $ping)
              (func $calls_host call $host)
              (func $indirect (call_indirect (type $t) (i32.const 0)))
              (func $big_leaf {big_leaf})
              (func $calls_big call $big_leaf)
            )"#
        );
        assert_eq!(
            unchecked_of(&wat),
            [
                true,  // leaf
                true,  // calls_leaf
                true,  // tail
                false, // loop
                false, // calls_loop
                false, // self
                false, // ping
                false, // pong
                false, // calls_host
                false, // indirect
                false, // big_leaf: 1,201 operators
                false, // calls_big
            ]
        );
    }

    /// A chain of functions each calling the next twice runs 2^depth calls with no loop and no
    /// recursion: the bound on the operators keeps the upper ones checked.
    #[test]
    fn a_doubling_chain_stays_checked_above_the_bound() {
        let mut wat = String::from("(module (func $f0)");
        for k in 1..=20 {
            let p = k - 1;
            wat.push_str(&format!(" (func $f{k} call $f{p} call $f{p})"));
        }
        wat.push(')');
        let u = unchecked_of(&wat);
        // f_k runs 2^(k+2) - 3 operators, its callees' included: f_9 is the first over 1,024.
        let first_checked = u.iter().position(|&b| !b).unwrap();
        assert_eq!(first_checked, 9, "{u:?}");
        assert!(u[first_checked..].iter().all(|&b| !b));
    }
}

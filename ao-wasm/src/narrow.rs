//! Runs a memory64 module whose memory stays below 4 GiB on a 32-bit memory, with the same
//! observable behaviour, when Spectre hardening is on.
//!
//! wasmtime bounds-checks every access to a 64-bit memory explicitly, and with Spectre
//! hardening on (the default, [`crate::WasmConfig::spectre_hardening`]) each check also masks
//! the address with a conditional move that the access then waits for. A 32-bit memory lives
//! in a 4 GiB reservation followed by guard pages, so its accesses need neither. aos-2 and the
//! wasm64 ao-loader build declare 64-bit memories of at most 2 GiB and 512 MiB, so the module
//! is rewritten before it is compiled:
//!
//! * the memory's type becomes 32-bit (same limits), and active data segments' `i64.const`
//!   offsets become `i32.const`;
//! * an access's 64-bit address is checked to be below 4 GiB (a shift and a branch to a
//!   trap, [`check_and_wrap`]), then wrapped to 32 bits. Every access at such an address was
//!   out of bounds on the 64-bit memory, and the trap is the same one. Whatever the
//!   processor speculates, the access's address is a 32-bit one, inside the reservation, so
//!   no masking is needed;
//! * `memory.size` and `memory.grow` give 64-bit page counts again (`memory.grow` by 2^32
//!   pages or more fails with -1, as on the 64-bit memory), and `memory.fill`, `memory.copy`
//!   and `memory.init` check and wrap their 64-bit operands like addresses (an operand of 4 GiB or
//!   more is out of bounds whatever the others are);
//! * an exported global, [`MARKER_EXPORT`], tells the host the module's pointers are 64-bit.
//!
//! Function signatures, locals and every other value stay 64-bit: only the memory's index
//! type changes, so host functions, snapshots and the aos calling convention see the module
//! as before. A module with an imported, shared or unbounded memory, several memories, a
//! maximum of 4 GiB, or a memory operation this rewrite does not know (atomics, SIMD lane
//! accesses) is compiled as it is: the rewritten module is validated before it is used (an
//! operation left taking a 64-bit address fails validation), and an invalid one is dropped.
//!
//! Measured on aos-2-pure-xs (`return 1+1`, fuel budget, Spectre hardening on): p50 0.202–0.209
//! → 0.181–0.186 ms, and the wasm64 ao-loader build 0.302–0.315 → 0.276–0.281 ms. Without the
//! hardening, wasmtime's own 64-bit checks cost less than these (0.170–0.176 ms on
//! aos-2-pure-xs), so the engine narrows only hardened modules. (Clamping addresses to
//! `0xffff_ffff` with a `select` instead of branching measured no faster, and slower on the
//! wasm64 ao-loader build; skipping the check of a local already checked on every path
//! measured no difference.)

use wasmparser::{
    DataKind, DataSectionReader, FunctionBody, MemorySectionReader, Operator, TypeRef, Validator,
    WasmFeatures,
};

use crate::rewrite::{
    SECTION_CODE, SECTION_IMPORT, SECTION_MEMORY, Section, leb_i64, leb_u64, locals, reader,
    section, sections, shape, with_bodies, with_exported_global,
};

/// The rewrite's version, part of the engine's artifact compatibility digest: change it
/// whenever the code it writes changes.
pub(crate) const VERSION: &str = "ao-wasm memory64 narrowing 1";

/// The export (an immutable `i32` global) that marks a narrowed module.
pub(crate) const MARKER_EXPORT: &str = "__ao_memory64";

const SECTION_DATA: u8 = 11;

/// The largest memory narrowed, in 64 KiB pages: under 4 GiB, so that every 64-bit address
/// or length of 4 GiB or more is out of bounds.
const MAX_PAGES: u64 = 65_535;

/// wasmparser's (and so wasmtime's) limits that the rewrite could push a valid module past.
const MAX_LOCALS: u64 = 50_000;
const MAX_FUNCTION_SIZE: usize = 7_654_321;

/// Why a module is compiled as it is.
struct Skip;

type Narrowed<T> = std::result::Result<T, Skip>;

fn skip<E>(_: E) -> Skip {
    Skip
}

/// The module with its 64-bit memory narrowed to 32 bits (see the module documentation), or
/// `None` when that does not apply.
pub(crate) fn narrow(module: &[u8]) -> Option<Vec<u8>> {
    let narrowed = rewrite(module).ok()?;
    let features = WasmFeatures::all();
    Validator::new_with_features(features)
        .validate_all(&narrowed)
        .is_ok()
        .then_some(narrowed)
}

fn rewrite(module: &[u8]) -> Narrowed<Vec<u8>> {
    let sections = sections(module).map_err(skip)?;
    let shape = shape(&sections).map_err(skip)?;
    let mut memory = None;
    for sec in &sections {
        let r = reader(sec.bytes, sec.offset);
        match sec.id {
            SECTION_IMPORT => {
                for import in wasmparser::ImportSectionReader::new(r)
                    .map_err(skip)?
                    .into_imports()
                {
                    if let TypeRef::Memory(_) = import.map_err(skip)?.ty {
                        return Err(Skip);
                    }
                }
            }
            SECTION_MEMORY => {
                for m in MemorySectionReader::new(r).map_err(skip)? {
                    if memory.replace(m.map_err(skip)?).is_some() {
                        return Err(Skip);
                    }
                }
            }
            _ => {}
        }
    }
    let Some(memory) = memory else {
        return Err(Skip);
    };
    let max = memory.maximum.ok_or(Skip)?;
    if !memory.memory64 || memory.shared || memory.page_size_log2.is_some() || max > MAX_PAGES {
        return Err(Skip);
    }
    // The marker: `i32 (i32.const 1)`, immutable.
    let marker = [0x7f, 0x00, 0x41, 0x01, 0x0b];
    with_exported_global(
        module,
        &sections,
        &shape,
        &marker,
        MARKER_EXPORT,
        skip,
        |sec, out| {
            match sec.id {
                SECTION_MEMORY => {
                    // One memory: flags "has a maximum" (32-bit, unshared), then the limits.
                    let mut b = vec![0x01, 0x01];
                    leb_u64(memory.initial, &mut b);
                    leb_u64(max, &mut b);
                    section(SECTION_MEMORY, &b, out);
                }
                SECTION_CODE => section(
                    SECTION_CODE,
                    &with_bodies(sec, &shape, skip, narrowed_body)?,
                    out,
                ),
                SECTION_DATA => section(SECTION_DATA, &narrowed_data(sec)?, out),
                id => section(id, sec.bytes, out),
            }
            Ok(())
        },
    )
}

/// The data section with active segments' offsets as `i32.const`.
fn narrowed_data(sec: &Section<'_>) -> Narrowed<Vec<u8>> {
    let segments = DataSectionReader::new(reader(sec.bytes, sec.offset)).map_err(skip)?;
    let mut b = Vec::with_capacity(sec.bytes.len() + 16);
    leb_u64(u64::from(segments.count()), &mut b);
    for segment in segments {
        let segment = segment.map_err(skip)?;
        match segment.kind {
            DataKind::Passive => b.push(0x01),
            DataKind::Active {
                memory_index: 0,
                offset_expr,
            } => {
                let mut ops = offset_expr.get_operators_reader();
                let offset = match (ops.read().map_err(skip)?, ops.read().map_err(skip)?) {
                    (Operator::I64Const { value }, Operator::End) => {
                        u32::try_from(value).map_err(skip)?
                    }
                    _ => return Err(Skip),
                };
                // Flags 0: memory 0, then `i32.const offset; end`.
                b.extend_from_slice(&[0x00, 0x41]);
                leb_i64(i64::from(offset as i32), &mut b);
                b.push(0x0b);
            }
            DataKind::Active { .. } => return Err(Skip),
        }
        leb_u64(segment.data.len() as u64, &mut b);
        b.extend_from_slice(segment.data);
    }
    Ok(b)
}

/// The scratch locals a function that touches memory gets, after its own.
struct Scratch {
    first: u64,
}

impl Scratch {
    /// Their declarations: three `i64`, two `i32`, one each of `f32`, `f64` and `v128`.
    const DECLARATIONS: [u8; 10] = [0x03, 0x7e, 0x02, 0x7f, 0x01, 0x7d, 0x01, 0x7c, 0x01, 0x7b];
    const GROUPS: u32 = 5;
    const COUNT: u64 = 8;

    /// Addresses (and other 64-bit operands) being checked.
    fn addr(&self) -> u64 {
        self.first
    }
    /// A second 64-bit operand (`memory.copy`'s source), or a stored `i64`.
    fn second64(&self) -> u64 {
        self.first + 1
    }
    /// A 64-bit length.
    fn len64(&self) -> u64 {
        self.first + 2
    }
    fn a32(&self) -> u64 {
        self.first + 3
    }
    fn b32(&self) -> u64 {
        self.first + 4
    }
    /// The scratch local for the value a store operator stores.
    fn value(&self, op: &Operator<'_>) -> Option<u64> {
        Some(match op {
            Operator::I32Store { .. }
            | Operator::I32Store8 { .. }
            | Operator::I32Store16 { .. } => self.a32(),
            Operator::I64Store { .. }
            | Operator::I64Store8 { .. }
            | Operator::I64Store16 { .. }
            | Operator::I64Store32 { .. } => self.second64(),
            Operator::F32Store { .. } => self.first + 5,
            Operator::F64Store { .. } => self.first + 6,
            Operator::V128Store { .. } => self.first + 7,
            _ => return None,
        })
    }
}

/// The memarg of a load or store of memory 0 this rewrite knows (its address on top of the
/// stack for a load, under the value for a store).
fn load_or_store(op: &Operator<'_>) -> Option<wasmparser::MemArg> {
    use Operator::*;
    let memarg = match op {
        I32Load { memarg }
        | I64Load { memarg }
        | F32Load { memarg }
        | F64Load { memarg }
        | I32Load8S { memarg }
        | I32Load8U { memarg }
        | I32Load16S { memarg }
        | I32Load16U { memarg }
        | I64Load8S { memarg }
        | I64Load8U { memarg }
        | I64Load16S { memarg }
        | I64Load16U { memarg }
        | I64Load32S { memarg }
        | I64Load32U { memarg }
        | V128Load { memarg }
        | V128Load8x8S { memarg }
        | V128Load8x8U { memarg }
        | V128Load16x4S { memarg }
        | V128Load16x4U { memarg }
        | V128Load32x2S { memarg }
        | V128Load32x2U { memarg }
        | V128Load8Splat { memarg }
        | V128Load16Splat { memarg }
        | V128Load32Splat { memarg }
        | V128Load64Splat { memarg }
        | V128Load32Zero { memarg }
        | V128Load64Zero { memarg }
        | I32Store { memarg }
        | I64Store { memarg }
        | F32Store { memarg }
        | F64Store { memarg }
        | I32Store8 { memarg }
        | I32Store16 { memarg }
        | I64Store8 { memarg }
        | I64Store16 { memarg }
        | I64Store32 { memarg }
        | V128Store { memarg } => memarg,
        _ => return None,
    };
    (memarg.memory == 0).then_some(*memarg)
}

/// Checks the 64-bit address (or length) on top of the stack and leaves it wrapped to 32
/// bits, through the scratch local `tmp`: `local.tee tmp; i64.const 32; i64.shr_u;
/// i32.wrap_i64; if; i32.const -1; i32.load; drop; unreachable; end; local.get tmp;
/// i32.wrap_i64`. The load at `0xffff_ffff` is out of bounds on any memory below 4 GiB: the
/// trap is the one the 64-bit memory gave. The access does not depend on the branch: whatever
/// the processor speculates, its address is a 32-bit one, inside the reservation.
fn check_and_wrap(tmp: u64, out: &mut Vec<u8>) {
    out.push(0x22);
    leb_u64(tmp, out);
    out.extend_from_slice(&[
        0x42, 0x20, 0x88, 0xa7, 0x04, 0x40, 0x41, 0x7f, 0x28, 0x00, 0x00, 0x1a, 0x00, 0x0b, 0x20,
    ]);
    leb_u64(tmp, out);
    out.push(0xa7);
}

fn local_set(local: u64, out: &mut Vec<u8>) {
    out.push(0x21);
    leb_u64(local, out);
}

fn local_get(local: u64, out: &mut Vec<u8>) {
    out.push(0x20);
    leb_u64(local, out);
}

fn narrowed_body(bytes: &[u8], offset: usize, params: u32) -> Narrowed<Vec<u8>> {
    let at = |pos: usize| pos - offset;
    let body = FunctionBody::new(reader(bytes, offset));
    let own = locals(bytes, offset, params).map_err(skip)?;
    let (declared, ops_start) = (own.next, own.ops_start);
    let mut touches_memory = false;
    let mut scan = body.get_operators_reader().map_err(skip)?;
    while !scan.eof() {
        let op = scan.read().map_err(skip)?;
        if let Some(memarg) = load_or_store(&op) {
            if memarg.offset > u64::from(u32::MAX) {
                return Err(Skip);
            }
            touches_memory = true;
        } else if matches!(
            op,
            Operator::MemorySize { .. }
                | Operator::MemoryGrow { .. }
                | Operator::MemoryFill { .. }
                | Operator::MemoryCopy { .. }
                | Operator::MemoryInit { .. }
        ) {
            touches_memory = true;
        }
    }
    if !touches_memory {
        return Ok(bytes.to_vec());
    }
    if declared + Scratch::COUNT > MAX_LOCALS {
        return Err(Skip);
    }
    let s = Scratch { first: declared };
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2 + 32);
    own.write_with(Scratch::GROUPS, &Scratch::DECLARATIONS, &mut out);
    let mut ops = body.get_operators_reader().map_err(skip)?;
    let mut copied = ops_start;
    while !ops.eof() {
        let before = at(ops.original_position());
        let op = ops.read().map_err(skip)?;
        let after = at(ops.original_position());
        let original = &bytes[before..after];
        let emit = |out: &mut Vec<u8>| out.extend_from_slice(&bytes[copied..before]);
        match op {
            ref op if load_or_store(op).is_some() => {
                emit(&mut out);
                match s.value(op) {
                    // A store: the address is under the value.
                    Some(value) => {
                        local_set(value, &mut out);
                        check_and_wrap(s.addr(), &mut out);
                        local_get(value, &mut out);
                    }
                    None => check_and_wrap(s.addr(), &mut out),
                }
                out.extend_from_slice(original);
            }
            Operator::MemorySize { mem: 0 } => {
                emit(&mut out);
                // memory.size; i64.extend_i32_u
                out.extend_from_slice(original);
                out.push(0xad);
            }
            Operator::MemoryGrow { mem: 0 } => {
                emit(&mut out);
                // local.tee A; i64.const 32; i64.shr_u; i64.eqz; if (result i64);
                //   local.get A; i32.wrap_i64; memory.grow; i64.extend_i32_s;
                // else; i64.const -1; end
                out.push(0x22);
                leb_u64(s.addr(), &mut out);
                out.extend_from_slice(&[0x42, 0x20, 0x88, 0x50, 0x04, 0x7e]);
                local_get(s.addr(), &mut out);
                out.push(0xa7);
                out.extend_from_slice(original);
                out.extend_from_slice(&[0xac, 0x05, 0x42, 0x7f, 0x0b]);
            }
            Operator::MemoryFill { mem: 0 } => {
                emit(&mut out);
                // [dst i64, value i32, len i64]
                local_set(s.len64(), &mut out);
                local_set(s.a32(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                local_get(s.a32(), &mut out);
                local_get(s.len64(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                out.extend_from_slice(original);
            }
            Operator::MemoryCopy {
                dst_mem: 0,
                src_mem: 0,
            } => {
                emit(&mut out);
                // [dst i64, src i64, len i64]
                local_set(s.len64(), &mut out);
                local_set(s.second64(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                local_get(s.second64(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                local_get(s.len64(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                out.extend_from_slice(original);
            }
            Operator::MemoryInit { mem: 0, .. } => {
                emit(&mut out);
                // [dst i64, src i32, len i32]
                local_set(s.b32(), &mut out);
                local_set(s.a32(), &mut out);
                check_and_wrap(s.addr(), &mut out);
                local_get(s.a32(), &mut out);
                local_get(s.b32(), &mut out);
                out.extend_from_slice(original);
            }
            _ => continue,
        }
        copied = after;
    }
    out.extend_from_slice(&bytes[copied..]);
    if out.len() > MAX_FUNCTION_SIZE {
        return Err(Skip);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine, Instance, Module, Store, Trap, Val};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/wasm");

    fn vec_of(items: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        leb_u64(items.len() as u64, &mut b);
        for i in items {
            b.extend_from_slice(i);
        }
        b
    }

    fn name(s: &str) -> Vec<u8> {
        let mut b = Vec::new();
        leb_u64(s.len() as u64, &mut b);
        b.extend_from_slice(s.as_bytes());
        b
    }

    /// A memory64 module (1 page, at most `max` pages) with one function per memory
    /// operation the rewrite changes, each taking its operands as parameters.
    fn probe_module(max: u64) -> Vec<u8> {
        const I32: u8 = 0x7f;
        const I64: u8 = 0x7e;
        let func = |params: &[u8], results: &[u8]| {
            let mut t = vec![0x60];
            leb_u64(params.len() as u64, &mut t);
            t.extend_from_slice(params);
            leb_u64(results.len() as u64, &mut t);
            t.extend_from_slice(results);
            t
        };
        let types = vec_of(&[
            func(&[I64], &[I32]),        // load
            func(&[I64, I32], &[]),      // store
            func(&[], &[I64]),           // size
            func(&[I64], &[I64]),        // grow, load64
            func(&[I64, I32, I64], &[]), // fill
            func(&[I64, I64, I64], &[]), // copy
            func(&[I64, I32, I32], &[]), // init
            func(&[I64, I32], &[I32]),   // walk, pair
        ]);
        let functions = vec_of(&[
            vec![0],
            vec![1],
            vec![2],
            vec![3],
            vec![4],
            vec![5],
            vec![3],
            vec![6],
            vec![7],
            vec![7],
        ]);
        let mut memory = vec![0x01, 0x05, 0x01];
        leb_u64(max, &mut memory);
        let export = |n: &str, kind: u8, i: u8| {
            let mut e = name(n);
            e.extend_from_slice(&[kind, i]);
            e
        };
        let exports = vec_of(&[
            export("load", 0, 0),
            export("store", 0, 1),
            export("size", 0, 2),
            export("grow", 0, 3),
            export("fill", 0, 4),
            export("copy", 0, 5),
            export("load64", 0, 6),
            export("init", 0, 7),
            export("walk", 0, 8),
            export("pair", 0, 9),
            export("mem", 2, 0),
        ]);
        let body = |code: &[u8]| {
            let mut f = vec![0x00];
            f.extend_from_slice(code);
            f.push(0x0b);
            let mut b = Vec::new();
            leb_u64(f.len() as u64, &mut b);
            b.extend_from_slice(&f);
            b
        };
        let code = vec_of(&[
            body(&[0x20, 0, 0x28, 0x02, 0x00]),
            body(&[0x20, 0, 0x20, 1, 0x36, 0x02, 0x00]),
            body(&[0x3f, 0x00]),
            body(&[0x20, 0, 0x40, 0x00]),
            body(&[0x20, 0, 0x20, 1, 0x20, 2, 0xfc, 0x0b, 0x00]),
            body(&[0x20, 0, 0x20, 1, 0x20, 2, 0xfc, 0x0a, 0x00, 0x00]),
            body(&[0x20, 0, 0x29, 0x03, 0x08]),
            body(&[0x20, 0, 0x20, 1, 0x20, 2, 0xfc, 0x08, 0x01, 0x00]),
            // walk(p, n): read p, then loop { read p; p += 4 GiB; n -= 1 } while n; n.
            // The read in the loop must be checked again on every iteration.
            body(&[
                0x20, 0, 0x28, 0x02, 0x00, 0x1a, 0x03, 0x40, 0x20, 0, 0x28, 0x02, 0x00, 0x1a, 0x20,
                0, 0x42, 0x80, 0x80, 0x80, 0x80, 0x10, 0x7c, 0x21, 0, 0x20, 1, 0x41, 1, 0x6b, 0x22,
                1, 0x0d, 0, 0x0b, 0x20, 1,
            ]),
            // pair(p, v): store v at p, v + 1 at p + 4, then the sum of both reads.
            body(&[
                0x20, 0, 0x20, 1, 0x36, 0x02, 0x00, 0x20, 0, 0x20, 1, 0x41, 1, 0x6a, 0x36, 0x02,
                0x04, 0x20, 0, 0x28, 0x02, 0x00, 0x20, 0, 0x28, 0x02, 0x04, 0x6a,
            ]),
        ]);
        // An active segment "hello" at 16 and a passive one "passive".
        let mut active = vec![0x00, 0x42, 0x10, 0x0b];
        active.extend_from_slice(&name("hello"));
        let mut passive = vec![0x01];
        passive.extend_from_slice(&name("passive"));
        let data = vec_of(&[active, passive]);
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        section(1, &types, &mut m);
        section(3, &functions, &mut m);
        section(5, &memory, &mut m);
        section(7, &exports, &mut m);
        section(12, &[0x02], &mut m);
        section(10, &code, &mut m);
        section(11, &data, &mut m);
        m
    }

    fn engine() -> Engine {
        let mut c = Config::new();
        c.wasm_memory64(true);
        Engine::new(&c).unwrap()
    }

    /// The outcome of a call: its results, or the trap.
    fn call(store: &mut Store<()>, i: &Instance, f: &str, args: &[Val]) -> Result<Vec<i64>, Trap> {
        let func = i.get_func(&mut *store, f).unwrap();
        let mut out = vec![Val::I64(0); func.ty(&*store).results().len()];
        match func.call(&mut *store, args, &mut out) {
            Ok(()) => Ok(out
                .iter()
                .map(|v| v.i64().unwrap_or_else(|| i64::from(v.unwrap_i32())))
                .collect()),
            Err(e) => Err(*e.downcast_ref::<Trap>().expect("a trap")),
        }
    }

    #[test]
    fn narrowed_memory_behaves_as_the_64_bit_one() {
        let original = probe_module(3);
        let narrowed = narrow(&original).expect("the probe is narrowed");
        let engine = engine();
        let m64 = Module::new(&engine, &original).unwrap();
        let m32 = Module::new(&engine, &narrowed).unwrap();
        assert!(m32.get_export(MARKER_EXPORT).is_some());
        assert!(matches!(
            m32.get_export("mem"),
            Some(wasmtime::ExternType::Memory(t)) if !t.is_64()
        ));
        let mut s64 = Store::new(&engine, ());
        let mut s32 = Store::new(&engine, ());
        let i64_ = Instance::new(&mut s64, &m64, &[]).unwrap();
        let i32_ = Instance::new(&mut s32, &m32, &[]).unwrap();
        let big = [
            0u64,
            16,
            65_532,
            65_533,
            65_536,
            131_068,
            196_604,
            196_605,
            (1 << 32) - 4,
            1 << 32,
            (1 << 32) + 16,
            1 << 63,
            u64::MAX - 3,
            u64::MAX,
        ];
        // The active segment was written at its (narrowed) offset.
        let mem = i32_.get_memory(&mut s32, "mem").unwrap();
        assert_eq!(mem.data(&s32)[16..21], *b"hello");
        let mut calls: Vec<(&str, Vec<Val>)> = Vec::new();
        for &a in &big {
            calls.push(("load", vec![Val::I64(a as i64)]));
            calls.push(("load64", vec![Val::I64(a as i64)]));
            calls.push(("store", vec![Val::I64(a as i64), Val::I32(0x0102_0304)]));
            calls.push(("pair", vec![Val::I64(a as i64), Val::I32(41)]));
            calls.push(("walk", vec![Val::I64(a as i64), Val::I32(1)]));
            calls.push(("walk", vec![Val::I64(a as i64), Val::I32(2)]));
        }
        for &(d, n) in &[
            (0u64, 0u64),
            (100, 50),
            (65_530, 10),
            (1 << 32, 0),
            (0, 1 << 32),
        ] {
            calls.push((
                "fill",
                vec![Val::I64(d as i64), Val::I32(7), Val::I64(n as i64)],
            ));
            calls.push((
                "copy",
                vec![Val::I64(d as i64), Val::I64(16), Val::I64(n as i64)],
            ));
            calls.push((
                "copy",
                vec![Val::I64(16), Val::I64(d as i64), Val::I64(n as i64)],
            ));
            calls.push((
                "init",
                vec![Val::I64(d as i64), Val::I32(1), Val::I32(n as i32)],
            ));
        }
        for &g in &[0u64, 1, 1 << 32, u64::MAX, 1, 5] {
            calls.push(("grow", vec![Val::I64(g as i64)]));
            calls.push(("size", vec![]));
            calls.push(("load", vec![Val::I64(131_068)]));
            calls.push(("store", vec![Val::I64(196_600), Val::I32(9)]));
        }
        let mut traps = 0;
        for (f, args) in &calls {
            let want = call(&mut s64, &i64_, f, args);
            let got = call(&mut s32, &i32_, f, args);
            assert_eq!(got, want, "{f}({args:?})");
            if let Err(trap) = want {
                assert_eq!(trap, Trap::MemoryOutOfBounds, "{f}({args:?})");
                traps += 1;
            }
        }
        let mem64 = i64_.get_memory(&mut s64, "mem").unwrap();
        let mem32 = i32_.get_memory(&mut s32, "mem").unwrap();
        assert_eq!(mem32.data(&s32), mem64.data(&s64));
        // Both kinds of outcome were compared, the out-of-bounds trap among them.
        assert!(traps > 10 && traps < calls.len(), "{traps} traps");
    }

    #[test]
    fn what_cannot_be_narrowed_is_left_alone() {
        // A maximum of 4 GiB (or none) keeps the 64-bit memory.
        assert!(narrow(&probe_module(65_536)).is_none());
        assert!(narrow(&probe_module(65_535)).is_some());
        // A 32-bit module has nothing to narrow.
        let pow = std::fs::read(format!("{FIXTURES}/pow_calculator.wasm")).unwrap();
        assert!(narrow(&pow).is_none());
        // Damaged modules are compiled (and refused) as they are.
        let probe = probe_module(3);
        for cut in 0..probe.len() {
            let _ = narrow(&probe[..cut]);
        }
    }

    #[test]
    fn the_aos_modules_are_narrowed_and_validate() {
        for file in [
            "aos-2-pure-xs.exnref.wasm",
            "ao-loader-wasm64-emscripten-aos2.wasm",
        ] {
            let bytes = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
            let narrowed = narrow(&bytes).unwrap_or_else(|| panic!("{file} is narrowed"));
            // And metering still applies on top.
            let metered = crate::meter::instrument(&narrowed).unwrap();
            Validator::new_with_features(WasmFeatures::all())
                .validate_all(&metered)
                .unwrap();
        }
    }
}

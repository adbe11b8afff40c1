//! Failures stop one instance with a typed error, and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ao_wasm::{
    AosInstance, Budget, CompiledModule, Instance, Limits, WasmConfig, WasmEngine, WasmError,
    WasmValue,
};

use crate::common::*;

const XS: &str = "wasm/aos-2-pure-xs.exnref.wasm";

/// Enough for aos to boot (about 62 million units) and evaluate, not for an endless loop.
const FUEL: u64 = 500_000_000;

#[test]
fn runaway_eval_is_stopped_and_others_keep_running() {
    let engine = engine();
    let module = load(&engine, XS);
    let small = Limits::new(FUEL, 1 << 30);
    let mut runaway = run_away_beside_a_healthy_instance(&module, small);
    assert!(runaway.instance().poisoned().is_some());
    let err = runaway.handle(&eval_msg(3, "return X"), ENV).unwrap_err();
    assert!(matches!(err, WasmError::Poisoned(_)), "{err}");
    // A fresh instance of the same module is unaffected.
    let mut fresh = AosInstance::new(&module, small).unwrap();
    let r = fresh.handle(&eval_msg(1, "return 1+1"), ENV).unwrap();
    assert_eq!(output_data(&r).as_deref(), Ok("2"));
}

/// The same under a wall-clock budget (epoch interruption), on an engine without Spectre
/// hardening: the loop ends with a typed error soon after its deadline, another instance keeps
/// answering meanwhile, and results are unchanged by either setting.
#[test]
fn runaway_eval_is_stopped_by_a_time_budget() {
    let budget = Duration::from_millis(300);
    let engine = WasmEngine::new(
        WasmConfig::default()
            .with_budget(Budget::WallClock)
            .with_time_per_call(budget)
            .with_spectre_hardening(false),
    )
    .unwrap();
    let module = load(&engine, XS);
    let limits = Instance::default_limits(&module);
    assert_eq!(limits.time, budget);
    let mut runaway = AosInstance::new(&module, limits).unwrap();
    let mut healthy = AosInstance::new(&module, limits).unwrap();
    runaway.handle(&eval_msg(1, "X = 1"), ENV).unwrap();
    std::thread::scope(|s| {
        let stuck = s.spawn(|| {
            let t = Instant::now();
            (
                runaway.handle(&eval_msg(2, "while true do end"), ENV),
                t.elapsed(),
            )
        });
        for n in 1..=5 {
            let r = healthy
                .handle(&eval_msg(n, &format!("return {n} * 2")), ENV)
                .unwrap();
            assert_eq!(output_data(&r), Ok((n * 2).to_string()));
        }
        let (result, took) = stuck.join().unwrap();
        let err = result.unwrap_err();
        assert!(matches!(err, WasmError::OutOfTime { millis: 300 }), "{err}");
        assert!(err.to_string().contains("budget"), "{err}");
        // Stopped after the deadline, and long before a second one would have passed.
        assert!(
            took >= budget && took < budget * 2 + Duration::from_secs(2),
            "{took:?}"
        );
    });
    assert!(matches!(
        runaway.handle(&eval_msg(3, "return X"), ENV),
        Err(WasmError::Poisoned(_))
    ));
    // A budget is per call: many short evaluations together outlast it.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < budget * 2 {
        n += 1;
        let r = healthy.handle(&eval_msg(n, "return 1+1"), ENV).unwrap();
        assert_eq!(output_data(&r).as_deref(), Ok("2"));
    }
}

#[test]
fn traps_are_typed_errors() {
    let engine = engine();
    let module = load(&engine, XS);
    let mut a = aos(&module);
    // aos exports `__trap` (an `unreachable`).
    let err = a.instance_mut().call("__trap", &[]).unwrap_err();
    assert!(matches!(err, WasmError::Trap(_)), "{err}");
    assert!(matches!(
        a.handle(&eval_msg(1, "return 1"), ENV),
        Err(WasmError::Poisoned(_))
    ));
    // An out-of-bounds pointer handed to the guest traps inside it.
    let mut b = aos(&module);
    let err = b
        .instance_mut()
        .call("handle", &[WasmValue::I64(i64::MAX - 8), WasmValue::I64(0)])
        .unwrap_err();
    assert!(matches!(err, WasmError::Trap(_)), "{err}");
}

#[test]
fn memory_limit_is_a_typed_error() {
    let engine = engine();
    let module = load(&engine, XS);
    // Below the module's initial 192 pages: refused at instantiation.
    let err = AosInstance::new(&module, Limits::new(FUEL * 4, 1 << 20)).unwrap_err();
    assert!(
        matches!(
            err,
            WasmError::OutOfMemory {
                limit: 1_048_576,
                ..
            }
        ),
        "{err}"
    );
    // 32 MiB: boots, then a growing table exhausts it.
    let limit = 32 << 20;
    let mut a = AosInstance::new(&module, Limits::new(FUEL * 4, limit)).unwrap();
    let r = a.handle(&eval_msg(1, "return 1+1"), ENV).unwrap();
    assert_eq!(output_data(&r).as_deref(), Ok("2"));
    let hog = "local t = {} for i = 1, 10000000 do t[i] = string.rep('x', 1000) .. i end";
    let err = a.handle(&eval_msg(2, hog), ENV).unwrap_err();
    assert!(
        matches!(err, WasmError::OutOfMemory { limit: l, requested } if l == limit && requested > limit),
        "{err}"
    );
    assert!(a.instance().memory_size() <= limit);
}

#[test]
fn memory_limit_applies_to_emscripten_heap_growth() {
    let engine = engine();
    let module = load(&engine, "wasm/ao-loader-emscripten4-aos2.wasm");
    let limit = 96 << 20;
    let mut a = AosInstance::new(&module, Limits::new(FUEL * 4, limit)).unwrap();
    let r = a.handle(&eval_msg(1, "return 1+1"), ENV).unwrap();
    assert_eq!(output_data(&r).as_deref(), Ok("2"));
    let hog = "local t = {} for i = 1, 10000000 do t[i] = string.rep('x', 1000) .. i end";
    let err = a.handle(&eval_msg(2, hog), ENV).unwrap_err();
    assert!(matches!(err, WasmError::OutOfMemory { .. }), "{err}");
}

#[test]
fn legacy_exception_modules_are_rejected() {
    let engine = engine();
    let store = ao_core::MemoryStore::new();
    for rel in [
        "wasm/aos-2-pure-xs.wasm",
        "wasm/test-standalone-wex-aos.wasm",
    ] {
        let err = engine.load(&fixture(rel), &store).unwrap_err();
        assert!(matches!(err, WasmError::LegacyExceptions), "{rel}: {err}");
        assert!(err.to_string().contains("--translate-to-exnref"));
    }
    let err = engine.load(b"\0asm\x01\0\0\0garbage", &store).unwrap_err();
    assert!(matches!(err, WasmError::Compile(_)), "{err}");
}

/// An endless Lua loop on an ao-loader emscripten build (whose `longjmp`s unwind through host
/// calls) ends with the same typed error, all of its fuel used, while another instance keeps
/// answering.
#[test]
fn runaway_eval_on_an_emscripten_build_is_stopped() {
    let engine = engine();
    let module = load(&engine, "wasm/ao-loader-emscripten4-aos2.wasm");
    let small = Limits::new(FUEL, 1 << 30);
    let mut runaway = run_away_beside_a_healthy_instance(&module, small);
    assert_eq!(runaway.instance().last_fuel_used(), FUEL);
    let err = runaway.handle(&eval_msg(3, "return X"), ENV).unwrap_err();
    assert!(matches!(err, WasmError::Poisoned(_)), "{err}");
}

/// Fuel is counted the same way every time (the budget is deterministic); metering changes no
/// result (byte-identical to an engine that budgets wall-clock time and meters nothing); and
/// the fuel counter is not part of a snapshot.
#[test]
fn fuel_counts_are_deterministic_and_results_unchanged() {
    let fuel = engine();
    let clock = WasmEngine::new(WasmConfig::default().with_budget(Budget::WallClock)).unwrap();
    let codes = [
        "X = 41",
        "return X + 1",
        "local t = {} for i = 1, 1000 do t[i] = i * i end return #t",
        "return string.rep('ab', 5000):len()",
        "error('boom')",
    ];
    let mut counts = Vec::new();
    for _ in 0..2 {
        let mut a = AosInstance::new(&load(&fuel, XS), Limits::new(FUEL, 1 << 30)).unwrap();
        let mut b = aos(&load(&clock, XS));
        let mut used = Vec::new();
        for (n, code) in codes.iter().enumerate() {
            let ra = a.handle(&eval_msg(n, code), ENV).unwrap();
            let rb = b.handle(&eval_msg(n, code), ENV).unwrap();
            assert_eq!(ra, rb, "{code}");
            used.push(a.instance().last_fuel_used());
        }
        assert!(used.iter().all(|&u| u > 0 && u < FUEL), "{used:?}");
        let snap = a.snapshot().unwrap();
        assert!(
            snap.globals()
                .iter()
                .all(|(name, _)| !name.contains("fuel")),
            "{:?}",
            snap.globals()
        );
        counts.push(used);
    }
    assert_eq!(counts[0], counts[1]);
    // The first evaluation boots aos (about 60 million units, as wasmtime's own fuel counted
    // it); the loop of the third costs more than the second's addition.
    assert!(
        (40_000_000..80_000_000).contains(&counts[0][0]),
        "{:?}",
        counts[0]
    );
    assert!(counts[0][2] > counts[0][1], "{:?}", counts[0]);
}

/// Bulk memory operations are charged by their length: a loop of `memory.fill` over a page
/// runs out of fuel after about budget / 65 536 iterations, not budget / 32.
#[test]
fn bulk_operations_are_charged_by_length() {
    #[rustfmt::skip]
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00,             // type 0: [] -> []
        0x03, 0x02, 0x01, 0x00,                         // func 0: type 0
        0x05, 0x03, 0x01, 0x00, 0x01,                   // memory: 1 page
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x14, 0x01, 0x12, 0x00,                   // code: 1 body, no locals
        0x03, 0x40,                                     // loop
        0x41, 0x00, 0x41, 0x00, 0x41, 0x80, 0x80, 0x04, //   i32.const 0, 0, 65536
        0xfc, 0x0b, 0x00,                               //   memory.fill 0
        0x0c, 0x00,                                     //   br 0
        0x0b, 0x0b,                                     // end end
    ];
    let budget = 50_000_000;
    let engine = engine();
    let module = engine.compile(SPIN).unwrap();
    let mut inst = Instance::new(&module, Limits::new(budget, 1 << 20)).unwrap();
    let t = Instant::now();
    let err = inst.call("spin", &[]).unwrap_err();
    assert!(
        matches!(err, WasmError::OutOfBudget { budget: b } if b == budget),
        "{err}"
    );
    // About 760 fills of 64 KiB, not 1.5 million: well under a second.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(inst.last_fuel_used(), budget);
}

/// A function with no loop and no recursion can still run for ages: a chain of 60 functions,
/// each calling the next twice, makes 2^60 calls. Functions bounded by their own code skip
/// the entry step (`meter.rs`), but not these: the evaluation ends with the budget's error.
#[test]
fn a_call_tree_without_loops_is_stopped_by_the_budget() {
    let mut wat = String::from("(module (func $f0)");
    for k in 1..=60 {
        let p = k - 1;
        wat.push_str(&format!(" (func $f{k} call $f{p} call $f{p})"));
    }
    wat.push_str(r#" (func (export "spin") call $f60))"#);
    let budget = 20_000_000;
    let engine = engine();
    let module = engine.compile(&wat::parse_str(&wat).unwrap()).unwrap();
    let mut inst = Instance::new(&module, Limits::new(budget, 1 << 20)).unwrap();
    let err = inst.call("spin", &[]).unwrap_err();
    assert!(
        matches!(err, WasmError::OutOfBudget { budget: b } if b == budget),
        "{err}"
    );
    assert_eq!(inst.last_fuel_used(), budget);
}

/// The step charge, exactly: a function entry and each pass through a loop head cost 32 units;
/// a call that has just enough fuel completes with the counter at zero, and one unit less
/// stops it at its last step with all of the budget used.
#[test]
fn steps_cost_exactly_their_units() {
    #[rustfmt::skip]
    const COUNT: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
        0x01, 0x05, 0x01, 0x60, 0x01, 0x7f, 0x00,       // type 0: [i32] -> []
        0x03, 0x02, 0x01, 0x00,                         // func 0: type 0
        0x07, 0x09, 0x01, 0x05, b'c', b'o', b'u', b'n', b't', 0x00, 0x00, // export "count"
        0x0a, 0x18, 0x01, 0x16, 0x00,                   // code: 1 body, no locals
        0x02, 0x40, 0x03, 0x40,                         // block loop
        0x20, 0x00, 0x45, 0x0d, 0x01,                   //   local.get 0, i32.eqz, br_if 1
        0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00,       //   local.set 0 (local.get 0 - 1)
        0x0c, 0x00,                                     //   br 0
        0x0b, 0x0b, 0x0b,                               // end end end
    ];
    let engine = engine();
    let module = engine.compile(COUNT).unwrap();
    for n in [0_i32, 1, 10, 1000] {
        // The entry, and the loop head n + 1 times (the last pass leaves the loop).
        let cost = 32 * (1 + u64::try_from(n).unwrap() + 1);
        for budget in [cost, cost + 1, 1_000_000] {
            let mut inst = Instance::new(&module, Limits::new(budget, 1 << 20)).unwrap();
            inst.call("count", &[WasmValue::I32(n)]).unwrap();
            assert_eq!(inst.last_fuel_used(), cost, "n = {n}, budget = {budget}");
        }
        let short = cost - 1;
        let mut inst = Instance::new(&module, Limits::new(short, 1 << 20)).unwrap();
        let err = inst.call("count", &[WasmValue::I32(n)]).unwrap_err();
        assert!(
            matches!(err, WasmError::OutOfBudget { budget } if budget == short),
            "{err}"
        );
        assert_eq!(inst.last_fuel_used(), short);
    }
}

/// Runs `while true do end` on one instance of `module` while another instance answers five
/// evaluations; the loop must end with [`WasmError::OutOfBudget`]. Returns the stopped instance.
fn run_away_beside_a_healthy_instance(module: &Arc<CompiledModule>, limits: Limits) -> AosInstance {
    let mut runaway = AosInstance::new(module, limits).unwrap();
    let mut healthy = AosInstance::new(module, limits).unwrap();
    runaway.handle(&eval_msg(1, "X = 1"), ENV).unwrap();
    std::thread::scope(|s| {
        let stuck = s.spawn(|| runaway.handle(&eval_msg(2, "while true do end"), ENV));
        for n in 1..=5 {
            let r = healthy
                .handle(&eval_msg(n, &format!("return {n} * 2")), ENV)
                .unwrap();
            assert_eq!(output_data(&r), Ok((n * 2).to_string()));
        }
        let err = stuck.join().unwrap().unwrap_err();
        assert!(
            matches!(err, WasmError::OutOfBudget { budget: FUEL }),
            "{err}"
        );
    });
    runaway
}

/// Host functions read their arguments by position: a module declaring one with fewer
/// parameters is refused when it is linked, not a panic in the host when it calls it.
#[test]
fn an_import_declared_with_too_few_parameters_is_refused() {
    let engine = engine();
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit))
             (memory (export "memory") 1)
             (func (export "f") (call $exit)))"#,
    )
    .unwrap();
    let err = engine
        .compile(&wasm)
        .and_then(|m| Instance::new(&m, Limits::new(1_000_000, 1 << 20)).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(&err, WasmError::Link(m) if m.contains("proc_exit")),
        "{err}"
    );
}

/// A host call costs what it does: `fd_write` is charged a unit per byte, so one call over a
/// million iovecs is stopped by the budget; with enough fuel it completes, keeping the last
/// MiB of output.
#[test]
fn host_calls_are_charged_by_the_byte() {
    let engine = engine();
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write"
               (func $write (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 2)
             (func (export "write") (result i32) (local $i i32)
               ;; 1000 iovecs at 65536, each the first 64 KiB of memory
               (loop $fill
                 (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 8)))
                            (i32.const 0))
                 (i32.store (i32.add (i32.const 65540) (i32.mul (local.get $i) (i32.const 8)))
                            (i32.const 65536))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br_if $fill (i32.lt_u (local.get $i) (i32.const 1000))))
               (call $write (i32.const 1) (i32.const 65536) (i32.const 1000) (i32.const 0))))"#,
    )
    .unwrap();
    let module = engine.compile(&wasm).unwrap();
    let budget = 1_000_000;
    let mut inst = Instance::new(&module, Limits::new(budget, 1 << 20)).unwrap();
    let err = inst.call("write", &[]).unwrap_err();
    assert!(
        matches!(err, WasmError::OutOfBudget { budget: b } if b == budget),
        "{err}"
    );
    assert_eq!(inst.last_fuel_used(), budget);
    let mut inst = Instance::new(&module, Limits::new(1_000_000_000, 1 << 20)).unwrap();
    assert_eq!(inst.call("write", &[]).unwrap(), vec![WasmValue::I32(0)]);
    assert_eq!(inst.stdout().len(), 1 << 20);
    let used = inst.last_fuel_used();
    assert!(used > 1000 * 65_536, "{used}");
}

/// No instance gets more memory than the node's `wasm-max-memory`, whatever its tag asks.
#[test]
fn memory_limit_tags_are_capped_by_the_node() {
    let mut config = WasmConfig::default();
    config.max_memory_limit = 4 << 20;
    let engine = WasmEngine::new(config).unwrap();
    let wasm = wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func (export "grow") (param i32) (result i32)
               (memory.grow (local.get 0))))"#,
    )
    .unwrap();
    let module = engine.compile(&wasm).unwrap();
    let limits = Limits::new(1_000_000, 1 << 20).with_memory_limit_tag("1-tb");
    let mut inst = Instance::new(&module, limits).unwrap();
    // 1 + 60 pages (3.8 MiB) fit; 1 + 60 + 10 do not.
    assert_eq!(
        inst.call("grow", &[WasmValue::I32(60)]).unwrap(),
        vec![WasmValue::I32(1)]
    );
    let err = inst.call("grow", &[WasmValue::I32(10)]).unwrap_err();
    assert!(matches!(err, WasmError::OutOfMemory { .. }), "{err}");
}

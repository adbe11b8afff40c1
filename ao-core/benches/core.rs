//! Criterion benches of the hot paths, against HyperBEAM's figures on a 2-core x86 machine
//! (spec §10.2): resolve one key 13,700/s; `a/b/c` with hashpaths 2,850/s; the unsigned ID of a
//! small nested message 5,200/s; httpsig encode 16,800/s.
//!
//! "cold" variants build a fresh message every iteration, so no memoised ID is reused.

use ao_core::{Message, Resolver, codec, id, msg};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::executor::block_on;

fn nested() -> Message {
    msg! {"a" => "b", "count" => 42i64, "nested" => msg! {"x" => "y"}}
}

fn deep() -> Message {
    msg! {"a" => msg! {"b" => msg! {"c" => "d", "e" => 1i64}, "f" => "g"}}
}

fn benches(c: &mut Criterion) {
    let resolver = Resolver::basic();
    let one = msg! {"a" => "b"};
    let req = msg! {"path" => "a"};
    c.bench_function("resolve one key", |b| {
        b.iter(|| block_on(resolver.resolve(one.clone(), req.clone())).unwrap())
    });
    c.bench_function("resolve a/b/c with hashpaths (cold)", |b| {
        b.iter_batched(
            deep,
            |m| block_on(resolver.resolve(m, msg! {"path" => "a/b/c"})).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let warm = deep();
    c.bench_function("resolve a/b/c with hashpaths (warm)", |b| {
        b.iter(|| block_on(resolver.resolve(warm.clone(), msg! {"path" => "a/b/c"})).unwrap())
    });
    c.bench_function("unsigned ID of a small nested message (cold)", |b| {
        b.iter_batched(
            nested,
            |m| id::unsigned_id(&m).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let m = nested();
    c.bench_function("httpsig encode", |b| b.iter(|| codec::to_http(&m).unwrap()));
}

criterion_group!(core, benches);
criterion_main!(core);

//! Rendering throughput: worker cloud-configs (goal ≥ 50,000/s per core).
//! `cargo bench -p drover-render --bench render -- --quick`

#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drover_render::render;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Elements(1));
    let default = common::worker();
    g.bench_function("worker_cloud_config_default", |b| {
        b.iter(|| render(black_box(&default)).unwrap())
    });
    let rich = common::worker_files_args();
    g.bench_function("worker_cloud_config_files_args", |b| {
        b.iter(|| render(black_box(&rich)).unwrap())
    });
    let init = common::controller_init();
    g.bench_function("controller_init_cloud_config", |b| {
        b.iter(|| render(black_box(&init)).unwrap())
    });
    g.bench_function("worker_join_token_encode", |b| b.iter(common::worker_token));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The semantic cache's lookup: a brute-force scan of one partition (int8
//! codes, then the f32 vectors of the candidates;
//! `tollgate_modules::semantic_cache::Index::search`) at 10k and
//! 100k entries of 256 dimensions (what `dimensions = 256` asks of
//! text-embedding-3-small), and at 10k of 1,536 (its default length).
//! Goal: ≤ 5 ms p99 at 100k. Prints the p50/p99 of 200 plain lookups and
//! the index memory per entry before criterion's own measurement.
//! `cargo bench --bench semantic`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;
use tollgate_modules::semantic_cache::{Index, bytes_per_entry, normalized};

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    normalized(&v).expect("non-zero")
}

fn filled(entries: usize, dims: usize) -> Index {
    let mut index = Index::new();
    for i in 0..entries {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        index.insert([1; 32], key, &vector(i as u64, dims), i64::MAX, entries);
    }
    index
}

fn percentiles(index: &Index, dims: usize, label: &str) {
    let queries: Vec<Vec<f32>> = (0..200).map(|i| vector(1_000_000 + i, dims)).collect();
    let mut times: Vec<f64> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            black_box(index.search(&[1; 32], q, 0.95, 0));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "semantic lookup {label}: p50 {:.3} ms, p99 {:.3} ms; {} bytes of index per entry",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        bytes_per_entry(dims)
    );
}

fn bench_lookup(c: &mut Criterion) {
    for (entries, dims) in [(10_000, 256), (100_000, 256), (10_000, 1536)] {
        let index = filled(entries, dims);
        let label = format!("{}k x {dims}", entries / 1000);
        percentiles(&index, dims, &label);
        let query = vector(42_424_242, dims);
        c.bench_function(&format!("semantic lookup {label}"), |b| {
            b.iter(|| black_box(index.search(&[1; 32], black_box(&query), 0.95, 0)))
        });
    }
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);

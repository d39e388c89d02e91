//! What the benchmarks share: where they keep their stores and archives, a
//! quick mode for `cargo test --benches`, a deterministic random source, a
//! latency-percentile probe, and the bench archives ([`archive`]).
//!
//! Serious runs belong on a loop-mounted ext4 (DESIGN.md §6), chosen with
//! `IMGSTORE_BENCH_DIR`; without it the benchmarks work under `target/`.
#![allow(dead_code)]

pub mod archive;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The directory that holds benchmark stores and archives:
/// `$IMGSTORE_BENCH_DIR`, else this crate's `target/`.
pub fn bench_dir() -> PathBuf {
    let dir = match std::env::var_os("IMGSTORE_BENCH_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    };
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Whether criterion was started by `cargo bench` (which passes `--bench`).
/// Under `cargo test --benches` each benchmark runs once as a smoke test,
/// and the fixtures shrink so that this stays fast.
pub fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A size from the environment, else `default` when benchmarking and
/// `quick` under `cargo test`.
pub fn env_size(var: &str, default: u64, quick: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a whole number")),
        Err(_) if benchmarking() => default,
        Err(_) => quick,
    }
}

/// splitmix64: a fixed-seed sequence, so that every run asks for the same
/// keys in the same order.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for choosing keys.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Times `calls` single calls of `f` and prints p50/p90/p99/max to stderr.
/// Criterion reports means and medians; the tail is what a user waiting on
/// the command line feels.
pub fn print_percentiles(what: &str, calls: usize, mut f: impl FnMut(usize)) {
    let mut times: Vec<Duration> = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        f(i);
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    eprintln!(
        "latency {what:<28} n={calls:<6} p50={:>8.1}µs p90={:>8.1}µs p99={:>8.1}µs max={:>9.1}µs",
        us(at(0.50)),
        us(at(0.90)),
        us(at(0.99)),
        us(times[times.len() - 1]),
    );
}

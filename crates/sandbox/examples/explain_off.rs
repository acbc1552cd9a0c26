//! What an explain step and a phase guard cost when narration, tracing and
//! step logging are all off: the number behind "off is nil". Run by
//! bench/explain-cost.sh; prints nanoseconds per call against an empty loop.

use sandbox::explain::{self, catalog, Phase};
use std::hint::black_box;
use std::time::Instant;

fn per_call(n: u64, f: impl Fn(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(black_box(i));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000_000);
    explain::configure(false, false, sandbox::logging::Level::Warn);
    // Best of three rounds, to stay clear of other load on the machine.
    let best = |f: &dyn Fn(u64)| (0..3).map(|_| per_call(n, f)).fold(f64::MAX, f64::min);
    let empty = best(&|i| {
        black_box(i);
    });
    let step = best(&|i| {
        explain::step(&catalog::CLONE, || format!("detail {i}"));
        black_box(i);
    });
    let phase = best(&|i| {
        let g = explain::phase(Phase::Clone);
        black_box(&g);
        black_box(i);
    });
    println!("calls per loop: {n}");
    println!("empty loop:        {empty:.3} ns per iteration");
    println!(
        "explain::step off: {step:.3} ns per iteration ({:+.3} ns)",
        step - empty
    );
    println!(
        "explain::phase off: {phase:.3} ns per iteration ({:+.3} ns)",
        phase - empty
    );
}

//! Generates the cpu.shares -> cpu.weight breakpoints (`shares_to_weight`), so the
//! runtime does not need libm's `log2` and `pow` at run time: linking libm costs every
//! command ~0.3 MiB of resident memory (docs/performance.md).

use std::fmt::Write;

/// runc's and crun's formula; the table reproduces it exactly (tested exhaustively).
fn formula(shares: u64) -> u64 {
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The first shares value of every weight 2..=10000 over 3..262144: the weight goes
    // up by exactly one at each step, so `shares_to_weight` is 1 + the number of
    // entries <= shares.
    let mut out = String::from("[");
    let mut last = 1;
    for s in 3..262_144u64 {
        let w = formula(s);
        if w != last {
            assert_eq!(w, last + 1, "weight jumps at shares {s}");
            write!(out, "{s},").expect("write to String");
            last = w;
        }
    }
    assert_eq!(last, 10_000);
    out.push(']');
    let dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(format!("{dir}/shares_weight.rs"), out).expect("write shares_weight.rs");
}

//! TAP output.

use std::fmt::Display;

/// Counts checks and prints one TAP line per check.
#[derive(Default)]
pub struct Tap {
    n: usize,
    failed: usize,
}

fn clean(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('#', "\\#")
}

impl Tap {
    /// A passing check.
    pub fn pass(&mut self, section: &str, what: &str) {
        self.n += 1;
        println!("ok {} - {}: {}", self.n, section, clean(what));
    }

    /// A failing check.
    pub fn fail(&mut self, section: &str, what: &str, expected: &dyn Display, got: &dyn Display) {
        self.n += 1;
        self.failed += 1;
        println!(
            "not ok {} - {}: {}: expected {}, got {}",
            self.n,
            section,
            clean(what),
            clean(&expected.to_string()),
            clean(&got.to_string())
        );
    }

    /// A check that cannot be made here.
    pub fn skip(&mut self, section: &str, what: &str, why: &str) {
        self.n += 1;
        println!(
            "ok {} - {}: {} # SKIP {}",
            self.n,
            section,
            clean(what),
            clean(why)
        );
    }

    /// Passes iff `expected == got`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        section: &str,
        what: &str,
        expected: T,
        got: T,
    ) {
        if expected == got {
            self.pass(section, what);
        } else {
            self.fail(section, what, &format!("{expected:?}"), &format!("{got:?}"));
        }
    }

    /// Passes iff `ok`; otherwise reports `expected`/`got`.
    pub fn check(&mut self, section: &str, what: &str, ok: bool, expected: &str, got: &str) {
        if ok {
            self.pass(section, what);
        } else {
            self.fail(section, what, &expected, &got);
        }
    }

    /// Prints the plan and exits: 0 iff nothing failed.
    pub fn finish(&self) -> ! {
        println!("1..{}", self.n);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(if self.failed == 0 { 0 } else { 1 });
    }
}

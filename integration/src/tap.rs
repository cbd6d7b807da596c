//! Parsing of the checker's TAP output.
//!
//! The checker prints one line per check:
//! `ok N - <section>: <what>`, `ok N - <section>: <what> # SKIP <why>` or
//! `not ok N - <section>: <what>: expected X, got Y`, then a plan `1..N`.

use std::collections::BTreeMap;

/// Pass/fail counts of one spec section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionCount {
    /// Checks that passed (skips excluded).
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks reported as `# SKIP`.
    pub skipped: usize,
}

/// The result of [`parse_tap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSummary {
    /// Number of `ok` lines without a SKIP directive.
    pub passed: usize,
    /// Number of `not ok` lines.
    pub failed: usize,
    /// Number of `ok … # SKIP` lines.
    pub skipped: usize,
    /// The description of each failing check (`<section>: <what>: expected…`).
    pub failures: Vec<String>,
    /// Counts per section (the text before the first `": "`).
    pub per_section: BTreeMap<String, SectionCount>,
    /// The `N` of a `1..N` plan line, if one was printed.
    pub plan: Option<usize>,
}

impl TapSummary {
    /// True when a plan was printed, it matches the number of test lines,
    /// and no check failed.
    pub fn all_ok(&self) -> bool {
        self.failed == 0 && self.plan == Some(self.passed + self.failed + self.skipped)
    }
}

/// Parses TAP output; lines that are not test or plan lines are ignored.
pub fn parse_tap(output: &str) -> TapSummary {
    let mut s = TapSummary::default();
    for line in output.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("1..") {
            if let Ok(n) = rest.trim().parse() {
                s.plan = Some(n);
            }
            continue;
        }
        let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
            (false, r)
        } else if let Some(r) = line.strip_prefix("ok ") {
            (true, r)
        } else {
            continue;
        };
        // Skip the test number, then an optional "- ".
        let rest = rest
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let desc = rest.strip_prefix("- ").unwrap_or(rest);
        let (desc, skip) = match desc.find(" # ") {
            Some(i) if desc[i + 3..].to_ascii_uppercase().starts_with("SKIP") => (&desc[..i], true),
            _ => (desc, false),
        };
        let section = desc.split(": ").next().unwrap_or("").to_string();
        let entry = s.per_section.entry(section).or_default();
        if !ok {
            s.failed += 1;
            entry.failed += 1;
            s.failures.push(desc.to_string());
        } else if skip {
            s.skipped += 1;
            entry.skipped += 1;
        } else {
            s.passed += 1;
            entry.passed += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ok_not_ok_skip_and_plan() {
        let out = "ok 1 - Process: cwd is /\n\
                   not ok 2 - Process: uid: expected 0, got 1\n\
                   ok 3 - Namespaces: pid is new # SKIP no CASULO_HOST_NS\n\
                   # a comment\n\
                   1..3\n";
        let s = parse_tap(out);
        assert_eq!((s.passed, s.failed, s.skipped, s.plan), (1, 1, 1, Some(3)));
        assert_eq!(
            s.failures,
            vec!["Process: uid: expected 0, got 1".to_string()]
        );
        let p = &s.per_section["Process"];
        assert_eq!((p.passed, p.failed), (1, 1));
        assert_eq!(s.per_section["Namespaces"].skipped, 1);
        assert!(!s.all_ok());
    }

    #[test]
    fn missing_plan_is_not_ok() {
        let s = parse_tap("ok 1 - Root: readonly\n");
        assert!(!s.all_ok());
        assert!(parse_tap("ok 1 - Root: readonly\n1..1\n").all_ok());
    }
}

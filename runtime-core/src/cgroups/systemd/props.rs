//! systemd unit properties: from `linux.resources` (the ones systemd owns on cgroup v2,
//! as runc translates them) and from `org.systemd.property.*` annotations (GVariant text).

use std::collections::HashMap;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::{blkio_weight_to_io_weight, shares_to_weight, CgroupError, Result};
use crate::cgroups::ParseError;
use crate::dbus::Value;

/// One unit property.
pub(crate) type Prop = (String, Value);

/// systemd's "infinity" for limits and time spans.
const INFINITY: u64 = u64::MAX;
/// The kernel's default CFS period (µs), which systemd assumes too.
const DEFAULT_PERIOD: u64 = 100_000;

fn field_err(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn limit(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

/// A cpuset list (`0-3,8`) as systemd's `AllowedCPUs`/`AllowedMemoryNodes` byte mask:
/// bit `n % 8` of byte `n / 8` for CPU `n`. `None` for a bad or empty list.
pub(crate) fn range_to_bits(list: &str) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b || b >= 1 << 16 {
            return None;
        }
        for n in a..=b {
            let i = (n / 8) as usize;
            if bytes.len() <= i {
                bytes.resize(i + 1, 0);
            }
            bytes[i] |= 1 << (n % 8);
        }
    }
    (!bytes.is_empty()).then_some(bytes)
}

/// `CPUQuotaPerSecUSec` (and `CPUQuotaPeriodUSec`) for a quota and period, as runc: the
/// per-second quota rounds up to systemd's 1 % steps (10 ms per second), and the quota
/// returned is the one that matches it, to be written to `cpu.max` as well.
fn cpu_quota(props: &mut Vec<Prop>, quota: i64, period: u64) -> i64 {
    if period != 0 {
        props.push(("CPUQuotaPeriodUSec".into(), Value::U64(period)));
    }
    let mut quota = quota;
    if quota != 0 || period != 0 {
        let mut per_sec = INFINITY;
        if quota > 0 {
            let p = if period == 0 { DEFAULT_PERIOD } else { period };
            per_sec = (quota as u64).saturating_mul(1_000_000) / p;
            if !per_sec.is_multiple_of(10_000) {
                per_sec = (per_sec / 10_000 + 1) * 10_000;
                quota = (per_sec * p / 1_000_000) as i64;
            }
        }
        props.push(("CPUQuotaPerSecUSec".into(), Value::U64(per_sec)));
    }
    quota
}

/// The cgroup v2 properties systemd owns for `r`, and `r` as it is then written to the
/// cgroup files (the CPU quota rounded as systemd has it).
pub(crate) fn resources_v2(r: &LinuxResources) -> Result<(Vec<Prop>, LinuxResources)> {
    let mut props: Vec<Prop> = Vec::new();
    let mut fs = r.clone();
    let mut push = |name: &str, v: Value| props.push((name.to_string(), v));
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            push("MemoryMax", Value::U64(limit(l)));
        }
        if let Some(l) = m.reservation().filter(|l| *l != 0) {
            push("MemoryLow", Value::U64(limit(l)));
        }
        let mem = m.limit().unwrap_or(0);
        match (m.swap().unwrap_or(0), mem) {
            (0, -1) | (-1, _) => push("MemorySwapMax", Value::U64(INFINITY)),
            (0, _) => {}
            (_, l) if l <= 0 => {
                return Err(field_err(
                    "linux.resources.memory.swap",
                    "a swap limit needs memory.limit on cgroup v2",
                ))
            }
            (s, l) => push("MemorySwapMax", Value::U64((s - l).max(0) as u64)),
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            push("CPUWeight", Value::U64(shares_to_weight(s)));
        }
        for (name, list, field) in [
            ("AllowedCPUs", c.cpus(), "cpus"),
            ("AllowedMemoryNodes", c.mems(), "mems"),
        ] {
            if let Some(list) = list.as_deref().filter(|l| !l.is_empty()) {
                let bits = range_to_bits(list).ok_or_else(|| {
                    field_err(&format!("linux.resources.cpu.{field}"), "not a cpu list")
                })?;
                push(name, Value::bytes(&bits));
            }
        }
    }
    if let Some(p) = r.pids() {
        push(
            "TasksMax",
            Value::U64(if p.limit() == 0 { 1 } else { limit(p.limit()) }),
        );
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w != 0)
    {
        push("IOWeight", Value::U64(blkio_weight_to_io_weight(w)));
    }
    if let Some(c) = r.cpu() {
        let quota = c.quota().unwrap_or(0);
        let q = cpu_quota(&mut props, quota, c.period().unwrap_or(0));
        if q != quota {
            let mut cpu = c.clone();
            cpu.set_quota(Some(q));
            fs.set_cpu(Some(cpu));
        }
    }
    for (k, v) in r.unified().iter().flatten() {
        unified_prop(&mut props, k, v.trim())?;
    }
    Ok((props, fs))
}

/// runc's translation of a `linux.resources.unified` entry; keys systemd has no
/// property for are only written to the files.
fn unified_prop(props: &mut Vec<Prop>, key: &str, v: &str) -> Result<()> {
    let field = format!("linux.resources.unified[{key:?}]");
    let num = |v: &str| -> Result<u64> {
        if v == "max" {
            return Ok(INFINITY);
        }
        v.parse::<u64>()
            .map_err(|_| field_err(&field, format!("{v:?} is not a number or \"max\"")))
    };
    let name = match key {
        "memory.high" => "MemoryHigh",
        "memory.low" => "MemoryLow",
        "memory.min" => "MemoryMin",
        "memory.max" => "MemoryMax",
        "memory.swap.max" => "MemorySwapMax",
        "pids.max" => {
            let n = num(v)?;
            props.push(("TasksMax".into(), Value::U64(n.max(1))));
            return Ok(());
        }
        "cpu.weight" => "CPUWeight",
        "cpuset.cpus" | "cpuset.mems" => {
            let bits = range_to_bits(v).ok_or_else(|| field_err(&field, "not a cpu list"))?;
            let name = if key == "cpuset.cpus" {
                "AllowedCPUs"
            } else {
                "AllowedMemoryNodes"
            };
            props.push((name.into(), Value::bytes(&bits)));
            return Ok(());
        }
        "cpu.max" => {
            let mut it = v.split_whitespace();
            let quota = match it.next() {
                Some("max") => 0,
                Some(q) => q
                    .parse::<i64>()
                    .map_err(|_| field_err(&field, format!("{v:?}: bad quota")))?,
                None => return Err(field_err(&field, "empty")),
            };
            let period = match it.next() {
                Some(p) => p
                    .parse::<u64>()
                    .map_err(|_| field_err(&field, format!("{v:?}: bad period")))?,
                None => DEFAULT_PERIOD,
            };
            cpu_quota(props, quota, period);
            return Ok(());
        }
        _ => return Ok(()),
    };
    props.push((name.into(), Value::U64(num(v)?)));
    Ok(())
}

/// The annotation prefix whose entries become unit properties (as runc).
pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// The `org.systemd.property.NAME` annotations as properties: the value
/// is GVariant text ([`parse_gvariant`]); a `…Sec` name (lowercase letter before `Sec`)
/// becomes `…USec` with the number of seconds in microseconds, as runc does.
pub(crate) fn annotations(ann: &HashMap<String, String>) -> Result<Vec<Prop>> {
    let mut out = Vec::new();
    // In the map's order, as runc (a name given twice, as `…Sec` and `…USec`, is
    // ambiguous there too).
    for k in ann.keys().filter(|k| k.starts_with(ANNOTATION_PREFIX)) {
        let field = format!("annotations[{k:?}]");
        let name = &k[ANNOTATION_PREFIX.len()..];
        if name.len() < 3 || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(field_err(
                &field,
                "a systemd property name is at least 3 ASCII letters",
            ));
        }
        let parsed = |source: GVariantError| CgroupError::Parse {
            field: field.clone(),
            source: ParseError::GVariant(source),
        };
        let mut value = parse_gvariant(&ann[k]).map_err(parsed)?;
        let mut name = name.to_string();
        if let Some(base) = name.strip_suffix("Sec") {
            if base.ends_with(|c: char| c.is_ascii_lowercase()) {
                value = Value::U64(seconds_to_usec(&value).map_err(parsed)?);
                name = format!("{base}USec");
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

fn seconds_to_usec(v: &Value) -> std::result::Result<u64, GVariantError> {
    const M: u64 = 1_000_000;
    let neg = |_: std::num::TryFromIntError| GVariantError::NegativeSeconds;
    Ok(match *v {
        Value::Byte(n) => u64::from(n) * M,
        Value::I16(n) => u64::try_from(n).map_err(neg)? * M,
        Value::U16(n) => u64::from(n) * M,
        Value::I32(n) => u64::try_from(n).map_err(neg)? * M,
        Value::U32(n) => u64::from(n) * M,
        Value::I64(n) => u64::try_from(n).map_err(neg)?.saturating_mul(M),
        Value::U64(n) => n.saturating_mul(M),
        Value::F64(f) if f >= 0.0 => (f * M as f64) as u64,
        _ => return Err(GVariantError::NotSeconds),
    })
}

/// Why an `org.systemd.property.*` annotation's value (GVariant text) is refused.
#[derive(Debug, thiserror::Error)]
pub enum GVariantError {
    /// Nothing where a value belongs.
    #[error("GVariant text: missing value")]
    Missing,
    /// Text after the value.
    #[error("GVariant text {text:?}: unexpected {rest:?}")]
    Trailing {
        /// The whole text.
        text: String,
        /// What follows the value.
        rest: String,
    },
    /// A value of another type than the one asked for (`@t 'x'`, `@s [1]`).
    #[error("GVariant text: {what} is not a {want}")]
    NotA {
        /// The value found: `a string`, `an array`, or a word in quotes.
        what: String,
        /// The GVariant type asked for.
        want: String,
    },
    /// A type keyword that disagrees with the type asked for (`@s uint64 5`).
    #[error("GVariant text: {word} where a {want} is wanted")]
    Keyword {
        /// The keyword.
        word: String,
        /// The keyword's GVariant type.
        want: &'static str,
    },
    /// A string without its closing quote.
    #[error("GVariant text: unterminated string")]
    Unterminated,
    /// A backslash at the end of the text.
    #[error("GVariant text: bad escape")]
    EndEscape,
    /// An escape other than `\n`, `\t`, `\\`, `\'` and `\"`.
    #[error("GVariant text: escape \\{0}")]
    Escape(char),
    /// A string that is not UTF-8.
    #[error("GVariant text: string is not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    /// Array items not separated by `,`.
    #[error("GVariant text: expected ',' or ']' in an array")]
    Separator,
    /// `[]` without a type annotation.
    #[error("GVariant text: an empty array needs a type (@as [])")]
    UntypedArray,
    /// Array items of more than one type.
    #[error("GVariant text: array elements of different types")]
    MixedArray,
    /// A word that is no boolean or number of the type asked for.
    #[error("GVariant text: cannot read {0:?}")]
    Unreadable(String),
    /// A `…Sec` property with a negative number.
    #[error("a negative number of seconds")]
    NegativeSeconds,
    /// A `…Sec` property whose value is not a number.
    #[error("a ...Sec property needs a number of seconds")]
    NotSeconds,
}

/// Parses the GVariant text forms systemd properties use: `true`/`false`, numbers
/// (`5` is an int32, `1.5` a double, as GVariant), type keywords (`uint64 5`,
/// `int32 -1`, `boolean true`, `string 'x'`, `objectpath '/a'`, `byte 3`, …), a type
/// annotation (`@t 5`, `@as []`), quoted strings (`'…'` or `"…"`, backslash escapes) and
/// arrays of one type (`['a', 'b']`). Anything else is refused.
pub fn parse_gvariant(text: &str) -> std::result::Result<Value, GVariantError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(None)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(GVariantError::Trailing {
            text: text.into(),
            rest: text[p.i..].into(),
        });
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.' | b'_'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// One value, of type `want` when given (a GVariant type string).
    fn value(&mut self, want: Option<&str>) -> std::result::Result<Value, GVariantError> {
        self.ws();
        match self.s.get(self.i) {
            None => Err(GVariantError::Missing),
            Some(b'\'' | b'"') => {
                let s = self.string()?;
                match want {
                    None | Some("s") => Ok(Value::Str(s)),
                    Some("o") => Ok(Value::Path(s)),
                    Some("g") => Ok(Value::Sig(s)),
                    Some(t) => Err(GVariantError::NotA {
                        what: "a string".into(),
                        want: t.into(),
                    }),
                }
            }
            Some(b'[') => self.array(want),
            Some(b'@') => {
                self.i += 1;
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    self.i += 1;
                }
                let t = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.value(Some(&t))
            }
            Some(_) => {
                let w = self.word();
                let ty = match w.as_str() {
                    "boolean" => Some("b"),
                    "byte" => Some("y"),
                    "int16" => Some("n"),
                    "uint16" => Some("q"),
                    "int32" => Some("i"),
                    "uint32" => Some("u"),
                    "int64" => Some("x"),
                    "uint64" => Some("t"),
                    "double" => Some("d"),
                    "string" => Some("s"),
                    "objectpath" => Some("o"),
                    "signature" => Some("g"),
                    _ => None,
                };
                match ty {
                    Some(t) if want.is_none() || want == Some(t) => self.value(Some(t)),
                    Some(t) => Err(GVariantError::Keyword { word: w, want: t }),
                    None => scalar(&w, want),
                }
            }
        }
    }

    fn string(&mut self) -> std::result::Result<String, GVariantError> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err(GVariantError::Unterminated),
                Some(&c) if c == quote => break,
                Some(b'\\') => {
                    self.i += 1;
                    let c = *self.s.get(self.i).ok_or(GVariantError::EndEscape)?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'\\' | b'\'' | b'"' => c,
                        _ => return Err(GVariantError::Escape(c as char)),
                    });
                }
                Some(&c) => out.push(c),
            }
            self.i += 1;
        }
        self.i += 1;
        String::from_utf8(out).map_err(GVariantError::NotUtf8)
    }

    fn array(&mut self, want: Option<&str>) -> std::result::Result<Value, GVariantError> {
        let elem = match want {
            Some(t) => Some(
                t.strip_prefix('a')
                    .ok_or_else(|| GVariantError::NotA {
                        what: "an array".into(),
                        want: t.into(),
                    })?
                    .to_string(),
            ),
            None => None,
        };
        self.i += 1;
        let mut items: Vec<Value> = Vec::new();
        loop {
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                break;
            }
            if !items.is_empty() {
                if self.s.get(self.i) != Some(&b',') {
                    return Err(GVariantError::Separator);
                }
                self.i += 1;
            }
            let t = elem.clone().or_else(|| items.first().map(Value::signature));
            items.push(self.value(t.as_deref())?);
        }
        let elem = elem
            .or_else(|| items.first().map(Value::signature))
            .ok_or(GVariantError::UntypedArray)?;
        if items.iter().any(|v| v.signature() != elem) {
            return Err(GVariantError::MixedArray);
        }
        Ok(Value::Array(elem, items))
    }
}

/// A bare word: a boolean or a number, of type `want` (default int32, or double with a
/// `.` or exponent).
fn scalar(w: &str, want: Option<&str>) -> std::result::Result<Value, GVariantError> {
    let bad = || GVariantError::Unreadable(w.into());
    let int = |w: &str| w.parse::<i128>().map_err(|_| bad());
    let fit = |r: std::result::Result<Value, std::num::TryFromIntError>| r.map_err(|_| bad());
    match (w, want) {
        ("true", None | Some("b")) => Ok(Value::Bool(true)),
        ("false", None | Some("b")) => Ok(Value::Bool(false)),
        (_, Some("d")) => w.parse().map(Value::F64).map_err(|_| bad()),
        (_, None) if w.contains(['.', 'e', 'E']) && !w.starts_with("0x") => {
            w.parse().map(Value::F64).map_err(|_| bad())
        }
        (_, None | Some("i")) => fit(i32::try_from(int(w)?).map(Value::I32)),
        (_, Some("y")) => fit(u8::try_from(int(w)?).map(Value::Byte)),
        (_, Some("n")) => fit(i16::try_from(int(w)?).map(Value::I16)),
        (_, Some("q")) => fit(u16::try_from(int(w)?).map(Value::U16)),
        (_, Some("u")) => fit(u32::try_from(int(w)?).map(Value::U32)),
        (_, Some("x")) => fit(i64::try_from(int(w)?).map(Value::I64)),
        (_, Some("t")) => fit(u64::try_from(int(w)?).map(Value::U64)),
        (_, Some(t)) => Err(GVariantError::NotA {
            what: format!("{w:?}"),
            want: t.into(),
        }),
    }
}

#[cfg(test)]
#[path = "props_tests.rs"]
mod tests;

//! The D-Bus wire format (D-Bus specification, "Message Protocol"): values marshalled
//! little-endian with their natural alignment counted from the message start, and the
//! message header (12 fixed bytes, then the header fields as `a(yv)`, padded to 8).
//!
//! Only little-endian messages are read (what systemd and dbus-daemon send on the
//! little-endian hosts Casulo runs on); a big-endian one is a protocol error.

/// The message type `METHOD_CALL`.
pub const METHOD_CALL: u8 = 1;
/// The message type `METHOD_RETURN`.
pub const METHOD_RETURN: u8 = 2;
/// The message type `ERROR`.
pub const ERROR: u8 = 3;
/// The message type `SIGNAL`.
pub const SIGNAL: u8 = 4;

/// The longest message the specification allows (128 MiB).
const MAX_MESSAGE: usize = 128 << 20;
/// The longest array the specification allows (64 MiB).
const MAX_ARRAY: usize = 64 << 20;
/// How deeply containers may nest (the specification's 32 each for arrays and structs).
const MAX_DEPTH: usize = 64;

/// A malformed value, signature or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("D-Bus message: {0}")]
pub struct WireError(pub String);

fn bad<T>(what: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(what.into()))
}

/// One D-Bus value with its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `y`
    Byte(u8),
    /// `b`
    Bool(bool),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u`
    U32(u32),
    /// `x`
    I64(i64),
    /// `t`
    U64(u64),
    /// `d`
    F64(f64),
    /// `s`
    Str(String),
    /// `o`
    Path(String),
    /// `g`
    Sig(String),
    /// `a…`: the element signature (so an empty array has a type) and the elements.
    Array(String, Vec<Value>),
    /// `(…)`
    Struct(Vec<Value>),
    /// `{kv}`, only as an array element.
    Dict(Box<Value>, Box<Value>),
    /// `v`
    Variant(Box<Value>),
}

impl Value {
    /// The value's signature.
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::F64(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(f) => format!("({})", f.iter().map(Value::signature).collect::<String>()),
            Value::Dict(k, v) => format!("{{{}{}}}", k.signature(), v.signature()),
            Value::Variant(_) => "v".into(),
        }
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// An array of strings (`as`).
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array("s".into(), items.into_iter().map(Value::str).collect())
    }

    /// A byte array (`ay`).
    pub fn bytes(b: &[u8]) -> Value {
        Value::Array("y".into(), b.iter().map(|&b| Value::Byte(b)).collect())
    }

    /// The text of a `s`, `o` or `g` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a `u` value.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(u) => Some(*u),
            _ => None,
        }
    }
}

/// Alignment of the type starting a signature.
fn align_of(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// The length of the one complete type at the start of `sig`.
pub fn one_type(sig: &[u8]) -> Result<usize, WireError> {
    fn walk(sig: &[u8], depth: usize) -> Result<usize, WireError> {
        if depth > MAX_DEPTH {
            return bad("signature nests too deeply");
        }
        match sig.first() {
            Some(b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o')
            | Some(b'g' | b'v' | b'h') => Ok(1),
            Some(b'a') => Ok(1 + walk(&sig[1..], depth + 1)?),
            Some(&open @ (b'(' | b'{')) => {
                let close = if open == b'(' { b')' } else { b'}' };
                let mut n = 1;
                let mut fields = 0;
                while sig.get(n) != Some(&close) {
                    if n >= sig.len() {
                        return bad("unterminated struct in signature");
                    }
                    n += walk(&sig[n..], depth + 1)?;
                    fields += 1;
                }
                if fields == 0 || (open == b'{' && fields != 2) {
                    return bad("empty struct or bad dict entry in signature");
                }
                Ok(n + 1)
            }
            _ => bad(format!("bad signature {:?}", String::from_utf8_lossy(sig))),
        }
    }
    walk(sig, 0)
}

/// Splits a signature into its complete types.
pub fn split_signature(sig: &str) -> Result<Vec<&str>, WireError> {
    let mut out = Vec::new();
    let mut rest = sig;
    while !rest.is_empty() {
        let n = one_type(rest.as_bytes())?;
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    Ok(out)
}

/// Marshals values into a buffer whose offset 0 is 8-aligned in the message.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) -> Result<(), WireError> {
        if s.contains('\0') {
            return bad("a string contains NUL");
        }
        self.u32(u32::try_from(s.len()).map_err(|_| WireError("string too long".into()))?);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    fn signature(&mut self, s: &str) -> Result<(), WireError> {
        let n = u8::try_from(s.len()).map_err(|_| WireError("signature too long".into()))?;
        split_signature(s)?;
        self.buf.push(n);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    /// Appends one value.
    pub fn put(&mut self, v: &Value) -> Result<(), WireError> {
        match v {
            Value::Byte(b) => self.buf.push(*b),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I16(n) => self.fixed(2, &n.to_le_bytes()),
            Value::U16(n) => self.fixed(2, &n.to_le_bytes()),
            Value::I32(n) => self.fixed(4, &n.to_le_bytes()),
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => self.fixed(8, &n.to_le_bytes()),
            Value::U64(n) => self.fixed(8, &n.to_le_bytes()),
            Value::F64(n) => self.fixed(8, &n.to_le_bytes()),
            Value::Str(s) | Value::Path(s) => self.string(s)?,
            Value::Sig(s) => self.signature(s)?,
            Value::Array(elem, items) => {
                if one_type(elem.as_bytes())? != elem.len() {
                    return bad(format!("bad array element signature {elem:?}"));
                }
                self.u32(0);
                let len_at = self.buf.len() - 4;
                self.pad(align_of(elem.as_bytes()[0]));
                let start = self.buf.len();
                for item in items {
                    if item.signature() != *elem {
                        return bad(format!(
                            "an element of an a{elem} is a {}",
                            item.signature()
                        ));
                    }
                    self.put(item)?;
                }
                let len = self.buf.len() - start;
                if len > MAX_ARRAY {
                    return bad("array too long");
                }
                self.buf[len_at..len_at + 4].copy_from_slice(&(len as u32).to_le_bytes());
            }
            Value::Struct(fields) => {
                if fields.is_empty() {
                    return bad("empty struct");
                }
                self.pad(8);
                for f in fields {
                    self.put(f)?;
                }
            }
            Value::Dict(k, v) => {
                self.pad(8);
                self.put(k)?;
                self.put(v)?;
            }
            Value::Variant(inner) => {
                self.signature(&inner.signature())?;
                self.put(inner)?;
            }
        }
        Ok(())
    }

    fn fixed(&mut self, align: usize, bytes: &[u8]) {
        self.pad(align);
        self.buf.extend_from_slice(bytes);
    }
}

/// Reads values from a whole message (alignment counts from its start).
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `buf` at offset `pos`.
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn align(&mut self, align: usize) -> Result<(), WireError> {
        let to = self.pos.next_multiple_of(align);
        if to > self.buf.len() || self.buf[self.pos..to].iter().any(|&b| b != 0) {
            return bad("bad padding");
        }
        self.pos = to;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return bad("truncated");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.align(N)?;
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn text(&mut self, len: usize) -> Result<String, WireError> {
        let s = self.take(len)?;
        if self.take(1)? != [0] || s.contains(&0) {
            return bad("string without its NUL");
        }
        String::from_utf8(s.to_vec()).map_err(|_| WireError("string is not UTF-8".into()))
    }

    /// Reads one value of the complete type `sig`.
    pub fn get(&mut self, sig: &str) -> Result<Value, WireError> {
        self.get_at(sig, 0)
    }

    fn get_at(&mut self, sig: &str, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return bad("value nests too deeply");
        }
        let code = *sig
            .as_bytes()
            .first()
            .ok_or_else(|| WireError("empty type".into()))?;
        Ok(match code {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => match u32::from_le_bytes(self.fixed()?) {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return bad("boolean not 0 or 1"),
            },
            b'n' => Value::I16(i16::from_le_bytes(self.fixed()?)),
            b'q' => Value::U16(u16::from_le_bytes(self.fixed()?)),
            b'i' => Value::I32(i32::from_le_bytes(self.fixed()?)),
            b'u' | b'h' => Value::U32(u32::from_le_bytes(self.fixed()?)),
            b'x' => Value::I64(i64::from_le_bytes(self.fixed()?)),
            b't' => Value::U64(u64::from_le_bytes(self.fixed()?)),
            b'd' => Value::F64(f64::from_le_bytes(self.fixed()?)),
            b's' | b'o' => {
                let len = u32::from_le_bytes(self.fixed()?) as usize;
                let s = self.text(len)?;
                if code == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let len = usize::from(self.take(1)?[0]);
                Value::Sig(self.text(len)?)
            }
            b'v' => {
                let len = usize::from(self.take(1)?[0]);
                let inner = self.text(len)?;
                if one_type(inner.as_bytes())? != inner.len() {
                    return bad("variant signature is not one type");
                }
                Value::Variant(Box::new(self.get_at(&inner, depth + 1)?))
            }
            b'a' => {
                let elem = &sig[1..1 + one_type(&sig.as_bytes()[1..])?];
                let len = u32::from_le_bytes(self.fixed()?) as usize;
                if len > MAX_ARRAY {
                    return bad("array too long");
                }
                self.align(align_of(elem.as_bytes()[0]))?;
                let end = self.pos + len;
                if end > self.buf.len() {
                    return bad("truncated array");
                }
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.get_at(elem, depth + 1)?);
                }
                if self.pos != end {
                    return bad("array length does not match its elements");
                }
                Value::Array(elem.to_string(), items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let n = one_type(sig.as_bytes())?;
                let mut fields = Vec::new();
                for t in split_signature(&sig[1..n - 1])? {
                    fields.push(self.get_at(t, depth + 1)?);
                }
                if code == b'{' {
                    let v = fields.pop().unwrap_or(Value::Byte(0));
                    let k = fields.pop().unwrap_or(Value::Byte(0));
                    Value::Dict(Box::new(k), Box::new(v))
                } else {
                    Value::Struct(fields)
                }
            }
            _ => return bad(format!("unsupported type {:?}", code as char)),
        })
    }
}

/// A D-Bus message: its header fields and body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// `METHOD_CALL`, `METHOD_RETURN`, `ERROR` or `SIGNAL`.
    pub kind: u8,
    /// Header flags (1: no reply expected).
    pub flags: u8,
    /// The sender's serial number of this message.
    pub serial: u32,
    /// `PATH`
    pub path: Option<String>,
    /// `INTERFACE`
    pub interface: Option<String>,
    /// `MEMBER`
    pub member: Option<String>,
    /// `ERROR_NAME`
    pub error_name: Option<String>,
    /// `REPLY_SERIAL`
    pub reply_serial: Option<u32>,
    /// `DESTINATION`
    pub destination: Option<String>,
    /// `SENDER`
    pub sender: Option<String>,
    /// The body's values (their signatures make the `SIGNATURE` field).
    pub body: Vec<Value>,
}

impl Message {
    /// A method call.
    pub fn call(dest: &str, path: &str, iface: &str, member: &str, body: Vec<Value>) -> Self {
        Message {
            kind: METHOD_CALL,
            path: Some(path.into()),
            interface: Some(iface.into()),
            member: Some(member.into()),
            destination: Some(dest.into()),
            body,
            ..Message::default()
        }
    }

    /// The marshalled message.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut body = Writer::default();
        for v in &self.body {
            body.put(v)?;
        }
        let sig: String = self.body.iter().map(Value::signature).collect();
        let mut fields = Vec::new();
        let mut field = |code: u8, v: Value| {
            fields.push(Value::Struct(vec![
                Value::Byte(code),
                Value::Variant(Box::new(v)),
            ]));
        };
        let text = |f: &Option<String>, path: bool| {
            f.as_ref().map(|s| {
                if path {
                    Value::Path(s.clone())
                } else {
                    Value::Str(s.clone())
                }
            })
        };
        for (code, v) in [
            (1, text(&self.path, true)),
            (2, text(&self.interface, false)),
            (3, text(&self.member, false)),
            (4, text(&self.error_name, false)),
            (5, self.reply_serial.map(Value::U32)),
            (6, text(&self.destination, false)),
            (7, text(&self.sender, false)),
            (8, (!sig.is_empty()).then(|| Value::Sig(sig.clone()))),
        ] {
            if let Some(v) = v {
                field(code, v);
            }
        }
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[b'l', self.kind, self.flags, 1]);
        w.u32(u32::try_from(body.buf.len()).map_err(|_| WireError("body too long".into()))?);
        w.u32(self.serial);
        w.put(&Value::Array("(yv)".into(), fields))?;
        w.pad(8);
        w.buf.extend_from_slice(&body.buf);
        if w.buf.len() > MAX_MESSAGE {
            return bad("message too long");
        }
        Ok(w.buf)
    }

    /// The total length of the message whose first 16 bytes are `head`.
    pub fn total_len(head: &[u8; 16]) -> Result<usize, WireError> {
        if head[0] != b'l' {
            return bad("not a little-endian message");
        }
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let fields = word(12) as usize;
        let body = word(4) as usize;
        let total = (16 + fields).next_multiple_of(8) + body;
        if fields > MAX_ARRAY || total > MAX_MESSAGE {
            return bad("message too long");
        }
        Ok(total)
    }

    /// Parses one whole message.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        if buf.len() < 16 || buf[0] != b'l' {
            return bad("not a little-endian message");
        }
        if buf[3] != 1 {
            return bad(format!("protocol version {}", buf[3]));
        }
        let mut m = Message {
            kind: buf[1],
            flags: buf[2],
            serial: u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]),
            ..Message::default()
        };
        let body_len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let mut r = Reader::new(buf, 12);
        let Value::Array(_, fields) = r.get("a(yv)")? else {
            return bad("header fields");
        };
        let mut sig = String::new();
        for f in fields {
            let Value::Struct(f) = f else { continue };
            let (Some(Value::Byte(code)), Some(Value::Variant(v))) = (f.first(), f.get(1)) else {
                continue;
            };
            let s = v.as_str().map(str::to_string);
            match code {
                1 => m.path = s,
                2 => m.interface = s,
                3 => m.member = s,
                4 => m.error_name = s,
                5 => m.reply_serial = v.as_u32(),
                6 => m.destination = s,
                7 => m.sender = s,
                8 => sig = s.unwrap_or_default(),
                _ => {}
            }
        }
        r.align(8)?;
        if r.pos() + body_len != buf.len() {
            return bad("body length does not match the message");
        }
        for t in split_signature(&sig)? {
            m.body.push(r.get(t)?);
        }
        if r.pos() != buf.len() {
            return bad("body longer than its signature");
        }
        Ok(m)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

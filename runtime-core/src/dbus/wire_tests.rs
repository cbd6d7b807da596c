use super::*;

fn body(v: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    w.put(v).unwrap();
    w.buf
}

fn round_trip(v: Value) {
    let b = body(&v);
    let mut r = Reader::new(&b, 0);
    assert_eq!(r.get(&v.signature()).unwrap(), v);
    assert_eq!(r.pos(), b.len());
}

#[test]
fn layouts_follow_the_specification() {
    // A string: u32 length, bytes, NUL.
    assert_eq!(body(&Value::str("ab")), [2, 0, 0, 0, b'a', b'b', 0]);
    // A struct of a byte and a u64: the u64 is 8-aligned.
    let s = Value::Struct(vec![Value::Byte(7), Value::U64(2)]);
    assert_eq!(body(&s), [7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    // An empty a(sv): the length, then padding to the struct's 8 even with no element.
    let a = Value::Array("(sv)".into(), vec![]);
    assert_eq!(body(&a), [0, 0, 0, 0, 0, 0, 0, 0]);
    // An array of u64: the length counts the elements, not the padding before them.
    let a = Value::Array("t".into(), vec![Value::U64(1)]);
    assert_eq!(body(&a), [8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    // A variant: its signature (length byte, text, NUL), then the value aligned.
    let v = Value::Variant(Box::new(Value::Bool(true)));
    assert_eq!(body(&v), [1, b'b', 0, 0, 1, 0, 0, 0]);
    // Bytes of an ay are packed.
    assert_eq!(body(&Value::bytes(&[1, 2])), [2, 0, 0, 0, 1, 2]);
}

#[test]
fn every_type_round_trips() {
    for v in [
        Value::Byte(255),
        Value::Bool(false),
        Value::I16(-2),
        Value::U16(65535),
        Value::I32(-5),
        Value::U32(7),
        Value::I64(i64::MIN),
        Value::U64(u64::MAX),
        Value::F64(1.5),
        Value::str("x"),
        Value::Path("/org/freedesktop/systemd1".into()),
        Value::Sig("a(sv)".into()),
        Value::strings(["a", "bc"]),
        Value::bytes(&[0, 1, 2, 3, 4]),
        Value::Array(
            "(sv)".into(),
            vec![Value::Struct(vec![
                Value::str("PIDs"),
                Value::Variant(Box::new(Value::Array("u".into(), vec![Value::U32(1)]))),
            ])],
        ),
        Value::Array(
            "{st}".into(),
            vec![Value::Dict(
                Box::new(Value::str("k")),
                Box::new(Value::U64(3)),
            )],
        ),
        Value::Array(
            "(sa(sv))".into(),
            vec![Value::Struct(vec![
                Value::str("aux"),
                Value::Array("(sv)".into(), vec![]),
            ])],
        ),
    ] {
        round_trip(v);
    }
}

#[test]
fn bad_values_are_refused() {
    let mut w = Writer::default();
    assert!(w.put(&Value::str("a\0b")).is_err());
    let mixed = Value::Array("s".into(), vec![Value::U32(1)]);
    assert!(Writer::default().put(&mixed).is_err());
    assert!(Writer::default().put(&Value::Struct(vec![])).is_err());
    assert!(Writer::default().put(&Value::Sig("a".into())).is_err());
    // Truncated input, bad booleans and non-zero padding.
    assert!(Reader::new(&[5, 0, 0, 0, b'a'], 0).get("s").is_err());
    assert!(Reader::new(&[2, 0, 0, 0], 0).get("b").is_err());
    assert!(Reader::new(&[1, 1, 0, 0, 0, 0, 0, 0], 1).get("u").is_err());
    // An array longer than its data.
    assert!(Reader::new(&[9, 0, 0, 0, 1], 0).get("ay").is_err());
}

#[test]
fn signatures_split_into_complete_types() {
    assert_eq!(
        split_signature("ssa(sv)a(sa(sv))").unwrap(),
        ["s", "s", "a(sv)", "a(sa(sv))"]
    );
    assert_eq!(split_signature("uoss").unwrap(), ["u", "o", "s", "s"]);
    for bad in ["(", "a", "()", "{s}", "a{sss}", "z"] {
        assert!(split_signature(bad).is_err(), "{bad}");
    }
    assert!(split_signature(&"a".repeat(100).to_string()).is_err());
}

#[test]
fn messages_round_trip_with_their_header() {
    let mut m = Message::call(
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        vec![
            Value::str("casulo-x.scope"),
            Value::str("replace"),
            Value::Array("(sv)".into(), vec![]),
            Value::Array("(sa(sv))".into(), vec![]),
        ],
    );
    m.serial = 3;
    let b = m.encode().unwrap();
    assert_eq!(&b[..4], &[b'l', METHOD_CALL, 0, 1]);
    let head: [u8; 16] = b[..16].try_into().unwrap();
    assert_eq!(Message::total_len(&head).unwrap(), b.len());
    assert_eq!(Message::decode(&b).unwrap(), m);

    let reply = Message {
        kind: ERROR,
        serial: 9,
        reply_serial: Some(3),
        error_name: Some("org.freedesktop.systemd1.UnitExists".into()),
        sender: Some(":1.0".into()),
        body: vec![Value::str("Unit casulo-x.scope already exists.")],
        ..Message::default()
    };
    let b = reply.encode().unwrap();
    assert_eq!(Message::decode(&b).unwrap(), reply);
    // A body cut short or a wrong length in the header is refused.
    assert!(Message::decode(&b[..b.len() - 1]).is_err());
    let mut big = b.clone();
    big[0] = b'B';
    assert!(Message::decode(&big).is_err());
}

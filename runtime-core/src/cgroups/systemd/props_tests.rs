use super::*;
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResourcesBuilder,
};

fn get(p: &[Prop], k: &str) -> Option<Value> {
    p.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn cpu_lists_become_little_endian_masks() {
    assert_eq!(range_to_bits("0").unwrap(), [1]);
    assert_eq!(range_to_bits("0-3,8").unwrap(), [0x0f, 0x01]);
    assert_eq!(range_to_bits(" 1 , 9-10 ,").unwrap(), [0x02, 0x06]);
    for bad in ["", ",", "3-1", "a", "1-", "70000"] {
        assert!(range_to_bits(bad).is_none(), "{bad}");
    }
}

#[test]
fn resources_map_to_systemd_properties_as_runc() {
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(32 << 20)
                .swap(96 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(12_345i64)
                .period(100_000u64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (p, fs) = resources_v2(&r).unwrap();
    assert_eq!(get(&p, "MemoryMax"), Some(Value::U64(64 << 20)));
    assert_eq!(get(&p, "MemoryLow"), Some(Value::U64(32 << 20)));
    assert_eq!(get(&p, "MemorySwapMax"), Some(Value::U64(32 << 20)));
    assert_eq!(get(&p, "CPUWeight"), Some(Value::U64(100)));
    assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(Value::U64(100_000)));
    // 12345 µs per 100 ms is 123450 µs/s, rounded up to 130000; the files get 13000.
    assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(130_000)));
    assert_eq!(fs.cpu().as_ref().unwrap().quota(), Some(13_000));
    assert_eq!(get(&p, "AllowedCPUs"), Some(Value::bytes(&[3])));
    assert_eq!(get(&p, "AllowedMemoryNodes"), Some(Value::bytes(&[1])));
    // systemd does not take TasksMax=0.
    assert_eq!(get(&p, "TasksMax"), Some(Value::U64(1)));
    assert_eq!(
        get(&p, "IOWeight"),
        Some(Value::U64(blkio_weight_to_io_weight(500)))
    );
}

#[test]
fn unlimited_values_are_infinity_and_unset_ones_absent() {
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    let (p, _) = resources_v2(&r).unwrap();
    assert_eq!(get(&p, "MemoryMax"), Some(Value::U64(u64::MAX)));
    assert_eq!(get(&p, "MemorySwapMax"), Some(Value::U64(u64::MAX)));
    assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(u64::MAX)));
    assert_eq!(get(&p, "TasksMax"), Some(Value::U64(u64::MAX)));
    assert_eq!(get(&p, "CPUWeight"), None);
    assert_eq!(get(&p, "CPUQuotaPeriodUSec"), None);
    let (p, _) = resources_v2(&LinuxResources::default()).unwrap();
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn unified_keys_translate_where_systemd_has_them() {
    let unified: std::collections::HashMap<String, String> = [
        ("memory.high", "1048576"),
        ("memory.min", "max"),
        ("pids.max", "0"),
        ("cpu.max", "50000 100000"),
        ("cpu.weight", "7"),
        ("cpuset.cpus", "2"),
        ("io.max", "8:0 rbps=1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = LinuxResourcesBuilder::default()
        .unified(unified)
        .build()
        .unwrap();
    let (p, _) = resources_v2(&r).unwrap();
    assert_eq!(get(&p, "MemoryHigh"), Some(Value::U64(1 << 20)));
    assert_eq!(get(&p, "MemoryMin"), Some(Value::U64(u64::MAX)));
    assert_eq!(get(&p, "TasksMax"), Some(Value::U64(1)));
    assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(500_000)));
    assert_eq!(get(&p, "CPUWeight"), Some(Value::U64(7)));
    assert_eq!(get(&p, "AllowedCPUs"), Some(Value::bytes(&[4])));
    assert_eq!(p.len(), 7, "io.max has no property: {p:?}");
    let bad = LinuxResourcesBuilder::default()
        .unified(std::collections::HashMap::from([(
            "memory.max".to_string(),
            "lots".to_string(),
        )]))
        .build()
        .unwrap();
    let e = resources_v2(&bad).unwrap_err();
    assert!(e.to_string().contains("memory.max"), "{e}");
}

#[test]
fn gvariant_text_forms() {
    let ok = [
        ("true", Value::Bool(true)),
        ("boolean false", Value::Bool(false)),
        ("5", Value::I32(5)),
        ("-5", Value::I32(-5)),
        ("1.5", Value::F64(1.5)),
        ("uint64 123456789", Value::U64(123_456_789)),
        ("@t 7", Value::U64(7)),
        ("uint32 4", Value::U32(4)),
        ("int64 -1", Value::I64(-1)),
        ("byte 3", Value::Byte(3)),
        ("uint16 9", Value::U16(9)),
        ("int16 -9", Value::I16(-9)),
        ("double 2", Value::F64(2.0)),
        ("'a b'", Value::str("a b")),
        ("\"it's\"", Value::str("it's")),
        ("'a\\'b'", Value::str("a'b")),
        ("string 'x'", Value::str("x")),
        ("objectpath '/a'", Value::Path("/a".into())),
        ("['a', 'b']", Value::strings(["a", "b"])),
        ("@as []", Value::strings(Vec::<String>::new())),
        (
            "@au [1, 2]",
            Value::Array("u".into(), vec![Value::U32(1), Value::U32(2)]),
        ),
    ];
    for (text, want) in ok {
        assert_eq!(parse_gvariant(text).map_err(|e| e.to_string()), Ok(want), "{text}");
    }
    for bad in [
        "",
        "inactive",
        "'open",
        "[]",
        "['a', 1]",
        "uint64 -1",
        "byte 300",
        "uint64 'x'",
        "5 6",
        "@t 'x'",
        "{'a': 1}",
    ] {
        assert!(parse_gvariant(bad).is_err(), "{bad}");
    }
}

/// The refusals' one-line texts are the ones the parser gave before it was typed.
#[test]
fn gvariant_refusals_keep_their_texts() {
    for (bad, text) in [
        ("", "GVariant text: missing value"),
        ("5 6", "GVariant text \"5 6\": unexpected \"6\""),
        ("@t 'x'", "GVariant text: a string is not a t"),
        ("@s uint64 5", "GVariant text: uint64 where a t is wanted"),
        ("'open", "GVariant text: unterminated string"),
        ("'a\\", "GVariant text: bad escape"),
        ("'a\\q'", "GVariant text: escape \\q"),
        ("@t [1]", "GVariant text: an array is not a t"),
        ("[1 2]", "GVariant text: expected ',' or ']' in an array"),
        ("[]", "GVariant text: an empty array needs a type (@as [])"),
        ("['a', 1]", "GVariant text: \"1\" is not a s"),
        ("inactive", "GVariant text: cannot read \"inactive\""),
        ("@b 5", "GVariant text: \"5\" is not a b"),
    ] {
        let e = parse_gvariant(bad).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(e, Err(text.to_string()), "{bad:?}");
    }
}

/// An annotation that cannot be read names its field, and keeps the parser's error as
/// its source (an embedder can tell a bad value from a bad name).
#[test]
fn bad_annotations_keep_the_parser_error() {
    let k = "org.systemd.property.TimeoutStopSec";
    for (v, text) in [
        ("'x", "GVariant text: unterminated string"),
        ("int32 -5", "a negative number of seconds"),
        ("'x'", "a ...Sec property needs a number of seconds"),
    ] {
        let e = annotations(&HashMap::from([(k.to_string(), v.to_string())])).unwrap_err();
        assert_eq!(e.to_string(), format!("annotations[{k:?}]: {text}"));
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), text);
        assert!(matches!(
            e,
            CgroupError::Parse {
                source: crate::cgroups::ParseError::GVariant(_),
                ..
            }
        ));
    }
}

//! OMA LwM2M JSON, SenML JSON and SenML CBOR, and the Content-Format entry points.
#![allow(clippy::unwrap_used)]

mod common;

use common::{hex, p, registry};
use portico_lwm2m::content::{self, Format};
use portico_lwm2m::{FormatError, Item, Objlnk, Record, Untyped, Value, json, senml};

fn record(path: &str, value: Option<Value>, time: Option<f64>) -> Record {
    Record {
        path: p(path),
        value,
        time,
    }
}

#[test]
fn lwm2m_json_device_example() {
    // LwM2M 1.0 §6.4.4 style: a read of /3/0.
    let payload = br#"{"bn":"/3/0/","e":[
        {"n":"0","sv":"Open Mobile Alliance"},
        {"n":"6/0","v":1},{"n":"6/1","v":5},
        {"n":"9","v":100},
        {"n":"13","v":1367491215},
        {"n":"16","sv":"U"}]}"#;
    let records = json::decode(payload, &registry()).unwrap();
    assert_eq!(
        records,
        vec![
            record("/3/0/0", Some(Value::String("Open Mobile Alliance".into())), None),
            record("/3/0/6/0", Some(Value::Integer(1)), None),
            record("/3/0/6/1", Some(Value::Integer(5)), None),
            record("/3/0/9", Some(Value::Integer(100)), None),
            record("/3/0/13", Some(Value::Time(1_367_491_215)), None),
            record("/3/0/16", Some(Value::String("U".into())), None),
        ]
    );
    let encoded = json::encode(Some(&p("/3/0")), &records).unwrap();
    assert_eq!(json::decode(&encoded, &registry()).unwrap(), records);
    assert!(
        String::from_utf8(encoded)
            .unwrap()
            .starts_with(r#"{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"}"#)
    );
}

#[test]
fn lwm2m_json_names_join_like_emqx_and_values_pass_through_untyped() {
    let payload = br#"{"bn":"/3303/0","bt":100,"e":[
        {"n":"5700","v":21.5,"t":5},
        {"n":"/5701","sv":"Cel"},
        {"n":"5750","bv":true},
        {"n":"5751","ov":"3:0"},
        {"n":"5752"}]}"#;
    let records = json::decode(payload, &Untyped).unwrap();
    assert_eq!(
        records,
        vec![
            record("/3303/0/5700", Some(Value::Float(21.5)), Some(105.0)),
            record("/3303/0/5701", Some(Value::String("Cel".into())), Some(100.0)),
            record("/3303/0/5750", Some(Value::Boolean(true)), Some(100.0)),
            record(
                "/3303/0/5751",
                Some(Value::Objlnk(Objlnk { object: 3, instance: 0 })),
                Some(100.0)
            ),
            record("/3303/0/5752", None, Some(100.0)),
        ]
    );
    assert_eq!(
        records[4].to_json(),
        serde_json::json!({"path": "/3303/0/5752", "value": null})
    );
    // Whole-path names without a base.
    let records = json::decode(br#"{"e":[{"n":"/3/0/9","v":7}]}"#, &Untyped).unwrap();
    assert_eq!(records, vec![record("/3/0/9", Some(Value::Integer(7)), None)]);
    // No name: the base name is the path.
    let records = json::decode(br#"{"bn":"/3/0/9/","e":[{"v":7}]}"#, &Untyped).unwrap();
    assert_eq!(records[0].path, p("/3/0/9"));
}

#[test]
fn lwm2m_json_refuses_what_is_not_the_format() {
    let registry = registry();
    let error = |payload: &[u8]| json::decode(payload, &registry).unwrap_err();
    assert!(matches!(error(b"[1]"), FormatError::Json { .. }));
    assert!(matches!(error(b"{\"bn\":\"/3/0/\"}"), FormatError::Json { .. }));
    assert!(error(b"{\"e\":[").to_string().contains("line 1"));
    assert!(matches!(
        error(br#"{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"x"}]}"#),
        FormatError::Entry { index: 0, .. }
    ));
    assert!(matches!(
        error(br#"{"bn":"/3/0/","e":[{"n":"x"}]}"#),
        FormatError::Name { index: 0, .. }
    ));
    assert!(matches!(
        error(br#"{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}"#),
        FormatError::Value { .. }
    ));
    assert!(matches!(
        error(br#"{"bn":"/3/0/","e":[{"n":"9","sv":"1"}]}"#),
        FormatError::Value { .. }
    ));
    assert!(matches!(
        error(br#"{"e":[{"n":"/3/0","v":1}]}"#),
        FormatError::NotAResource(_)
    ));
    assert!(matches!(
        error(br#"{"e":[{"n":"/3/0/4","v":1}]}"#),
        FormatError::Executable(_)
    ));
}

#[test]
fn senml_json_lwm2m_example_with_base_fields() {
    // LwM2M 1.1 §7.4.5 style.
    let payload = br#"[
        {"bn":"/3/0/","bt":1.5e9,"n":"0","vs":"Open Mobile Alliance"},
        {"n":"6/0","v":1},
        {"n":"7/0","v":3800,"t":10},
        {"n":"13","v":1367491215},
        {"n":"22/0","vlo":"10:3"},
        {"bn":"/5/0/","n":"0","vd":"AQID"},
        {"n":"14","vb":true}]"#;
    let records = senml::decode_json(payload, &Untyped).unwrap();
    assert_eq!(
        records,
        vec![
            record(
                "/3/0/0",
                Some(Value::String("Open Mobile Alliance".into())),
                Some(1.5e9)
            ),
            record("/3/0/6/0", Some(Value::Integer(1)), Some(1.5e9)),
            record("/3/0/7/0", Some(Value::Integer(3800)), Some(1.5e9 + 10.0)),
            record("/3/0/13", Some(Value::Integer(1_367_491_215)), Some(1.5e9)),
            record(
                "/3/0/22/0",
                Some(Value::Objlnk(Objlnk {
                    object: 10,
                    instance: 3
                })),
                Some(1.5e9)
            ),
            record("/5/0/0", Some(Value::Opaque(vec![1, 2, 3])), Some(1.5e9)),
            record("/5/0/14", Some(Value::Boolean(true)), Some(1.5e9)),
        ]
    );
    // Typed through the registry, 13 is a Time.
    let typed = senml::decode_json(payload, &registry()).unwrap();
    assert_eq!(typed[3].value, Some(Value::Time(1_367_491_215)));
    for base in [None, Some(p("/3/0"))] {
        let subset = &typed[..5];
        let encoded = senml::encode_json(base.as_ref(), subset).unwrap();
        assert_eq!(senml::decode_json(&encoded, &registry()).unwrap(), subset, "{base:?}");
    }
}

#[test]
fn senml_base_value_and_strictness() {
    let records = senml::decode_json(
        br#"[{"bn":"/3303/0/","bv":20,"n":"5700","v":1.5},{"n":"5601","v":2}]"#,
        &Untyped,
    )
    .unwrap();
    assert_eq!(records[0].value, Some(Value::Float(21.5)));
    assert_eq!(records[1].value, Some(Value::Integer(22)));
    let error = |payload: &[u8]| senml::decode_json(payload, &Untyped).unwrap_err();
    assert!(
        error(br#"[{"n":"/3/0/0","vs":"a","foo_":1}]"#)
            .to_string()
            .contains("must be understood")
    );
    assert!(matches!(
        error(br#"[{"n":"/3/0/0","v":1,"vb":true}]"#),
        FormatError::Entry { .. }
    ));
    assert!(matches!(
        error(br#"[{"bver":11,"n":"/3/0/0","v":1}]"#),
        FormatError::Entry { .. }
    ));
    // Plain concatenation (RFC 8428): "/3/0" + "1" is "/3/01", not a path.
    assert!(matches!(
        error(br#"[{"bn":"/3/0","n":"1","v":1}]"#),
        FormatError::Name { .. }
    ));
    assert!(matches!(error(br#"{"n":"/3/0/0"}"#), FormatError::Json { .. }));
    // Unknown labels are skipped.
    let records = senml::decode_json(br#"[{"n":"/3/0/0","vs":"a","foo":[1,2]}]"#, &Untyped).unwrap();
    assert_eq!(records.len(), 1);
    // Valueless records (a composite read request).
    let records = senml::decode_json(br#"[{"n":"/3/0"},{"n":"/1/0/1"}]"#, &Untyped).unwrap();
    assert_eq!(records, vec![record("/3/0", None, None), record("/1/0/1", None, None)]);
}

#[test]
fn senml_cbor_decodes_and_round_trips() {
    // [{-2: "/3303/0/", 0: "5700", 2: 21.5}, {0: "5701", 3: "Cel"}, {0: "5750", 4: true},
    //  {"vlo": "3:0", 0: "5751"}, {0: "5752", 8: h'0102'}, {0: "5518", 2: 1700000000, 6: 3}]
    let payload = hex("86 A3 21 68 2F 33 33 30 33 2F 30 2F 00 64 35 37 30 30 02 F9 4D 60 \
         A2 00 64 35 37 30 31 03 63 43 65 6C \
         A2 00 64 35 37 35 30 04 F5 \
         A2 63 76 6C 6F 63 33 3A 30 00 64 35 37 35 31 \
         A2 00 64 35 37 35 32 08 42 01 02 \
         A3 00 64 35 35 31 38 02 1A 65 53 F1 00 06 03");
    let records = senml::decode_cbor(&payload, &Untyped).unwrap();
    assert_eq!(
        records,
        vec![
            record("/3303/0/5700", Some(Value::Float(21.5)), None),
            record("/3303/0/5701", Some(Value::String("Cel".into())), None),
            record("/3303/0/5750", Some(Value::Boolean(true)), None),
            record(
                "/3303/0/5751",
                Some(Value::Objlnk(Objlnk { object: 3, instance: 0 })),
                None
            ),
            record("/3303/0/5752", Some(Value::Opaque(vec![1, 2])), None),
            record("/3303/0/5518", Some(Value::Integer(1_700_000_000)), Some(3.0)),
        ]
    );
    for base in [None, Some(p("/3303/0"))] {
        let encoded = senml::encode_cbor(base.as_ref(), &records).unwrap();
        assert_eq!(senml::decode_cbor(&encoded, &Untyped).unwrap(), records);
    }
    // Typed: 5518 is a Time.
    let time = hex("81 A2 00 6C 2F 33 33 30 33 2F 30 2F 35 35 31 38 02 1A 65 53 F1 00");
    assert_eq!(
        senml::decode_cbor(&time, &registry()).unwrap()[0].value,
        Some(Value::Time(1_700_000_000))
    );
    // ... and 5750 is a String, so the Boolean above does not type.
    assert!(matches!(
        senml::decode_cbor(&payload, &registry()),
        Err(FormatError::Value { .. })
    ));
}

#[test]
fn senml_cbor_is_strict_and_bounded() {
    let error = |bytes: &str| senml::decode_cbor(&hex(bytes), &Untyped).unwrap_err();
    // Not an array.
    assert!(matches!(error("A0"), FormatError::Cbor { offset: 0, .. }));
    // An array claiming 2^32 records with none there: an error at the end, no allocation.
    assert!(matches!(error("9A FF FF FF FF"), FormatError::Cbor { offset: 5, .. }));
    // A tag.
    assert!(matches!(error("81 A1 00 C1 00"), FormatError::Cbor { .. }));
    // Trailing bytes.
    assert!(matches!(error("80 00"), FormatError::Cbor { offset: 1, .. }));
    // A label given twice.
    assert!(matches!(error("81 A2 00 61 61 00 61 62"), FormatError::Cbor { .. }));
    // Deep nesting under an unknown label is cut off.
    let mut deep = String::from("81 A1 63 66 6F 6F ");
    deep.push_str(&"81 ".repeat(40));
    deep.push_str("00");
    assert!(error(&deep).to_string().contains("nests deeper"));
    // Indefinite-length arrays and maps are read.
    let records = senml::decode_cbor(&hex("9F BF 00 66 2F 33 2F 30 2F 39 02 18 5F FF FF"), &Untyped).unwrap();
    assert_eq!(records, vec![record("/3/0/9", Some(Value::Integer(95)), None)]);
}

#[test]
fn content_formats_dispatch_and_stay_under_the_target() {
    let registry = registry();
    assert_eq!(Format::from_content_format(11542), Some(Format::Tlv));
    assert_eq!(Format::from_content_format(1542), Some(Format::Tlv));
    assert_eq!(Format::from_content_format(60), None);
    let records = content::decode(0, b"95", &p("/3/0/9"), &registry).unwrap();
    assert_eq!(records, vec![record("/3/0/9", Some(Value::Integer(95)), None)]);
    let records = content::decode(42, &[1, 2], &p("/5/0/0"), &registry).unwrap();
    assert_eq!(records[0].value, Some(Value::Opaque(vec![1, 2])));
    assert_eq!(
        content::decode(60, b"", &p("/3"), &registry),
        Err(FormatError::Unsupported(60))
    );
    let error = content::decode(110, br#"[{"n":"/4/0/0","v":1}]"#, &p("/3"), &registry).unwrap_err();
    assert!(matches!(error, FormatError::OutsideTarget { .. }));

    let items = vec![
        Item::new(p("/3/0/14"), Value::String("+01:00".into())),
        Item::new(p("/3/0/13"), Value::Time(5)),
    ];
    for number in [11542, 11543, 110, 112] {
        let payload = content::encode(number, &p("/3/0"), &items).unwrap();
        let back: Vec<Item> = content::decode(number, &payload, &p("/3/0"), &registry)
            .unwrap()
            .into_iter()
            .map(|r| Item::new(r.path, r.value.unwrap()))
            .collect();
        assert_eq!(back, items, "{number}");
    }
    assert_eq!(content::encode(0, &p("/3/0/14"), &items[..1]).unwrap(), b"+01:00");
    assert!(content::encode(0, &p("/3/0"), &items).is_err());
}

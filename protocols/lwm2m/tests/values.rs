//! Values: the JSON forms of EMQX's MQTT side (gateway-semantics §3.5, §3.6) and plain text.
#![allow(clippy::unwrap_used)]

mod common;

use common::{p, registry};
use portico_lwm2m::{Item, Objlnk, Record, ResourceType as T, Value, ValueError, text};
use serde_json::json;

#[test]
fn command_values_take_emqx_forms() {
    let ok = |ty, json: serde_json::Value| Value::from_command_json(ty, &json).unwrap();
    assert_eq!(ok(T::String, json!("hello")), Value::String("hello".into()));
    assert_eq!(ok(T::Integer, json!(12345)), Value::Integer(12345));
    assert_eq!(ok(T::Integer, json!("12345")), Value::Integer(12345));
    assert_eq!(ok(T::Integer, json!("-7")), Value::Integer(-7));
    assert_eq!(ok(T::Time, json!(1_700_000_000)), Value::Time(1_700_000_000));
    assert_eq!(ok(T::Float, json!(1.5)), Value::Float(1.5));
    assert_eq!(ok(T::Float, json!("2")), Value::Float(2.0));
    assert_eq!(ok(T::Float, json!("-2.5e3")), Value::Float(-2500.0));
    assert_eq!(ok(T::Boolean, json!("true")), Value::Boolean(true));
    assert_eq!(ok(T::Boolean, json!("false")), Value::Boolean(false));
    assert_eq!(ok(T::Boolean, json!(true)), Value::Boolean(true));
    assert_eq!(ok(T::Opaque, json!("AQID")), Value::Opaque(vec![1, 2, 3]));
    assert_eq!(ok(T::Opaque, json!("AQI=")), Value::Opaque(vec![1, 2]));
    assert_eq!(ok(T::Opaque, json!("AQI")), Value::Opaque(vec![1, 2]));
    assert_eq!(
        ok(T::Objlnk, json!("3:0")),
        Value::Objlnk(Objlnk { object: 3, instance: 0 })
    );
    assert_eq!(
        ok(T::UnsignedInteger, json!(u64::MAX)),
        Value::UnsignedInteger(u64::MAX)
    );
    assert_eq!(ok(T::Corelnk, json!("</3/0>")), Value::Corelnk("</3/0>".into()));
    assert_eq!(T::from_command_name("Unsigned Integer"), Some(T::UnsignedInteger));
    assert_eq!(T::from_command_name("UnsignedInteger"), Some(T::UnsignedInteger));
    assert_eq!(T::from_command_name("Opaque"), Some(T::Opaque));
    assert_eq!(T::from_command_name(""), None);
    assert_eq!(T::from_command_name("integer"), None);
}

#[test]
fn command_values_are_strict() {
    let err = |ty, json: serde_json::Value| Value::from_command_json(ty, &json).unwrap_err();
    // EMQX would send a float for these; we refuse.
    assert!(matches!(err(T::Integer, json!(1.5)), ValueError::Mismatch { .. }));
    assert!(matches!(err(T::Integer, json!("1.5")), ValueError::Text { .. }));
    assert!(matches!(
        err(T::Integer, json!("9223372036854775808")),
        ValueError::Text { .. }
    ));
    assert!(matches!(err(T::Integer, json!(" 1")), ValueError::Text { .. }));
    assert!(matches!(err(T::Float, json!("nan")), ValueError::Text { .. }));
    assert!(matches!(err(T::Float, json!("1e999")), ValueError::Text { .. }));
    assert!(matches!(err(T::Float, json!(".5")), ValueError::Text { .. }));
    assert!(matches!(err(T::Boolean, json!("1")), ValueError::Text { .. }));
    assert!(matches!(err(T::Boolean, json!(1)), ValueError::Mismatch { .. }));
    assert!(matches!(err(T::String, json!(5)), ValueError::Mismatch { .. }));
    assert!(matches!(err(T::Opaque, json!("not base64!")), ValueError::Base64(_)));
    assert!(matches!(err(T::Objlnk, json!("3")), ValueError::Text { .. }));
    assert!(matches!(err(T::Objlnk, json!("3:65536")), ValueError::Text { .. }));
    assert!(matches!(
        err(T::UnsignedInteger, json!(-1)),
        ValueError::Mismatch { .. }
    ));
    assert_eq!(err(T::None, json!("x")), ValueError::NoValue);
    assert_eq!(
        err(T::Integer, json!([1])).to_string(),
        "a Integer value is a number or a numeric string, found an array"
    );
}

#[test]
fn hex_encoded_command_values() {
    assert_eq!(
        Value::from_command_hex(T::Opaque, "0102ff").unwrap(),
        Value::Opaque(vec![1, 2, 255])
    );
    assert_eq!(Value::from_command_hex(T::Integer, "3132").unwrap(), Value::Integer(12));
    assert_eq!(
        Value::from_command_hex(T::String, "4869").unwrap(),
        Value::String("Hi".into())
    );
    assert_eq!(Value::from_command_hex(T::Integer, "313"), Err(ValueError::Hex(3)));
    assert_eq!(Value::from_command_hex(T::Integer, "zz"), Err(ValueError::Hex(0)));
    assert!(matches!(
        Value::from_command_hex(T::String, "ff"),
        Err(ValueError::NotUtf8 { .. })
    ));
}

#[test]
fn uplink_entries_have_emqx_shape() {
    let item = |path: &str, value| Item::new(p(path), value).to_json();
    assert_eq!(
        item("/3/0/0", Value::String("EMQ".into())),
        json!({"path": "/3/0/0", "value": "EMQ"})
    );
    assert_eq!(
        item("/3/0/9", Value::Integer(95)),
        json!({"path": "/3/0/9", "value": 95})
    );
    assert_eq!(
        item("/3303/0/5700", Value::Float(21.5)),
        json!({"path": "/3303/0/5700", "value": 21.5})
    );
    assert_eq!(
        item("/1/0/6", Value::Boolean(false)),
        json!({"path": "/1/0/6", "value": false})
    );
    assert_eq!(
        item("/5/0/0", Value::Opaque(vec![1, 2])),
        json!({"path": "/5/0/0", "value": "AQI="})
    );
    assert_eq!(
        item(
            "/3/0/22/0",
            Value::Objlnk(Objlnk {
                object: 10,
                instance: 3
            })
        ),
        json!({"path": "/3/0/22/0", "value": "10:3"})
    );
    assert_eq!(item("/3/0/13", Value::Time(1)), json!({"path": "/3/0/13", "value": 1}));
    assert_eq!(
        item("/6/0/0", Value::Float(f64::NAN)),
        json!({"path": "/6/0/0", "value": null})
    );
    let record = Record {
        path: p("/3/0"),
        value: None,
        time: Some(5.0),
    };
    assert_eq!(record.to_json(), json!({"path": "/3/0", "value": null}));
}

#[test]
fn plain_text_reads_spec_booleans_and_writes_them() {
    let registry = registry();
    let read = |path: &str, text: &str| text::decode_text(text.as_bytes(), &p(path), &registry);
    assert_eq!(read("/1/0/6", "1").unwrap().value, Value::Boolean(true));
    assert_eq!(read("/1/0/6", "0").unwrap().value, Value::Boolean(false));
    // EMQX's spelling is read too (EMQX itself inverts it).
    assert_eq!(read("/1/0/6", "true").unwrap().value, Value::Boolean(true));
    assert_eq!(read("/1/0/6", "false").unwrap().value, Value::Boolean(false));
    assert!(read("/1/0/6", "yes").is_err());
    assert_eq!(
        read("/3/0/0", "Open Mobile Alliance").unwrap().value,
        Value::String("Open Mobile Alliance".into())
    );
    assert_eq!(read("/3/0/9", "95").unwrap().value, Value::Integer(95));
    assert_eq!(read("/3/0/13", "1367491215").unwrap().value, Value::Time(1_367_491_215));
    assert_eq!(read("/3303/0/5700", "-12.25").unwrap().value, Value::Float(-12.25));
    assert_eq!(read("/5/0/0", "AQID").unwrap().value, Value::Opaque(vec![1, 2, 3]));
    assert_eq!(
        read("/3/0/22/0", "3:0").unwrap().value,
        Value::Objlnk(Objlnk { object: 3, instance: 0 })
    );
    assert_eq!(read("/1/0/11", "255").unwrap().value, Value::UnsignedInteger(255));
    // Not trimmed, and typed.
    let error = read("/3/0/9", "95\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "/3/0/9: \"95\\n\" is not a Integer value: expected a decimal integer"
    );
    // Only a resource or resource instance takes plain text.
    assert!(read("/3/0", "x").is_err());
    assert!(text::decode_text(&[0xC3, 0x28], &p("/3/0/0"), &registry).is_err());

    let write = |value| String::from_utf8(text::encode_text(&Item::new(p("/3/0/9"), value)).unwrap()).unwrap();
    assert_eq!(write(Value::Boolean(true)), "1");
    assert_eq!(write(Value::Boolean(false)), "0");
    assert_eq!(write(Value::Float(1.0)), "1");
    assert_eq!(write(Value::Float(0.1)), "0.1");
    assert_eq!(write(Value::Float(1e21)), "1000000000000000000000");
    assert_eq!(write(Value::Integer(-5)), "-5");
    assert_eq!(write(Value::Opaque(vec![1, 2, 3])), "AQID");
    assert!(text::encode_text(&Item::new(p("/3/0/9"), Value::Float(f64::INFINITY))).is_err());
}

#[test]
fn opaque_is_the_bytes() {
    let item = text::decode_opaque(&[0, 255, 7], &p("/5/0/0")).unwrap();
    assert_eq!(item.value, Value::Opaque(vec![0, 255, 7]));
    assert_eq!(item.to_json(), json!({"path": "/5/0/0", "value": "AP8H"}));
    assert_eq!(text::encode_opaque(&item).unwrap(), vec![0, 255, 7]);
    assert!(text::encode_opaque(&Item::new(p("/5/0/1"), Value::String("x".into()))).is_err());
    assert!(text::decode_opaque(&[1], &p("/5")).is_err());
}

//! OMA TLV against the LwM2M Core TS examples (1.0 §6.4.3, 1.1 §7.4.3), byte for byte both
//! ways, and the rules around them.
#![allow(clippy::unwrap_used)]

mod common;

use std::borrow::Cow;

use common::{DEVICE_RESOURCES, EXAMPLE_OBJECTS, hex, p, registry};
use portico_lwm2m::tlv::{
    self, ObjectInstanceTlv, ResourceInstanceTlv, ResourceTlv, TlvErrorKind, TlvPayload, TlvType,
};
use portico_lwm2m::{FormatError, Item, Objlnk, Registry, Value, ValueError};

fn device_items() -> Vec<Item> {
    let i = |path: &str, value| Item::new(p(path), value);
    vec![
        i("/3/0/0", Value::String("Open Mobile Alliance".into())),
        i("/3/0/1", Value::String("Lightweight M2M Client".into())),
        i("/3/0/2", Value::String("345000123".into())),
        i("/3/0/3", Value::String("1.0".into())),
        i("/3/0/6/0", Value::Integer(1)),
        i("/3/0/6/1", Value::Integer(5)),
        i("/3/0/7/0", Value::Integer(3800)),
        i("/3/0/7/1", Value::Integer(5000)),
        i("/3/0/8/0", Value::Integer(125)),
        i("/3/0/8/1", Value::Integer(900)),
        i("/3/0/9", Value::Integer(100)),
        i("/3/0/10", Value::Integer(15)),
        i("/3/0/11/0", Value::Integer(0)),
        i("/3/0/13", Value::Time(1_367_491_215)),
        i("/3/0/14", Value::String("+02:00".into())),
        i("/3/0/16", Value::String("U".into())),
    ]
}

#[test]
fn single_resource_example() {
    let bytes = hex("C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65");
    let items = tlv::decode_items(&bytes, &p("/3/0/0"), &registry()).unwrap();
    assert_eq!(
        items,
        vec![Item::new(p("/3/0/0"), Value::String("Open Mobile Alliance".into()))]
    );
    assert_eq!(tlv::encode_items(&p("/3/0/0"), &items).unwrap(), bytes);
}

#[test]
fn multiple_resource_example() {
    let bytes = hex("86 06 41 00 01 41 01 05");
    let structure = tlv::decode(&bytes).unwrap();
    assert_eq!(
        structure,
        TlvPayload::Resources(vec![ResourceTlv::Multiple {
            id: 6,
            instances: vec![
                ResourceInstanceTlv {
                    id: 0,
                    value: Cow::Borrowed(&[1])
                },
                ResourceInstanceTlv {
                    id: 1,
                    value: Cow::Borrowed(&[5])
                },
            ],
        }])
    );
    assert_eq!(structure.encode().unwrap(), bytes);
    let items = tlv::decode_items(&bytes, &p("/3/0/6"), &registry()).unwrap();
    assert_eq!(
        items,
        vec![
            Item::new(p("/3/0/6/0"), Value::Integer(1)),
            Item::new(p("/3/0/6/1"), Value::Integer(5))
        ]
    );
    assert_eq!(tlv::encode_items(&p("/3/0/6"), &items).unwrap(), bytes);
}

#[test]
fn device_object_instance_example_both_ways() {
    let bytes = hex(DEVICE_RESOURCES);
    assert_eq!(bytes.len(), 0x79);
    let items = tlv::decode_items(&bytes, &p("/3/0"), &registry()).unwrap();
    assert_eq!(items, device_items());
    assert_eq!(tlv::encode_items(&p("/3/0"), &device_items()).unwrap(), bytes);
}

#[test]
fn device_object_with_instance_wrapper_example_both_ways() {
    let mut bytes = hex("08 00 79");
    bytes.extend(hex(DEVICE_RESOURCES));
    let items = tlv::decode_items(&bytes, &p("/3"), &registry()).unwrap();
    assert_eq!(items, device_items());
    assert_eq!(tlv::encode_items(&p("/3"), &device_items()).unwrap(), bytes);
    // The same payload answers a read of /3/0 (some clients wrap the instance).
    assert_eq!(
        tlv::decode_items(&bytes, &p("/3/0"), &registry()).unwrap(),
        device_items()
    );
    // ... but not of /3/1.
    assert!(matches!(
        tlv::decode_items(&bytes, &p("/3/1"), &registry()),
        Err(FormatError::OutsideTarget { .. })
    ));
}

#[test]
fn access_control_two_instances_example() {
    let bytes = hex("08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F \
         08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F");
    let items = tlv::decode_items(&bytes, &p("/2"), &registry()).unwrap();
    let i = |path: &str, v: i64| Item::new(p(path), Value::Integer(v));
    assert_eq!(
        items,
        vec![
            i("/2/0/0", 1),
            i("/2/0/1", 0),
            i("/2/0/2/127", 7),
            i("/2/0/3", 127),
            i("/2/2/0", 3),
            i("/2/2/1", 0),
            i("/2/2/2/127", 7),
            i("/2/2/2/310", 1),
            i("/2/2/3", 127),
        ]
    );
    assert_eq!(tlv::encode_items(&p("/2"), &items).unwrap(), bytes);
}

#[test]
fn server_single_instance_example() {
    let bytes = hex("08 00 0F C1 00 01 C4 01 00 01 51 80 C1 06 01 C1 07 55");
    let items = tlv::decode_items(&bytes, &p("/1"), &registry()).unwrap();
    assert_eq!(
        items,
        vec![
            Item::new(p("/1/0/0"), Value::Integer(1)),
            Item::new(p("/1/0/1"), Value::Integer(86400)),
            Item::new(p("/1/0/6"), Value::Boolean(true)),
            Item::new(p("/1/0/7"), Value::String("U".into())),
        ]
    );
    assert_eq!(tlv::encode_items(&p("/1"), &items).unwrap(), bytes);
}

fn example_registry() -> Registry {
    let mut registry = Registry::new();
    registry.add_xml("example", EXAMPLE_OBJECTS).unwrap();
    registry
}

#[test]
fn object_link_examples() {
    let bytes = hex("88 00 0C 44 00 00 42 00 00 44 01 00 42 00 01 \
         C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30 \
         C4 02 12 34 56 78");
    let items = tlv::decode_items(&bytes, &p("/65/0"), &example_registry()).unwrap();
    assert_eq!(
        items,
        vec![
            Item::new(
                p("/65/0/0/0"),
                Value::Objlnk(Objlnk {
                    object: 66,
                    instance: 0
                })
            ),
            Item::new(
                p("/65/0/0/1"),
                Value::Objlnk(Objlnk {
                    object: 66,
                    instance: 1
                })
            ),
            Item::new(p("/65/0/1"), Value::String("8613800755500".into())),
            Item::new(p("/65/0/2"), Value::Integer(0x1234_5678)),
        ]
    );
    assert_eq!(tlv::encode_items(&p("/65/0"), &items).unwrap(), bytes);

    let bytes = hex("08 00 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 31 \
         C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 34 C4 02 00 43 00 00 \
         08 01 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 32 \
         C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 35 C4 02 FF FF FF FF");
    let items = tlv::decode_items(&bytes, &p("/66"), &example_registry()).unwrap();
    assert_eq!(items.len(), 6);
    assert_eq!(
        items[2],
        Item::new(
            p("/66/0/2"),
            Value::Objlnk(Objlnk {
                object: 67,
                instance: 0
            })
        )
    );
    assert_eq!(items[5].value.to_json(), serde_json::json!("65535:65535"));
    assert_eq!(tlv::encode_items(&p("/66"), &items).unwrap(), bytes);
}

#[test]
fn integers_are_written_signed_in_1_2_4_or_8_bytes() {
    let cases: [(i64, &str); 10] = [
        (0, "00"),
        (127, "7F"),
        (128, "00 80"), // EMQX writes the single byte 80, which a device reads as -128
        (-128, "80"),
        (255, "00 FF"),
        (-129, "FF 7F"),
        (32768, "00 00 80 00"),
        (65535, "00 00 FF FF"),
        (1 << 31, "00 00 00 00 80 00 00 00"),
        (i64::MIN, "80 00 00 00 00 00 00 00"),
    ];
    for (v, expected) in cases {
        assert_eq!(tlv::value_to_bytes(&Value::Integer(v)), hex(expected), "{v}");
        assert_eq!(
            tlv::value_from_bytes(portico_lwm2m::ResourceType::Integer, &hex(expected)).unwrap(),
            Value::Integer(v)
        );
    }
    assert_eq!(tlv::value_to_bytes(&Value::UnsignedInteger(255)), hex("FF"));
    assert_eq!(
        tlv::value_to_bytes(&Value::UnsignedInteger(u64::MAX)),
        hex("FF FF FF FF FF FF FF FF")
    );
    assert_eq!(tlv::value_to_bytes(&Value::Float(1.5)), hex("3F C0 00 00"));
    assert_eq!(tlv::value_to_bytes(&Value::Float(0.1)), hex("3F B9 99 99 99 99 99 9A"));
}

#[test]
fn other_widths_are_refused_by_name() {
    use portico_lwm2m::ResourceType as T;
    for (ty, bytes) in [
        (T::Integer, "00 00 01"),
        (T::Integer, ""),
        (T::Time, "00 00 00 00 01"),
        (T::UnsignedInteger, "01 02 03"),
        (T::Float, "00 00"),
        (T::Objlnk, "00 01 00"),
        (T::Boolean, "00 00"),
    ] {
        let error = tlv::value_from_bytes(ty, &hex(bytes)).unwrap_err();
        assert!(matches!(error, ValueError::Width { .. }), "{ty} {bytes}: {error}");
    }
    assert_eq!(tlv::value_from_bytes(T::Boolean, &[2]), Err(ValueError::BooleanByte(2)));
    assert!(matches!(
        tlv::value_from_bytes(T::String, &[0xFF]),
        Err(ValueError::NotUtf8 { offset: 0, .. })
    ));
    // A device's 3-byte integer is refused with the path in the error.
    let error = tlv::decode_items(&hex("C3 09 00 00 64"), &p("/3/0"), &registry()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "/3/0/9: a Integer value takes 1, 2, 4 or 8 bytes, found 3"
    );
}

#[test]
fn every_length_form_decodes_and_the_shortest_is_written() {
    // Value "abc" with the length inline, in an 8-, 16- and 24-bit field, and a 16-bit id.
    for bytes in [
        "C3 00 61 62 63",
        "C8 00 03 61 62 63",
        "D0 00 00 03 61 62 63",
        "D8 00 00 00 03 61 62 63",
        "E3 00 00 61 62 63",
    ] {
        let input = hex(bytes);
        let payload = tlv::decode(&input).unwrap();
        assert_eq!(
            payload,
            TlvPayload::Resources(vec![ResourceTlv::Single {
                id: 0,
                value: Cow::Borrowed(b"abc")
            }]),
            "{bytes}"
        );
        assert_eq!(payload.encode().unwrap(), hex("C3 00 61 62 63"));
    }
    let long = TlvPayload::Resources(vec![ResourceTlv::Single {
        id: 300,
        value: Cow::Owned(vec![7; 70_000]),
    }]);
    let bytes = long.encode().unwrap();
    assert_eq!(&bytes[..6], &hex("F8 01 2C 01 11 70")[..]);
    assert_eq!(tlv::decode(&bytes).unwrap(), long);
}

#[test]
fn malformed_structures_are_refused_with_an_offset() {
    let cases: [(&str, TlvErrorKind, usize); 8] = [
        (
            "C8",
            TlvErrorKind::Truncated {
                part: "identifier",
                needed: 1,
                available: 0,
            },
            0,
        ),
        (
            "C8 00",
            TlvErrorKind::Truncated {
                part: "length field",
                needed: 1,
                available: 0,
            },
            0,
        ),
        (
            "C8 00 05 41",
            TlvErrorKind::Truncated {
                part: "value",
                needed: 5,
                available: 1,
            },
            0,
        ),
        // A 24-bit length of 16 MiB over three bytes: refused before anything is allocated.
        (
            "D8 00 FF FF FF 00 00 00",
            TlvErrorKind::Truncated {
                part: "value",
                needed: 0xFF_FFFF,
                available: 3,
            },
            0,
        ),
        ("E3 FF FF 61 62 63", TlvErrorKind::ReservedId, 0),
        (
            "08 00 03 41 00 01",
            TlvErrorKind::Misplaced {
                found: TlvType::ResourceInstance,
                inside: "an object instance",
            },
            3,
        ),
        (
            "83 06 C1 00 01",
            TlvErrorKind::Misplaced {
                found: TlvType::Resource,
                inside: "a multiple resource",
            },
            2,
        ),
        (
            "C1 00 01 41 01 05",
            TlvErrorKind::MixedTopLevel {
                first: TlvType::Resource,
                found: TlvType::ResourceInstance,
            },
            3,
        ),
    ];
    for (bytes, kind, offset) in cases {
        let error = tlv::decode(&hex(bytes)).unwrap_err();
        assert_eq!((error.kind, error.offset), (kind, offset), "{bytes}: {error}");
    }
    // An object instance inside an object instance.
    let error = tlv::decode(&hex("08 00 03 00 01 00")).unwrap_err();
    assert!(matches!(
        error.kind,
        TlvErrorKind::Misplaced {
            found: TlvType::ObjectInstance,
            ..
        }
    ));
}

#[test]
fn typing_needs_a_definition_and_a_fitting_path() {
    let registry = registry();
    let error = tlv::decode_items(&hex("C1 00 01"), &p("/9999/0"), &registry).unwrap_err();
    assert_eq!(error, FormatError::UnknownObject(9999));
    let error = tlv::decode_items(&hex("C1 63 01"), &p("/3/0"), &registry).unwrap_err();
    assert_eq!(
        error,
        FormatError::UnknownResource {
            object: 3,
            resource: 99
        }
    );
    let error = tlv::decode_items(&hex("C1 04 01"), &p("/3/0"), &registry).unwrap_err();
    assert!(matches!(error, FormatError::Executable(_)), "{error}");
    // Resources answering an object request have no instance to go under.
    let error = tlv::decode_items(&hex("C1 09 64"), &p("/3"), &registry).unwrap_err();
    assert!(matches!(error, FormatError::Target { .. }), "{error}");
    // A single resource answering a request for another resource.
    let error = tlv::decode_items(&hex("C1 09 64"), &p("/3/0/10"), &registry).unwrap_err();
    assert!(matches!(error, FormatError::OutsideTarget { .. }), "{error}");
    // Resource instances need a resource in the request.
    let items = tlv::decode_items(&hex("41 01 05"), &p("/3/0/6/1"), &registry).unwrap();
    assert_eq!(items, vec![Item::new(p("/3/0/6/1"), Value::Integer(5))]);
    assert!(tlv::decode_items(&hex("41 01 05"), &p("/3/0"), &registry).is_err());
    // An empty payload is no items.
    assert_eq!(tlv::decode_items(&[], &p("/3303"), &registry).unwrap(), vec![]);
}

#[test]
fn encoding_refuses_ambiguous_item_lists() {
    let v = Value::Integer(1);
    let twice = [Item::new(p("/3/0/9"), v.clone()), Item::new(p("/3/0/9"), v.clone())];
    assert_eq!(
        tlv::encode_items(&p("/3/0"), &twice),
        Err(FormatError::Duplicate(p("/3/0/9")))
    );
    let both = [Item::new(p("/3/0/6/0"), v.clone()), Item::new(p("/3/0/6"), v.clone())];
    assert_eq!(
        tlv::encode_items(&p("/3/0"), &both),
        Err(FormatError::Duplicate(p("/3/0/6")))
    );
    let outside = [Item::new(p("/3/1/9"), v.clone())];
    assert!(matches!(
        tlv::encode_items(&p("/3/0"), &outside),
        Err(FormatError::OutsideTarget { .. })
    ));
    let shallow = [Item::new(p("/3/0"), v.clone())];
    assert_eq!(
        tlv::encode_items(&p("/3"), &shallow),
        Err(FormatError::NotAResource(p("/3/0")))
    );
    // Create with no content: an empty payload (EMQX sends the same).
    assert_eq!(tlv::encode_items(&p("/5"), &[]).unwrap(), Vec::<u8>::new());
    // A resource instance target writes one resource instance entry.
    let one = [Item::new(p("/3/0/6/2"), Value::Integer(7))];
    assert_eq!(tlv::encode_items(&p("/3/0/6/2"), &one).unwrap(), hex("41 02 07"));
    // The structure layer reports what it is given.
    let payload = TlvPayload::ObjectInstances(vec![ObjectInstanceTlv {
        id: 0,
        resources: vec![],
    }]);
    assert_eq!(payload.encode().unwrap(), hex("00 00"));
}

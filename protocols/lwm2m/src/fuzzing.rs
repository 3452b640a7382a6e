//! The properties the fuzz targets (`fuzz/fuzz_targets/lwm2m_*.rs`) check, here so that the test
//! suite replays their seeds with exactly the same checks.
//!
//! Every decoder must return instead of panicking, and an error must point inside the input.
//! What decodes must encode, and decode back to the same thing: the TLV structure, typed TLV
//! items (under a request path the first input byte picks), SenML JSON, OMA LwM2M JSON and SenML
//! CBOR records (untyped, and typed through [`fuzz_registry`]), and link-format links.

use std::sync::OnceLock;

use crate::error::FormatError;
use crate::link::{self, ObjectLinks};
use crate::path::Path;
use crate::registry::Registry;
use crate::value::{Record, TypeLookup, Untyped};
use crate::{json, senml, tlv};

/// Object 9 with one resource of each type (0..=8, in the order of
/// [`crate::ResourceType::ALL`]), an executable resource 9, and multiple-instance Integer 10
/// and String 11.
const FUZZ_OBJECT: &str = r#"<LWM2M><Object><Name>Fuzz</Name><ObjectID>9</ObjectID>
<MultipleInstances>Multiple</MultipleInstances><Resources>
<Item ID="0"><Name>s</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>String</Type></Item>
<Item ID="1"><Name>i</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Integer</Type></Item>
<Item ID="2"><Name>u</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Unsigned Integer</Type></Item>
<Item ID="3"><Name>f</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Float</Type></Item>
<Item ID="4"><Name>b</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Boolean</Type></Item>
<Item ID="5"><Name>o</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Opaque</Type></Item>
<Item ID="6"><Name>t</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Time</Type></Item>
<Item ID="7"><Name>l</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Objlnk</Type></Item>
<Item ID="8"><Name>c</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Corelnk</Type></Item>
<Item ID="9"><Name>e</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances><Type></Type></Item>
<Item ID="10"><Name>mi</Name><Operations>RW</Operations><MultipleInstances>Multiple</MultipleInstances><Type>Integer</Type></Item>
<Item ID="11"><Name>ms</Name><Operations>RW</Operations><MultipleInstances>Multiple</MultipleInstances><Type>String</Type></Item>
</Resources></Object></LWM2M>"#;

/// The registry the typed checks use: [`FUZZ_OBJECT`] (object 9) and the Device object (3)
/// of `lwm2m-xml/`.
pub fn fuzz_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry::new();
        for (name, xml) in [
            ("fuzz", FUZZ_OBJECT),
            ("3.xml", include_str!("../../../lwm2m-xml/3.xml")),
        ] {
            if let Err(e) = registry.add_xml(name, xml) {
                panic!("the fuzz registry loads: {e}");
            }
        }
        registry
    })
}

/// The request path the first byte of a TLV fuzz input picks: `/9`, `/9/0`, `/9/0/r` or
/// `/9/0/r/0`, with `r` from the byte's upper bits (0..=11); `/3/0` for 0xFF.
pub fn tlv_target(selector: u8) -> Path {
    let resource = u16::from(selector >> 2) % 12;
    let ids: &[u16] = match (selector, selector & 3) {
        (0xFF, _) => &[3, 0],
        (_, 0) => &[9],
        (_, 1) => &[9, 0],
        (_, 2) => &[9, 0, resource],
        _ => &[9, 0, resource, 0],
    };
    match Path::new(ids) {
        Ok(path) => path,
        Err(e) => panic!("fuzz target paths are valid: {e}"),
    }
}

/// TLV: the structure round-trips and never grows; typed items under [`tlv_target`] round-trip.
pub fn check_tlv(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match tlv::decode(payload) {
        Ok(structure) => {
            let bytes = structure.encode().expect("a decoded structure encodes");
            assert!(
                bytes.len() <= payload.len(),
                "shortest forms cannot be longer than the input"
            );
            assert_eq!(tlv::decode(&bytes).expect("an encoded structure decodes"), structure);
        }
        Err(e) => assert!(e.offset <= payload.len(), "{e} points past the {} bytes", payload.len()),
    }
    let target = tlv_target(selector);
    let Ok(items) = tlv::decode_items(payload, &target, fuzz_registry()) else {
        return;
    };
    for item in &items {
        assert!(item.path.starts_with(&target), "{} is not under {target}", item.path);
        let _ = item.to_json();
    }
    match tlv::encode_items(&target, &items) {
        Ok(bytes) => {
            let mut again = tlv::decode_items(&bytes, &target, fuzz_registry()).expect("encoded items decode");
            // The encoder groups a resource's (or an instance's) entries that the payload spread
            // out, so compare in path order; paths are unique, or encoding would have failed.
            let mut items = items;
            items.sort_by_key(|item| item.path);
            again.sort_by_key(|item| item.path);
            assert_eq!(again, items);
        }
        // A payload may name a resource twice; that is what the encoder refuses.
        Err(FormatError::Duplicate(_)) => {}
        Err(e) => panic!("decoded items do not encode: {e}"),
    }
}

fn records_round_trip(
    records: &[Record],
    types: &dyn TypeLookup,
    encode: impl Fn(&[Record]) -> Result<Vec<u8>, FormatError>,
    decode: impl Fn(&[u8], &dyn TypeLookup) -> Result<Vec<Record>, FormatError>,
) {
    for record in records {
        let _ = record.to_json();
    }
    let bytes = encode(records).expect("decoded records encode");
    let again = decode(&bytes, types).expect("encoded records decode");
    assert_eq!(again, records);
}

/// SenML JSON, and OMA LwM2M JSON on the same input: decoded records re-encode to records
/// that decode the same, untyped and typed.
pub fn check_senml_json(data: &[u8]) {
    let types: [&dyn TypeLookup; 2] = [&Untyped, fuzz_registry()];
    for types in types {
        if let Ok(records) = senml::decode_json(data, types) {
            records_round_trip(&records, types, |r| senml::encode_json(None, r), senml::decode_json);
            if let Some(base) = records.first().and_then(|r| r.path.parent())
                && records.iter().all(|r| r.path.starts_with(&base))
            {
                records_round_trip(
                    &records,
                    types,
                    |r| senml::encode_json(Some(&base), r),
                    senml::decode_json,
                );
            }
        }
        if let Ok(records) = json::decode(data, types) {
            records_round_trip(&records, types, |r| json::encode(None, r), json::decode);
            if let Some(base) = records.first().map(|r| r.path)
                && records.iter().all(|r| r.path.starts_with(&base))
            {
                records_round_trip(&records, types, |r| json::encode(Some(&base), r), json::decode);
            }
        }
    }
}

/// SenML CBOR: decoded records re-encode (CBOR and JSON) to records that decode the same;
/// an error points inside the input.
pub fn check_senml_cbor(data: &[u8]) {
    let types: [&dyn TypeLookup; 2] = [&Untyped, fuzz_registry()];
    for types in types {
        match senml::decode_cbor(data, types) {
            Ok(records) => {
                records_round_trip(&records, types, |r| senml::encode_cbor(None, r), senml::decode_cbor);
                records_round_trip(&records, types, |r| senml::encode_json(None, r), senml::decode_json);
            }
            Err(FormatError::Cbor { offset, reason }) => {
                assert!(
                    offset <= data.len(),
                    "{reason} at {offset} points past the {} bytes",
                    data.len()
                );
            }
            Err(_) => {}
        }
    }
}

/// Link format: parsed links print to text that parses to the same links; a registration
/// reading never panics and its alternate path is absolute; an error points inside the input.
pub fn check_link(data: &[u8]) {
    match ObjectLinks::parse(data) {
        Ok(links) => {
            assert!(links.alternate_path.starts_with('/'));
            let _ = (links.object_list(), links.paths());
        }
        Err(e) => assert!(e.offset <= data.len(), "{e} points past the {} bytes", data.len()),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match link::parse(text) {
        Ok(links) => {
            for link in &links {
                assert!(
                    text.get(link.span.clone()).is_some(),
                    "span {:?} is not in the text",
                    link.span
                );
            }
            let printed = link::format_links(&links);
            let again = link::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
            let strip =
                |links: Vec<link::Link>| links.into_iter().map(|l| (l.target, l.attributes)).collect::<Vec<_>>();
            assert_eq!(strip(again), strip(links));
        }
        Err(e) => assert!(e.offset <= text.len(), "{e} points past the {} bytes", text.len()),
    }
}

//! Property: values of every type written in each content format read back the same.
#![allow(clippy::unwrap_used)]

use portico_lwm2m::content;
use portico_lwm2m::fuzzing::fuzz_registry;
use portico_lwm2m::{Item, Objlnk, Path, Value};
use proptest::prelude::*;

/// A value for resource `id` of the fuzz object 9 (resources 0..=8 are one per type).
fn value_for(id: u16) -> BoxedStrategy<Value> {
    let finite = any::<f64>().prop_filter("finite", |v| v.is_finite());
    match id {
        0 => any::<String>().prop_map(Value::String).boxed(),
        1 => any::<i64>().prop_map(Value::Integer).boxed(),
        2 => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
        3 => finite.prop_map(Value::Float).boxed(),
        4 => any::<bool>().prop_map(Value::Boolean).boxed(),
        5 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(Value::Opaque)
            .boxed(),
        6 => any::<i64>().prop_map(Value::Time).boxed(),
        7 => (any::<u16>(), any::<u16>())
            .prop_map(|(object, instance)| Value::Objlnk(Objlnk { object, instance }))
            .boxed(),
        _ => "[ -~]{0,20}".prop_map(Value::Corelnk).boxed(),
    }
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    proptest::sample::subsequence((0u16..=8).collect::<Vec<_>>(), 1..=9).prop_flat_map(|ids| {
        ids.into_iter()
            .map(|id| value_for(id).prop_map(move |v| Item::new(Path::resource(9, 0, id).unwrap(), v)))
            .collect::<Vec<_>>()
    })
}

proptest! {
    #[test]
    fn every_format_reads_back_what_it_wrote(items in items()) {
        let target = Path::instance(9, 0).unwrap();
        for number in [content::LWM2M_TLV, content::LWM2M_JSON, content::SENML_JSON, content::SENML_CBOR] {
            let payload = content::encode(number, &target, &items).unwrap();
            let back: Vec<Item> = content::decode(number, &payload, &target, fuzz_registry())
                .unwrap()
                .into_iter()
                .map(|r| Item::new(r.path, r.value.unwrap()))
                .collect();
            prop_assert_eq!(&back, &items, "format {}", number);
        }
        for item in &items {
            let payload = content::encode(content::TEXT_PLAIN, &item.path, std::slice::from_ref(item)).unwrap();
            let back = content::decode(content::TEXT_PLAIN, &payload, &item.path, fuzz_registry()).unwrap();
            prop_assert_eq!(back[0].value.as_ref(), Some(&item.value));
        }
    }

    #[test]
    fn command_json_values_read_back_from_uplink_json(items in items()) {
        for item in &items {
            let ty = item.value.resource_type();
            let json = item.value.to_json();
            // Uplink Booleans are JSON booleans, which the command form also takes.
            prop_assert_eq!(Value::from_command_json(ty, &json).unwrap(), item.value.clone());
        }
    }
}

//! Replays the LwM2M fuzz targets' seeds (and any crash that was fixed and added to them)
//! through the same checks the targets run, and makes sure the named seeds still reach the
//! outcomes their names say.
#![allow(clippy::unwrap_used)]

use std::path::{Path as FsPath, PathBuf};

use portico_lwm2m::fuzzing::{self, fuzz_registry, tlv_target};
use portico_lwm2m::{Untyped, senml, tlv};

fn seeds(target: &str) -> PathBuf {
    FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn replay(target: &str, check: fn(&[u8]), at_least: usize) {
    let dir = seeds(target);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
        let path = entry.expect("a readable entry").path();
        let data = std::fs::read(&path).expect("a readable seed");
        check(&data);
        seen += 1;
    }
    assert!(
        seen >= at_least,
        "expected the seed corpus in {}, found {seen} files",
        dir.display()
    );
}

fn read(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(seeds(target).join(name)).unwrap_or_else(|e| panic!("{target}/{name}: {e}"))
}

#[test]
fn every_tlv_seed_passes_the_check() {
    replay("lwm2m_tlv", fuzzing::check_tlv, 15);
}

#[test]
fn every_senml_json_seed_passes_the_check() {
    replay("lwm2m_senml_json", fuzzing::check_senml_json, 10);
}

#[test]
fn every_senml_cbor_seed_passes_the_check() {
    replay("lwm2m_senml_cbor", fuzzing::check_senml_cbor, 10);
}

#[test]
fn every_link_seed_passes_the_check() {
    replay("lwm2m_link", fuzzing::check_link, 10);
}

#[test]
fn named_seeds_reach_their_outcomes() {
    for good in [
        "spec_device_instance",
        "spec_device_wrapped",
        "fuzz_object_every_type",
        "fuzz_object_wrapped",
        "fuzz_float8",
        "fuzz_resource_instance",
    ] {
        let data = read("lwm2m_tlv", good);
        let items = tlv::decode_items(&data[1..], &tlv_target(data[0]), fuzz_registry())
            .unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(!items.is_empty(), "{good}");
    }
    for bad in [
        "bad_truncated_value",
        "bad_reserved_id",
        "bad_misplaced",
        "bad_mixed_top_level",
        "bad_huge_length",
    ] {
        assert!(tlv::decode(&read("lwm2m_tlv", bad)[1..]).is_err(), "{bad}");
    }
    for good in [
        "lwm2m_example",
        "fuzz_object_every_type",
        "base_value",
        "composite_read_request",
    ] {
        senml::decode_json(&read("lwm2m_senml_json", good), fuzz_registry()).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in ["bad_must_understand", "bad_two_values", "bad_name", "bad_not_array"] {
        assert!(
            senml::decode_json(&read("lwm2m_senml_json", bad), &Untyped).is_err(),
            "{bad}"
        );
    }
    for good in [
        "ipso_every_kind",
        "indefinite",
        "fuzz_object_every_type",
        "base_time_value",
    ] {
        senml::decode_cbor(&read("lwm2m_senml_cbor", good), &Untyped).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    senml::decode_cbor(&read("lwm2m_senml_cbor", "fuzz_object_every_type"), fuzz_registry()).unwrap();
    for bad in [
        "bad_not_array",
        "bad_huge_array",
        "bad_tag",
        "bad_trailing",
        "bad_duplicate_label",
        "bad_deep_unknown",
        "bad_nan_value",
    ] {
        assert!(
            senml::decode_cbor(&read("lwm2m_senml_cbor", bad), &Untyped).is_err(),
            "{bad}"
        );
    }
    for good in [
        "registration",
        "registration_alternate_path",
        "registration_spaces",
        "discover",
        "quoted_escapes",
    ] {
        portico_lwm2m::ObjectLinks::parse(&read("lwm2m_link", good)).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "bad_unclosed_target",
        "bad_attribute_no_name",
        "bad_attribute_no_value",
        "bad_unclosed_quote",
        "bad_two_alternate_paths",
        "bad_utf8",
    ] {
        assert!(
            portico_lwm2m::ObjectLinks::parse(&read("lwm2m_link", bad)).is_err(),
            "{bad}"
        );
    }
}

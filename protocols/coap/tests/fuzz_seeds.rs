//! Replays the `coap_decode` fuzz target's seeds (and any crash that was fixed and added to
//! them) through the same check the target runs.

use std::path::Path;

#[test]
fn every_fuzz_seed_passes_the_decode_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/coap_decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
        let path = entry.expect("a readable entry").path();
        let data = std::fs::read(&path).expect("a readable seed");
        portico_coap::fuzzing::check_decode(&data);
        seen += 1;
    }
    assert!(
        seen >= 20,
        "expected the seed corpus in {}, found {seen} files",
        dir.display()
    );
}

/// The seeds are meant to reach the decoder's outcomes: make sure they still do, so that a
/// codec change cannot quietly turn the well-formed ones into errors.
#[test]
fn named_seeds_decode_as_their_names_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/coap_decode");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("seed exists");
    for good in [
        "rfc_fig16_get",
        "many_options",
        "emqx_publish",
        "lwm2m_register",
        "block2_get_3byte",
    ] {
        let message = portico_coap::decode(read(good).into()).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(portico_coap::validate_request(&message), Ok(()), "{good}");
    }
    for bad in [
        "bad_version",
        "bad_tkl_9",
        "empty_with_token",
        "payload_marker_empty",
        "number_overflow",
    ] {
        assert!(portico_coap::decode(read(bad).into()).is_err(), "{bad} decoded");
    }
    for (refused, code) in [
        ("block1_szx7", portico_coap::Code::BAD_REQUEST),
        ("unknown_critical_option", portico_coap::Code::BAD_OPTION),
        ("fetch_method", portico_coap::Code::METHOD_NOT_ALLOWED),
    ] {
        let message = portico_coap::decode(read(refused).into()).unwrap_or_else(|e| panic!("{refused}: {e}"));
        let e = portico_coap::validate_request(&message).expect_err(refused);
        assert_eq!(e.code(), code, "{refused}: {e}");
    }
}

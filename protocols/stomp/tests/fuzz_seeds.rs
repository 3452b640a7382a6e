//! Replays the `stomp_decode` fuzz target's seeds (and any crash that was fixed and added to
//! them) through the same check the target runs.

use std::path::Path;

use bytes::BytesMut;
use portico_core::channel::Codec;
use portico_stomp::{DecodeError, Limits, StompCodec};

fn seed_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/stomp_decode")
}

#[test]
fn every_fuzz_seed_passes_the_decode_check() {
    let dir = seed_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
        let path = entry.expect("a readable entry").path();
        let data = std::fs::read(&path).expect("a readable seed");
        portico_stomp::fuzzing::check_decode(&data);
        seen += 1;
    }
    assert!(
        seen >= 20,
        "expected the seed corpus in {}, found {seen} files",
        dir.display()
    );
}

/// The seeds are meant to reach the decoder's outcomes: make sure they still do.
#[test]
fn named_seeds_decode_as_their_names_say() {
    let read = |name: &str| std::fs::read(seed_dir().join(name)).expect("seed exists");
    let outcome = |name: &str| -> Result<usize, DecodeError> {
        let mut codec = StompCodec::new(Limits::default());
        let mut buf = BytesMut::from(&read(name)[..]);
        let mut frames = 0;
        while codec.decode(&mut buf)?.is_some() {
            frames += 1;
        }
        Ok(frames)
    };
    for (good, frames) in [
        ("connect_v12", 1),
        ("stomp_crlf", 1),
        ("connect_v10_send", 2),
        ("v11_escapes", 2),
        ("content_length_nul", 1),
        ("frames_and_heart_beats", 5),
        ("repeated_headers", 1),
        ("transaction", 2),
    ] {
        assert_eq!(outcome(good), Ok(frames), "{good}");
    }
    for bad in [
        "bad_escape",
        "missing_nul",
        "bad_content_length",
        "body_too_long_declared",
        "http_request",
        "lower_case_command",
        "header_without_colon",
        "too_many_headers",
        "header_too_long",
        "body_too_long",
        "not_utf8",
    ] {
        assert!(outcome(bad).is_err(), "{bad} decoded");
    }
}

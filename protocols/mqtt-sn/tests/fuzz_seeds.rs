//! Replays the `mqttsn_decode` fuzz target's seeds (and any crash that was fixed and added to
//! them) through the same check the target runs.

use std::path::Path;

#[test]
fn every_fuzz_seed_passes_the_decode_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/mqttsn_decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
        let path = entry.expect("a readable entry").path();
        let data = std::fs::read(&path).expect("a readable seed");
        portico_mqttsn::fuzzing::check_decode(&data);
        seen += 1;
    }
    assert!(
        seen >= 10,
        "expected the seed corpus in {}, found {seen} files",
        dir.display()
    );
}

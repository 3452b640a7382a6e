//! Replays the fuzz seed corpus (and any regression inputs added to it) through the fuzz
//! target's checks, so that a crash once found stays fixed without running the fuzzer.

use std::path::Path;

#[test]
fn every_fuzz_seed_passes_the_decode_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/mqtt_decode");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        portico_mqtt::fuzzing::check_decode(&data);
        count += 1;
    }
    assert!(
        count >= 10,
        "expected the seed corpus in {}, found {count} files",
        dir.display()
    );
}

//! Replays the SCRAM fuzz seed corpus (and any regression inputs added to it) through the fuzz
//! target's checks, so that a crash once found stays fixed without running the fuzzer.

use std::path::{Path, PathBuf};

#[test]
fn every_fuzz_seed_passes_the_scram_checks() {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/scram");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        portico_auth::scram::fuzzing::check(&data);
        count += 1;
    }
    assert!(
        count >= 8,
        "expected the seed corpus in {}, found {count} files",
        dir.display()
    );
}

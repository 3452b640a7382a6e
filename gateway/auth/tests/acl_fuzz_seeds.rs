//! Replays the acl.conf fuzz seed corpus (and any regression inputs added to it) through the
//! fuzz target's checks, so that a crash once found stays fixed without running the fuzzer.

use std::path::{Path, PathBuf};

use portico_auth::acl::AclFile;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/acl_conf");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        seeds.push((name, data));
    }
    seeds.sort();
    assert!(
        seeds.len() >= 20,
        "expected the seed corpus in {}, found {} files",
        dir.display(),
        seeds.len()
    );
    seeds
}

#[test]
fn every_fuzz_seed_passes_the_acl_checks() {
    for (_, data) in seeds() {
        portico_auth::acl::fuzzing::check(&data);
    }
}

#[test]
fn the_valid_seeds_parse_and_the_broken_ones_do_not() {
    for (name, data) in seeds() {
        let result = AclFile::parse(&String::from_utf8_lossy(&data));
        if name.starts_with("bad_") {
            assert!(result.is_err(), "{name} parsed");
        } else {
            assert!(
                result.is_ok(),
                "{name}: {}",
                result.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
    }
}

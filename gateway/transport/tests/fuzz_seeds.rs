//! Replays the PROXY protocol fuzz seed corpus (and any regression inputs added to it) through
//! the fuzz target's checks, so that a crash once found stays fixed without running the fuzzer.

use std::path::Path;

#[test]
fn every_fuzz_seed_passes_the_proxy_header_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/proxy_protocol");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        portico_transport::fuzzing::check_proxy_header(&data);
        count += 1;
    }
    assert!(
        count >= 10,
        "expected the seed corpus in {}, found {count} files",
        dir.display()
    );
}

#[test]
fn the_valid_seeds_parse_and_the_broken_ones_do_not() {
    use portico_transport::proxy_protocol::{Parsed, parse};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/proxy_protocol");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let result = parse(&data);
        if name.starts_with("bad_") {
            assert!(result.is_err(), "{name}: {result:?}");
        } else if name.starts_with("incomplete_") {
            assert!(matches!(result, Ok(Parsed::Incomplete)), "{name}: {result:?}");
        } else {
            assert!(matches!(result, Ok(Parsed::Complete { .. })), "{name}: {result:?}");
        }
    }
}

#[test]
fn every_ws_fuzz_seed_passes_the_upgrade_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/ws_accept");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        portico_transport::fuzzing::check_ws_accept(&data);
        count += 1;
    }
    assert!(
        count >= 10,
        "expected the seed corpus in {}, found {count}",
        dir.display()
    );
}

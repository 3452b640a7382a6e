//! Helpers shared by the test files.
#![allow(dead_code, clippy::unwrap_used)]

use portico_lwm2m::{Path, Registry};

/// The registry of the repository's `lwm2m-xml/` directory.
pub(crate) fn registry() -> Registry {
    Registry::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../lwm2m-xml")).unwrap()
}

/// A path from text.
pub(crate) fn p(text: &str) -> Path {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Bytes from hex with spaces.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// Definitions of the example objects 65 and 66 of the LwM2M Core TS TLV examples
/// (object links), which no registry defines.
pub(crate) const EXAMPLE_OBJECTS: &str = r#"<?xml version="1.0"?>
<LWM2M>
  <Object>
    <Name>Example 65</Name><ObjectID>65</ObjectID><MultipleInstances>Multiple</MultipleInstances>
    <Resources>
      <Item ID="0"><Name>Links</Name><Operations>RW</Operations><MultipleInstances>Multiple</MultipleInstances><Type>Objlnk</Type></Item>
      <Item ID="1"><Name>Number</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>String</Type></Item>
      <Item ID="2"><Name>Counter</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Integer</Type></Item>
    </Resources>
  </Object>
  <Object>
    <Name>Example 66</Name><ObjectID>66</ObjectID><MultipleInstances>Multiple</MultipleInstances>
    <Resources>
      <Item ID="0"><Name>Service</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>String</Type></Item>
      <Item ID="1"><Name>Address</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>String</Type></Item>
      <Item ID="2"><Name>Link</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances><Type>Objlnk</Type></Item>
    </Resources>
  </Object>
</LWM2M>"#;

/// Device object instance 0 (Core TS example "Single Object Instance Request").
pub(crate) const DEVICE_RESOURCES: &str = "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65 \
     C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74 \
     C8 02 09 33 34 35 30 30 30 31 32 33 \
     C3 03 31 2E 30 \
     86 06 41 00 01 41 01 05 \
     88 07 08 42 00 0E D8 42 01 13 88 \
     87 08 41 00 7D 42 01 03 84 \
     C1 09 64 \
     C1 0A 0F \
     83 0B 41 00 00 \
     C4 0D 51 82 42 8F \
     C6 0E 2B 30 32 3A 30 30 \
     C1 10 55";

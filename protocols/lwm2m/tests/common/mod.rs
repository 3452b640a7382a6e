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

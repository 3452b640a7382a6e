//! The XML object registry: the shipped definitions, lookups and errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::registry;
use portico_lwm2m::registry::Shadowed;
use portico_lwm2m::{Operations, Registry, RegistryError, ResourceType, TypeLookup};

#[test]
fn the_shipped_definitions_load() {
    let registry = registry();
    let mut ids = registry.object_ids();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [0, 1, 2, 3, 4, 5, 6, 7, 3300, 3301, 3303, 3304, 3311, 3312, 3323, 3336]
    );
    assert!(registry.shadowed().is_empty());
    let device = registry.object(3).unwrap();
    assert_eq!(device.name, "Device");
    assert!(!device.multiple);
    assert!(device.mandatory);
    assert_eq!(device.version.as_deref(), Some("1.2"));
    let reboot = device.resource(4).unwrap();
    assert_eq!((reboot.ty, reboot.operations.execute), (ResourceType::None, true));
    assert_eq!(registry.resource_type(3, 13), Some(ResourceType::Time));
    assert_eq!(registry.resource_type(3, 6), Some(ResourceType::Integer));
    assert!(registry.resource(3, 6).unwrap().multiple);
    assert_eq!(registry.resource_type(1, 11), Some(ResourceType::UnsignedInteger));
    assert_eq!(registry.resource_type(1, 10), Some(ResourceType::Objlnk));
    assert_eq!(registry.resource_type(5, 0), Some(ResourceType::Opaque));
    assert_eq!(registry.resource_type(3303, 5700), Some(ResourceType::Float));
    assert_eq!(registry.resource_type(3311, 5850), Some(ResourceType::Boolean));
    assert_eq!(
        registry.operations(3, 13),
        Some(Operations {
            read: true,
            write: true,
            execute: false
        })
    );
    assert_eq!(registry.operations(5, 0).unwrap().as_str(), "W");
    assert_eq!(registry.object_by_name("Temperature").unwrap().id, 3303);
    assert_eq!(
        registry
            .object(3303)
            .unwrap()
            .resource_by_name("Sensor Value")
            .unwrap()
            .id,
        5700
    );
    assert!(registry.has_object(3311));
    assert!(!registry.has_object(9));
}

#[test]
fn an_empty_directory_is_refused() {
    let dir = std::env::temp_dir().join(format!("portico-lwm2m-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "not xml").unwrap();
    assert_eq!(
        Registry::load_dir(&dir).unwrap_err(),
        RegistryError::NoXmlFiles(dir.clone())
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        Registry::load_dir("/nonexistent/lwm2m-xml"),
        Err(RegistryError::ReadDir { .. })
    ));
}

const HEAD: &str =
    "<LWM2M><Object><Name>T</Name><ObjectID>9</ObjectID><MultipleInstances>Single</MultipleInstances>\n<Resources>\n";

fn item(body: &str) -> String {
    format!("{HEAD}<Item ID=\"1\">{body}</Item>\n</Resources></Object></LWM2M>")
}

fn invalid(xml: &str) -> (usize, String, String) {
    match Registry::parse_xml("t.xml", xml) {
        Err(RegistryError::Invalid {
            line, element, reason, ..
        }) => (line, element, reason),
        other => panic!("{xml}: {other:?}"),
    }
}

#[test]
fn malformed_definitions_name_file_line_and_element() {
    let good =
        "<Name>a</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances><Type>Integer</Type>";
    assert_eq!(Registry::parse_xml("t.xml", &item(good)).unwrap().len(), 1);

    let (line, element, reason) = invalid(&item(
        "<Name>a</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances><Type>Int</Type>",
    ));
    assert_eq!(
        (line, element.as_str(), reason.as_str()),
        (3, "Object/Resources/Item[@ID=1]/Type", "unknown type \"Int\"")
    );
    let (_, element, reason) = invalid(&item(
        "<Name>a</Name><Operations>RX</Operations><MultipleInstances>Single</MultipleInstances><Type>Integer</Type>",
    ));
    assert_eq!(
        (element.as_str(), reason.as_str()),
        (
            "Object/Resources/Item[@ID=1]/Operations",
            "\"RX\" is not one of R, W, RW, E or empty"
        )
    );
    let (_, element, reason) = invalid(&item("<Name>a</Name><Operations>R</Operations><Type>Integer</Type>"));
    assert_eq!(
        (element.as_str(), reason.as_str()),
        ("Object/Resources/Item[@ID=1]/MultipleInstances", "missing")
    );
    let (_, element, _) = invalid(&item(&format!("{good}<Type>String</Type>")));
    assert_eq!(element, "Object/Resources/Item[@ID=1]/Type");
    let (_, _, reason) = invalid(&format!(
        "{HEAD}<Item ID=\"65535\"></Item></Resources></Object></LWM2M>"
    ));
    assert!(reason.contains("65535"), "{reason}");
    let (_, _, reason) = invalid(&format!(
        "{HEAD}<Item><Name>a</Name></Item></Resources></Object></LWM2M>"
    ));
    assert_eq!(reason, "no ID attribute");
    let (_, element, reason) = invalid(
        "<LWM2M><Object><Name>T</Name><MultipleInstances>Single</MultipleInstances><Resources/></Object></LWM2M>",
    );
    assert_eq!((element.as_str(), reason.as_str()), ("Object/ObjectID", "missing"));
    let (_, element, _) = invalid(
        "<LWM2M><Object><Name>T</Name><ObjectID>x</ObjectID><MultipleInstances>Single</MultipleInstances><Resources/></Object></LWM2M>",
    );
    assert_eq!(element, "Object/ObjectID");
    let (_, _, reason) = invalid("<Objects/>");
    assert_eq!(reason, "the document element must be <LWM2M>");
    let (_, _, reason) = invalid("<LWM2M></LWM2M>");
    assert_eq!(reason, "no <Object> element");
    let (_, _, reason) = invalid("<LWM2M><Object><Name>T</Name>");
    assert!(
        reason.contains("malformed XML") || reason.contains("ends inside"),
        "{reason}"
    );
    let (_, _, reason) = invalid("<LWM2M><Object><Name>T</Nam></Object></LWM2M>");
    assert!(reason.contains("malformed XML"), "{reason}");
    let error = Registry::parse_xml("dir/t.xml", &item("<Name>a</Name>")).unwrap_err();
    assert!(error.to_string().starts_with("dir/t.xml:3:"), "{error}");
}

#[test]
fn entities_cdata_and_unknown_elements() {
    let xml = "<?xml version=\"1.0\"?><!-- c --><LWM2M><Object ObjectType=\"MODefinition\"><Name>A &amp; B</Name>\
        <Vendor><Deep>x</Deep></Vendor><ObjectID>9</ObjectID><MultipleInstances>Multiple</MultipleInstances>\
        <Resources><Item ID=\"0\"><Name><![CDATA[<raw>]]></Name><Operations></Operations>\
        <MultipleInstances>Single</MultipleInstances><Type>Opaque</Type><Units/></Item></Resources></Object></LWM2M>";
    let objects = Registry::parse_xml("t.xml", xml).unwrap();
    assert_eq!(objects[0].name, "A & B");
    assert!(objects[0].multiple);
    let resource = objects[0].resource(0).unwrap();
    assert_eq!(resource.name, "<raw>");
    assert_eq!(resource.operations, Operations::default());
    assert_eq!(resource.units, None);
}

#[test]
fn a_later_definition_of_an_id_wins_and_is_reported() {
    let mut registry = Registry::new();
    let object = |name: &str| {
        format!(
            "<LWM2M><Object><Name>{name}</Name><ObjectID>9</ObjectID><MultipleInstances>Single</MultipleInstances><Resources/></Object></LWM2M>"
        )
    };
    registry.add_xml("a.xml", &object("First")).unwrap();
    registry.add_xml("b.xml", &object("Second")).unwrap();
    assert_eq!(registry.object(9).unwrap().name, "Second");
    assert!(registry.object_by_name("First").is_none());
    assert_eq!(registry.object_by_name("Second").unwrap().source, "b.xml");
    assert_eq!(
        registry.shadowed(),
        [Shadowed {
            object: 9,
            dropped: "a.xml".into(),
            kept: "b.xml".into()
        }]
    );
}

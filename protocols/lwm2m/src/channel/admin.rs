//! What the HTTP API shows of a device's commands: a discovery's links described from the
//! object definitions (EMQX's `lookup` format). Sending commands and recording results live in
//! [`Registrations`](super::Registrations), which owns the per-registration state.

use serde_json::{Map, Value as Json};

use crate::path::Path;
use crate::registry::Registry;

/// The links of a discovery (`</3/0/1>`, `</3/0>;dim=8`, ...) as `{path, name, operations,
/// dataType}` objects: the name, operations and type of each resource the registry knows
/// (`operations: "E"` alone for an executable one), the bare `{path}` otherwise.
pub(super) fn describe_links(links: &[Json], registry: &Registry) -> Json {
    let described = links
        .iter()
        .filter_map(Json::as_str)
        .filter_map(|link| {
            let target = link.split(';').next()?.trim();
            target.strip_prefix('<')?.strip_suffix('>').map(str::to_owned)
        })
        .map(|path| {
            let mut row = Map::new();
            let resource = Path::parse(&path).ok().and_then(|p| match p.ids() {
                [object, _, resource, ..] => registry.object(*object)?.resource(*resource),
                _ => None,
            });
            if let Some(def) = resource {
                row.insert("name".to_owned(), Json::from(def.name.clone()));
                row.insert("operations".to_owned(), Json::from(def.operations.as_str()));
                if !def.operations.execute {
                    row.insert("dataType".to_owned(), Json::from(def.ty.name()));
                }
            }
            row.insert("path".to_owned(), Json::from(path));
            Json::Object(row)
        })
        .collect();
    Json::Array(described)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_resources_are_named_and_typed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lwm2m-xml");
        let registry = Registry::load_dir(dir).expect("the bundled definitions load");
        let links = json!(["</3/0>;dim=8", "</3/0/0>", "</3/0/4>", "</9999/0/1>"]);
        let described = describe_links(links.as_array().expect("array"), &registry);
        assert_eq!(
            described,
            json!([
                {"path": "/3/0"},
                {"path": "/3/0/0", "name": "Manufacturer", "operations": "R", "dataType": "String"},
                {"path": "/3/0/4", "name": "Reboot", "operations": "E"},
                {"path": "/9999/0/1"},
            ])
        );
    }
}

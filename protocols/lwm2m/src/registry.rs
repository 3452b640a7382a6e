//! The object registry: LwM2M object definitions read from OMA registry XML files
//! (gateway-semantics §3.8, EMQX's `xml_dir`).
//!
//! A file holds `<LWM2M>` with one or more `<Object>`: `ObjectID`, `Name`, `MultipleInstances`,
//! `Resources` with `Item ID="…"` entries (`Name`, `Operations`, `MultipleInstances`, `Type`,
//! and the optional `Mandatory`, `RangeEnumeration`, `Units`, `Description`), and the optional
//! `Description1`, `Description2`, `ObjectURN`, `LWM2MVersion`, `ObjectVersion`, `Mandatory`.
//! Unknown elements are skipped; a known element that is missing, repeated or holds a value
//! outside its vocabulary is an error naming the file, the line and column, and the element.
//!
//! [`Registry::load_dir`] reads every `*.xml` in a directory, in file-name order; a directory
//! without one is an error (EMQX refuses to load the gateway then). When two files define the
//! same object id the later file wins, as in EMQX, and [`Registry::shadowed`] lists what was
//! replaced so that the caller can warn. Object versions are not told apart (EMQX neither).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::path::RESERVED_ID;
use crate::value::{ResourceType, TypeLookup};

/// What a resource allows (`<Operations>`: `R`, `W`, `RW`, `E`, or empty for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    /// Read (and Observe).
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Execute.
    pub execute: bool,
}

impl Operations {
    /// Parses the `<Operations>` text (already trimmed).
    pub fn parse(text: &str) -> Option<Operations> {
        let (read, write, execute) = match text {
            "" => (false, false, false),
            "R" => (true, false, false),
            "W" => (false, true, false),
            "RW" => (true, true, false),
            "E" => (false, false, true),
            _ => return None,
        };
        Some(Operations { read, write, execute })
    }

    /// The `<Operations>` text: `R`, `W`, `RW`, `E` or empty.
    pub fn as_str(&self) -> &'static str {
        match (self.read, self.write, self.execute) {
            (true, true, _) => "RW",
            (true, false, _) => "R",
            (false, true, _) => "W",
            (false, false, true) => "E",
            (false, false, false) => "",
        }
    }
}

impl fmt::Display for Operations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource of an object definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// `Item/@ID`.
    pub id: u16,
    /// `Name`.
    pub name: String,
    /// `Operations`.
    pub operations: Operations,
    /// `MultipleInstances` is `Multiple`.
    pub multiple: bool,
    /// `Mandatory` is `Mandatory` (false when absent).
    pub mandatory: bool,
    /// `Type` (`None` when empty: an executable resource).
    pub ty: ResourceType,
    /// `RangeEnumeration`, if not empty.
    pub range: Option<String>,
    /// `Units`, if not empty.
    pub units: Option<String>,
    /// `Description`, trimmed (may be empty).
    pub description: String,
}

/// One object definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDef {
    /// `ObjectID`.
    pub id: u16,
    /// `Name`.
    pub name: String,
    /// `Description1`, trimmed (may be empty).
    pub description: String,
    /// `ObjectURN`, if given.
    pub urn: Option<String>,
    /// `LWM2MVersion`, if given.
    pub lwm2m_version: Option<String>,
    /// `ObjectVersion`, if given (the registry's default is 1.0).
    pub version: Option<String>,
    /// `MultipleInstances` is `Multiple`.
    pub multiple: bool,
    /// `Mandatory` is `Mandatory` (false when absent).
    pub mandatory: bool,
    /// The resources by id.
    pub resources: BTreeMap<u16, ResourceDef>,
    /// Where it was read from (a file name, or the source name given to
    /// [`Registry::parse_xml`]).
    pub source: String,
}

impl ObjectDef {
    /// A resource by id.
    pub fn resource(&self, id: u16) -> Option<&ResourceDef> {
        self.resources.get(&id)
    }

    /// A resource by its `Name`.
    pub fn resource_by_name(&self, name: &str) -> Option<&ResourceDef> {
        self.resources.values().find(|r| r.name == name)
    }
}

/// An object definition replaced by a later file with the same object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    /// The object id.
    pub object: u16,
    /// The source whose definition was dropped.
    pub dropped: String,
    /// The source whose definition is kept.
    pub kept: String,
}

/// Why the registry could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The directory could not be listed.
    #[error("cannot list the LwM2M XML directory {dir}: {reason}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The directory has no `*.xml` file.
    #[error("no *.xml object definition file in {0}")]
    NoXmlFiles(PathBuf),
    /// A file could not be read (or is not UTF-8).
    #[error("cannot read {file}: {reason}")]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file is not well-formed XML, or not an object definition.
    #[error("{source_name}:{line}:{column}: <{element}>: {reason}")]
    Invalid {
        /// The file (or source name).
        source_name: String,
        /// The line, from 1.
        line: usize,
        /// The column, in characters from 1.
        column: usize,
        /// The element, as a path from `LWM2M` (`Object/Resources/Item[@ID=5]/Type`).
        element: String,
        /// What is wrong.
        reason: String,
    },
}

/// Object definitions by id and by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    objects: HashMap<u16, ObjectDef>,
    names: HashMap<String, u16>,
    shadowed: Vec<Shadowed>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Loads every `*.xml` file of `dir` (module docs).
    pub fn load_dir(dir: impl AsRef<FsPath>) -> Result<Registry, RegistryError> {
        let dir = dir.as_ref();
        let read_dir_error = |e: std::io::Error| RegistryError::ReadDir {
            dir: dir.to_owned(),
            reason: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if path.extension().is_some_and(|e| e == "xml") && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(RegistryError::NoXmlFiles(dir.to_owned()));
        }
        files.sort();
        let mut registry = Registry::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| RegistryError::ReadFile {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let name = file.display().to_string();
            registry.add_xml(&name, &text)?;
        }
        Ok(registry)
    }

    /// Parses the object definitions of one XML document; `source` names it in errors.
    pub fn parse_xml(source: &str, xml: &str) -> Result<Vec<ObjectDef>, RegistryError> {
        Parser::new(source, xml).run()
    }

    /// Parses one XML document and adds its objects (a later definition of an id wins).
    pub fn add_xml(&mut self, source: &str, xml: &str) -> Result<(), RegistryError> {
        for object in Registry::parse_xml(source, xml)? {
            self.insert(object);
        }
        Ok(())
    }

    /// Adds a definition, replacing any with the same id (recorded in [`Registry::shadowed`]).
    pub fn insert(&mut self, object: ObjectDef) {
        if let Some(old) = self.objects.remove(&object.id) {
            if self.names.get(&old.name) == Some(&old.id) {
                self.names.remove(&old.name);
            }
            self.shadowed.push(Shadowed {
                object: object.id,
                dropped: old.source,
                kept: object.source.clone(),
            });
        }
        self.names.insert(object.name.clone(), object.id);
        self.objects.insert(object.id, object);
    }

    /// An object definition by id.
    pub fn object(&self, id: u16) -> Option<&ObjectDef> {
        self.objects.get(&id)
    }

    /// An object definition by its `Name` (exact).
    pub fn object_by_name(&self, name: &str) -> Option<&ObjectDef> {
        self.names.get(name).and_then(|id| self.objects.get(id))
    }

    /// A resource definition.
    pub fn resource(&self, object: u16, resource: u16) -> Option<&ResourceDef> {
        self.object(object)?.resource(resource)
    }

    /// A resource's operations.
    pub fn operations(&self, object: u16, resource: u16) -> Option<Operations> {
        self.resource(object, resource).map(|r| r.operations)
    }

    /// The object ids, in increasing order.
    pub fn object_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.objects.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// How many objects are defined.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether no object is defined.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The definitions later files replaced, in load order.
    pub fn shadowed(&self) -> &[Shadowed] {
        &self.shadowed
    }
}

impl TypeLookup for Registry {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.resource(object, resource).map(|r| r.ty)
    }

    fn has_object(&self, object: u16) -> bool {
        self.objects.contains_key(&object)
    }
}

/// The leaf elements whose text the parser keeps, per parent.
const OBJECT_LEAVES: [&str; 9] = [
    "Name",
    "Description1",
    "Description2",
    "ObjectID",
    "ObjectURN",
    "LWM2MVersion",
    "ObjectVersion",
    "MultipleInstances",
    "Mandatory",
];
const ITEM_LEAVES: [&str; 8] = [
    "Name",
    "Operations",
    "MultipleInstances",
    "Mandatory",
    "Type",
    "RangeEnumeration",
    "Units",
    "Description",
];

/// The text of the leaves of one element, with the offset of each leaf.
#[derive(Default)]
struct Leaves {
    values: HashMap<&'static str, (String, usize)>,
}

/// One open element.
struct Open {
    name: String,
    /// For `Item`, its id.
    id: Option<u16>,
    offset: usize,
}

struct Parser<'a> {
    source: &'a str,
    xml: &'a str,
    stack: Vec<Open>,
    objects: Vec<ObjectDef>,
    object: Option<(Leaves, BTreeMap<u16, ResourceDef>, usize, bool)>,
    item: Option<(u16, Leaves, usize)>,
    /// The leaf whose text is being collected, its text, and where it started.
    leaf: Option<(&'static str, String, usize)>,
    /// Depth of an unknown element being skipped (0: none).
    skipping: usize,
    /// Whether the `<LWM2M>` element was seen.
    saw_root: bool,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str, xml: &'a str) -> Parser<'a> {
        Parser {
            source,
            xml,
            stack: Vec::new(),
            objects: Vec::new(),
            object: None,
            item: None,
            leaf: None,
            skipping: 0,
            saw_root: false,
        }
    }

    fn element_path(&self, extra: Option<&str>) -> String {
        let mut parts: Vec<String> = self
            .stack
            .iter()
            .skip(1)
            .map(|open| match open.id {
                Some(id) => format!("{}[@ID={id}]", open.name),
                None => open.name.clone(),
            })
            .collect();
        if let Some(extra) = extra {
            parts.push(extra.to_owned());
        }
        if parts.is_empty() {
            self.stack
                .first()
                .map_or_else(|| "document".to_owned(), |o| o.name.clone())
        } else {
            parts.join("/")
        }
    }

    fn error_at(&self, offset: usize, element: String, reason: impl Into<String>) -> RegistryError {
        let before = &self.xml[..offset.min(self.xml.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        RegistryError::Invalid {
            source_name: self.source.to_owned(),
            line,
            column,
            element,
            reason: reason.into(),
        }
    }

    fn run(mut self) -> Result<Vec<ObjectDef>, RegistryError> {
        let mut reader = Reader::from_str(self.xml);
        loop {
            let offset = reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|e| {
                let at = reader.error_position() as usize;
                self.error_at(at, self.element_path(None), format!("malformed XML: {e}"))
            })?;
            match event {
                Event::Start(start) => self.start(&start, offset)?,
                Event::Empty(start) => {
                    self.start(&start, offset)?;
                    self.end(offset)?;
                }
                Event::End(_) => self.end(offset)?,
                Event::Text(text) => self.text(&text.xml10_content(), offset)?,
                Event::CData(data) => self.text(&data.xml10_content(), offset)?,
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                self.error_at(
                                    offset,
                                    self.element_path(None),
                                    format!("unknown entity &{};", &*reference),
                                )
                            })?,
                        Err(e) => return Err(self.error_at(offset, self.element_path(None), e.to_string())),
                    };
                    self.text(&resolved, offset)?;
                }
                Event::Eof => {
                    if !self.stack.is_empty() {
                        let element = self.element_path(None);
                        return Err(self.error_at(self.xml.len(), element, "the document ends inside this element"));
                    }
                    break;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
        if !self.saw_root {
            return Err(self.error_at(self.xml.len(), "document".to_owned(), "no <LWM2M> element"));
        }
        if self.objects.is_empty() {
            return Err(self.error_at(0, "LWM2M".to_owned(), "no <Object> element"));
        }
        Ok(self.objects)
    }

    fn start(&mut self, start: &BytesStart<'_>, offset: usize) -> Result<(), RegistryError> {
        let name = start.local_name().as_ref().to_owned();
        if self.skipping > 0 {
            self.skipping += 1;
            return Ok(());
        }
        if let Some((leaf, _, _)) = &self.leaf {
            return Err(self.error_at(
                offset,
                self.element_path(Some(leaf)),
                format!("<{name}> inside a text element"),
            ));
        }
        let depth = self.stack.len();
        let parent = self.stack.last().map(|o| o.name.as_str());
        let mut id = None;
        match (depth, parent, name.as_str()) {
            (0, _, "LWM2M") => self.saw_root = true,
            (0, _, other) => {
                return Err(self.error_at(offset, other.to_owned(), "the document element must be <LWM2M>"));
            }
            (1, _, "Object") => self.object = Some((Leaves::default(), BTreeMap::new(), offset, false)),
            (2, Some("Object"), "Resources") => {
                if let Some((_, _, _, seen)) = &mut self.object {
                    if *seen {
                        return Err(self.error_at(offset, self.element_path(Some("Resources")), "given twice"));
                    }
                    *seen = true;
                }
            }
            (2, Some("Object"), leaf) if OBJECT_LEAVES.contains(&leaf) => self.open_leaf(leaf, offset)?,
            (3, Some("Resources"), "Item") => {
                let item_id = self.item_id(start, offset)?;
                if self
                    .object
                    .as_ref()
                    .is_some_and(|(_, r, _, _)| r.contains_key(&item_id))
                {
                    return Err(self.error_at(
                        offset,
                        self.element_path(Some(&format!("Item[@ID={item_id}]"))),
                        "a second resource with this ID",
                    ));
                }
                id = Some(item_id);
                self.item = Some((item_id, Leaves::default(), offset));
            }
            (4, Some("Item"), leaf) if ITEM_LEAVES.contains(&leaf) => self.open_leaf(leaf, offset)?,
            _ => {
                self.skipping = 1;
                return Ok(());
            }
        }
        self.stack.push(Open { name, id, offset });
        Ok(())
    }

    fn item_id(&self, start: &BytesStart<'_>, offset: usize) -> Result<u16, RegistryError> {
        let element = self.element_path(Some("Item"));
        let mut found = None;
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| self.error_at(offset, element.clone(), e.to_string()))?;
            if attribute.key.as_ref() == "ID" {
                let value = attribute
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| self.error_at(offset, element.clone(), e.to_string()))?;
                found = Some(value.trim().to_owned());
            }
        }
        let text = found.ok_or_else(|| self.error_at(offset, element.clone(), "no ID attribute"))?;
        parse_id(&text).ok_or_else(|| self.error_at(offset, element, format!("ID {text:?} is not an id 0..65534")))
    }

    fn open_leaf(&mut self, leaf: &str, offset: usize) -> Result<(), RegistryError> {
        let names: &[&'static str] = if self.stack.len() == 2 {
            &OBJECT_LEAVES
        } else {
            &ITEM_LEAVES
        };
        let Some(&leaf) = names.iter().find(|n| **n == leaf) else {
            return Ok(());
        };
        self.leaf = Some((leaf, String::new(), offset));
        Ok(())
    }

    fn text(&mut self, text: &str, offset: usize) -> Result<(), RegistryError> {
        if self.skipping > 0 {
            return Ok(());
        }
        match &mut self.leaf {
            Some((_, collected, _)) => collected.push_str(text),
            None if text.trim().is_empty() => {}
            None => {
                return Err(self.error_at(offset, self.element_path(None), "unexpected text"));
            }
        }
        Ok(())
    }

    fn end(&mut self, offset: usize) -> Result<(), RegistryError> {
        if self.skipping > 0 {
            self.skipping -= 1;
            return Ok(());
        }
        let Some(open) = self.stack.last() else {
            return Ok(());
        };
        let open_offset = open.offset;
        if let Some((leaf, text, at)) = self.leaf.take() {
            let element = self.element_path(None);
            let leaves = match (&mut self.item, &mut self.object) {
                (Some((_, leaves, _)), _) => leaves,
                (None, Some((leaves, _, _, _))) => leaves,
                (None, None) => return Err(self.error_at(at, element, "text element outside an object")),
            };
            if leaves.values.insert(leaf, (text.trim().to_owned(), at)).is_some() {
                return Err(self.error_at(at, element, "given twice"));
            }
        } else if open.name == "Item" {
            self.finish_item(open_offset)?;
        } else if open.name == "Object" {
            self.finish_object(offset)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn take(
        &self,
        leaves: &mut Leaves,
        name: &'static str,
        required: bool,
        at: usize,
    ) -> Result<Option<(String, usize)>, RegistryError> {
        match leaves.values.remove(name) {
            Some(value) => Ok(Some(value)),
            None if required => Err(self.error_at(at, self.element_path(Some(name)), "missing")),
            None => Ok(None),
        }
    }

    fn choice(&self, value: (String, usize), name: &'static str, yes: &str, no: &str) -> Result<bool, RegistryError> {
        match value.0.as_str() {
            v if v == yes => Ok(true),
            v if v == no => Ok(false),
            other => Err(self.error_at(
                value.1,
                self.element_path(Some(name)),
                format!("{other:?} is neither {yes} nor {no}"),
            )),
        }
    }

    fn finish_item(&mut self, item_offset: usize) -> Result<(), RegistryError> {
        let Some((id, mut leaves, _)) = self.item.take() else {
            return Ok(());
        };
        let name = self.take(&mut leaves, "Name", true, item_offset)?.unwrap_or_default();
        let operations_text = self
            .take(&mut leaves, "Operations", true, item_offset)?
            .unwrap_or_default();
        let operations = Operations::parse(&operations_text.0).ok_or_else(|| {
            self.error_at(
                operations_text.1,
                self.element_path(Some("Operations")),
                format!("{:?} is not one of R, W, RW, E or empty", operations_text.0),
            )
        })?;
        let multiple_text = self
            .take(&mut leaves, "MultipleInstances", true, item_offset)?
            .unwrap_or_default();
        let multiple = self.choice(multiple_text, "MultipleInstances", "Multiple", "Single")?;
        let mandatory = match self.take(&mut leaves, "Mandatory", false, item_offset)? {
            Some(text) => self.choice(text, "Mandatory", "Mandatory", "Optional")?,
            None => false,
        };
        let type_text = self.take(&mut leaves, "Type", true, item_offset)?.unwrap_or_default();
        let ty = ResourceType::from_xml_name(&type_text.0).ok_or_else(|| {
            self.error_at(
                type_text.1,
                self.element_path(Some("Type")),
                format!("unknown type {:?}", type_text.0),
            )
        })?;
        let optional = |value: Option<(String, usize)>| value.map(|v| v.0).filter(|v| !v.is_empty());
        let range = optional(self.take(&mut leaves, "RangeEnumeration", false, item_offset)?);
        let units = optional(self.take(&mut leaves, "Units", false, item_offset)?);
        let description = optional(self.take(&mut leaves, "Description", false, item_offset)?).unwrap_or_default();
        let resource = ResourceDef {
            id,
            name: name.0,
            operations,
            multiple,
            mandatory,
            ty,
            range,
            units,
            description,
        };
        if let Some((_, resources, _, _)) = &mut self.object {
            resources.insert(id, resource);
        }
        Ok(())
    }

    fn finish_object(&mut self, end_offset: usize) -> Result<(), RegistryError> {
        let Some((mut leaves, resources, start, has_resources)) = self.object.take() else {
            return Ok(());
        };
        let id_text = self.take(&mut leaves, "ObjectID", true, start)?.unwrap_or_default();
        let id = parse_id(&id_text.0).ok_or_else(|| {
            self.error_at(
                id_text.1,
                self.element_path(Some("ObjectID")),
                format!("{:?} is not an id 0..65534", id_text.0),
            )
        })?;
        let name = self.take(&mut leaves, "Name", true, start)?.unwrap_or_default().0;
        if name.is_empty() {
            return Err(self.error_at(start, self.element_path(Some("Name")), "empty"));
        }
        let multiple_text = self
            .take(&mut leaves, "MultipleInstances", true, start)?
            .unwrap_or_default();
        let multiple = self.choice(multiple_text, "MultipleInstances", "Multiple", "Single")?;
        let mandatory = match self.take(&mut leaves, "Mandatory", false, start)? {
            Some(text) => self.choice(text, "Mandatory", "Mandatory", "Optional")?,
            None => false,
        };
        if !has_resources {
            return Err(self.error_at(end_offset, self.element_path(Some("Resources")), "missing"));
        }
        let optional = |value: Option<(String, usize)>| value.map(|v| v.0).filter(|v| !v.is_empty());
        let object = ObjectDef {
            id,
            name,
            description: optional(self.take(&mut leaves, "Description1", false, start)?).unwrap_or_default(),
            urn: optional(self.take(&mut leaves, "ObjectURN", false, start)?),
            lwm2m_version: optional(self.take(&mut leaves, "LWM2MVersion", false, start)?),
            version: optional(self.take(&mut leaves, "ObjectVersion", false, start)?),
            multiple,
            mandatory,
            resources,
            source: self.source.to_owned(),
        };
        self.objects.push(object);
        Ok(())
    }
}

fn parse_id(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|id| *id != RESERVED_ID)
}

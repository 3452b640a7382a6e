//! The device's objects: Device (3) and Temperature (3303), their values, and the operations
//! the LwM2M Device Management interface performs on them. Pure: the clock is a parameter.
//!
//! The device knows its own object definitions (a real device does not read the server's XML
//! files); they agree with `lwm2m-xml/3.xml` and `3303.xml` for the resources it implements.

use std::collections::BTreeMap;
use std::time::Instant;

use portico_coap::message::Code;
use portico_lwm2m::link::Link;
use portico_lwm2m::{Item, Path, ResourceType, TypeLookup, Value};

/// What may be done with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ops {
    R,
    Rw,
    E,
}

/// One resource of an object definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResDef {
    pub(crate) id: u16,
    pub(crate) ty: ResourceType,
    pub(crate) ops: Ops,
    pub(crate) multiple: bool,
}

const fn res(id: u16, ty: ResourceType, ops: Ops, multiple: bool) -> ResDef {
    ResDef { id, ty, ops, multiple }
}

use ResourceType as T;

/// Device (3): the resources of the Core TS TLV example, the executables, and 15 (Timezone).
const DEVICE: &[ResDef] = &[
    res(0, T::String, Ops::R, false),
    res(1, T::String, Ops::R, false),
    res(2, T::String, Ops::R, false),
    res(3, T::String, Ops::R, false),
    res(4, T::None, Ops::E, false),
    res(5, T::None, Ops::E, false),
    res(6, T::Integer, Ops::R, true),
    res(7, T::Integer, Ops::R, true),
    res(8, T::Integer, Ops::R, true),
    res(9, T::Integer, Ops::R, false),
    res(10, T::Integer, Ops::R, false),
    res(11, T::Integer, Ops::R, true),
    res(12, T::None, Ops::E, false),
    res(13, T::Time, Ops::Rw, false),
    res(14, T::String, Ops::Rw, false),
    res(15, T::String, Ops::Rw, false),
    res(16, T::String, Ops::R, false),
];

/// Temperature (3303), the IPSO resources this sensor has.
const TEMPERATURE: &[ResDef] = &[
    res(5601, T::Float, Ops::R, false),
    res(5602, T::Float, Ops::R, false),
    res(5605, T::None, Ops::E, false),
    res(5700, T::Float, Ops::R, false),
    res(5701, T::String, Ops::R, false),
    res(5750, T::String, Ops::Rw, false),
];

pub(crate) const DEVICE_ID: u16 = 3;
pub(crate) const TEMPERATURE_ID: u16 = 3303;

/// The definition of `object`'s resource `id`.
pub(crate) fn def(object: u16, id: u16) -> Option<&'static ResDef> {
    let table = match object {
        DEVICE_ID => DEVICE,
        TEMPERATURE_ID => TEMPERATURE,
        _ => return None,
    };
    table.iter().find(|r| r.id == id)
}

/// The types of the device's own objects, for decoding what the server writes.
pub(crate) struct Types;

impl TypeLookup for Types {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        def(object, resource).map(|d| d.ty)
    }

    fn has_object(&self, object: u16) -> bool {
        matches!(object, DEVICE_ID | TEMPERATURE_ID)
    }
}

/// A resource's value: one, or instances by id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    One(Value),
    Many(BTreeMap<u16, Value>),
}

type Instance = BTreeMap<u16, Stored>;

/// What an execute asks of the device beyond its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Executed {
    Nothing,
    /// 3/0/4 and 3/0/5: start again (values back to their defaults, register again).
    Reboot,
}

/// The device's data.
#[derive(Debug, Clone)]
pub(crate) struct Objects {
    objects: BTreeMap<u16, BTreeMap<u16, Instance>>,
    /// 3/0/13 runs: the value written, and when.
    clock: (i64, Instant),
    /// Write-Attributes, by path, in the order given.
    attributes: BTreeMap<Path, Vec<(String, String)>>,
}

/// The Core TS TLV example's Device values (1.0 §6.4.3.1), so that a read of /3/0 gives the
/// spec's bytes; the current time is the example's until the clock moves.
pub(crate) const EXAMPLE_TIME: i64 = 1_367_491_215;

fn device_instance() -> Instance {
    let s = |t: &str| Stored::One(Value::String(t.to_owned()));
    let i = |v: i64| Stored::One(Value::Integer(v));
    let many = |vs: &[i64]| Stored::Many(vs.iter().zip(0u16..).map(|(&v, id)| (id, Value::Integer(v))).collect());
    BTreeMap::from([
        (0, s("Open Mobile Alliance")),
        (1, s("Lightweight M2M Client")),
        (2, s("345000123")),
        (3, s("1.0")),
        (6, many(&[1, 5])),
        (7, many(&[3800, 5000])),
        (8, many(&[125, 900])),
        (9, i(100)),
        (10, i(15)),
        (11, many(&[0])),
        (14, s("+02:00")),
        (16, s("U")),
    ])
}

/// A new Temperature instance reading `celsius`.
pub(crate) fn temperature_instance(celsius: f64) -> Instance {
    let f = |v: f64| Stored::One(Value::Float(v));
    BTreeMap::from([
        (5601, f(celsius)),
        (5602, f(celsius)),
        (5700, f(celsius)),
        (5701, Stored::One(Value::String("Cel".to_owned()))),
    ])
}

impl Objects {
    /// The defaults: Device 0 as the spec example, one Temperature instance at 21.5 °C.
    pub(crate) fn new(now: Instant) -> Objects {
        Objects {
            objects: BTreeMap::from([
                (DEVICE_ID, BTreeMap::from([(0, device_instance())])),
                (TEMPERATURE_ID, BTreeMap::from([(0, temperature_instance(21.5))])),
            ]),
            clock: (EXAMPLE_TIME, now),
            attributes: BTreeMap::new(),
        }
    }

    /// The registration payload: `</3/0>,</3303/0>,...`.
    pub(crate) fn object_links(&self) -> String {
        let mut links = Vec::new();
        for (object, instances) in &self.objects {
            if instances.is_empty() {
                links.push(format!("</{object}>"));
            }
            links.extend(instances.keys().map(|i| format!("</{object}/{i}>")));
        }
        links.join(",")
    }

    fn current_time(&self, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(self.clock.1).as_secs();
        self.clock.0.saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    fn instance(&self, object: u16, instance: u16) -> Result<&Instance, Code> {
        self.objects
            .get(&object)
            .and_then(|o| o.get(&instance))
            .ok_or(Code::NOT_FOUND)
    }

    fn instance_items(&self, object: u16, id: u16, inst: &Instance, now: Instant, out: &mut Vec<Item>) {
        let mut resources: Vec<(u16, Stored)> = inst.iter().map(|(&r, s)| (r, s.clone())).collect();
        if object == DEVICE_ID {
            resources.push((13, Stored::One(Value::Time(self.current_time(now)))));
            resources.sort_by_key(|(r, _)| *r);
        }
        for (r, stored) in resources {
            push_items(object, id, r, &stored, out);
        }
    }

    /// Read (and the value part of Observe): the values under `path`.
    pub(crate) fn read(&self, path: &Path, now: Instant) -> Result<Vec<Item>, Code> {
        let ids = path.ids();
        let object = self.objects.get(&ids[0]).ok_or(Code::NOT_FOUND)?;
        let mut items = Vec::new();
        match *ids {
            [o] => {
                for (&i, inst) in object {
                    self.instance_items(o, i, inst, now, &mut items);
                }
            }
            [o, i] => self.instance_items(o, i, self.instance(o, i)?, now, &mut items),
            [o, i, r, ..] => {
                let d = def(o, r).ok_or(Code::NOT_FOUND)?;
                if d.ops == Ops::E {
                    return Err(Code::METHOD_NOT_ALLOWED);
                }
                let mut all = Vec::new();
                self.instance_items(o, i, self.instance(o, i)?, now, &mut all);
                items = all.into_iter().filter(|item| item.path.starts_with(path)).collect();
                if items.is_empty() {
                    return Err(Code::NOT_FOUND);
                }
            }
            [] => return Err(Code::NOT_FOUND),
        }
        Ok(items)
    }

    /// Write: `replace` for PUT (a multiple resource given loses the instances not given),
    /// else a partial update (POST). Every value must lie under `path` on a writable resource.
    pub(crate) fn write(&mut self, path: &Path, items: &[Item], replace: bool, now: Instant) -> Result<(), Code> {
        let ids = path.ids();
        if ids.len() < 2 || items.is_empty() {
            return Err(Code::BAD_REQUEST);
        }
        self.instance(ids[0], ids[1])?;
        for item in items {
            let r = item.path.resource_id().ok_or(Code::BAD_REQUEST)?;
            let d = def(item.path.object_id(), r).ok_or(Code::NOT_FOUND)?;
            if d.ops != Ops::Rw {
                return Err(Code::METHOD_NOT_ALLOWED);
            }
            if d.ty != item.value.resource_type() || d.multiple != item.path.resource_instance_id().is_some() {
                return Err(Code::BAD_REQUEST);
            }
        }
        for item in items {
            let (o, i) = (item.path.object_id(), item.path.instance_id().unwrap_or_default());
            let r = item.path.resource_id().unwrap_or_default();
            if (o, r) == (DEVICE_ID, 13) {
                let Value::Time(t) = item.value else { continue };
                self.clock = (t, now);
                continue;
            }
            let Some(inst) = self.objects.get_mut(&o).and_then(|x| x.get_mut(&i)) else {
                continue;
            };
            match item.path.resource_instance_id() {
                None => {
                    inst.insert(r, Stored::One(item.value.clone()));
                }
                Some(ri) => {
                    let entry = inst.entry(r).or_insert_with(|| Stored::Many(BTreeMap::new()));
                    if let Stored::Many(map) = entry {
                        map.insert(ri, item.value.clone());
                    }
                }
            }
        }
        // PUT on a multiple resource replaces its instances: drop the ones not written.
        if replace && path.depth() == 3 {
            let keep: Vec<u16> = items.iter().filter_map(|i| i.path.resource_instance_id()).collect();
            if let Some(Stored::Many(map)) = self
                .objects
                .get_mut(&ids[0])
                .and_then(|o| o.get_mut(&ids[1]))
                .and_then(|inst| inst.get_mut(&ids[2]))
            {
                map.retain(|ri, _| keep.contains(ri));
            }
        }
        Ok(())
    }

    /// Execute.
    pub(crate) fn execute(&mut self, path: &Path) -> Result<Executed, Code> {
        let [o, i, r] = *path.ids() else {
            return Err(Code::METHOD_NOT_ALLOWED);
        };
        self.instance(o, i)?;
        let d = def(o, r).ok_or(Code::NOT_FOUND)?;
        if d.ops != Ops::E {
            return Err(Code::METHOD_NOT_ALLOWED);
        }
        match (o, r) {
            (DEVICE_ID, 4 | 5) => Ok(Executed::Reboot),
            (DEVICE_ID, 12) => {
                if let Some(inst) = self.objects.get_mut(&o).and_then(|x| x.get_mut(&i)) {
                    inst.insert(11, Stored::Many(BTreeMap::from([(0, Value::Integer(0))])));
                }
                Ok(Executed::Nothing)
            }
            (TEMPERATURE_ID, 5605) => {
                let now = self.temperature(i).ok_or(Code::NOT_FOUND)?;
                self.set_float(i, 5601, now);
                self.set_float(i, 5602, now);
                Ok(Executed::Nothing)
            }
            _ => Err(Code::METHOD_NOT_ALLOWED),
        }
    }

    /// Create a Temperature instance from `items` (paths `/3303/i/r`); an empty create takes
    /// the first free id. Returns the new instance id.
    pub(crate) fn create(&mut self, path: &Path, items: &[Item]) -> Result<u16, Code> {
        if path.ids() != [TEMPERATURE_ID] {
            return Err(if self.objects.contains_key(&path.object_id()) {
                Code::METHOD_NOT_ALLOWED
            } else {
                Code::NOT_FOUND
            });
        }
        let object = self.objects.entry(TEMPERATURE_ID).or_default();
        let id = match items.first().and_then(|i| i.path.instance_id()) {
            Some(id) => id,
            None => (0..u16::MAX)
                .find(|i| !object.contains_key(i))
                .ok_or(Code::BAD_REQUEST)?,
        };
        if object.contains_key(&id) || items.iter().any(|i| i.path.instance_id() != Some(id)) {
            return Err(Code::BAD_REQUEST);
        }
        let mut inst = temperature_instance(20.0);
        for item in items {
            let r = item.path.resource_id().ok_or(Code::BAD_REQUEST)?;
            let d = def(TEMPERATURE_ID, r).ok_or(Code::BAD_REQUEST)?;
            if d.ops == Ops::E || d.ty != item.value.resource_type() || item.path.depth() != 3 {
                return Err(Code::BAD_REQUEST);
            }
            inst.insert(r, Stored::One(item.value.clone()));
        }
        object.insert(id, inst);
        Ok(id)
    }

    /// Delete an object instance (of 3303; the Device instance stays).
    pub(crate) fn delete(&mut self, path: &Path) -> Result<(), Code> {
        let [o, i] = *path.ids() else {
            return Err(Code::METHOD_NOT_ALLOWED);
        };
        self.instance(o, i)?;
        if o != TEMPERATURE_ID {
            return Err(Code::METHOD_NOT_ALLOWED);
        }
        if let Some(object) = self.objects.get_mut(&o) {
            object.remove(&i);
        }
        self.attributes.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    /// Write-Attributes: `pmin`, `pmax`, `gt`, `lt`, `st` (numbers) on an existing path.
    pub(crate) fn write_attributes(
        &mut self,
        path: &Path,
        query: &[(String, String)],
        now: Instant,
    ) -> Result<(), Code> {
        self.read(path, now).or_else(|code| match code {
            // An executable resource has no value but can take attributes.
            Code::METHOD_NOT_ALLOWED => Ok(Vec::new()),
            other => Err(other),
        })?;
        for (name, value) in query {
            let known = matches!(name.as_str(), "pmin" | "pmax" | "gt" | "lt" | "st");
            if !known || value.parse::<f64>().is_err() {
                return Err(Code::BAD_REQUEST);
            }
        }
        let stored = self.attributes.entry(*path).or_default();
        for (name, value) in query {
            stored.retain(|(n, _)| n != name);
            stored.push((name.clone(), value.clone()));
        }
        Ok(())
    }

    /// Discover: the object, instance and resource links under `path` with their attributes
    /// and `dim` for multiple resources (Core §5.4.2).
    pub(crate) fn discover(&self, path: &Path) -> Result<String, Code> {
        let ids = path.ids();
        let object = self.objects.get(&ids[0]).ok_or(Code::NOT_FOUND)?;
        let mut links = Vec::new();
        let mut add = |p: Path, dim: Option<usize>| {
            let mut text = Link::new(p.to_string()).to_string();
            if let Some(dim) = dim {
                text.push_str(&format!(";dim={dim}"));
            }
            for (name, value) in self.attributes.get(&p).into_iter().flatten() {
                text.push_str(&format!(";{name}={value}"));
            }
            links.push(text);
        };
        if ids.len() == 1 {
            add(*path, None);
        }
        for (&i, inst) in object {
            if ids.get(1).is_some_and(|&want| want != i) {
                continue;
            }
            let instance = Path::instance(ids[0], i).map_err(|_| Code::BAD_REQUEST)?;
            if ids.len() <= 2 {
                add(instance, None);
            }
            let table = if ids[0] == DEVICE_ID { DEVICE } else { TEMPERATURE };
            for d in table {
                if ids.get(2).is_some_and(|&want| want != d.id) {
                    continue;
                }
                let present = d.ops == Ops::E || (ids[0], d.id) == (DEVICE_ID, 13) || inst.contains_key(&d.id);
                if !present {
                    continue;
                }
                let dim = match inst.get(&d.id) {
                    Some(Stored::Many(map)) => Some(map.len()),
                    _ => None,
                };
                add(Path::resource(ids[0], i, d.id).map_err(|_| Code::BAD_REQUEST)?, dim);
            }
        }
        if ids.len() > 1 && links.is_empty() {
            return Err(Code::NOT_FOUND);
        }
        Ok(links.join(","))
    }

    /// The sensor value of Temperature instance `i`.
    pub(crate) fn temperature(&self, i: u16) -> Option<f64> {
        match self.instance(TEMPERATURE_ID, i).ok()?.get(&5700)? {
            Stored::One(Value::Float(v)) => Some(*v),
            _ => None,
        }
    }

    fn set_float(&mut self, i: u16, r: u16, v: f64) {
        if let Some(inst) = self.objects.get_mut(&TEMPERATURE_ID).and_then(|o| o.get_mut(&i)) {
            inst.insert(r, Stored::One(Value::Float(v)));
        }
    }

    /// A new measurement on every Temperature instance (min and max follow).
    pub(crate) fn measure(&mut self, next: impl Fn(f64) -> f64) {
        let ids: Vec<u16> = self
            .objects
            .get(&TEMPERATURE_ID)
            .map(|o| o.keys().copied().collect())
            .unwrap_or_default();
        for i in ids {
            let Some(old) = self.temperature(i) else { continue };
            let v = next(old);
            self.set_float(i, 5700, v);
            let bound = |r: u16, pick: fn(f64, f64) -> f64, this: &Objects| match this
                .instance(TEMPERATURE_ID, i)
                .ok()
                .and_then(|x| x.get(&r))
            {
                Some(Stored::One(Value::Float(m))) => pick(*m, v),
                _ => v,
            };
            let (min, max) = (bound(5601, f64::min, self), bound(5602, f64::max, self));
            self.set_float(i, 5601, min);
            self.set_float(i, 5602, max);
        }
    }
}

fn push_items(o: u16, i: u16, r: u16, stored: &Stored, out: &mut Vec<Item>) {
    match stored {
        Stored::One(v) => {
            if let Ok(p) = Path::resource(o, i, r) {
                out.push(Item::new(p, v.clone()));
            }
        }
        Stored::Many(map) => {
            for (&ri, v) in map {
                if let Ok(p) = Path::resource_instance(o, i, r, ri) {
                    out.push(Item::new(p, v.clone()));
                }
            }
        }
    }
}

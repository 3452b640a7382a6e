//! Commands from the HTTP API: handed to the device's channel through the registrations table,
//! answered like MQTT commands, and their last results looked up.

use super::super::registrations::{AdminError, MAX_API_COMMANDS};
use super::*;

fn read(path: &str) -> serde_json::Map<String, Json> {
    let json = serde_json::json!({"msgType": "read", "data": {"path": path}});
    json.as_object().cloned().expect("object")
}

#[test]
fn an_api_read_reaches_the_device_and_its_result_is_looked_up() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    let table = h.frontend.registrations().clone();
    assert_eq!(table.last_result("dev1", "/3/0/0", "read"), Ok(None), "no reply yet");
    table.send_command("dev1", read("/3/0/0")).expect("sent");
    let get = d.one_request(h.t0);
    assert_eq!((get.code, path_of(&get)), (Code::GET, "/3/0/0".to_owned()));
    let payload = tlv_of(&[("/3/0/0", Value::String("EMQ".into()))], "/3/0/0");
    d.send(&piggybacked(&get, Code::CONTENT, Some(11542), payload), h.t0);
    // Published as any command's reply, and kept for the lookup.
    let got = h.received();
    assert_eq!(got[0].0, "lwm2m/dev1/up/resp");
    assert_eq!(
        table.last_result("dev1", "/3/0/0", "read"),
        Ok(Some(serde_json::json!({
            "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/0", "value": "EMQ"}]
        })))
    );
    assert_eq!(table.last_result("dev1", "/3/0/0", "discover"), Ok(None));
}

#[test]
fn a_discovery_is_described_from_the_object_definitions() {
    let h = Harness::new();
    let mut d = h.registered(1, "dev1", &[]);
    let table = h.frontend.registrations().clone();
    let discover = serde_json::json!({"msgType": "discover", "data": {"path": "/3/0"}});
    table
        .send_command("dev1", discover.as_object().cloned().expect("object"))
        .expect("sent");
    let get = d.one_request(h.t0);
    let links = b"</3/0>;dim=2,</3/0/0>,</3/0/4>".to_vec();
    d.send(&piggybacked(&get, Code::CONTENT, Some(40), links), h.t0);
    let result = table
        .last_result("dev1", "/3/0", "discover")
        .expect("found")
        .expect("recorded");
    assert_eq!(
        result["content"],
        serde_json::json!([
            {"path": "/3/0"},
            {"path": "/3/0/0", "name": "Manufacturer", "operations": "R", "dataType": "String"},
            {"path": "/3/0/4", "name": "Reboot", "operations": "E"},
        ])
    );
}

#[test]
fn unknown_clients_bad_commands_and_a_full_queue_are_refused() {
    let h = Harness::new();
    let _d = h.registered(1, "dev1", &["b=UQ"]);
    let table = h.frontend.registrations().clone();
    assert_eq!(
        table.send_command("nobody", read("/3/0/0")),
        Err(AdminError::ClientNotFound)
    );
    assert_eq!(
        table.last_result("nobody", "/3/0/0", "read"),
        Err(AdminError::ClientNotFound)
    );
    let bad = serde_json::json!({"msgType": "dance", "data": {"path": "/3/0/0"}});
    assert!(matches!(
        table.send_command("dev1", bad.as_object().cloned().expect("object")),
        Err(AdminError::Invalid(_))
    ));
    let bad_path = serde_json::json!({"msgType": "read", "data": {"path": "/x"}});
    assert!(matches!(
        table.send_command("dev1", bad_path.as_object().cloned().expect("object")),
        Err(AdminError::Invalid(_))
    ));
    // Nothing takes the commands (the harness delivers only when asked): they pile up to the bound.
    for _ in 0..MAX_API_COMMANDS {
        table.send_command("dev1", read("/3/0/0")).expect("room");
    }
    assert_eq!(table.send_command("dev1", read("/3/0/0")), Err(AdminError::QueueFull));
}

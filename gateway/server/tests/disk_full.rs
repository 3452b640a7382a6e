//! A full disk: the broker keeps running, holds back acknowledgements it cannot make durable,
//! retries, and once space is back acknowledges everything; after a crash every acknowledged
//! message is there. Needs root to mount a small tmpfs; skipped (with a note) elsewhere.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portico_mqtt::{Packet, PubResponse, QoS};
use support::process::{Broker, Conn, free_port, fresh_dir, pid, publish, subscribe_offline};

const PAYLOAD: usize = 8 * 1024;
const MESSAGES: u32 = 2000;
const WINDOW: usize = 32;

/// A tmpfs mounted on a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(status.success(), "remount {} to {size}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_holds_acknowledgements_and_loses_nothing() {
    let dir = fresh_dir("disk-full");
    let Some(disk) = SmallDisk::mount(&dir, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let port = free_port();
    let mut broker = Broker::start(&dir, port, "sync");
    let addr = broker.addr;
    subscribe_offline(addr, "full-sub", "full/#", QoS::AtLeastOnce).await;

    // Publish far more than fits; the broker must stall rather than acknowledge what it cannot
    // write.
    let (mut conn, _) = Conn::open(addr, "full-pub", true).await;
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let mut acked: HashSet<u32> = HashSet::new();
    let mut inflight: HashMap<u16, u32> = HashMap::new();
    let mut next = 0u32;
    let mut stalled = false;
    let started = Instant::now();
    while acked.len() < MESSAGES as usize {
        while inflight.len() < WINDOW && next < MESSAGES {
            let mut body = payload.to_vec();
            body[..4].copy_from_slice(&next.to_be_bytes());
            conn.send(&publish(
                "full/data",
                Bytes::from(body),
                QoS::AtLeastOnce,
                false,
                pid(next),
            ))
            .await
            .expect("send");
            inflight.insert(pid(next).get(), next);
            next += 1;
        }
        match conn.recv(Duration::from_secs(3)).await {
            Some(Packet::PubAck(ack)) => {
                if let Some(seq) = inflight.remove(&ack.packet_id.get()) {
                    acked.insert(seq);
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None if !stalled => {
                // Nothing acknowledged for 3 s: the disk is full.
                assert!(broker.is_running(), "the broker died on a full disk");
                assert!(
                    (acked.len() as u32) < MESSAGES,
                    "everything was acknowledged on a 1 MB disk"
                );
                stalled = true;
                disk.grow("256m");
            }
            None => panic!("no acknowledgement for 3 s after the disk grew ({} acked)", acked.len()),
        }
        assert!(started.elapsed() < Duration::from_secs(120), "took too long");
    }
    assert!(stalled, "the 1 MB disk never filled up");

    broker.kill();
    let broker = Broker::start(&dir, port, "sync");
    let (mut sub, present) = Conn::open(broker.addr, "full-sub", false).await;
    assert!(present);
    let mut received = HashSet::new();
    while let Some(packet) = sub.recv(Duration::from_secs(3)).await {
        if let Packet::Publish(p) = packet {
            let bytes: [u8; 4] = p.payload[..4].try_into().expect("sequence number");
            received.insert(u32::from_be_bytes(bytes));
            if let Some(id) = p.packet_id {
                sub.send(&Packet::PubAck(PubResponse::new(id))).await.expect("PUBACK");
            }
        }
    }
    let lost = acked.difference(&received).count();
    assert_eq!(lost, 0, "{lost} acknowledged messages lost after the disk filled up");
    broker.stop();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}

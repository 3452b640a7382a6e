//! Interop with OpenSSL's `s_client` (OpenSSL 3): PSK and certificate suites on one port, with
//! and without a client certificate. These tests need the `openssl` command line and fail,
//! saying so, without it (`scripts/install-test-deps.sh` installs it).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::network::{PATIENCE, Rig};
use crate::dtls::{DtlsSettings, PskFile};
use crate::pki::Pki;

/// `secret1` as `s_client -psk` wants it (hex of the key bytes).
const KEY_HEX: &str = "73656372657431";

/// Panics, saying what to install, when the `openssl` command line is missing.
fn require_openssl() {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the DTLS interop tests need the `openssl` command line (Debian package `openssl`; \
         scripts/install-test-deps.sh installs it)"
    );
}

/// One `openssl s_client -dtls1_2` process: lines written to it go out as records, records it
/// receives come back as lines.
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl SClient {
    async fn start(rig: &Rig, args: &[&str]) -> SClient {
        require_openssl();
        let mut child = Command::new("openssl")
            .arg("s_client")
            .args(["-dtls1_2", "-connect", &rig.addr.to_string(), "-quiet", "-no_ign_eof"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl s_client starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        SClient {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write");
        stdin.flush().await.expect("flush");
    }

    /// The next line from the server, or why there is none.
    async fn line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(PATIENCE, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err(format!("s_client ended: {}", self.stderr().await)),
            Ok(Err(e)) => Err(format!("reading s_client: {e}")),
            Err(_) => Err("no line from s_client in time".to_owned()),
        }
    }

    /// Closes stdin (s_client sends close_notify and exits); its exit status.
    async fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("s_client exits in time")
            .expect("wait")
    }

    async fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = tokio::time::timeout(PATIENCE, stderr.read_to_string(&mut text)).await;
        }
        text
    }
}

/// One listener with PSK and a certificate, verifying client certificates if given.
struct Both {
    pki: Pki,
    rig: Rig,
}

async fn both(tag: &str, fail_if_no_peer_cert: bool) -> Both {
    let pki = Pki::new(tag);
    let settings = DtlsSettings {
        psk: Some(Arc::new(PskFile::from_entries([(
            "dev1".to_owned(),
            b"secret1".to_vec(),
        )]))),
        certfile: Some(pki.server_cert.clone()),
        keyfile: Some(pki.server_key.clone()),
        cacertfile: Some(pki.ca_file.clone()),
        verify_peer: true,
        fail_if_no_peer_cert,
        ..DtlsSettings::default()
    };
    let rig = Rig::start(settings).await;
    Both { pki, rig }
}

impl Both {
    /// A client certificate with CN `cn`, as files for `-cert` / `-key`.
    fn client_files(&self, cn: &str) -> (PathBuf, PathBuf) {
        let client = self.pki.client(cn, 7);
        (
            self.pki.write(&format!("{cn}.pem"), &client.cert_pem),
            self.pki.write(&format!("{cn}.key"), &client.key_pem),
        )
    }
}

/// Handshakes with `args`, checks the echo and the identity reply; the exit status.
async fn echo_and_who(rig: &Rig, args: &[&str], who: &str) {
    let mut client = SClient::start(rig, args).await;
    client.send_line("hello over dtls").await;
    assert_eq!(client.line().await.expect("the echo"), "hello over dtls", "{args:?}");
    client.send_line("who").await;
    assert_eq!(client.line().await.expect("who"), who, "{args:?}");
    let status = client.finish().await;
    assert!(status.success(), "{args:?}: s_client exited with {status}");
}

#[tokio::test]
async fn openssl_psk_suites() {
    let both = both("dtls-psk", false).await;
    for cipher in ["PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256"] {
        echo_and_who(
            &both.rig,
            &["-psk", KEY_HEX, "-psk_identity", "dev1", "-cipher", cipher],
            "psk=dev1;cn=",
        )
        .await;
    }
    both.rig
        .until("both channels to close on close_notify", |r| {
            r.echo().closed.lock().len() == 2
        })
        .await;
    let infos = both.rig.echo().infos.lock().clone();
    assert!(infos.iter().all(|i| i.psk_identity.as_deref() == Some("dev1")));
    both.rig.stop().await;
}

#[tokio::test]
async fn openssl_certificate_suites_with_and_without_a_client_certificate() {
    let both = both("dtls-cert", false).await;
    let ca = both.pki.ca_file.to_string_lossy().into_owned();
    let (cert, key) = both.client_files("dev-cert");
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    for cipher in ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-CCM8"] {
        let verify = ["-CAfile", &ca, "-verify_return_error", "-cipher", cipher];
        echo_and_who(&both.rig, &verify, "psk=;cn=").await;
        let with_cert = [&verify[..], &["-cert", &cert, "-key", &key]].concat();
        echo_and_who(&both.rig, &with_cert, "psk=;cn=dev-cert").await;
    }
    let infos = both.rig.echo().infos.lock().clone();
    assert_eq!(infos.len(), 4);
    let cert_info = infos[1].peer_cert.as_ref().expect("the client certificate");
    assert_eq!(cert_info.subject, "CN=dev-cert, O=Portico Tests");
    both.rig.stop().await;
}

#[tokio::test]
async fn openssl_refused_handshakes_close_only_that_peer() {
    let both = both("dtls-refused", true).await;
    let rig = &both.rig;
    let mut good = SClient::start(
        rig,
        &["-psk", KEY_HEX, "-psk_identity", "dev1", "-cipher", "PSK-AES128-CCM8"],
    )
    .await;
    good.send_line("first").await;
    assert_eq!(good.line().await.expect("echo"), "first");

    let ca = both.pki.ca_file.to_string_lossy().into_owned();
    // A wrong key, an unknown identity, and no client certificate where one is required.
    let refused: [&[&str]; 3] = [
        &[
            "-psk",
            "00112233",
            "-psk_identity",
            "dev1",
            "-cipher",
            "PSK-AES128-CCM8",
        ],
        &[
            "-psk",
            KEY_HEX,
            "-psk_identity",
            "nobody",
            "-cipher",
            "PSK-AES128-GCM-SHA256",
        ],
        &["-CAfile", &ca, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    ];
    for args in refused {
        let mut client = SClient::start(rig, args).await;
        client.send_line("let me in").await;
        assert!(client.line().await.is_err(), "{args:?}: no echo");
        let status = client.finish().await;
        assert!(!status.success(), "{args:?}: s_client must fail");
    }
    rig.until("the refused peers to be counted", |r| {
        r.frontend.stats().snapshot().handshakes_failed == 3
    })
    .await;
    rig.until("only the good peer to remain", |r| r.broker.connection_count() == 1)
        .await;
    good.send_line("still here").await;
    assert_eq!(good.line().await.expect("echo"), "still here");
    assert_eq!(rig.echo().infos.lock().len(), 1, "no inner channel for a refused peer");
    assert!(good.finish().await.success());
    both.rig.stop().await;
}

//! `listeners.dtls.<name>` of a gateway (`dtls_options`, EMQX 5 names) and the top-level
//! `psk_authentication` that gives DTLS listeners their PSK identities.

use std::path::PathBuf;
use std::time::Duration;

use portico_transport::dtls::{self, DtlsSettings, PskStore};
use toml::Value;

use super::super::listeners::{optional_path, string_list};
use super::super::schema::{Ctx, Section, one_of};
use super::super::types::Verify;
use super::super::value;
use super::{UdpListenerConfig, udp_listener_fields};

/// A DTLS listener of a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct DtlsListenerConfig {
    /// Bind address, limits, buffers (as a UDP listener).
    pub listener: UdpListenerConfig,
    /// `dtls_options`.
    pub dtls_options: DtlsOptions,
}

/// `dtls_options.*`: certificates (the ECDHE suites) and what is asked of clients. PSK
/// clients are served when `psk_authentication.enable` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsOptions {
    /// The server certificate chain (PEM); with `keyfile`, enables the certificate suites.
    pub certfile: Option<PathBuf>,
    /// The server key (PEM, PKCS#8).
    pub keyfile: Option<PathBuf>,
    /// CA certificates client certificates must chain to (with `verify_peer`).
    pub cacertfile: Option<PathBuf>,
    /// Ask certificate clients for a certificate.
    pub verify: Verify,
    /// With `verify_peer`: refuse certificate clients that send none.
    pub fail_if_no_peer_cert: bool,
    /// Suites in order of preference (IANA or OpenSSL names); empty for the defaults.
    pub ciphers: Vec<String>,
    /// A handshake not done this long after the first datagram ends the peer.
    pub handshake_timeout: Duration,
    /// Largest datagram a handshake flight is cut into.
    pub mtu: usize,
}

impl Default for DtlsOptions {
    fn default() -> Self {
        let d = DtlsSettings::default();
        DtlsOptions {
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify: Verify::VerifyNone,
            fail_if_no_peer_cert: false,
            ciphers: Vec::new(),
            handshake_timeout: d.handshake_timeout,
            mtu: d.mtu,
        }
    }
}

impl DtlsOptions {
    /// The transport's settings, with the PSK identities of `psk_authentication` if enabled.
    pub fn settings(&self, psk: Option<std::sync::Arc<dyn PskStore>>) -> DtlsSettings {
        DtlsSettings {
            psk,
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            cacertfile: self.cacertfile.clone(),
            verify_peer: self.verify == Verify::VerifyPeer,
            fail_if_no_peer_cert: self.fail_if_no_peer_cert,
            ciphers: self.ciphers.clone(),
            handshake_timeout: self.handshake_timeout,
            mtu: self.mtu,
        }
    }
}

/// `psk_authentication`: PSK identities for DTLS listeners (EMQX's file format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskConfig {
    /// Serve PSK clients on DTLS listeners.
    pub enable: bool,
    /// One `identity<separator>secret` per line; the secret's bytes are the key (EMQX).
    /// Imported into the built-in PSK database at every start (the file's keys win).
    pub init_file: Option<PathBuf>,
    /// Between identity and secret.
    pub separator: String,
}

impl Default for PskConfig {
    fn default() -> Self {
        PskConfig {
            enable: false,
            init_file: None,
            separator: dtls::psk::DEFAULT_SEPARATOR.to_owned(),
        }
    }
}

pub(crate) fn psk_authentication(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> PskConfig {
    let d = PskConfig::default();
    let out = PskConfig {
        enable: s.field(ctx, "enable", d.enable, value::boolean),
        init_file: s.field(ctx, "init_file", d.init_file, optional_path),
        separator: s.field(ctx, "separator", d.separator, |v| {
            let separator = value::string(v)?;
            if separator.is_empty() {
                return Err("must not be empty".to_owned());
            }
            Ok(separator)
        }),
    };
    s.finish(ctx);
    out
}

fn ciphers(v: &Value) -> Result<Vec<String>, String> {
    let names = string_list(v)?;
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !dtls::is_supported_cipher(n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown or unsupported DTLS cipher(s) {}; available: {}",
            unknown.join(", "),
            dtls::supported_cipher_names().join(", ")
        ));
    }
    Ok(names)
}

/// `listeners.dtls.<name>` over the defaults `d`.
pub(super) fn dtls_listener(mut l: Section<'_>, ctx: &mut Ctx<'_>, d: UdpListenerConfig) -> DtlsListenerConfig {
    let listener = udp_listener_fields(&mut l, ctx, d);
    let mut s = l.section(ctx, "dtls_options");
    let d = DtlsOptions::default();
    let dtls_options = DtlsOptions {
        certfile: s.field(ctx, "certfile", d.certfile, optional_path),
        keyfile: s.field(ctx, "keyfile", d.keyfile, optional_path),
        cacertfile: s.field(ctx, "cacertfile", d.cacertfile, optional_path),
        verify: s.field(ctx, "verify", d.verify, |v| {
            one_of(
                v,
                &[(Verify::VerifyNone, "verify_none"), (Verify::VerifyPeer, "verify_peer")],
            )
        }),
        fail_if_no_peer_cert: s.field(ctx, "fail_if_no_peer_cert", d.fail_if_no_peer_cert, value::boolean),
        ciphers: s.field(ctx, "ciphers", d.ciphers, ciphers),
        handshake_timeout: s.field(ctx, "handshake_timeout", d.handshake_timeout, value::positive_duration),
        mtu: s.field(ctx, "mtu", d.mtu, |v| value::int_in::<usize>(v, 256, 65_507)),
    };
    s.field(ctx, "versions", vec!["dtlsv1.2".to_owned()], |v| {
        let versions = string_list(v)?;
        if versions.iter().all(|n| n.eq_ignore_ascii_case("dtlsv1.2")) && !versions.is_empty() {
            Ok(versions)
        } else {
            Err("only [\"dtlsv1.2\"] is available (DTLS 1.0 is insecure, 1.3 not implemented)".to_owned())
        }
    });
    // EMQX turns PSK on per listener with this; here `psk_authentication.enable` does.
    s.field(ctx, "user_lookup_fun", "emqx_tls_psk:lookup".to_owned(), |v| {
        let name = value::string(v)?;
        if name == "emqx_tls_psk:lookup" {
            Ok(name)
        } else {
            Err("only \"emqx_tls_psk:lookup\" (psk_authentication's identities) is available".to_owned())
        }
    });
    if listener.enable && dtls_options.verify == Verify::VerifyPeer && dtls_options.cacertfile.is_none() {
        ctx.invalid(
            &s.key("cacertfile"),
            "\"\"".to_owned(),
            "required with verify = \"verify_peer\": the CA certificates client certificates must chain to",
        );
    }
    if dtls_options.certfile.is_some() != dtls_options.keyfile.is_some() {
        ctx.invalid(
            &s.key("keyfile"),
            String::new(),
            "certfile and keyfile go together (the certificate suites need both)",
        );
    }
    s.finish(ctx);
    l.finish(ctx);
    DtlsListenerConfig { listener, dtls_options }
}

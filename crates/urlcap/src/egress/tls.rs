//! TLS client configurations: the default trust store (webpki roots plus the system's roots),
//! and one configuration per grant `ca_file`, so a private CA is trusted only for the grants
//! that name it. ALPN offers HTTP/2 and HTTP/1.1.

use crate::policy::{CaBundle, Host};
use rustc_hash::FxHashMap;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, Mutex};

pub(crate) struct TlsConfigs {
    default: Arc<ClientConfig>,
    base_roots: RootCertStore,
    by_ca: Mutex<FxHashMap<String, Arc<ClientConfig>>>,
}

fn config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

impl TlsConfigs {
    /// Build the default store. System roots that fail to load are skipped (the webpki roots
    /// remain); a grant that needs a private CA names it with `ca_file`.
    pub(crate) fn new() -> TlsConfigs {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(native.certs);
        TlsConfigs {
            default: config(roots.clone()),
            base_roots: roots,
            by_ca: Mutex::new(FxHashMap::default()),
        }
    }

    /// The configuration for a grant with these extra trust anchors.
    pub(crate) fn for_ca(&self, ca: Option<&CaBundle>) -> Result<Arc<ClientConfig>, String> {
        let Some(ca) = ca else {
            return Ok(self.default.clone());
        };
        let mut cache = self.by_ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&ca.source) {
            return Ok(c.clone());
        }
        let mut roots = self.base_roots.clone();
        for der in ca.certs.iter() {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("ca_file {}: {e}", ca.source))?;
        }
        let c = config(roots);
        cache.insert(ca.source.clone(), c.clone());
        Ok(c)
    }
}

/// A configuration with no roots, for the connector of a plain-http connection (which never
/// does TLS), so http requests never pay for loading the trust store.
pub(crate) fn unused_for_plain_http() -> Arc<ClientConfig> {
    static EMPTY: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| config(RootCertStore::empty())).clone()
}

/// The name TLS must verify: the granted host, never anything the guest or DNS said.
pub(crate) fn server_name(host: &Host) -> Result<ServerName<'static>, String> {
    match host {
        Host::Domain(d) => ServerName::try_from(d.clone()).map_err(|e| format!("{d}: {e}")),
        Host::Ipv4(ip) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(*ip).into())),
        Host::Ipv6(ip) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(*ip).into())),
    }
}

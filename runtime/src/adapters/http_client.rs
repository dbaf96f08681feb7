//! The HTTP client the OpenAPI adapter forwards with: hyper's pooled HTTP/1.1 client over
//! plain TCP or TLS.
//!
//! TLS is rustls with alknet's own crypto provider (the one QUIC uses), configured here, so no
//! process-wide default provider is needed or installed (a program that also uses reqwest or
//! rustls keeps its own choice). Servers are verified against the system's root certificates,
//! plus the PEM file an import names (a private CA).
//!
//! Every answer body is read with a size cap, so a server cannot make the node hold more than
//! that for one call.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tracing::warn;

/// The largest answer body read whole (documents, JSON outputs, error bodies): the largest
/// frame the call protocol carries.
pub(crate) const MAX_BODY: usize = crate::wire::DEFAULT_MAX_FRAME_LEN as usize;

/// A pooled HTTP/1.1 client, HTTPS included.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client that trusts the system's roots and, when given, the certificates in the PEM
    /// file `extra_roots`.
    pub(crate) fn new(extra_roots: Option<&Path>) -> Result<Self, String> {
        let mut roots = (*system_roots()).clone();
        if let Some(path) = extra_roots {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
            let added = certs.len();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
            }
            if added == 0 {
                return Err(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                ));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client })
    }

    /// Sends one request; the answer's head.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, String> {
        self.client.request(request).await.map_err(|error| {
            // The connector's error (refused, TLS) is in the source chain.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        })
    }
}

/// Reads a whole answer body, refusing one over `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(format!("the answer is larger than {limit} bytes"))
        }
        Err(error) => Err(format!("reading the answer: {error}")),
    }
}

/// The system's root certificates, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                warn!(%error, "reading the system's root certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                warn!(
                    added,
                    ignored, "some system root certificates could not be used"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

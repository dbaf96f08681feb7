//! TLS for the call protocol: certificates, `SHA256:<hex>` fingerprints and how a client checks
//! the server (design §5).
//!
//! A server presents a configured certificate or, by default, a freshly generated self-signed
//! one; either way it prints its fingerprint. A client either pins that fingerprint, verifies
//! against CA certificates, or — for local experiments only — accepts any certificate. TLS 1.3
//! only, with the ring provider.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The ALPN of the call protocol.
pub const ALPN_CALL: &[u8] = b"alknet/call";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// Generating a self-signed certificate failed.
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (for example a key that does not match the cert).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// A fingerprint string is malformed.
    #[error("bad fingerprint `{0}`: expected `SHA256:` followed by 64 hex digits")]
    BadFingerprint(String),
}

/// The SHA-256 of a certificate's DER, written `SHA256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    /// Accepts `SHA256:<hex>` (prefix case-insensitive, hex in either case, optional `:`
    /// between bytes as some tools print them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TlsError::BadFingerprint(s.to_owned());
        let hex = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .map(|_| &s[7..])
            .ok_or_else(bad)?;
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// A certificate chain and its private key: what a server (or, for client authentication, a
/// client) presents.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A new self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[&str]) -> Result<Self, TlsError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        })
    }

    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem_error = |path: &Path, problem: String| TlsError::Pem {
            path: path.display().to_string(),
            problem,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_error(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_error(cert, "no certificate found".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
        Ok(Self { chain, key })
    }

    /// The certificate and key as PEM text, for writing to files.
    pub fn to_pem(&self) -> (String, String) {
        let cert = self
            .chain
            .iter()
            .map(|der| pem_block("CERTIFICATE", der.as_ref()))
            .collect();
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        (cert, pem_block(label, self.key.secret_der()))
    }

    /// The fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(self.chain[0].as_ref())
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

/// How a client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerVerification {
    /// Trust exactly the certificates with these fingerprints (the default way to reach a node
    /// with a self-signed certificate: copy the fingerprint from its ready line).
    Pin(Vec<Fingerprint>),
    /// Verify the chain against these CA certificates and the server name.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate. Encrypts but does not authenticate the server: local tests only.
    Insecure,
}

impl ServerVerification {
    /// Pins a single fingerprint.
    pub fn pin(fingerprint: Fingerprint) -> Self {
        ServerVerification::Pin(vec![fingerprint])
    }

    /// Reads CA certificates from a PEM file.
    pub fn roots_from_pem_file(path: &Path) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Pem {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
        Ok(ServerVerification::Roots(certs))
    }
}

/// The crypto provider every TLS configuration of alknet's uses (QUIC, HTTPS imports).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration alknet uses, for the given ALPN protocols. Public so tools
/// and tests can speak the protocol over a bare QUIC stack.
pub fn server_config(
    identity: &TlsIdentity,
    alpns: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let client_certs = Arc::new(AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_certs)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// The rustls client configuration alknet uses, offering one ALPN protocol. Public so tools and
/// tests can speak the protocol over a bare QUIC stack.
pub fn client_config(
    verification: &ServerVerification,
    client_identity: Option<&TlsIdentity>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match verification {
        ServerVerification::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            builder.with_root_certificates(roots)
        }
        ServerVerification::Pin(pins) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier {
                    pins: Some(pins.clone()),
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
        ServerVerification::Insecure => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier {
                    pins: None,
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
    };
    let mut config = match client_identity {
        Some(identity) => {
            builder.with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The fingerprint of the client certificate a peer presented, if any.
pub fn peer_fingerprint(quic: &quinn::Connection) -> Option<Fingerprint> {
    let chain = quic
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    chain.first().map(|leaf| Fingerprint::of_der(leaf.as_ref()))
}

/// Asks every client for a certificate without requiring one, and accepts any certificate
/// whose holder proves it has the key. Who the certificate belongs to is decided afterwards, by
/// its fingerprint, through the identity provider: an unknown certificate is just anonymous.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Trusts a server by the fingerprint of its leaf certificate (or, with no pins, any server),
/// while still checking the handshake signatures so the peer proves it holds the key.
#[derive(Debug)]
struct FingerprintVerifier {
    pins: Option<Vec<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pins) = &self.pins else {
            return Ok(ServerCertVerified::assertion());
        };
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if pins.contains(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {presented} does not match the pinned fingerprint"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip() {
        let identity = TlsIdentity::self_signed(&["localhost"]).unwrap();
        let fp = identity.fingerprint();
        let text = fp.to_string();
        assert!(
            text.starts_with("SHA256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(text.to_uppercase().parse::<Fingerprint>().unwrap(), fp);
        for bad in ["", "SHA256:", "MD5:00", "SHA256:zz", &text[..60]] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip() {
        let identity = TlsIdentity::self_signed(&["localhost", "127.0.0.1"]).unwrap();
        let (cert, key) = identity.to_pem();
        let dir = std::env::temp_dir().join(format!("alknet-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.pem"), &cert).unwrap();
        std::fs::write(dir.join("k.pem"), &key).unwrap();
        let read = TlsIdentity::from_pem_files(&dir.join("c.pem"), &dir.join("k.pem")).unwrap();
        assert_eq!(read.fingerprint(), identity.fingerprint());
        server_config(&read, &[ALPN_CALL]).unwrap();
        let err = TlsIdentity::from_pem_files(&dir.join("missing.pem"), &dir.join("k.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

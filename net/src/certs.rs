//! Issuing the certificates a secure cluster needs: one CA, and leaf
//! certificates for nodes, workers and clients, each carrying its
//! [`PeerIdentity`] as a URI name. Keys are ECDSA P-256.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use crate::identity::PeerIdentity;

/// The CA's subject. It is fixed, so a CA can be rebuilt from its key to
/// issue more certificates ([`CertificateAuthority::load`]).
const CA_COMMON_NAME: &str = "Drover cluster CA";

/// Back-dating of `not before`, for clocks a little behind the issuer's.
const CLOCK_SKEW: Duration = Duration::hours(1);

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused (a bad host name, say).
    #[error("{0}")]
    Generate(#[from] rcgen::Error),
    /// The CA files do not belong together or are not a CA.
    #[error("{0}")]
    Ca(String),
    /// No randomness for a serial number.
    #[error("no randomness for a serial number: {0}")]
    Random(String),
}

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// A CA that can issue leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(..)")
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, "Drover");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CertError::Random(e.to_string()))?;
    // A positive integer, as RFC 5280 requires.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(days.max(1)));
}

impl CertificateAuthority {
    /// A new CA valid for `days`.
    pub fn generate(days: u32) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        validity(&mut params, days);
        params.serial_number = Some(serial()?);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA written by [`CertificateAuthority::generate`] (its certificate
    /// and key in PEM), to issue more certificates under it.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CertError::Ca(format!("the CA certificate: {e}")))?;
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| CertError::Ca(format!("the CA certificate: {e}")))?;
        if cert.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
            return Err(CertError::Ca(
                "the CA key does not belong to the CA certificate".to_owned(),
            ));
        }
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate, in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, in PEM: keep it off the cluster's machines.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A leaf certificate for `identity`, valid for `days`. `hosts` (DNS
    /// names or IP addresses) are the names clients dial a node by; workers
    /// and clients need none.
    pub fn issue(
        &self,
        identity: &PeerIdentity,
        hosts: &[String],
        days: u32,
    ) -> Result<Issued, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params
            .subject_alt_names
            .push(SanType::URI(identity.uri().try_into()?));
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, identity.to_string());
        name.push(DnType::OrganizationName, "Drover");
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match identity {
            // Nodes serve, and dial each other.
            PeerIdentity::Node(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            PeerIdentity::Worker(_) | PeerIdentity::Client(_) => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
        };
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?);
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_carries_its_identity_and_a_reloaded_ca_issues_the_same_chain() {
        let ca = CertificateAuthority::generate(30).unwrap();
        let leaf = ca
            .issue(
                &PeerIdentity::Node(2),
                &["localhost".into(), "127.0.0.1".into()],
                1,
            )
            .unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::from_certificate(&der),
            Some(PeerIdentity::Node(2))
        );

        let again = CertificateAuthority::load(ca.cert_pem(), &ca.key_pem()).unwrap();
        let worker = again
            .issue(&PeerIdentity::Worker("w".into()), &[], 1)
            .unwrap();
        let der = CertificateDer::from_pem_slice(worker.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::from_certificate(&der),
            Some(PeerIdentity::Worker("w".into()))
        );
    }

    #[test]
    fn a_ca_key_from_another_ca_is_refused() {
        let a = CertificateAuthority::generate(1).unwrap();
        let b = CertificateAuthority::generate(1).unwrap();
        let err = CertificateAuthority::load(a.cert_pem(), &b.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}

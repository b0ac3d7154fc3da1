//! HTTPS: the certificate and key, loaded from PEM files and loaded again
//! on SIGHUP, so that a renewed certificate is served without a restart.
//!
//! Each new connection takes the pair current when it arrives; connections
//! already open keep the one they shook hands with. A pair that does not
//! load (unreadable, not PEM, key not matching the certificate) is refused
//! as a whole and the previous pair stays in service.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The protocols offered in ALPN, preferred first: browsers pick HTTP/2.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A certificate chain and key from two PEM files, reloadable.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// Swapped whole by [`reload`](Self::reload); read (an `Arc` clone)
    /// once per connection.
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsFiles {
    /// Loads the pair; an error names the file that failed.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Self> {
        // One crypto provider for the whole process: ring, which builds
        // with no C toolchain beyond cc. An error means one is already
        // installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            current: RwLock::new(Arc::new(server_config(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads both files again and serves the new pair to new connections;
    /// on an error the previous pair stays in service.
    pub fn reload(&self) -> io::Result<()> {
        let config = Arc::new(server_config(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The acceptor for a new connection, with the current pair.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A server configuration for the pair, offering HTTP/2 and HTTP/1.1.
/// rustls checks that the key belongs to the certificate.
fn server_config(cert: &Path, key: &Path) -> io::Result<ServerConfig> {
    let named = |path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| named(cert, &e))?;
    if chain.is_empty() {
        return Err(named(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| named(key, &e))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| named(key, &e))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Reloads `tls` on every SIGHUP until `stop` resolves, logging the
/// outcome. Without TLS a SIGHUP is logged and ignored: either way it no
/// longer ends the process, as its default action would.
///
/// The handler is installed when this is called, not when the future is
/// first polled: call it before announcing that the service listens.
pub fn reload_on_hangup(
    tls: Option<Arc<TlsFiles>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hangups = match hangups {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP");
                    return;
                }
            };
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    received = hangups.recv() => if received.is_none() { return },
                }
                let Some(tls) = tls.clone() else {
                    tracing::info!("SIGHUP received; no TLS certificate to reload");
                    continue;
                };
                let cert = tls.cert.display().to_string();
                match tokio::task::spawn_blocking(move || tls.reload()).await {
                    Ok(Ok(())) => tracing::info!(%cert, "reloaded the TLS certificate and key"),
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "TLS certificate reload failed; still serving the previous certificate"
                    ),
                    Err(e) => tracing::error!(error = %e, "TLS certificate reload task failed"),
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (tls, stop);
        }
    }
}

//! HTTPS: the certificate and key, loaded from PEM files and loaded again
//! on SIGHUP or when either file changes on disk, so that a renewed
//! certificate is served without a restart.
//!
//! Each new connection takes the pair current when it arrives; connections
//! already open keep the one they shook hands with. A pair that does not
//! load (unreadable, not PEM, key not matching the certificate) is refused
//! as a whole and the previous pair stays in service.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

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
    /// The files as they were when last read (loaded or not): a change
    /// since is a renewal to load.
    read: Mutex<Stamp>,
}

/// What tells a file's new contents from its old without reading it:
/// modification time, size and inode (following symlinks). `None` for a
/// file that cannot be looked at.
type FileStamp = Option<(Option<SystemTime>, u64, u64)>;

/// The [`FileStamp`]s of the certificate and the key.
type Stamp = [FileStamp; 2];

fn file_stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

impl TlsFiles {
    /// Loads the pair; an error names the file that failed.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Self> {
        // One crypto provider for the whole process: ring, which builds
        // with no C toolchain beyond cc. An error means one is already
        // installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Stamped before reading: a change while reading is seen later.
        let stamp = [file_stamp(cert), file_stamp(key)];
        Ok(Self {
            current: RwLock::new(Arc::new(server_config(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
            read: Mutex::new(stamp),
        })
    }

    /// Reads both files again and serves the new pair to new connections;
    /// on an error the previous pair stays in service.
    pub fn reload(&self) -> io::Result<()> {
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = self.stamp();
        let config = Arc::new(server_config(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn stamp(&self) -> Stamp {
        [file_stamp(&self.cert), file_stamp(&self.key)]
    }

    /// Whether either file changed since it was last read (two `stat`s).
    pub fn changed(&self) -> bool {
        self.stamp() != *self.read.lock().unwrap_or_else(|e| e.into_inner())
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

/// Reloads `tls`, off the runtime's threads, and logs the outcome;
/// `trigger` says why.
async fn reload_logged(tls: Arc<TlsFiles>, trigger: &'static str) {
    let cert = tls.cert.display().to_string();
    match tokio::task::spawn_blocking(move || tls.reload()).await {
        Ok(Ok(())) => tracing::info!(%cert, trigger, "reloaded the TLS certificate and key"),
        Ok(Err(e)) => tracing::error!(
            error = %e,
            trigger,
            "TLS certificate reload failed; still serving the previous certificate"
        ),
        Err(e) => tracing::error!(error = %e, "TLS certificate reload task failed"),
    }
}

/// Looks every `every` whether the files of `tls` changed and reloads
/// them if so, until `stop` resolves. A pair that fails to load is not
/// tried again until a file changes again (a half-written renewal loads
/// once its second file is written).
pub async fn reload_on_change(
    tls: Arc<TlsFiles>,
    every: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let files = tls.clone();
        if let Ok(true) = tokio::task::spawn_blocking(move || files.changed()).await {
            reload_logged(tls.clone(), "the files changed").await;
        }
    }
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
                reload_logged(tls, "SIGHUP").await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (tls, stop);
        }
    }
}

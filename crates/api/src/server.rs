//! The socket and the server thread: binding (stale sockets, mode 0600), the accept loop,
//! per-connection limits, and an orderly shutdown.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::vm_api::VmApi;

/// Limits and timeouts of the server. The defaults suit the VMM; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers, counted from when the server
    /// starts waiting for them (so an idle keep-alive connection is closed after it too).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body; slower ones get 408.
    pub body_read_timeout: Duration,
    /// Connections served at once; further clients wait in the socket's backlog.
    pub max_connections: usize,
    /// How long `shutdown` lets requests in flight finish (so that the 204 of a Stop reaches
    /// its client) before it drops them.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the API socket {path}: its directory does not exist")]
    NoParentDir { path: PathBuf },
    #[error("cannot create the API socket {path}: a file that is not a socket is in the way")]
    NotASocket { path: PathBuf },
    #[error("cannot create the API socket {path}: another process is serving on it")]
    InUse { path: PathBuf },
    #[error("cannot remove the stale API socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot bind the API socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot make the API socket {path} private (mode 0600): {source}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("cannot start the API server: {0}")]
    Start(#[source] io::Error),
}

/// State every connection shares.
pub(crate) struct Shared {
    pub(crate) api: Arc<dyn VmApi>,
    pub(crate) config: ServerConfig,
    /// Becomes `true` when the server is stopping.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Every connection and console bridge holds a clone; the server knows they have all
    /// finished when the channel closes.
    pub(crate) tracker: mpsc::Sender<()>,
}

/// Resolves once the server is stopping (or its owner is gone).
pub(crate) async fn wait_for_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stopping| *stopping).await;
}

/// A running API server. [`ApiServer::shutdown`] or dropping it stops the server and removes
/// the socket file.
pub struct ApiServer {
    socket_path: PathBuf,
    /// Device and inode of the socket file we bound, so that we never remove a socket that
    /// someone else has since put at the same path.
    identity: (u64, u64),
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Stops accepting, lets requests in flight finish (up to `shutdown_grace`), ends console
    /// attachments and removes the socket. Call it from outside a `VmApi` method: the server
    /// waits for those.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.shutdown.send_replace(true);
        // The thread only ends by returning; a panic in it has nothing left to clean up.
        let _ = thread.join();
        let ours = fs::symlink_metadata(&self.socket_path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = fs::remove_file(&self.socket_path);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `api` on a Unix socket at `socket_path` with the default [`ServerConfig`].
pub fn serve(socket_path: &Path, api: Arc<dyn VmApi>) -> Result<ApiServer, ServeError> {
    serve_with(socket_path, api, ServerConfig::default())
}

/// Serves `api` on a Unix socket at `socket_path`, on a thread of its own.
///
/// A stale socket file at the path (one nobody listens on) is replaced; a live one, or any
/// other file, is an error. The socket is made mode 0600 before the first connection is
/// accepted.
pub fn serve_with(
    socket_path: &Path,
    api: Arc<dyn VmApi>,
    config: ServerConfig,
) -> Result<ApiServer, ServeError> {
    let path = socket_path.to_path_buf();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(ServeError::NoParentDir { path });
    }
    remove_stale(&path)?;
    let std_listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|source| ServeError::Bind { path: path.clone(), source })?;
    let cleanup = |e: ServeError| {
        let _ = fs::remove_file(&path);
        e
    };
    // Only the owner may connect. Before this the mode is 0777 less the umask: with the usual
    // umask of 022 no one else can write, i.e. connect, in the meantime either.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|source| cleanup(ServeError::Permissions { path: path.clone(), source }))?;
    let meta = fs::symlink_metadata(&path)
        .map_err(|source| cleanup(ServeError::Bind { path: path.clone(), source }))?;
    std_listener.set_nonblocking(true).map_err(|e| cleanup(ServeError::Start(e)))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("keel-api-blocking")
        .build()
        .map_err(|e| cleanup(ServeError::Start(e)))?;
    let listener = {
        // Registering the socket with the reactor needs the runtime's context.
        let _guard = runtime.enter();
        UnixListener::from_std(std_listener).map_err(|e| cleanup(ServeError::Start(e)))?
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("keel-api".into())
        .spawn(move || {
            runtime.block_on(run(listener, api, config, shutdown_rx));
            // VmApi calls still running (a Stop past the grace period) finish on their own;
            // their clients are gone.
            runtime.shutdown_background();
        })
        .map_err(|e| cleanup(ServeError::Start(e)))?;
    Ok(ApiServer {
        socket_path: path,
        identity: (meta.dev(), meta.ino()),
        shutdown: shutdown_tx,
        thread: Some(thread),
    })
}

fn remove_stale(path: &Path) -> Result<(), ServeError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(ServeError::Bind { path: path.into(), source }),
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        return Err(ServeError::NotASocket { path: path.into() });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServeError::InUse { path: path.into() });
    }
    fs::remove_file(path).map_err(|source| ServeError::RemoveStale { path: path.into(), source })
}

async fn run(
    listener: UnixListener,
    api: Arc<dyn VmApi>,
    config: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = config.shutdown_grace;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (tracker, mut all_done) = mpsc::channel::<()>(1);
    let shared = Arc::new(Shared { api, config, shutdown: shutdown.clone(), tracker });
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = wait_for_shutdown(&mut shutdown) => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = wait_for_shutdown(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    serve_connection(stream, shared).await;
                    drop(slot);
                });
            }
            // Out of file descriptors and the like: pause instead of spinning on the error.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    drop(listener);
    drop(shared);
    // Connections and bridges see the shutdown too; wait (bounded) for their last responses.
    let _ = tokio::time::timeout(grace, all_done.recv()).await;
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .max_buf_size(64 * 1024);
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |req| crate::handler::handle(req, Arc::clone(&service_shared)));
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    // Connection errors (client gone, header timeout, bad request line) concern that client
    // only; hyper has already answered what could be answered.
    tokio::select! {
        _ = conn.as_mut() => {}
        () = wait_for_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

//! The control socket: one thread accepts, one thread serves each client.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::command::MAX_COMMAND;
use super::view::BirdView;

/// Where the server gets what it shows. Called once per command, from the
/// client's thread, so it must not wait on anything slow.
pub trait ViewSource: Send + Sync + 'static {
    fn view(&self) -> BirdView;

    /// The version for the greeting; override it if building a whole view
    /// for each connection is too costly.
    fn version(&self) -> String {
        self.view().version
    }
}

impl<F> ViewSource for F
where
    F: Fn() -> BirdView + Send + Sync + 'static,
{
    fn view(&self) -> BirdView {
        self()
    }
}

/// Limits of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A client that sends nothing for this long is disconnected (BIRD
    /// itself never does; an interactive `birdc` left open this long then
    /// prints `Connection closed by server`).
    pub idle_timeout: Duration,
    /// A client that does not read its reply for this long is disconnected.
    pub write_timeout: Duration,
    /// Clients served at once; more are disconnected straight away.
    pub max_clients: usize,
    /// The socket file's mode (BIRD's is 0660 with `-g`, as calico-node runs it).
    pub mode: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(10),
            max_clients: 32,
            mode: 0o660,
        }
    }
}

/// A BIRD control socket served from a [`ViewSource`].
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket file we bound, so that `stop` never
    /// removes a socket another server has put in its place since.
    file_id: (u64, u64),
    shared: Arc<Shared>,
    /// The listening socket again, as a stream only to shut it down: that
    /// wakes the accepting thread (Linux fails its `accept` with EINVAL).
    waker: UnixStream,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// A handle on each client's stream, to shut it down on `stop`.
    clients: Mutex<HashMap<u64, UnixStream>>,
}

impl Server {
    /// Binds `path` with the default [`ServerOptions`].
    pub fn start(path: &Path, source: Arc<dyn ViewSource>) -> io::Result<Server> {
        Self::start_with(path, source, ServerOptions::default())
    }

    /// Binds `path` and starts serving. A socket file left behind by a
    /// server that is gone is replaced; a socket someone still answers on,
    /// or a file that is not a socket, is an error.
    pub fn start_with(
        path: &Path,
        source: Arc<dyn ViewSource>,
        opts: ServerOptions,
    ) -> io::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{}: another server answers on it", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.mode))?;
        let m = std::fs::metadata(path)?;
        let waker = UnixStream::from(OwnedFd::from(listener.try_clone()?));
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            clients: Mutex::new(HashMap::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("birdctl-accept".into())
                .spawn(move || accept_loop(listener, source, opts, shared))?
        };
        Ok(Server {
            path: path.to_path_buf(),
            file_id: (m.dev(), m.ino()),
            shared,
            waker,
            accept: Some(accept),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, disconnects every client and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        if self.waker.shutdown(Shutdown::Read).is_ok() {
            let _ = accept.join();
        }
        for (_, c) in self.shared.clients.lock().expect("clients").drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file_id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: UnixListener,
    source: Arc<dyn ViewSource>,
    opts: ServerOptions,
    shared: Arc<Shared>,
) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(_) => {
                // Out of descriptors or memory: wait rather than spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut clients = shared.clients.lock().expect("clients");
            if clients.len() >= opts.max_clients {
                continue; // dropping the stream disconnects it
            }
            match stream.try_clone() {
                Ok(handle) => clients.insert(id, handle),
                Err(_) => continue,
            };
        }
        let (source, opts, done) = (source.clone(), opts.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("birdctl-client".into())
            .spawn(move || {
                let _ = serve(stream, &*source, &opts);
                done.clients.lock().expect("clients").remove(&id);
            });
        if spawned.is_err() {
            shared.clients.lock().expect("clients").remove(&id);
        }
    }
}

/// One client: the greeting, then a reply for each line it sends.
fn serve(stream: UnixStream, source: &dyn ViewSource, opts: &ServerOptions) -> io::Result<()> {
    stream.set_read_timeout(Some(opts.idle_timeout))?;
    stream.set_write_timeout(Some(opts.write_timeout))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(&super::format::greeting_for(&source.version()))?;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Read one line, keeping at most what BIRD would.
        let n = input
            .by_ref()
            .take(MAX_COMMAND as u64 + 2)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            if line.len() < MAX_COMMAND + 2 {
                return Ok(()); // the client closed mid-line
            }
            // Too long: drop the rest of it, then say so.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = input.by_ref().take(4096).read_until(b'\n', &mut rest)?;
                if n == 0 {
                    return Ok(());
                }
                if rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&line);
        out.write_all(&super::reply(&source.view(), &text))?;
    }
}

//! A chaos proxy for tests (in the spirit of crates.io's): a TCP proxy on a
//! random loopback port, put between the shop and one of its dependencies
//! (PostgreSQL, Redis, NATS, a gRPC service), that passes bytes through
//! until told to fail, and then fails the way a real outage does:
//!
//! - [`Fault::Refuse`]: open connections are closed and new ones closed as
//!   soon as accepted (a process that died);
//! - [`Fault::Blackhole`]: connections are accepted and bytes read, but
//!   nothing is forwarded either way (a paused server, a dropped route):
//!   only a client's own time-out ends the wait;
//! - [`Fault::Delay`]: every chunk is forwarded after a wait (a slow link
//!   or an overloaded server).
//!
//! The fault applies to open connections as well as new ones, and
//! [`ChaosProxy::cut`] closes every open connection at once (a restart).
//! Setting [`Fault::Pass`] again is the recovery: nothing of the shop is
//! restarted, so a test sees whether it comes back by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Refuse,
    Blackhole,
    Delay(Duration),
}

/// The fault now and how many cuts have been asked for, watched by every
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    fault: Fault,
    cuts: u64,
}

/// A running proxy; it stops (and closes every connection) when dropped.
pub struct ChaosProxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// A proxy to `upstream`, passing traffic through.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, watched) = watch::channel(State { fault: Fault::Pass, cuts: 0 });
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                counter.fetch_add(1, Ordering::Relaxed);
                let watched = watched.clone();
                tokio::spawn(async move { connection(client, upstream, watched).await });
            }
        });
        Ok(Self { addr, state, accepted, task })
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `upstream`'s URL with the proxy's address in its place, e.g. a
    /// PostgreSQL or Redis URL whose host and port are `upstream`'s.
    pub fn url_for(&self, url: &str, upstream: SocketAddr) -> String {
        url.replacen(&upstream.to_string(), &self.addr.to_string(), 1)
    }

    /// Fails (or heals) from now on, open connections included.
    pub fn set(&self, fault: Fault) {
        self.state.send_modify(|state| state.fault = fault);
    }

    /// Closes every open connection now; new ones follow the fault.
    pub fn cut(&self) {
        self.state.send_modify(|state| state.cuts += 1);
    }

    /// Connections accepted since the start (whatever became of them).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Every connection ends with the cut; the sender's drop then ends
        // their watches.
        self.cut();
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, watched: watch::Receiver<State>) {
    let start = *watched.borrow();
    match start.fault {
        Fault::Refuse => return,
        Fault::Blackhole => {
            // Accepted, and then nothing: wait for a cut or the fault to
            // lift, then connect as a new client would have.
            if !wait_while_blackholed(watched.clone(), start.cuts).await {
                return;
            }
        }
        Fault::Pass | Fault::Delay(_) => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, watched.clone(), start.cuts);
    let down = pump(server_read, client_write, watched, start.cuts);
    // Either side closing (or a cut, or a refusal) ends both.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Copies `from` to `to` under the fault of the moment until either end
/// closes, the proxy refuses, or a cut comes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut watched: watch::Receiver<State>,
    cuts: u64,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = watched.changed() => {
                let state = *watched.borrow();
                if changed.is_err() || state.cuts != cuts || state.fault == Fault::Refuse {
                    return;
                }
                continue;
            }
        };
        let Ok(count) = read else { return };
        if count == 0 {
            return;
        }
        let state = *watched.borrow();
        if state.cuts != cuts {
            return;
        }
        match state.fault {
            Fault::Refuse => return,
            Fault::Blackhole => {
                if !wait_while_blackholed(watched.clone(), cuts).await {
                    return;
                }
            }
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Pass => {}
        }
        let Some(bytes) = buffer.get(..count) else { return };
        if to.write_all(bytes).await.is_err() {
            return;
        }
    }
}

/// Waits while the proxy is a black hole: true when traffic may flow again,
/// false when the connection is to end (a cut, a refusal, the proxy gone).
async fn wait_while_blackholed(mut watched: watch::Receiver<State>, cuts: u64) -> bool {
    loop {
        let state = *watched.borrow_and_update();
        if state.cuts != cuts {
            return false;
        }
        match state.fault {
            Fault::Blackhole => {}
            Fault::Refuse => return false,
            Fault::Pass | Fault::Delay(_) => return true,
        }
        if watched.changed().await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An echo server on a random port.
    async fn echo() -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Ok(addr)
    }

    /// Sends `message` and reads as many bytes back, within `within`.
    async fn round_trip(stream: &mut TcpStream, message: &[u8], within: Duration) -> std::io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0_u8; message.len()];
        match tokio::time::timeout(within, stream.read_exact(&mut answer)).await {
            Ok(read) => read.map(|_| answer),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")),
        }
    }

    const SOON: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn passes_then_fails_each_way_then_heals() -> std::io::Result<()> {
        let proxy = ChaosProxy::start(echo().await?).await?;
        let mut open = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut open, b"hello", SOON).await?, b"hello");

        // A black hole holds an open connection's bytes and a new one's.
        proxy.set(Fault::Blackhole);
        let held = round_trip(&mut open, b"lost?", Duration::from_millis(300)).await;
        assert_eq!(held.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));
        let mut during = TcpStream::connect(proxy.addr()).await?;
        let held = round_trip(&mut during, b"new", Duration::from_millis(300)).await;
        assert_eq!(held.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));

        // Healing lets the held bytes through, on both connections.
        proxy.set(Fault::Pass);
        let mut late = vec![0_u8; 5];
        tokio::time::timeout(SOON, open.read_exact(&mut late)).await??;
        assert_eq!(late, b"lost?");
        let mut late = vec![0_u8; 3];
        tokio::time::timeout(SOON, during.read_exact(&mut late)).await??;
        assert_eq!(late, b"new");

        // A delay is paid on each way.
        proxy.set(Fault::Delay(Duration::from_millis(100)));
        let started = Instant::now();
        assert_eq!(round_trip(&mut open, b"slow", SOON).await?, b"slow");
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());

        // Refusing closes open connections and new ones at once.
        proxy.set(Fault::Refuse);
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(SOON, open.read(&mut byte)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "the open connection is closed: {read:?}");
        let mut refused = TcpStream::connect(proxy.addr()).await?;
        let read = tokio::time::timeout(SOON, refused.read(&mut byte)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

        proxy.set(Fault::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut again, b"back", SOON).await?, b"back");
        assert!(proxy.accepted() >= 4);
        Ok(())
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_only() -> std::io::Result<()> {
        let upstream = echo().await?;
        let proxy = ChaosProxy::start(upstream).await?;
        let mut open = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut open, b"one", SOON).await?, b"one");
        proxy.cut();
        let mut byte = [0_u8; 1];
        let read = tokio::time::timeout(SOON, open.read(&mut byte)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "the cut connection is closed: {read:?}");
        let mut fresh = TcpStream::connect(proxy.addr()).await?;
        assert_eq!(round_trip(&mut fresh, b"two", SOON).await?, b"two");
        assert_eq!(
            proxy.url_for(&format!("postgres://u@{upstream}/db"), upstream),
            format!("postgres://u@{}/db", proxy.addr())
        );
        Ok(())
    }
}

//! The data plane: keyed calls between nodes on one multiplexed TCP connection per peer pair,
//! beside ractor_cluster's sessions (which keep process groups, topics and remote actors).
//!
//! Path of a call, hop by hop (ARCHITECTURE.md draws it): the caller encodes the envelope,
//! takes an in-flight permit of the connection, registers a reply slot under a fresh request
//! id and writes the frame itself (no writer task); the peer's connection task reads it and
//! polls the handler inside its own loop (no task per call; at most [`MAX_RUNNING`] at once,
//! beyond which it stops reading and TCP pushes back); it writes the reply frame; the caller
//! reads it itself when no other caller holds the read half, else the caller reading hands it
//! over through the slot.
//!
//! Connections are dialed on first use (concurrent first calls share one dial), authenticated
//! by the cookie handshake of [`datawire`], and dropped when either side sees an error or EOF;
//! calls waiting on a dropped connection fail `owner_lost` (they may have run), calls that
//! could not be written fail `owner_unreachable` (they did not). Garbage on the port — bad
//! magic, a wrong cookie, a frame over the limit, an unknown kind — closes that connection and
//! is counted, nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use loom_telemetry::names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tracing::{debug, warn};

use crate::WireError;
use crate::calls::{CallFailure, Registry};
use crate::datawire::{self, Key, Kind, Refusal};
use crate::wire;

/// Calls one connection has in flight from this side; more wait (within the call timeout).
pub const MAX_IN_FLIGHT: usize = 1024;
/// Calls one inbound connection runs at once; beyond it the connection stops reading.
pub const MAX_RUNNING: usize = 1024;
/// Inbound connections at once (a member keeps one per peer); beyond it new ones are closed.
pub const MAX_INBOUND: usize = 1024;
/// Unauthenticated connections at once: a flood of slow handshakes cannot take the rest.
pub const MAX_HANDSHAKES: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// This node's side of the data plane: its listener's address and its outbound connections.
pub struct DataPlane {
    key: Key,
    me: String,
    addr: SocketAddr,
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    dialing: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
}

impl DataPlane {
    /// Binds `addr` (port 0: any free port) and serves calls from peers through `registry`.
    pub async fn start(addr: SocketAddr, cookie: &str, me: &str, registry: Registry) -> Result<Arc<DataPlane>, String> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            let why =
                if e.kind() == std::io::ErrorKind::AddrInUse { "address already in use".into() } else { e.to_string() };
            format!("cannot listen for cluster calls on {addr} (tcp, cluster.data_port): {why}")
        })?;
        let addr = listener.local_addr().map_err(|e| format!("cluster data port: {e}"))?;
        let key = Key::new(cookie);
        tokio::spawn(accept(listener, key.clone(), registry));
        Ok(Arc::new(DataPlane { key, me: me.to_owned(), addr, conns: Mutex::default(), dialing: Mutex::default() }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends an encoded call to the peer at `addr` and waits for its encoded reply.
    pub async fn call(
        &self,
        owner: &str,
        addr: SocketAddr,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.conn(owner, addr, deadline).await?;
        let unreachable = |why: String| CallFailure::Unreachable { owner: owner.to_owned(), why };
        let permit = match tokio::time::timeout_at(deadline, conn.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(unreachable("connection closed".into())),
            // Never sent: as the endpoint's overload answer, safe to retry elsewhere.
            Err(_) => {
                let why = format!("{MAX_IN_FLIGHT} calls in flight to {owner} for the whole call timeout");
                return Err(CallFailure::Remote(WireError::new("overloaded", why)));
            }
        };
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !conn.alive.load(Ordering::Acquire) {
                return Err(unreachable("connection closed".into()));
            }
            pending.insert(id, tx);
        }
        let frame = datawire::frame(Kind::Call, id, bytes);
        let written = tokio::time::timeout_at(deadline, async {
            let mut w = conn.writer.lock().await;
            // Another caller's frame may have been cut short while this one waited: the stream
            // is no longer framed, so nothing more may go on it.
            if !conn.alive.load(Ordering::Acquire) {
                return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed"));
            }
            w.write_all(&frame).await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            failed => {
                conn.forget(id);
                // A frame cut short is never served: the peer reads whole frames only.
                conn.close();
                self.drop_conn(addr, &conn);
                return Err(match failed {
                    Err(_) => CallFailure::Timeout { owner: owner.to_owned(), timeout },
                    Ok(Err(e)) => unreachable(e.to_string()),
                    Ok(Ok(())) => unreachable("unreachable".into()),
                });
            }
        }
        let out = match tokio::time::timeout_at(deadline, conn.reply(id, rx)).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(CallFailure::Lost { owner: owner.to_owned() }),
            Err(_) => {
                conn.forget(id);
                Err(CallFailure::Timeout { owner: owner.to_owned(), timeout })
            }
        };
        drop(permit);
        out
    }

    /// The live connection to `addr`, dialing it when there is none.
    async fn conn(
        &self,
        owner: &str,
        addr: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<Conn>, CallFailure> {
        if let Some(c) = self.live(addr) {
            // A peer that restarted closed this connection: notice before writing, so the call
            // goes out on a fresh one instead of failing `owner_lost`.
            if c.check_closed() {
                self.drop_conn(addr, &c);
            } else {
                return Ok(c);
            }
        }
        let gate = {
            let mut dialing = self.dialing.lock().unwrap_or_else(|e| e.into_inner());
            // Gates nobody waits at any more (departed peers) go; so do dead connections.
            dialing.retain(|a, g| *a == addr || Arc::strong_count(g) > 1);
            self.conns.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, c| c.alive.load(Ordering::Acquire));
            dialing.entry(addr).or_default().clone()
        };
        let Ok(_dialing) = tokio::time::timeout_at(deadline, gate.lock()).await else {
            let why = "a dial to it is still under way at the deadline".to_owned();
            return Err(CallFailure::Unreachable { owner: owner.to_owned(), why });
        };
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let unreachable = |why: String| CallFailure::Unreachable { owner: owner.to_owned(), why };
        let dial = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + HANDSHAKE_TIMEOUT), async {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            client_handshake(stream, &self.key, &self.me).await
        })
        .await;
        let (reader, writer) = match dial {
            Ok(Ok(halves)) => halves,
            Ok(Err(why)) => {
                metrics::counter!(names::CLUSTER_DATA_DIALS, "outcome" => "failed").increment(1);
                return Err(unreachable(why));
            }
            Err(_) => {
                metrics::counter!(names::CLUSTER_DATA_DIALS, "outcome" => "timeout").increment(1);
                return Err(unreachable("dial and handshake timed out".into()));
            }
        };
        metrics::counter!(names::CLUSTER_DATA_DIALS, "outcome" => "ok").increment(1);
        let conn = Arc::new(Conn {
            writer: tokio::sync::Mutex::new(writer),
            reader: tokio::sync::Mutex::new(Reader { half: reader, buf: BytesMut::with_capacity(64 * 1024) }),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            permits: Semaphore::new(MAX_IN_FLIGHT),
            alive: AtomicBool::new(true),
        });
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, conn.clone());
        debug!(peer = owner, %addr, "cluster data connection open");
        Ok(conn)
    }

    fn live(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.get(&addr).filter(|c| c.alive.load(Ordering::Acquire)).cloned()
    }

    fn drop_conn(&self, addr: SocketAddr, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.get(&addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(&addr);
        }
    }
}

/// One outbound connection: the write half shared by callers, the read half read by whichever
/// waiting caller holds it (it hands other callers' replies to their slots), the reply slots by
/// request id. No task of its own: on the sequential path the caller reads its reply itself.
struct Conn {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    reader: tokio::sync::Mutex<Reader>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    permits: Semaphore,
    alive: AtomicBool,
}

impl Conn {
    fn forget(&self, id: u64) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Marks the connection dead and fails every waiting call (`owner_lost`).
    fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.permits.close();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn refused(side: &'static str, r: &Refusal) {
    metrics::counter!(names::CLUSTER_DATA_REFUSED, "side" => side, "reason" => r.label()).increment(1);
}

struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
}

enum Parsed {
    Mine(Vec<u8>),
    More,
    Garbage,
}

impl Conn {
    /// Waits for the reply to `id`: from its slot when another caller read it, else by reading
    /// the connection itself (one caller at a time). `None`: the connection ended first.
    async fn reply(&self, id: u64, mut rx: oneshot::Receiver<Vec<u8>>) -> Option<Vec<u8>> {
        tokio::select! {
            biased;
            r = &mut rx => r.ok(),
            mut reader = self.reader.lock() => {
                if let Ok(r) = rx.try_recv() {
                    return Some(r);
                }
                self.read_until(&mut reader, id).await
            }
        }
    }

    /// Reads frames, handing other callers' replies to their slots, until `id`'s arrives.
    async fn read_until(&self, r: &mut Reader, id: u64) -> Option<Vec<u8>> {
        loop {
            match self.dispatch(&mut r.buf, Some(id)) {
                Parsed::Mine(reply) => return Some(reply),
                Parsed::Garbage => break,
                Parsed::More => {}
            }
            // Cancel-safe: a timed-out caller leaves what it read in the buffer.
            match r.half.read_buf(&mut r.buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.close();
        None
    }

    /// Hands every whole reply in `buf` to its slot; stops at `mine`'s.
    fn dispatch(&self, buf: &mut BytesMut, mine: Option<u64>) -> Parsed {
        loop {
            match datawire::parse(buf) {
                Ok(Some(f)) if f.kind == Kind::Reply => {
                    let (fid, payload, used) = (f.id, f.payload.to_vec(), f.used);
                    buf.advance(used);
                    if Some(fid) == mine {
                        self.forget(fid);
                        return Parsed::Mine(payload);
                    }
                    let slot = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&fid);
                    if let Some(tx) = slot {
                        let _ = tx.send(payload);
                    }
                }
                Ok(Some(_)) => {
                    refused("client", &Refusal::Malformed("a call on an outbound connection"));
                    return Parsed::Garbage;
                }
                Ok(None) => return Parsed::More,
                Err(r) => {
                    refused("client", &r);
                    return Parsed::Garbage;
                }
            }
        }
    }

    /// Without waiting: whether the peer closed the connection (or sent garbage). Looks only
    /// when no caller is reading.
    fn check_closed(&self) -> bool {
        if !self.alive.load(Ordering::Acquire) {
            return true;
        }
        let Ok(mut guard) = self.reader.try_lock() else { return false };
        let r = &mut *guard;
        let closed = match r.half.try_read_buf(&mut r.buf) {
            Ok(0) => true,
            Ok(_) => matches!(self.dispatch(&mut r.buf, None), Parsed::Garbage),
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        drop(guard);
        if closed {
            self.close();
        }
        closed
    }
}

async fn client_handshake(
    mut stream: TcpStream,
    key: &Key,
    me: &str,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), String> {
    let nonce: [u8; datawire::NONCE_LEN] = rand::random();
    stream.write_all(&datawire::hello(me, &nonce)).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(|e| format!("no handshake answer: {e}"))?;
    let mut challenge = head.to_vec();
    if &head[..3] == datawire::MAGIC && head[3] == datawire::VERSION {
        let mut rest = [0u8; datawire::CHALLENGE_LEN - 4];
        stream.read_exact(&mut rest).await.map_err(|e| format!("handshake cut short: {e}"))?;
        challenge.extend_from_slice(&rest);
    }
    let server_nonce = datawire::read_challenge(key, &nonce, &challenge).map_err(|r| {
        refused("client", &r);
        r.to_string()
    })?;
    let tag = key.client_tag(server_nonce, &nonce, me);
    stream.write_all(&tag).await.map_err(|e| e.to_string())?;
    let mut ok = [0u8; 1];
    stream.read_exact(&mut ok).await.map_err(|_| "the peer refused the handshake (cookie)".to_owned())?;
    if ok[0] != datawire::ACCEPTED {
        return Err("the peer refused the handshake".into());
    }
    Ok(stream.into_split())
}

async fn accept(listener: TcpListener, key: Key, registry: Registry) {
    let (inbound, handshakes) = (Arc::new(Semaphore::new(MAX_INBOUND)), Arc::new(Semaphore::new(MAX_HANDSHAKES)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cluster data port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (Ok(slot), Ok(shaking)) = (inbound.clone().try_acquire_owned(), handshakes.clone().try_acquire_owned())
        else {
            refused("server", &Refusal::Busy);
            continue; // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        let (key, registry) = (key.clone(), registry.clone());
        tokio::spawn(async move {
            let shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, server_handshake(stream, &key)).await;
            drop(shaking);
            match shaken {
                Ok(Ok((name, stream))) => {
                    debug!(peer = name, %peer, "cluster data connection accepted");
                    serve(stream, registry).await;
                    drop(slot);
                }
                Ok(Err(r)) => {
                    refused("server", &r);
                    debug!(%peer, reason = %r, "cluster data connection refused");
                }
                Err(_) => refused("server", &Refusal::Malformed("handshake timed out")),
            }
        });
    }
}

async fn server_handshake(mut stream: TcpStream, key: &Key) -> Result<(String, TcpStream), Refusal> {
    let cut = |_| Refusal::Malformed("handshake cut short");
    let mut head = [0u8; datawire::HELLO_HEAD];
    stream.read_exact(&mut head).await.map_err(cut)?;
    let name_len = match datawire::hello_head(&head) {
        Ok(n) => n,
        Err(Refusal::Version(v)) => {
            // Say which version this node speaks, so the peer can report the mismatch.
            let _ = stream
                .write_all(&[datawire::MAGIC[0], datawire::MAGIC[1], datawire::MAGIC[2], datawire::VERSION])
                .await;
            return Err(Refusal::Version(v));
        }
        Err(r) => return Err(r),
    };
    let mut rest = vec![0u8; name_len + datawire::NONCE_LEN];
    stream.read_exact(&mut rest).await.map_err(cut)?;
    let (name, client_nonce) = rest.split_at(name_len);
    let name = std::str::from_utf8(name).map_err(|_| Refusal::Malformed("peer name is not UTF-8"))?.to_owned();
    let server_nonce: [u8; datawire::NONCE_LEN] = rand::random();
    stream.write_all(&datawire::challenge(key, client_nonce, &server_nonce)).await.map_err(cut)?;
    let mut tag = [0u8; datawire::TAG_LEN];
    stream.read_exact(&mut tag).await.map_err(cut)?;
    key.verify_client(&server_nonce, client_nonce, &name, &tag)?;
    stream.write_all(&[datawire::ACCEPTED]).await.map_err(cut)?;
    Ok((name, stream))
}

/// Replies waiting to be written on one connection, at most; beyond it the connection takes no
/// more calls until the peer reads.
const MAX_UNSENT: usize = 8 << 20;

/// Serves one authenticated inbound connection: reads calls, polls their handlers in this
/// task, and writes each reply when it is ready (in completion order) — writing and reading at
/// once, so a peer that is busy writing a large call while its replies pile up never deadlocks
/// the two (replies buffer up to [`MAX_UNSENT`]).
async fn serve(stream: TcpStream, registry: Registry) {
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    // Boxed so the set has one nameable type: an allocation per call, never a task.
    let mut running: FuturesUnordered<BoxFuture<'static, (u64, Vec<u8>)>> = FuturesUnordered::new();
    // The peer still sends; after it closes its side, what runs is finished and written.
    let mut open = true;
    loop {
        if !open && running.is_empty() && out.is_empty() {
            return;
        }
        tokio::select! {
            Some((id, reply)) = running.next(), if !running.is_empty() => {
                out.extend_from_slice(&datawire::frame(Kind::Reply, id, &reply));
            }
            // Cancel-safe: when another branch wins, nothing was written.
            written = writer.write_buf(&mut out), if !out.is_empty() => {
                if !matches!(written, Ok(n) if n > 0) {
                    return;
                }
            }
            read = reader.read_buf(&mut buf), if open && running.len() < MAX_RUNNING && out.len() < MAX_UNSENT => {
                if !matches!(read, Ok(n) if n > 0) {
                    open = false;
                    continue;
                }
                loop {
                    match datawire::parse(&buf) {
                        Ok(Some(f)) if f.kind == Kind::Call => {
                            let (id, payload, used) = (f.id, f.payload.to_vec(), f.used);
                            buf.advance(used);
                            let registry = registry.clone();
                            // A handler that panics fails its own call, not the connection's others.
                            running.push(Box::pin(async move {
                                let served = std::panic::AssertUnwindSafe(registry.serve(&payload)).catch_unwind().await;
                                let reply = served.unwrap_or_else(|_| {
                                    wire::encode_reply(Err(WireError::new("handler_panicked", "the handler panicked")))
                                });
                                (id, reply)
                            }));
                        }
                        Ok(Some(_)) => {
                            refused("server", &Refusal::Malformed("a reply on an inbound connection"));
                            return;
                        }
                        Ok(None) => break,
                        Err(r) => {
                            refused("server", &r);
                            return;
                        }
                    }
                }
            }
            else => return,
        }
    }
}

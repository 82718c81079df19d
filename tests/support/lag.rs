//! A TCP relay in front of a server, for one client's network path: it forwards both ways,
//! holds what the server sends for a settable delay (a slow path), and holds everything while
//! frozen (a stalled path: nothing is lost, nothing arrives).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Default)]
struct Knobs {
    delay_ms: AtomicU64,
    frozen: AtomicBool,
}

pub struct Lag {
    addr: SocketAddr,
    knobs: Arc<Knobs>,
    task: tokio::task::JoinHandle<()>,
}

impl Lag {
    /// Relays every connection to `to`.
    pub async fn start(to: SocketAddr) -> Lag {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let knobs = Arc::new(Knobs::default());
        let k = Arc::clone(&knobs);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(to).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, Arc::clone(&k)));
            }
        });
        Lag { addr, knobs, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server sends arrives `delay` later.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.knobs.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Holds everything, both ways, until unfrozen.
    pub fn freeze(&self, frozen: bool) {
        self.knobs.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Drop for Lag {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn while_frozen(knobs: &Knobs) {
    while knobs.frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn relay(client: TcpStream, server: TcpStream, knobs: Arc<Knobs>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let k = Arc::clone(&knobs);
    let upward = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while_frozen(&k).await;
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    // Server to client: each chunk is released at its arrival time plus the delay, in order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let k = Arc::clone(&knobs);
    let downward = tokio::spawn(async move {
        while let Some((release, chunk)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            while_frozen(&k).await;
            if client_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = Duration::from_millis(knobs.delay_ms.load(Ordering::SeqCst));
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = downward.await;
    upward.abort();
}

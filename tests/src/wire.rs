//! A recording TCP proxy on loopback: everything a client sends to a server
//! and every byte it gets back, kept for the test to search. Put between
//! the browser and the key server, it shows what crossed the wire.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What crossed the proxy, by direction.
#[derive(Default)]
pub struct Recorded {
    /// Client to server, every connection one after another.
    pub sent: Vec<u8>,
    /// Server to client.
    pub received: Vec<u8>,
}

/// A proxy listening on loopback, forwarding to `upstream`.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Recorded>>,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<new port>` to `upstream_port`.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let log: Arc<Mutex<Recorded>> = Default::default();
        let shared = log.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let (up, down) = (shared.clone(), shared.clone());
                std::thread::spawn(move || pump(client, server, &up, true));
                std::thread::spawn(move || pump(s2, c2, &down, false));
            }
        });
        Proxy {
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// A copy of what has crossed so far.
    pub fn recorded(&self) -> Recorded {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        Recorded {
            sent: l.sent.clone(),
            received: l.received.clone(),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, log: &Mutex<Recorded>, upstream: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            let side = if upstream {
                &mut l.sent
            } else {
                &mut l.received
            };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// How many times `needle` occurs in `hay`.
pub fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

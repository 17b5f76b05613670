//! A minimal blocking HTTP/1.1 keep-alive client for loopback tests and the
//! load generator (no TLS, no redirects; `Content-Length` or chunked bodies).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One keep-alive connection.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header (empty when absent).
    pub content_type: String,
    /// The whole body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body parsed as JSON.
    pub fn json(&self) -> io::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// Opens a keep-alive connection (no Nagle delay, 30 s read timeout).
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            addr,
            reader: BufReader::new(s),
        })
    }

    /// Sends raw bytes as the body (which need not be valid JSON). A server
    /// may close a keep-alive connection (e.g. after a reply that did not read
    /// the body); then the request is sent once more on a new connection.
    pub fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        self.send_with(method, path, &[], body)
    }

    /// [`Client::send`] with extra headers (`Content-Type` among them
    /// replaces the JSON one).
    pub fn send_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Reply> {
        match self.send_once(method, path, headers, body) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                *self = Client::connect(self.addr)?;
                self.send_once(method, path, headers, body)
            }
            r => r,
        }
    }

    fn send_once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Reply> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(b) = body {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                head.push_str("Content-Type: application/json\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        if let Some(b) = body {
            if let Err(e) = s.write_all(b) {
                // The server may have answered from the head alone (a 413 on
                // the declared length) and closed: its reply is still in the
                // socket's buffer.
                return self.read_reply().map_err(|_| e);
            }
        }
        self.read_reply()
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> io::Result<Reply> {
        self.send("GET", path, None)
    }

    /// `POST path` with a JSON value.
    pub fn post_json(&mut self, path: &str, v: &serde_json::Value) -> io::Result<Reply> {
        let body = serde_json::to_vec(v).map_err(|e| bad(e.to_string()))?;
        self.send("POST", path, Some(&body))
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut content_type) = (None, false, String::new());
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "content-type" => content_type = v.to_string(),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                let start = body.len();
                body.resize(start + n, 0);
                self.reader.read_exact(&mut body[start..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}

/// What a load run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Offered rate (requests/s) for an open-loop run; `None` when closed-loop.
    pub target_rps: Option<f64>,
    /// Requests completed.
    pub requests: usize,
    /// Requests that failed (transport errors or non-2xx statuses).
    pub errors: usize,
    /// Wall-clock length of the run.
    pub seconds: f64,
    /// `requests / seconds`.
    pub throughput_rps: f64,
    /// Median latency (open loop: from the scheduled send time).
    pub p50_ms: f64,
    /// 90th-percentile latency.
    pub p90_ms: f64,
    /// 99th-percentile latency.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sends `per_connection` POSTs of the given bodies (cycled) to `path` on each
/// of `connections` connections. Closed loop (`rate = None`): each connection
/// sends as soon as the last reply arrived. Open loop (`rate = Some(r)`): the
/// requests are scheduled at `r` per second in total, and latency counts from
/// the scheduled time (no coordinated omission).
pub fn load(
    addr: SocketAddr,
    path: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    per_connection: usize,
    rate: Option<f64>,
) -> io::Result<LoadReport> {
    let connections = connections.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let results: Vec<io::Result<(Vec<f64>, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                scope.spawn(move || -> io::Result<(Vec<f64>, usize)> {
                    let mut client = Client::connect(addr)?;
                    let mut lat = Vec::with_capacity(per_connection);
                    let mut errors = 0;
                    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
                    let offset = rate.map(|r| Duration::from_secs_f64(c as f64 / r));
                    for i in 0..per_connection {
                        let body = &bodies[(c * per_connection + i) % bodies.len()];
                        let t0 = match (interval, offset) {
                            (Some(iv), Some(off)) => {
                                let at = start + off + iv * i as u32;
                                let now = Instant::now();
                                if at > now {
                                    std::thread::sleep(at - now);
                                }
                                at
                            }
                            _ => Instant::now(),
                        };
                        let reply = client.send("POST", path, Some(body))?;
                        if reply.status != 200 {
                            errors += 1;
                        }
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok((lat, errors))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("load thread panicked")))
            })
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    let mut errors = 0;
    for r in results {
        let (l, e) = r?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_by(f64::total_cmp);
    Ok(LoadReport {
        connections,
        target_rps: rate,
        requests: lat.len(),
        errors,
        seconds,
        throughput_rps: lat.len() as f64 / seconds,
        p50_ms: quantile(&lat, 0.5),
        p90_ms: quantile(&lat, 0.9),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
    })
}

/// A service running on a loopback port in its own thread and tokio runtime
/// (tests, benchmarks, a simulator driving a real server).
#[derive(Debug)]
pub struct LocalServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin routes listen.
    pub admin_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl LocalServer {
    /// Serves `state` on 127.0.0.1 at a free port.
    pub fn start(state: std::sync::Arc<crate::AppState>) -> io::Result<LocalServer> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("reelkit-local-server".into())
            .spawn(move || -> io::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
                    let (listener, admin) = match (bind().await, bind().await) {
                        (Ok(l), Ok(a)) => (l, a),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let addrs = listener
                        .local_addr()
                        .and_then(|a| Ok((a, admin.local_addr()?)));
                    let _ = tx.send(addrs);
                    tokio::spawn(crate::serve_admin(admin, state.clone()));
                    crate::serve(listener, state, async {
                        let _ = stopped.await;
                    })
                    .await
                })
            })?;
        let (addr, admin_addr) = rx
            .recv()
            .map_err(|_| io::Error::other("the server thread ended before listening"))??;
        Ok(LocalServer {
            addr,
            admin_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops taking connections, lets requests in flight finish, closes the
    /// exposure log and waits for the thread.
    pub fn stop(mut self) -> io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! A TCP proxy between the archiver and an S3 server, for faults no real server makes on
//! demand: it flips one byte of a request body on the way in, or reports another size in
//! a HEAD answer. Every request is forwarded with `Connection: close` (and every answer
//! carries it back), so a connection holds one request and one answer and neither side
//! needs more than its header block parsed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which requests a fault applies to: `(method, request target)`.
pub type Matcher = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What the proxy does wrong.
pub enum Fault {
    /// Flips one byte in the middle of the body of the first request that matches (and of
    /// no other).
    FlipOnce(Matcher),
    /// Adds `delta` to the `Content-Length` of every successful HEAD answer to a matching
    /// request (a HEAD answer has no body: nothing else changes).
    HeadSize(Matcher, i64),
    /// Not a fault: stands in for AWS's Object Lock rule where moto's is narrower. AWS
    /// accepts a PUT to an Object Lock bucket that carries `Content-MD5` or an
    /// `x-amz-checksum-*` header; moto wants `Content-MD5` or
    /// `x-amz-sdk-checksum-algorithm` (a header AWS SDKs send beside the checksum). A PUT
    /// with an `x-amz-checksum-<algorithm>` header gets `x-amz-sdk-checksum-algorithm:
    /// <algorithm>` added; PUTs are counted with and without a checksum.
    AwsObjectLockRule,
    /// Answers `200 OK` to every matching request without forwarding it: a store that
    /// accepts a call and ignores it. Other PUTs are translated as with
    /// [`Fault::AwsObjectLockRule`] (for moto's bucket with a default retention).
    Swallow(Matcher),
}

struct Shared {
    fault: Fault,
    /// Targets whose body was corrupted.
    flipped: Mutex<Vec<String>>,
    heads_rewritten: AtomicUsize,
    puts_with_checksum: AtomicUsize,
    puts_without_checksum: AtomicUsize,
    swallowed: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct S3Proxy {
    /// `http://127.0.0.1:<port>`: use it as the S3 endpoint.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Proxy {
    /// A proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, fault: Fault) -> Self {
        let url = url::Url::parse(upstream).expect("the upstream endpoint is a URL");
        let upstream = format!("{}:{}", url.host_str().expect("a host"), url.port_or_known_default().expect("a port"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            fault,
            flipped: Mutex::new(Vec::new()),
            heads_rewritten: AtomicUsize::new(0),
            puts_with_checksum: AtomicUsize::new(0),
            puts_without_checksum: AtomicUsize::new(0),
            swallowed: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accepting.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, &shared).await;
                });
            }
        });
        Self { endpoint, shared, task }
    }

    /// Targets of the requests whose body was corrupted.
    pub fn flipped(&self) -> Vec<String> {
        self.shared.flipped.lock().unwrap().clone()
    }

    /// PUT requests (objects and parts) that carried an `x-amz-checksum-*` header, and
    /// those that did not (counted with [`Fault::AwsObjectLockRule`] only).
    pub fn puts_by_checksum(&self) -> (usize, usize) {
        (
            self.shared.puts_with_checksum.load(Ordering::SeqCst),
            self.shared.puts_without_checksum.load(Ordering::SeqCst),
        )
    }

    /// Requests answered without being forwarded ([`Fault::Swallow`]).
    pub fn swallowed(&self) -> usize {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// HEAD answers whose size was changed.
    pub fn heads_rewritten(&self) -> usize {
        self.shared.heads_rewritten.load(Ordering::SeqCst)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until `buf` holds a whole header block; returns its length (with the blank
/// line), or `None` when the stream ends first.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(at + 4));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The header lines of a block (after its first line), without `Connection` and
/// `Keep-Alive`, and with `Connection: close` added; `rewrite` may change a line.
fn close_headers(block: &str, mut rewrite: impl FnMut(&str, &str) -> Option<String>) -> (String, String) {
    let mut lines = block.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let mut out = format!("{first}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.trim().to_ascii_lowercase();
        if name == "connection" || name == "keep-alive" {
            continue;
        }
        match rewrite(&name, value.trim()) {
            Some(changed) => out.push_str(&changed),
            None => out.push_str(line),
        }
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    (first, out)
}

async fn relay(mut client: TcpStream, upstream: &str, shared: &Shared) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut buf = Vec::new();
    let Some(end) = read_head(&mut client, &mut buf).await? else {
        return Ok(());
    };
    let mut content_length: usize = 0;
    let mut checksum_algorithm: Option<String> = None;
    let (request_line, mut head) = close_headers(&String::from_utf8_lossy(&buf[..end]), |name, value| {
        if name == "content-length" {
            content_length = value.parse().unwrap_or(0);
        }
        if let Some(algorithm) = name.strip_prefix("x-amz-checksum-")
            && !matches!(algorithm, "algorithm" | "type" | "mode")
        {
            checksum_algorithm = Some(algorithm.to_ascii_uppercase());
        }
        None
    });
    let mut words = request_line.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    if matches!(shared.fault, Fault::AwsObjectLockRule | Fault::Swallow(_)) && method == "PUT" {
        match &checksum_algorithm {
            Some(algorithm) => {
                shared.puts_with_checksum.fetch_add(1, Ordering::SeqCst);
                let blank = head.len() - 2;
                head.insert_str(blank, &format!("x-amz-sdk-checksum-algorithm: {algorithm}\r\n"));
            }
            None => {
                shared.puts_without_checksum.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let mut body = buf.split_off(end);
    while body.len() < content_length {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Fault::FlipOnce(matches) = &shared.fault
        && !body.is_empty()
        && matches(&method, &target)
    {
        let mut flipped = shared.flipped.lock().unwrap();
        if flipped.is_empty() {
            let middle = body.len() / 2;
            body[middle] ^= 0x20;
            flipped.push(target.clone());
        }
    }
    if let Fault::Swallow(matches) = &shared.fault
        && matches(&method, &target)
    {
        shared.swallowed.fetch_add(1, Ordering::SeqCst);
        client.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
        return client.shutdown().await;
    }
    server.write_all(head.as_bytes()).await?;
    server.write_all(&body).await?;

    let mut answer = Vec::new();
    let Some(end) = read_head(&mut server, &mut answer).await? else {
        return Ok(());
    };
    let block = String::from_utf8_lossy(&answer[..end]).into_owned();
    let success = block.split(' ').nth(1).is_some_and(|status| status.starts_with('2'));
    let rewrite_size = match &shared.fault {
        Fault::HeadSize(matches, delta) if method == "HEAD" && success && matches(&method, &target) => Some(*delta),
        _ => None,
    };
    let (_, head) = close_headers(&block, |name, value| {
        let delta = rewrite_size?;
        if name != "content-length" {
            return None;
        }
        let size: i64 = value.parse().ok()?;
        shared.heads_rewritten.fetch_add(1, Ordering::SeqCst);
        Some(format!("content-length: {}", size + delta))
    });
    client.write_all(head.as_bytes()).await?;
    client.write_all(&answer[end..]).await?;
    tokio::io::copy(&mut server, &mut client).await?;
    client.shutdown().await
}

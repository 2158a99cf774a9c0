//! A scripted stand-in for an S3 server on 127.0.0.1, for answers a real one will not give on
//! demand: throttling, refusals, ignored conditions, silence.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flatmachines_s3::{S3Backend, S3Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers: status, extra headers, body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn ok() -> Self {
        Reply {
            status: 200,
            headers: vec![("ETag", "\"e\"".to_owned())],
            body: String::new(),
        }
    }

    /// An S3 error document.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type", "application/xml".to_owned())],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>fake</RequestId></Error>"
            ),
        }
    }
}

type Script = dyn Fn(&Seen, usize) -> Option<Reply> + Send + Sync;

/// A server answering each request with `script(request, index)`; `None` leaves the request
/// unanswered (the connection stays open and silent).
pub(crate) struct FakeS3 {
    pub(crate) endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeS3 {
    pub(crate) async fn start(
        script: impl Fn(&Seen, usize) -> Option<Reply> + Send + Sync + 'static,
    ) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let task = {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                // Bounded: no test sends more requests than this.
                for _ in 0..500 {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (seen, script) = (Arc::clone(&seen), Arc::clone(&script));
                    tokio::spawn(serve(stream, seen, script));
                }
            })
        };
        FakeS3 {
            endpoint,
            seen,
            task,
        }
    }

    /// A backend on bucket `bucket` of this server, with short timeouts.
    pub(crate) fn backend(&self, attempts: u32) -> S3Backend {
        S3Backend::new(self.config(attempts))
    }

    pub(crate) fn config(&self, attempts: u32) -> S3Config {
        S3Config::from_url(&format!(
            "s3://bucket/p?endpoint={}&region=us-east-1",
            self.endpoint
        ))
        .expect("a fake URL")
        .with_credentials("test", "test")
        .with_max_attempts(attempts)
        .with_connect_timeout(Duration::from_secs(1))
        .with_attempt_timeout(Duration::from_millis(500))
        .with_operation_timeout(Duration::from_secs(5))
    }

    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, script: Arc<Script>) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        // Headers first, then as many body bytes as Content-Length says.
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let request = Seen {
            method,
            path,
            headers,
        };
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + 4 + length);
        let index = {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.push(request.clone());
            seen.len() - 1
        };
        let Some(reply) = script(&request, index) else {
            // Silent: hold the connection until the client gives up.
            let _ = stream.read(&mut chunk).await;
            return;
        };
        let mut response = format!(
            "HTTP/1.1 {} Fake\r\nContent-Length: {}\r\nx-amz-request-id: fake\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&reply.body);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

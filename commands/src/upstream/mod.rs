//! Clients for the image-generation backends the API resells. Jobs are handed to an
//! operator-configured upstream (a midjourney-proxy instance or an OpenAI-compatible
//! images endpoint); this module hides their wire formats behind typed requests and a
//! single error type whose messages can be stored verbatim in a task's `error` field.

pub mod images;
pub mod mj_proxy;

use std::time::Duration;

/// Upstream bodies can be large HTML error pages; only a prefix is worth keeping.
const BODY_EXCERPT_CHARS: usize = 300;

/// Marker that lets `is_timeout` recognise timeouts without widening the enum.
const TIMEOUT_PREFIX: &str = "timed out";

/// Why a call to an upstream failed. The `Display` text is meant for end users, so it
/// names the kind of failure without echoing upstream internals; `Http::body` keeps
/// the detail for logs.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The request never got an HTTP answer: connect failure, DNS, TLS or timeout.
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// The upstream answered with a non-2xx status.
    #[error("upstream answered HTTP {status}")]
    Http {
        status: u16,
        /// The first 300 characters of the reply (or the provider's error message).
        body: String,
    },
    /// The upstream answered 2xx but the body could not be understood.
    #[error("upstream sent an unreadable reply: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// True when the request was abandoned because the configured timeout elapsed,
    /// which callers usually treat as retryable rather than as a task failure.
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Transport(m) if m.starts_with(TIMEOUT_PREFIX))
    }

    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            return UpstreamError::Transport(format!(
                "{TIMEOUT_PREFIX} after {}s",
                timeout.as_secs_f64()
            ));
        }
        // reqwest's own Display is terse ("error sending request"); the source chain
        // carries the useful part (connection refused, dns error, ...).
        // The URL is dropped because it names the operator's upstream host.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let mut msg = e.without_url().to_string();
        for c in causes {
            msg.push_str(": ");
            msg.push_str(&c);
        }
        UpstreamError::Transport(msg)
    }

    pub(crate) fn http(status: u16, body: &str) -> Self {
        UpstreamError::Http {
            status,
            body: excerpt(body),
        }
    }
}

pub(crate) fn excerpt(body: &str) -> String {
    body.chars().take(BODY_EXCERPT_CHARS).collect()
}

/// A throwaway HTTP/1.1 server for unit tests, so client code can be exercised over a
/// real socket without pulling a server framework into the dependency tree.
#[cfg(test)]
pub(crate) mod test_http {
    use std::net::{IpAddr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        pub path: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("request body is JSON")
        }
    }

    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        /// Leave out Content-Length so the body is delimited by connection close.
        pub omit_length: bool,
        pub delay: Option<Duration>,
    }

    impl Response {
        pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
            Response {
                status,
                headers: Vec::new(),
                body: body.into(),
                omit_length: false,
                delay: None,
            }
        }

        pub fn json(status: u16, v: serde_json::Value) -> Self {
            Response::new(status, v.to_string()).header("Content-Type", "application/json")
        }

        pub fn header(mut self, k: &str, v: &str) -> Self {
            self.headers.push((k.to_string(), v.to_string()));
            self
        }
    }

    pub struct Server {
        pub addr: SocketAddr,
        pub requests: Arc<Mutex<Vec<Request>>>,
    }

    impl Server {
        pub fn url(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }

        pub fn taken(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Listens on an ephemeral port of `ip` and answers every request with `handler`.
    pub async fn serve<F>(ip: &str, handler: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let ip: IpAddr = ip.parse().unwrap();
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let Some(req) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(req.clone());
                    let resp = handler(&req);
                    if let Some(d) = resp.delay {
                        tokio::time::sleep(d).await;
                    }
                    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
                    if !resp.omit_length {
                        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
                    }
                    for (k, v) in &resp.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let s = stream.get_mut();
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&resp.body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Server { addr, requests }
    }

    async fn read_request<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Option<Request> {
        let mut line = String::new();
        r.read_line(&mut line).await.ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await.ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().ok()?;
            body.resize(len, 0);
            r.read_exact(&mut body).await.ok()?;
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await.ok()?;
                let size = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk).await.ok()?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        Some(Request {
            method,
            path,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_timeout_flag() {
        let t = UpstreamError::Transport(format!("{TIMEOUT_PREFIX} after 5s"));
        assert!(t.is_timeout());
        assert_eq!(t.to_string(), "upstream unreachable: timed out after 5s");
        let h = UpstreamError::http(502, &"x".repeat(1000));
        assert!(!h.is_timeout());
        assert_eq!(h.to_string(), "upstream answered HTTP 502");
        match h {
            UpstreamError::Http { body, .. } => assert_eq!(body.chars().count(), 300),
            _ => unreachable!(),
        }
        assert_eq!(
            UpstreamError::Malformed("eof".into()).to_string(),
            "upstream sent an unreadable reply: eof"
        );
    }
}

//! An SMTP sink on loopback: speaks enough of RFC 5321 for a real client (lettre) to
//! deliver, and keeps every message it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r);
                    let _ = w.write_all(b"220 sink.test ESMTP\r\n").await;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-sink.test\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("HELO")
                            || cmd.starts_with("MAIL")
                            || cmd.starts_with("RCPT")
                            || cmd.starts_with("RSET")
                            || cmd.starts_with("NOOP")
                        {
                            b"250 OK\r\n"
                        } else if cmd == "DATA" {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(&line);
                            }
                            store.lock().unwrap().push(data);
                            b"250 queued\r\n"
                        } else if cmd == "QUIT" {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"502 not implemented\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, messages }
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived and returns the n-th (1-based).
    pub async fn wait_for(&self, n: usize) -> String {
        for _ in 0..200 {
            if let Some(m) = self.messages.lock().unwrap().get(n - 1) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("expected {n} messages, have {}", self.count());
    }
}

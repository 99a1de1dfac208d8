//! A minimal HTTP/1.1 client over one keep-alive connection, for the tests
//! and the load driver: requests go one after another, as a client task of
//! a real service would send them. And [`upload`], a large value sent as a
//! slow client sends it, on a connection of its own.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One connection to the service.
#[derive(Debug)]
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

fn io_error(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl Client {
    /// Connect to `addr` (the connection is driven by a spawned task).
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_error)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { sender })
    }

    /// Send one request; its status and body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> io::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.map_err(io_error)?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "memcg-service")
            .body(Full::new(body))
            .map_err(io_error)?;
        let response = self.sender.send_request(request).await.map_err(io_error)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(io_error)?;
        Ok((status, body.to_bytes()))
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> io::Result<(StatusCode, Bytes)> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    /// `PUT path` with `body`.
    pub async fn put(&mut self, path: &str, body: Bytes) -> io::Result<(StatusCode, Bytes)> {
        self.send(Method::PUT, path, body).await
    }

    /// `POST path` with no body.
    pub async fn post(&mut self, path: &str) -> io::Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, Bytes::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&mut self, path: &str) -> io::Result<(StatusCode, Bytes)> {
        self.send(Method::DELETE, path, Bytes::new()).await
    }
}

/// `PUT path` with a body of `len` bytes, on a connection of its own,
/// written in pieces of `piece` bytes with `pause` after each, as a client
/// uploads a large value; the status the service answers. The service may
/// answer before the whole body is sent (a request killed on the way, 507):
/// writing stops then, and the connection is dropped.
pub async fn upload(
    addr: SocketAddr,
    path: &str,
    len: usize,
    piece: usize,
    pause: Duration,
) -> io::Result<StatusCode> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let head =
        format!("PUT {path} HTTP/1.1\r\nhost: memcg-service\r\ncontent-length: {len}\r\n\r\n");
    let writer = async move {
        wr.write_all(head.as_bytes()).await?;
        let piece = vec![0x5a_u8; piece.max(1)];
        let mut left = len;
        while left > 0 {
            let n = left.min(piece.len());
            wr.write_all(&piece[..n]).await?;
            left -= n;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        // The write half stays open until the answer: closing it would
        // end the request early.
        std::future::pending::<io::Result<()>>().await
    };
    let reader = async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status = head
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|s| StatusCode::from_bytes(s).ok());
        status.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))
    };
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            status = &mut reader => return status,
            // A write that fails (the service answered and closed) leaves
            // the answer to read.
            _ = &mut writer, if writing => writing = false,
        }
    }
}

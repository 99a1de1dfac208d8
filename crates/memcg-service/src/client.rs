//! A minimal HTTP/1.1 client over one keep-alive connection, for the tests
//! and the load driver: requests go one after another, as a client task of
//! a real service would send them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;

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

    /// `DELETE path`.
    pub async fn delete(&mut self, path: &str) -> io::Result<(StatusCode, Bytes)> {
        self.send(Method::DELETE, path, Bytes::new()).await
    }
}

//! TCP tunnels (docs/protocol/sandbox-api.md, TCP tunnels) against the real router, real TCP
//! services and a real WebSocket client.

mod common;

use std::time::Duration;

use common::Agent;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Deadline for anything that should happen promptly; only there to turn a hang into a
/// failure.
const DEADLINE: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(agent: &Agent, query: &str) -> Result<Ws, tungstenite::Error> {
    let url = agent.ws_url(&format!("/tunnels/tcp{query}"));
    tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade timed out")
        .map(|(ws, _)| ws)
}

/// Status and JSON body of a refused upgrade.
async fn refused(agent: &Agent, query: &str) -> (u16, Value) {
    match open(agent, query).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).expect("JSON error body");
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}

/// What the tunnel delivered until the agent closed it.
#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    close_code: Option<u16>,
}

/// Reads binary messages until `want` bytes arrived (or, with `None`, until the close).
async fn receive(ws: &mut Ws, want: Option<usize>) -> Received {
    let mut got = Received::default();
    loop {
        if want.is_some_and(|want| got.bytes.len() >= want) {
            return got;
        }
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("tunnel went silent");
        match message {
            Some(Ok(Message::Binary(bytes))) => got.bytes.extend_from_slice(&bytes),
            Some(Ok(Message::Text(text))) => panic!("tunnel sent a text frame {text:?}"),
            Some(Ok(Message::Close(frame))) => {
                got.close_code = frame.map(|f| u16::from(f.code));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return got,
        }
    }
}

/// An echo service on a free port; returns the port.
async fn echo_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rx, mut tx) = conn.split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn bytes_round_trip_both_ways() {
    let agent = Agent::start().await;
    let port = echo_service().await;
    let mut ws = open(&agent, &format!("?port={port}"))
        .await
        .expect("connect");

    ws.send(Message::Binary(b"ping".to_vec().into()))
        .await
        .expect("send");
    assert_eq!(receive(&mut ws, Some(4)).await.bytes, b"ping");

    // 4 MiB in 64 KiB messages, read back while sending: every byte, in order.
    let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut sink, mut stream) = ws.split();
    let sent = payload.clone();
    let sender = tokio::spawn(async move {
        for chunk in sent.chunks(64 * 1024) {
            sink.send(Message::Binary(chunk.to_vec().into()))
                .await
                .expect("send chunk");
        }
        sink
    });
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => echoed.extend_from_slice(&bytes),
            Ok(Some(Ok(Message::Text(_)))) => panic!("text frame"),
            Ok(Some(Ok(_))) => {}
            other => panic!("tunnel ended early: {other:?}"),
        }
    }
    assert!(echoed == payload, "echoed bytes differ");
    let mut sink = sender.await.expect("sender");
    sink.send(Message::Close(None)).await.expect("close");
}

#[tokio::test]
async fn service_close_closes_the_websocket() {
    let agent = Agent::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello).await.expect("read hello");
        assert_eq!(&hello, b"hello");
        conn.write_all(b"bye").await.expect("write");
        // Dropping the connection closes it.
    });
    let mut ws = open(&agent, &format!("?port={port}"))
        .await
        .expect("connect");
    ws.send(Message::Binary(b"hello".to_vec().into()))
        .await
        .expect("send");
    let got = receive(&mut ws, None).await;
    assert_eq!(got.bytes, b"bye");
    assert_eq!(got.close_code, Some(1000));
}

#[tokio::test]
async fn client_close_closes_the_connection() {
    let agent = Agent::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        // Returns at end of file, i.e. once the agent closed its side.
        let _ = conn.read_to_end(&mut got).await;
        let _ = done_tx.send(got);
    });
    let mut ws = open(&agent, &format!("?port={port}"))
        .await
        .expect("connect");
    ws.send(Message::Binary(b"last words".to_vec().into()))
        .await
        .expect("send");
    ws.close(None).await.expect("close");
    let got = tokio::time::timeout(DEADLINE, done_rx)
        .await
        .expect("service never saw end of file")
        .expect("service result");
    assert_eq!(got, b"last words");
}

#[tokio::test]
async fn nothing_listening_is_502_without_upgrade() {
    let agent = Agent::start().await;
    // A port that was just free: bind, note it, release it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let (status, body) = refused(&agent, &format!("?port={port}")).await;
    assert_eq!(status, 502);
    assert_eq!(body["code"], "CONNECTION_REFUSED");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn bad_or_missing_port_is_400() {
    let agent = Agent::start().await;
    for query in [
        "",
        "?port=",
        "?port=0",
        "?port=65536",
        "?port=http",
        "?host=x",
    ] {
        let (status, body) = refused(&agent, query).await;
        assert_eq!(status, 400, "query {query:?}: {body}");
        assert_eq!(body["code"], "INVALID_ARGUMENT");
    }
    // A plain GET (no upgrade) to a listening port is refused too.
    let port = echo_service().await;
    let resp = agent
        .http
        .get(agent.url(&format!("/tunnels/tcp?port={port}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
}

//! The cutting proxy of the end-to-end harness, against a tiny echo server: bytes go through
//! both ways, `cut_all` ends every open connection (and only those), new connections work
//! afterwards, half-closes pass through, and dropping the proxy ends everything. No binary is
//! built or started here.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::proxy::CuttingProxy;
use support::{TIMEOUT, wait_until};

/// An echo server on a free loopback port: every connection gets back what it sends, and is
/// half-closed once its client half-closed. Its threads end with the test process.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let addr = listener.local_addr().expect("the echo server's address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let Ok(mut reader) = stream.try_clone() else {
                    return;
                };
                let _ = io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A client of the proxy; every read is bounded.
fn connect(proxy: &CuttingProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set a read timeout");
    stream
}

/// Sends `message` and reads it back.
fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("write through the proxy");
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).expect("read the echo back");
    assert_eq!(back, message);
}

/// The peer ended the stream: a read gives end of file or an error, not a timeout.
fn assert_ended(stream: &mut TcpStream) {
    let mut byte = [0];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(n) => panic!("read {n} byte(s) from a stream that should have ended"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "the stream did not end within {TIMEOUT:?}"
        ),
    }
}

#[test]
fn echoes_cuts_and_accepts_again() {
    let proxy = CuttingProxy::start(echo_server());
    assert_eq!(
        proxy.url(),
        format!("http://127.0.0.1:{}", proxy.addr().port())
    );
    assert_eq!(proxy.accepted(), 0);
    assert_eq!(proxy.open(), 0);
    assert_eq!(proxy.cut_all(), 0);

    let mut first = connect(&proxy);
    echo(&mut first, b"hello");
    echo(&mut first, b"again");
    // The echo came back through the proxy: it accepted the connection.
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.open(), 1);

    assert_eq!(proxy.cut_all(), 1);
    assert_ended(&mut first);
    assert_eq!(proxy.open(), 0);
    assert_eq!(proxy.cut_all(), 0, "nothing is left to cut");

    let mut second = connect(&proxy);
    echo(&mut second, b"after the cut");
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(proxy.open(), 1);
}

#[test]
fn cuts_every_open_connection() {
    let proxy = CuttingProxy::start(echo_server());
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(&proxy)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo(client, format!("client {i}").as_bytes());
    }
    assert_eq!((proxy.accepted(), proxy.open()), (3, 3));

    assert_eq!(proxy.cut_all(), 3);
    for client in &mut clients {
        assert_ended(client);
    }
    assert_eq!((proxy.accepted(), proxy.open()), (3, 0));
}

#[test]
fn carries_a_large_transfer_both_ways() {
    let proxy = CuttingProxy::start(echo_server());
    let mut client = connect(&proxy);
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    // Written while the echo is read, or both sides' buffers fill up and everything stalls.
    let writer = thread::spawn({
        let mut client = client.try_clone().expect("clone the client");
        let data = data.clone();
        move || {
            client.write_all(&data).expect("write through the proxy");
            client.shutdown(Shutdown::Write).expect("half-close");
        }
    });
    let mut back = Vec::with_capacity(data.len());
    client.read_to_end(&mut back).expect("read the echo back");
    writer.join().expect("the writer");
    assert!(back == data, "{} bytes came back, not the same", back.len());
}

#[test]
fn passes_half_closes_on_and_forgets_ended_connections() {
    let proxy = CuttingProxy::start(echo_server());
    let mut client = connect(&proxy);
    client.write_all(b"last words").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    // The echo server only ends its side once the half-close reached it.
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("read to the end");
    assert_eq!(back, b"last words");
    wait_until("the proxy to forget the ended connection", TIMEOUT, || {
        (proxy.open() == 0).then_some(())
    });
    assert_eq!(proxy.cut_all(), 0);
    assert_eq!(proxy.accepted(), 1);
}

#[test]
fn drop_ends_every_connection_promptly() {
    let proxy = CuttingProxy::start(echo_server());
    let mut idle = connect(&proxy);
    echo(&mut idle, b"ping");
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "dropping the proxy took {:?}",
        started.elapsed()
    );
    assert_ended(&mut idle);
}

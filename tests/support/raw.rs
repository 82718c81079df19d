//! Raw HTTP/1.1 over TCP, for requests no client library would send (smuggling attempts,
//! escaping paths, absolute-form targets).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `request` in one write and returns the first response's status line.
pub fn status_line(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    read_status(&mut s)
}

pub fn read_status(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).trim_end().to_owned()
}

/// The status line of every response on one connection, until the server closes it.
pub fn all_responses(addr: SocketAddr, request: &[u8]) -> Vec<String> {
    // Status lines: bodies here are short JSON without "HTTP/1.1 " in them, and a status line
    // can follow a body directly, so search rather than split by lines.
    let text = whole(addr, request);
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| text[i..].lines().next().unwrap_or("").to_owned())
        .collect()
}

/// Sends `request` (which should say `Connection: close`) and returns the whole answer.
pub fn whole(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

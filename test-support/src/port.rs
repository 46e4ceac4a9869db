//! Free loopback ports for the processes the tests start (`redis-server`, `cart-service`,
//! `jaeger`), which must be told a port up front instead of binding port 0.

use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// A port that was free a moment ago, and that this test process has not handed out
/// before: the kernel can give a port just released by one `free_port` to the next, and
/// two parallel tests' processes then race to bind it.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("find a free port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

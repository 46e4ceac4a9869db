//! Write coalescing for the multiplexed Redis connection.
//!
//! redis-rs's connection task writes to the socket as soon as its queue is empty. Tokio
//! runs a task that was just woken next (the LIFO slot), so under load that task ran after
//! every single handler had queued its command, and each command went out in a write of its
//! own: one system call in the service, one read, one reply write and one event-loop turn
//! in Redis, per command. [`Coalescing`] holds a flush back once, by waking its own task
//! and yielding: tokio puts a self-woken task at the back of the run queue, so every
//! handler already runnable queues its command first, and they leave in one write. Redis
//! then reads them together and answers them together. With a single request in flight the
//! cost is one extra poll of the connection task, not a timer: nothing waits for a deadline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write goes out without waiting for the flush.
const MAX_HELD: usize = 64 * 1024;

/// A stream whose writes are held until a flush that has yielded once.
#[derive(Debug)]
pub struct Coalescing<S> {
    inner: S,
    held: Vec<u8>,
    written: usize,
    yielded: bool,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            held: Vec::with_capacity(4096),
            written: 0,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Writes everything held to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.held.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() >= MAX_HELD {
            ready!(this.poll_drain(cx))?;
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn writes_leave_together_on_the_flush_after_a_yield() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut stream = Coalescing::new(client);
        stream.write_all(b"one ").await.unwrap();
        stream.write_all(b"two").await.unwrap();
        let mut probe = [0u8; 16];
        let nothing_yet = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            server.read(&mut probe),
        )
        .await;
        assert!(nothing_yet.is_err(), "bytes went out before the flush");

        stream.flush().await.unwrap();
        let n = server.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"one two");
    }

    #[tokio::test]
    async fn the_first_flush_yields_once_then_writes() {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let mut stream = Coalescing::new(client);
        stream.write_all(b"x").await.unwrap();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
        let mut probe = [0u8; 4];
        assert_eq!(server.read(&mut probe).await.unwrap(), 1);
        // Nothing held: a flush completes at once.
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_full_buffer_goes_out_without_a_flush() {
        let (client, mut server) = tokio::io::duplex(4 * MAX_HELD);
        let mut stream = Coalescing::new(client);
        stream.write_all(&vec![7u8; MAX_HELD]).await.unwrap();
        stream.write_all(b"more").await.unwrap();
        let mut received = vec![0u8; MAX_HELD];
        server.read_exact(&mut received).await.unwrap();
        assert!(received.iter().all(|&b| b == 7));
    }
}

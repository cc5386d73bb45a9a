//! Each frame's arrival time: the kernel stamps every segment a client socket receives
//! (`SO_TIMESTAMPNS`), and the worker reads frames with `recvmsg` to get the stamp with
//! the bytes.

use std::os::fd::{AsRawFd, RawFd};

/// Asks the kernel to stamp every segment this socket receives with the time it was
/// queued on it (`SO_TIMESTAMPNS`, wall clock, as the publish times are). On loopback
/// that is the moment of the gateway's write: the time a frame reaches the client,
/// apart from when this process, which shares the gateway's cores, gets to read it.
pub(super) fn stamp_arrivals(stream: &tokio::net::TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open for the stream's lifetime; the option value is a
    // live c_int of the size passed.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "bench worker: SO_TIMESTAMPNS not set: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// `read`, returning also the kernel's receive time (µs since the epoch) of the last
/// segment it took, when the socket has [`stamp_arrivals`] on.
pub(super) async fn read_stamped(
    stream: &tokio::net::TcpStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<u64>)> {
    use std::io::ErrorKind::WouldBlock;
    let len = buf.len();
    loop {
        stream.readable().await?;
        let mut drained = None;
        let r = stream.try_io(tokio::io::Interest::READABLE, || {
            match recv_stamped(stream.as_raw_fd(), buf) {
                // A read that did not fill the buffer emptied the socket. Answering
                // WouldBlock makes tokio clear the socket's readiness, as its own `read`
                // does after a short read, instead of this task paying one more
                // `recvmsg` per frame only to be told EAGAIN.
                Ok((n, stamp)) if n > 0 && n < len => {
                    drained = Some((n, stamp));
                    Err(WouldBlock.into())
                }
                r => r,
            }
        });
        match (r, drained) {
            (_, Some(read)) => return Ok(read),
            (Err(e), None) if e.kind() == WouldBlock => continue,
            (r, None) => return r,
        }
    }
}

/// One `recvmsg` into `buf`, with the `SCM_TIMESTAMPNS` control message parsed.
fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timespec control message, aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid empty one; the fields set below point at
    // `iov` and `control`, which outlive the call, with their true lengths. CMSG_* walk
    // only the `msg_controllen` bytes the kernel filled, and the timestamp is read
    // unaligned from inside them.
    #[allow(unsafe_code)]
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, stamp))
    }
}

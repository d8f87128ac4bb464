//! The kernel's socket receive stamps (Linux): turning them on for a TCP
//! socket and reading with them. The client's transport times arrivals by
//! them; the bench's exact-timing server (`fleetbench-testkit`'s lean
//! server) times requests by them.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as nanoseconds of `CLOCK_REALTIME` (the clock of the stamps).
pub fn realtime_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// How long ago a stamp was taken: `None` for no stamp (0), one in the
/// future, or one older than `max` (the wall clock was stepped since, so
/// its age is not to be believed).
pub fn age(stamp: i64, max: Duration) -> Option<Duration> {
    if stamp == 0 {
        return None;
    }
    let ago = Duration::from_nanos(u64::try_from(realtime_ns().checked_sub(stamp)?).ok()?);
    (ago <= max).then_some(ago)
}

/// Turns on `SO_TIMESTAMPNS`: from now on each read by [`recv`] returns
/// when the kernel received its last segment.
#[cfg(target_os = "linux")]
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, a c_int option of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One non-blocking `recvmsg` into `dst`: the bytes read, and the receive
/// stamp (`CLOCK_REALTIME` ns) of the last segment among them if the kernel
/// gave one. `WouldBlock` when nothing is there.
#[cfg(target_os = "linux")]
pub fn recv(socket: &impl AsRawFd, dst: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the descriptor is an open socket; msg points at live buffers.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into
    // `control`, as CMSG_FIRSTHDR/CMSG_NXTHDR bound them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, stamp))
}

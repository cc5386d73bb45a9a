//! The process's open-file limit. Every WebSocket connection is an open file, so under a
//! desktop's usual soft limit of 1,024 a gateway would fail its accepts (EMFILE) past about
//! a thousand connections while `--max-connections` allows 10,000, and new clients would
//! wait in the kernel's backlog. At start the gateway raises its soft limit to the hard one
//! (as Go's runtime does for every program), and logs a limit still short of
//! `--max-connections` ([`shortfall`]).

use std::io;

/// Open files the gateway keeps besides its WebSocket connections, with room to spare:
/// its listeners and runtime, the Redis connections, publishers' HTTP connections and
/// metrics scrapes.
pub const RESERVE: u64 = 256;

/// An open-file limit (`RLIMIT_NOFILE`); `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// The process's current limit.
#[allow(unsafe_code)]
pub fn current() -> io::Result<FileLimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `r`, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileLimit {
        soft: r.rlim_cur,
        hard: r.rlim_max,
    })
}

/// Raises the soft limit to the hard one (not when the hard one is unlimited: the kernel
/// caps open files at `fs.nr_open` anyway). Returns the limit before and after.
#[allow(unsafe_code)]
pub fn raise() -> io::Result<(FileLimit, FileLimit)> {
    let before = current()?;
    if before.soft < before.hard && before.hard != libc::RLIM_INFINITY {
        let r = libc::rlimit {
            rlim_cur: before.hard,
            rlim_max: before.hard,
        };
        // SAFETY: setrlimit only reads `r`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, current()?))
}

/// `None` when `max_connections` connections and [`RESERVE`] fit in `limit`'s soft limit;
/// else `Some(n)`, the connections that do fit.
pub fn shortfall(max_connections: usize, limit: FileLimit) -> Option<u64> {
    let need = (max_connections as u64).saturating_add(RESERVE);
    (limit.soft != libc::RLIM_INFINITY && need > limit.soft)
        .then(|| limit.soft.saturating_sub(RESERVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_beside_the_reserve() {
        let lim = |soft| FileLimit { soft, hard: soft };
        assert_eq!(shortfall(19_000, lim(20_000)), None, "the bench's gateways");
        assert_eq!(shortfall(19_744, lim(20_000)), None);
        assert_eq!(shortfall(19_745, lim(20_000)), Some(19_744));
        assert_eq!(
            shortfall(10_000, lim(1_024)),
            Some(768),
            "a desktop's soft limit"
        );
        assert_eq!(shortfall(10_000, lim(200)), Some(0));
        assert_eq!(shortfall(1_000_000, lim(libc::RLIM_INFINITY)), None);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let (before, after) = raise().expect("getrlimit");
        assert_eq!(after.hard, before.hard, "the hard limit never moves");
        if before.hard != libc::RLIM_INFINITY {
            assert_eq!(after.soft, before.hard);
        }
        assert_eq!(current().expect("getrlimit"), after);
    }
}

//! A future wrapper that answers the wrapped future's wake-ups of itself, made while it is
//! being polled, by polling it again at once instead of going through the scheduler.
//!
//! Why: hyper's HTTP/1 connection task wakes itself once per request with a body (its body
//! channel wakes the connection's waker when the handler takes the chunk, and the handler
//! runs inside that same task). Tokio treats a task that wakes itself as yielding: it goes
//! to the back of the run queue and an idle worker thread is woken to steal it: two futex
//! calls and a second thread's wake-up per `POST /api/publish`, ~40 % of the request's
//! gateway CPU on a 2-core VM (`bench/http_cost.py`, docs/PERFORMANCE.md). Wrapped, the
//! wake is noted and the connection is polled once more on the spot.
//!
//! A wake from elsewhere (a socket, a timer, another task) while the future is not being
//! polled goes straight to the task's own waker, as without the wrapper. A future that
//! keeps waking itself is re-polled at most [`REPOLLS`] times, then yields to the scheduler
//! like any other task, so it cannot starve its neighbours.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Re-polls per scheduler poll before a self-waking future yields for real.
pub const REPOLLS: usize = 4;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            match s {
                // Being polled (on this thread or another): the poller polls again.
                POLLING => match self.state.compare_exchange_weak(
                    POLLING,
                    WOKEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(now) => s = now,
                },
                WOKEN => return,
                _ => {
                    self.task.wake();
                    return;
                }
            }
        }
    }
}

/// `fut`, re-polled on the spot when it wakes itself during a poll.
pub fn absorb_self_wakes<F: Future>(fut: F) -> AbsorbSelfWakes<F> {
    let shared = Arc::new(Shared {
        state: AtomicU8::new(IDLE),
        task: AtomicWaker::new(),
    });
    AbsorbSelfWakes {
        waker: Waker::from(shared.clone()),
        shared,
        fut: Box::pin(fut),
    }
}

/// See [`absorb_self_wakes`].
pub struct AbsorbSelfWakes<F> {
    shared: Arc<Shared>,
    waker: Waker,
    // Boxed so the wrapper is `Unpin` whatever `F` is.
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for AbsorbSelfWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.shared.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..=REPOLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = this.fut.as_mut().poll(&mut inner) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Nothing woke it meanwhile: a later wake goes to the task's waker.
                return Poll::Pending;
            }
        }
        // Still waking itself: yield through the scheduler (fairness).
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes its task's waker receives.
    struct CountWaker(AtomicUsize);
    impl Wake for CountWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn count_waker() -> (Arc<CountWaker>, Waker) {
        let c = Arc::new(CountWaker(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// Wakes itself during the first `n` polls, then completes.
    struct SelfWaking {
        left: usize,
        polls: Arc<AtomicUsize>,
    }
    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_self_wake_is_a_repoll_not_a_schedule() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = absorb_self_wakes(SelfWaking {
            left: 2,
            polls: polls.clone(),
        });
        let (count, waker) = count_waker();
        let r = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert!(r.is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "no wake went to the task"
        );
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_after_the_budget() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut f = absorb_self_wakes(SelfWaking {
            left: usize::MAX,
            polls: polls.clone(),
        });
        let (count, waker) = count_waker();
        let r = Pin::new(&mut f).poll(&mut Context::from_waker(&waker));
        assert!(r.is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), REPOLLS + 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is rescheduled");
    }

    #[tokio::test]
    async fn a_wake_from_elsewhere_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let waiter = tokio::spawn(absorb_self_wakes(rx));
        // Let the waiter park on the channel first, then wake it from this task.
        tokio::task::yield_now().await;
        tx.send(7).expect("receiver alive");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(got.ok(), Some(7));
    }
}

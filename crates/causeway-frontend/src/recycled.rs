//! A future run in a heap block recycled per thread. A unit of work is too
//! large to carry in every idle client's task, and a fresh allocation per
//! transaction showed in the profile (malloc and free ~1% of the CPU).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Blocks kept per thread; more are freed.
const KEEP: usize = 64;

struct FreeList(Vec<(Layout, NonNull<u8>)>);

impl Drop for FreeList {
    fn drop(&mut self) {
        for (layout, block) in self.0.drain(..) {
            // SAFETY: allocated with this layout by `Recycled::new`.
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static FREE: RefCell<FreeList> = const { RefCell::new(FreeList(Vec::new())) };
}

/// Owns an `F` in a block of its own, like `Pin<Box<F>>`.
pub struct Recycled<F> {
    ptr: NonNull<F>,
}

// SAFETY: it owns its F (as a Box does); nothing is shared.
unsafe impl<F: Send> Send for Recycled<F> {}

impl<F: Future> Recycled<F> {
    #[cfg(test)]
    pub fn new(f: F) -> Self {
        Self::new_with(|| f)
    }

    /// The future `make` returns, made in its block: a unit of work's
    /// future is kilobytes, mostly the state of awaits not yet begun, and
    /// made elsewhere it would be copied in whole.
    #[inline(always)]
    pub fn new_with(make: impl FnOnce() -> F) -> Self {
        let layout = Layout::new::<F>();
        assert!(layout.size() > 0, "Recycled is for futures with state");
        let kept = FREE
            .try_with(|l| {
                let mut l = l.borrow_mut();
                let i = l.0.iter().rposition(|(lay, _)| *lay == layout)?;
                Some(l.0.swap_remove(i).1)
            })
            .ok()
            .flatten();
        let block = kept.unwrap_or_else(|| {
            // SAFETY: the layout's size is not zero (asserted above).
            NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout))
        });
        let ptr = block.cast::<F>();
        // SAFETY: the block is unused, and sized and aligned for an F.
        unsafe { ptr.as_ptr().write(make()) };
        Recycled { ptr }
    }
}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the F stays in its block until it is dropped: pinned.
        unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) }.poll(cx)
    }
}

impl<F> Drop for Recycled<F> {
    fn drop(&mut self) {
        let layout = Layout::new::<F>();
        let block = self.ptr.cast::<u8>();
        // SAFETY: the F was written by `new` and is dropped once, here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        let kept = FREE
            .try_with(|l| {
                let mut l = l.borrow_mut();
                if l.0.len() < KEEP {
                    l.0.push((layout, block));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated with this layout by `new`.
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A unit's state: a drop counter and some bulk.
    struct Counted {
        _alive: Rc<()>,
        bulk: [u8; 256],
    }

    async fn unit(c: Counted) -> usize {
        tokio::task::yield_now().await;
        c.bulk.len()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_block_is_reused_and_the_future_dropped() {
        let token = Rc::new(());
        let f = Recycled::new(unit(Counted {
            _alive: token.clone(),
            bulk: [0; 256],
        }));
        let first = f.ptr.cast::<u8>();
        assert_eq!(f.await, 256);
        assert_eq!(
            Rc::strong_count(&token),
            1,
            "the finished future was dropped"
        );
        // Dropped before it finished: its state is dropped too.
        let f = Recycled::new(unit(Counted {
            _alive: token.clone(),
            bulk: [0; 256],
        }));
        assert_eq!(f.ptr.cast::<u8>(), first, "the same block again");
        drop(f);
        assert_eq!(Rc::strong_count(&token), 1);
    }
}

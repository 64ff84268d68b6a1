//! A LIFO stack that lives on the call stack until it outgrows a fixed size.

/// Work list for the iterative tree walks.
///
/// The walks are iterative rather than recursive so that a very deep filter (65535 bytes of
/// `/` is 65536 levels) cannot overflow the thread's stack. Keeping the first `N` frames in an
/// array means the common case (topics of a handful of levels) never touches the allocator,
/// which matters on the PUBLISH hot path; only deeper walks spill into the `Vec`.
pub(crate) struct InlineStack<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> InlineStack<T, N> {
    /// An empty stack; `filler` only initialises the unused array slots (no `Default` bound,
    /// since the frames hold references).
    #[inline]
    pub(crate) fn new(filler: T) -> Self {
        Self {
            inline: [filler; N],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Pushes onto the array while it has room, otherwise onto the spill `Vec`. Because
    /// [`Self::pop`] drains the spill first, the array stays full while the spill is non-empty
    /// and the order stays LIFO.
    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        } else {
            self.spill.push(item);
        }
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.spill.pop() {
            return Some(item);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::InlineStack;

    #[test]
    fn lifo_across_spill() {
        let mut s: InlineStack<u32, 3> = InlineStack::new(7);
        assert_eq!(s.pop(), None);
        for i in 0..10 {
            s.push(i);
        }
        let mut out = Vec::new();
        while let Some(i) = s.pop() {
            out.push(i);
            if i == 5 {
                s.push(100);
            }
        }
        assert_eq!(out, vec![9, 8, 7, 6, 5, 100, 4, 3, 2, 1, 0]);
    }
}

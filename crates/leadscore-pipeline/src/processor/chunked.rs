//! A vector in fixed-size chunks: growing it never moves what it holds.
//!
//! The state cache keeps every lead's slot (a few hundred bytes) in one
//! sequence. As a `Vec`, each doubling copied every slot into fresh pages
//! (about a twentieth of the offline scorer's steps' thread on 100k leads,
//! the copy and the page faults together). Here, past the first chunk, a new
//! chunk is allocated at its full size and nothing already held moves. The
//! first chunk grows by doubling, so a small working set stays small.

/// log2 of the slots per chunk.
const SHIFT: u32 = 10;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

/// See the module documentation. Indexes are as in a `Vec`.
pub(super) struct Chunked<T> {
    /// Every chunk but the last is full.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Chunked<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        (i < self.len).then(|| &self.chunks[i >> SHIFT][i & MASK])
    }

    pub(super) fn at(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & MASK]
    }

    pub(super) fn at_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & MASK]
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len & MASK == 0 && self.len >> SHIFT == self.chunks.len() {
            // The first chunk starts empty and doubles up to CHUNK; later
            // ones are allocated whole.
            self.chunks.push(if self.chunks.is_empty() { Vec::new() } else { Vec::with_capacity(CHUNK) });
        }
        self.chunks.last_mut().expect("a chunk with room").push(value);
        self.len += 1;
    }

    /// Removes element `i`; the last element takes its place.
    pub(super) fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "index {i} beyond {}", self.len);
        let last = self.chunks.last_mut().expect("not empty").pop().expect("the last chunk is not empty");
        if self.chunks.last().is_some_and(Vec::is_empty) && self.chunks.len() > 1 {
            self.chunks.pop();
        }
        self.len -= 1;
        if i == self.len {
            last
        } else {
            std::mem::replace(self.at_mut(i), last)
        }
    }

    /// Keeps only the elements `keep` accepts, in order.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let old = std::mem::take(self);
        for v in old.into_iter() {
            if keep(&v) {
                self.push(v);
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    pub(super) fn into_iter(self) -> impl Iterator<Item = T> {
        self.chunks.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of pushes, swap-removals and retains leaves the same
        /// elements at the same indexes as a `Vec` given the same sequence.
        #[test]
        fn behaves_as_a_vec(ops in prop::collection::vec((0u8..8, 0usize..5000), 0..3000)) {
            let (mut chunked, mut vec) = (Chunked::default(), Vec::new());
            for (n, (op, arg)) in ops.into_iter().enumerate() {
                match op {
                    0 if !vec.is_empty() => {
                        let i = arg % vec.len();
                        prop_assert_eq!(chunked.swap_remove(i), vec.swap_remove(i));
                    }
                    1 if arg == 0 => {
                        chunked.retain(|v| v % 3 != 0);
                        vec.retain(|v| v % 3 != 0);
                    }
                    _ => {
                        chunked.push(n);
                        vec.push(n);
                    }
                }
                prop_assert_eq!(chunked.len(), vec.len());
                prop_assert_eq!(chunked.get(vec.len()), None);
            }
            prop_assert!(chunked.iter().eq(vec.iter()));
            for (i, v) in vec.iter().enumerate() {
                prop_assert_eq!(chunked.at(i), v);
            }
            prop_assert!(chunked.into_iter().eq(vec.into_iter()));
        }
    }
}

//! A reader that turns fuzzer bytes into structured choices; once the
//! bytes run out every read gives zero, so any input decodes to something.

/// Consumes fuzzer bytes front to back.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// `true` when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::from(self.u8()) % n
        }
    }

    /// One of `items` (`None` when empty).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        let i = self.below(items.len());
        items.get(i)
    }

    /// A slice whose length is the next byte (capped by what is left).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_give_zero() {
        let mut b = Bytes::new(&[3, b'a', b'b', b'c', 7]);
        assert_eq!(b.chunk(), b"abc");
        assert_eq!(b.u8(), 7);
        assert!(b.is_empty());
        assert_eq!(b.u8(), 0);
        assert_eq!(b.chunk(), b"");
        assert_eq!(b.pick::<u8>(&[]), None);
    }
}

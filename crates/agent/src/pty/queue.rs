//! Terminal output that no client has received yet: a byte queue that can be cut down to a
//! bound from the oldest end.
//!
//! Terminal output is a byte stream, not lines: chunks are kept as read and merged into one
//! frame when sent. Cutting may split an escape sequence or a UTF-8 character; the terminal
//! on the client side recovers from that at the next one.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Output waiting for a client, oldest first.
#[derive(Debug, Default)]
pub struct OutputQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
    dropped: u64,
}

impl OutputQueue {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes dropped by [`trim_to`](Self::trim_to) so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends a chunk at the newest end.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Puts a chunk back at the oldest end (it was taken but could not be delivered).
    pub fn push_front(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_front(chunk);
        }
    }

    /// Takes up to `max` bytes from the oldest end, merged into one chunk; `None` when empty.
    pub fn pop(&mut self, max: usize) -> Option<Bytes> {
        let mut first = self.chunks.pop_front()?;
        let out = if first.len() > max {
            let head = first.split_to(max);
            self.chunks.push_front(first);
            head
        } else if self
            .chunks
            .front()
            .is_none_or(|next| first.len() + next.len() > max)
        {
            // Nothing more fits: hand the chunk over without copying.
            first
        } else {
            let mut merged = BytesMut::with_capacity(max.min(self.len));
            merged.extend_from_slice(&first);
            while let Some(next) = self.chunks.front_mut() {
                let room = max - merged.len();
                if room == 0 {
                    break;
                }
                if next.len() <= room {
                    merged.extend_from_slice(next);
                    self.chunks.pop_front();
                } else {
                    merged.extend_from_slice(&next.split_to(room));
                }
            }
            merged.freeze()
        };
        self.len -= out.len();
        Some(out)
    }

    /// Drops the oldest bytes until at most `limit` remain.
    pub fn trim_to(&mut self, limit: usize) {
        while self.len > limit {
            let excess = self.len - limit;
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let cut = excess.min(front.len());
            front.advance(cut);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            self.len -= cut;
            self.dropped += cut as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(chunks: &[&'static [u8]]) -> OutputQueue {
        let mut queue = OutputQueue::default();
        for chunk in chunks {
            queue.push(Bytes::from_static(chunk));
        }
        queue
    }

    #[test]
    fn pop_merges_chunks_up_to_the_limit() {
        let mut q = queue(&[b"abc", b"de", b"fghij"]);
        assert_eq!(q.len(), 10);
        assert_eq!(q.pop(7).as_deref(), Some(&b"abcdefg"[..]));
        assert_eq!(q.pop(7).as_deref(), Some(&b"hij"[..]));
        assert_eq!(q.pop(7), None);
        assert!(q.is_empty());
    }

    #[test]
    fn pop_splits_a_chunk_larger_than_the_limit() {
        let mut q = queue(&[b"abcdef"]);
        assert_eq!(q.pop(4).as_deref(), Some(&b"abcd"[..]));
        q.push_front(Bytes::from_static(b"xy"));
        assert_eq!(q.pop(100).as_deref(), Some(&b"xyef"[..]));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn trim_drops_the_oldest_bytes() {
        let mut q = queue(&[b"0123", b"4567", b"89"]);
        q.trim_to(5);
        assert_eq!(q.len(), 5);
        assert_eq!(q.dropped(), 5);
        assert_eq!(q.pop(100).as_deref(), Some(&b"56789"[..]));
        q.trim_to(0);
        assert!(q.is_empty());
    }
}

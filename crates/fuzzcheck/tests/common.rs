//! Strategies shared by the short-form tests.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;

/// One edit of a seed.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flips one bit.
    Flip(Index, u8),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes up to n bytes.
    Delete(Index, usize),
    /// Repeats up to n bytes in place.
    Repeat(Index, usize),
    /// Puts a dictionary token.
    Token(Index, Index),
}

/// Applies `edits` to `seed`, tokens from `dict`.
pub fn apply(mut data: Vec<u8>, edits: &[Edit], dict: &[&[u8]]) -> Vec<u8> {
    for e in edits {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match e {
            Edit::Flip(i, bit) => {
                if !data.is_empty() {
                    let k = i.index(data.len());
                    data[k] ^= 1 << (bit % 8);
                }
            }
            Edit::Insert(i, bytes) => {
                let k = at(i, data.len());
                data.splice(k..k, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let k = at(i, data.len());
                let end = (k + n).min(data.len());
                data.drain(k..end);
            }
            Edit::Repeat(i, n) => {
                let k = at(i, data.len());
                let end = (k + n).min(data.len());
                let copy = data[k..end].to_vec();
                data.splice(k..k, copy);
            }
            Edit::Token(i, t) => {
                if !dict.is_empty() {
                    let k = at(i, data.len());
                    let tok = dict[t.index(dict.len())];
                    data.splice(k..k, tok.iter().copied());
                }
            }
        }
    }
    data
}

/// Up to `max` edits.
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), 1usize..32).prop_map(|(i, n)| Edit::Repeat(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Edit::Token(i, t)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Edit::Token(i, t)),
    ];
    proptest::collection::vec(edit, 1..=max)
}

/// A seed from `seeds`, with up to `max` edits.
pub fn mutated(
    seeds: Vec<Vec<u8>>,
    dict: &'static [&'static [u8]],
    max: usize,
) -> impl Strategy<Value = Vec<u8>> {
    (proptest::sample::select(seeds), edits(max)).prop_map(move |(s, e)| apply(s, &e, dict))
}

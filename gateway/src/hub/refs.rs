//! The node's channel refcount: which shards index each channel. Its 0↔1 transitions
//! are what the bus subscribes and unsubscribes; a flush goes to the shards it names.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use super::{lock, Channel};

/// Fleet-wide channel refcount on this node: how many shards index each channel.
/// Its 0↔1 transitions are what the bus subscribes and unsubscribes.
pub(super) struct ChannelRefs {
    /// Per channel: the shards whose index holds it, each with the number of times it
    /// became indexed there and was not yet removed (0↔1 transitions of a shard's index
    /// are counted, not asserted, so an activation and a removal of the same shard that
    /// race each other still add up).
    parts: Box<[Mutex<ShardRefs>]>,
    hasher: RandomState,
}

/// Channel → (shard, activations not yet undone) for every shard that indexes it.
type ShardRefs = HashMap<Channel, Vec<(usize, u32)>>;

impl ChannelRefs {
    pub(super) fn new(parts: usize) -> Self {
        ChannelRefs {
            parts: (0..parts).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn part(&self, ch: &str) -> MutexGuard<'_, ShardRefs> {
        let i = self.hasher.hash_one(ch) as usize % self.parts.len();
        lock(&self.parts[i])
    }

    /// `shard` indexes the channel now. Returns true when the channel just became active
    /// on this node.
    pub(super) fn incr(&self, ch: &Channel, shard: usize) -> bool {
        let mut p = self.part(ch);
        let shards = p.entry(ch.clone()).or_default();
        let first = shards.is_empty();
        match shards.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, n)) => *n += 1,
            None => shards.push((shard, 1)),
        }
        first
    }

    /// `shard` no longer indexes the channel. Returns true when the channel just became
    /// inactive on this node.
    pub(super) fn decr(&self, ch: &Channel, shard: usize) -> bool {
        let mut p = self.part(ch);
        let Entry::Occupied(mut e) = p.entry(ch.clone()) else {
            return false;
        };
        let shards = e.get_mut();
        if let Some(i) = shards.iter().position(|(s, _)| *s == shard) {
            shards[i].1 -= 1;
            if shards[i].1 == 0 {
                shards.swap_remove(i);
            }
        }
        if shards.is_empty() {
            e.remove();
            true
        } else {
            false
        }
    }

    pub(super) fn contains(&self, ch: &str) -> bool {
        self.part(ch).contains_key(ch)
    }

    /// The shards that have subscribers of `ch`.
    pub(super) fn shards_of(&self, ch: &str) -> Vec<usize> {
        self.part(ch)
            .get(ch)
            .map(|v| v.iter().map(|(s, _)| *s).collect())
            .unwrap_or_default()
    }

    pub(super) fn all(&self) -> Vec<Channel> {
        self.parts
            .iter()
            .flat_map(|p| lock(p).keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}

//! [`RetainedTree`]: the retained message of each topic, searchable by filter.

use super::FastMap as HashMap;
use std::fmt;

use super::matching::split_level;
use super::stack::InlineStack;
use super::{TopicFilter, TopicName};

/// Frames kept on the call stack by [`RetainedTree::for_each_matching`] before it spills.
/// Wildcard walks push a frame per child, so they spill more readily than the subscription
/// trie; that is acceptable as they run once per SUBSCRIBE, not per PUBLISH.
const INLINE_FRAMES: usize = 32;

/// One level of the tree; the literal level is the key in the parent's map.
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    /// The retained message of the topic ending here, with its full name so a filter walk
    /// can report the topic without rebuilding it from the levels.
    value: Option<(TopicName, V)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::default(),
            value: None,
        }
    }
}

impl<V> Node<V> {
    /// Moves the child nodes out into `out`, so that dropping `self` does not recurse.
    fn take_children(&mut self, out: &mut Vec<Node<V>>) {
        out.extend(self.children.drain().map(|(_, child)| child));
    }

    fn visit(&self, f: &mut impl FnMut(&str, &V)) {
        if let Some((topic, v)) = &self.value {
            f(topic.as_str(), v);
        }
    }
}

/// A frame of the filter walk in [`RetainedTree::for_each_matching`].
enum Frame<'a, V> {
    /// `node` was reached by the filter's levels so far; `rest` is what remains of the
    /// filter (`None`: the filter ends at `node`).
    Follow(&'a Node<V>, Option<&'a str>),
    /// Everything at and below `node` matches (reached through `#`).
    Subtree(&'a Node<V>),
}

// Manual impls: derived ones would needlessly require `V: Copy`.
impl<V> Clone for Frame<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Frame<'_, V> {}

/// Topic name → retained message (at most one per topic, MQTT 5 §3.3.1.3), organised by level
/// so that a new subscription's filter finds its retained messages by walking only the
/// matching branches instead of scanning every retained topic.
///
/// Removing a topic frees the levels no other retained topic uses, so memory follows the
/// retained set. All walks, and dropping, are iterative, so topic depth is not limited by the
/// thread's stack.
///
/// The stored [`TopicName`] is a clone of the one passed to [`insert`](Self::insert): if it
/// points into a larger packet buffer, that buffer stays alive with it (the payload usually
/// does the same).
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedTree")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<V> Drop for RetainedTree<V> {
    /// Iterative teardown: the default recursive drop could overflow on a very deep topic.
    fn drop(&mut self) {
        let mut pending = Vec::new();
        self.root.take_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.take_children(&mut pending);
        }
    }
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Sets the retained message of `topic`, returning the previous one.
    ///
    /// (A PUBLISH with retain and an empty payload means "delete"; that is the caller's
    /// decision, expressed by calling [`remove`](Self::remove).)
    pub fn insert(&mut self, topic: &TopicName, v: V) -> Option<V> {
        // Lookup-only walk first: replacing an existing retained message (the common case for
        // a device re-publishing its state) then allocates nothing.
        let node = match self.node_mut(topic.as_str()) {
            Some(node) => node,
            None => self.node_or_create(topic.as_str()),
        };
        let old = node.value.replace((topic.clone(), v)).map(|(_, old)| old);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the retained message of `topic`, freeing levels no other topic uses.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let (_, old) = self.node_mut(topic)?.value.take()?;
        self.len -= 1;
        self.prune(topic);
        Some(old)
    }

    /// The retained message of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref().map(|(_, v)| v)
    }

    /// The retained message of exactly `topic`, mutably.
    pub fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.node_mut(topic)?.value.as_mut().map(|(_, v)| v)
    }

    /// Calls `f(topic, value)` for every retained topic that `filter` matches, with the same
    /// rules as [`filter_matches`](super::filter_matches): `+` is every child of a level, `#`
    /// the whole subtree including the level above it (`a/#` also delivers `a`), and a
    /// wildcard first level skips topics starting with `$` ([MQTT-4.7.2-1]).
    ///
    /// Visits happen in no particular order.
    pub fn for_each_matching(&self, filter: &TopicFilter, mut f: impl FnMut(&str, &V)) {
        let root = &self.root;
        let mut stack: InlineStack<Frame<'_, V>, INLINE_FRAMES> =
            InlineStack::new(Frame::Subtree(root));

        // The first level is handled here because only it has the `$` rule. The root itself
        // never holds a value (topics have at least one level).
        let (level, rest) = split_level(filter.as_str());
        let not_reserved = |name: &str| !name.starts_with('$');
        match level {
            "#" => root
                .children
                .iter()
                .filter(|(name, _)| not_reserved(name))
                .for_each(|(_, child)| stack.push(Frame::Subtree(child))),
            "+" => root
                .children
                .iter()
                .filter(|(name, _)| not_reserved(name))
                .for_each(|(_, child)| stack.push(Frame::Follow(child, rest))),
            literal => {
                if let Some(child) = root.children.get(literal) {
                    stack.push(Frame::Follow(child, rest));
                }
            }
        }

        while let Some(frame) = stack.pop() {
            match frame {
                Frame::Subtree(node) => {
                    node.visit(&mut f);
                    for child in node.children.values() {
                        stack.push(Frame::Subtree(child));
                    }
                }
                Frame::Follow(node, None) => node.visit(&mut f),
                Frame::Follow(node, Some(rest)) => {
                    let (level, rest) = split_level(rest);
                    match level {
                        "#" => {
                            // `x/#` matches `x` too.
                            node.visit(&mut f);
                            for child in node.children.values() {
                                stack.push(Frame::Subtree(child));
                            }
                        }
                        "+" => {
                            for child in node.children.values() {
                                stack.push(Frame::Follow(child, rest));
                            }
                        }
                        literal => {
                            if let Some(child) = node.children.get(literal) {
                                stack.push(Frame::Follow(child, rest));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The node of `topic` if it exists; allocation-free.
    fn node_mut(&mut self, topic: &str) -> Option<&mut Node<V>> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }

    /// The node of `topic`, creating the missing levels.
    fn node_or_create(&mut self, topic: &str) -> &mut Node<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        node
    }

    /// Frees the nodes on `topic`'s path that hold no value and lead to no other topic, after
    /// its value was taken. Two passes instead of recursion, as in the subscription trie.
    fn prune(&mut self, topic: &str) {
        let mut cut: Option<usize> = None;
        let mut node = &self.root;
        let mut levels = topic.split('/').peekable();
        let mut index = 0;
        while let Some(level) = levels.next() {
            let Some(next) = node.children.get(level) else {
                return;
            };
            node = next;
            index += 1;
            let allowed_children = if levels.peek().is_none() { 0 } else { 1 };
            let removable = node.value.is_none() && node.children.len() == allowed_children;
            match (removable, cut) {
                (false, _) => cut = None,
                (true, None) => cut = Some(index),
                (true, Some(_)) => {}
            }
        }
        let Some(cut) = cut else {
            return;
        };
        let mut parent = &mut self.root;
        let mut levels = topic.split('/');
        for _ in 1..cut {
            let Some(next) = levels
                .next()
                .and_then(|level| parent.children.get_mut(level))
            else {
                return;
            };
            parent = next;
        }
        if let Some(level) = levels.next() {
            if let Some(mut removed) = parent.children.remove(level) {
                let mut pending = Vec::new();
                removed.take_children(&mut pending);
                while let Some(mut n) = pending.pop() {
                    n.take_children(&mut pending);
                }
            }
            if parent.children.capacity() > 16
                && parent.children.len() * 4 < parent.children.capacity()
            {
                parent.children.shrink_to(parent.children.len() * 2);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node_count<V>(n: &Node<V>) -> usize {
        1 + n.children.values().map(node_count).sum::<usize>()
    }

    fn tn(s: &str) -> TopicName {
        TopicName::try_from(s).unwrap()
    }

    #[test]
    fn prune_keeps_shared_prefix() {
        let mut r = RetainedTree::new();
        r.insert(&tn("a/b/c"), 1);
        r.insert(&tn("a/x"), 2);
        r.insert(&tn("a"), 3);
        assert_eq!(node_count(&r.root), 1 + 4);
        assert_eq!(r.remove("a/b/c"), Some(1));
        assert_eq!(node_count(&r.root), 1 + 2);
        assert_eq!(r.remove("a"), Some(3));
        assert_eq!(node_count(&r.root), 1 + 2);
        assert_eq!(r.remove("a/x"), Some(2));
        assert_eq!(node_count(&r.root), 1);
        assert!(r.is_empty());
        assert_eq!(r.remove("a/x"), None);
    }

    proptest::proptest! {
        /// Removing every retained topic, in any order, leaves only the root.
        #[test]
        fn remove_all_leaves_only_root(
            topics in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec!["", "a", "b"]), 1..5),
                0..40),
            order in proptest::collection::vec(proptest::sample::select(vec![0usize, 1, 2]), 40),
        ) {
            let topics: Vec<TopicName> = topics
                .iter()
                .filter_map(|levels| TopicName::try_from(levels.join("/").as_str()).ok())
                .collect();
            let mut r = RetainedTree::new();
            for t in &topics {
                r.insert(t, ());
            }
            // Remove in an order that interleaves parents and children.
            let mut rest = topics.clone();
            for pick in order {
                if !rest.is_empty() {
                    let t = rest.remove(pick % rest.len());
                    r.remove(t.as_str());
                }
            }
            for t in rest {
                r.remove(t.as_str());
            }
            proptest::prop_assert!(r.is_empty());
            proptest::prop_assert_eq!(node_count(&r.root), 1);
        }
    }

    #[test]
    fn deep_topic_does_not_overflow_stack() {
        let deep = "/".repeat(65_534);
        let mut r = RetainedTree::new();
        r.insert(&tn(&deep), 1);
        let mut hits = 0;
        r.for_each_matching(&TopicFilter::try_from("#").unwrap(), |_, _| hits += 1);
        assert_eq!(hits, 1);
        r.insert(&tn(&format!("{deep}x")), 2);
        assert_eq!(r.remove(&deep), Some(1));
        drop(r);
    }
}

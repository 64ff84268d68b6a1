//! [`SubscriptionTrie`]: which subscriptions match a published topic.

use super::FastMap as HashMap;
use std::fmt;
use std::hash::Hash;

use super::matching::split_level;
use super::stack::InlineStack;
use super::TopicFilter;

/// Frames kept on the call stack by [`SubscriptionTrie::for_each_match`] before it spills to the
/// heap. A walk needs at most one frame per level plus one, so topics of up to ~30 levels never
/// allocate.
const INLINE_FRAMES: usize = 32;

/// One level of the trie.
///
/// Literal levels, `+` and `#` are kept apart so that matching a topic level is one hash
/// lookup plus one pointer check, never a scan of the siblings.
struct Node<K, V> {
    /// Children for literal levels (including the empty level of `a//b`). `Box<str>` keys are
    /// owned copies, so a subscription never keeps its SUBSCRIBE packet's buffer alive, and
    /// `Box<str>: Borrow<str>` lets a topic level be looked up without allocating.
    children: HashMap<Box<str>, Node<K, V>>,
    /// The child for a `+` level.
    plus: Option<Box<Node<K, V>>>,
    /// Entries whose filter ends at this node (`a/b` lives on the `b` node).
    exact: HashMap<K, V>,
    /// Entries whose filter is this node's path followed by `/#` (`a/#` lives on the `a` node,
    /// `#` on the root). Keeping them here rather than on a child is what makes `a/#` match
    /// `a` as well as everything below it.
    hash: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            children: HashMap::default(),
            plus: None,
            exact: HashMap::default(),
            hash: HashMap::default(),
        }
    }
}

impl<K, V> Node<K, V> {
    /// Number of child nodes, `+` included.
    fn child_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn has_entries(&self) -> bool {
        !self.exact.is_empty() || !self.hash.is_empty()
    }

    /// The child for one filter level (`+` or literal; never `#`).
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The child for one filter level, created if missing. Allocates the key even when the
    /// child exists, so it is only used once a lookup has shown that some node is missing.
    fn child_or_create(&mut self, level: &str) -> &mut Node<K, V> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.entry(Box::from(level)).or_default()
        }
    }

    /// Moves the child nodes out into `out`, so that dropping `self` does not recurse.
    fn take_children(&mut self, out: &mut Vec<Node<K, V>>) {
        out.extend(self.children.drain().map(|(_, child)| child));
        if let Some(plus) = self.plus.take() {
            out.push(*plus);
        }
    }
}

/// Shrinks a map that has become mostly empty, so that a filter that once had many subscribers
/// (or a node that once had many children) gives the memory back.
fn maybe_shrink<K: Eq + Hash, T>(map: &mut HashMap<K, T>) {
    if map.capacity() > 16 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// Maps topic filters to subscriptions: each filter holds any number of `(key, value)` entries
/// (typically key = client id, value = subscription options), and
/// [`for_each_match`](Self::for_each_match) finds every entry whose filter matches a topic.
///
/// Matching is the PUBLISH hot path, so it walks the topic lazily level by level, looks each
/// level up by `&str` and keeps its work list on the stack: it does not allocate for topics of
/// up to 31 levels, and costs O(levels × matching branches), independent of the number of
/// filters. All walks are iterative (as is dropping), so even a pathological 65536-level filter
/// cannot overflow the stack; brokers should still bound levels with
/// [`check_limits`](super::check_limits).
///
/// Entries of one filter are in a `HashMap<K, V>`, so a thousand subscribers on one topic are
/// O(1) each to insert and remove and are visited without touching the rest of the trie.
/// Removing the last entry of a filter prunes the nodes nobody else needs, so memory follows
/// the live subscriptions rather than their history.
///
/// Matches are visited in no particular order; a client with several matching filters is
/// visited once per filter (MQTT 5 lets the server deliver once or once per subscription, so
/// deduplication is left to the caller).
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    /// Number of entries.
    len: usize,
    /// Number of filters with at least one entry.
    filters: usize,
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
            filters: 0,
        }
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .field("filter_count", &self.filters)
            .finish_non_exhaustive()
    }
}

impl<K, V> Drop for SubscriptionTrie<K, V> {
    /// Tears the trie down with a work list instead of the default recursive drop, which a
    /// deep enough filter could turn into a stack overflow.
    fn drop(&mut self) {
        let mut pending = Vec::new();
        self.root.take_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.take_children(&mut pending);
        }
    }
}

impl<K: Eq + Hash, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of `(filter, key)` entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct filters that have at least one entry.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        // The old value goes through `Drop`, which is iterative.
        *self = Self::default();
    }

    /// Adds `key` with `value` to `filter`. If `key` was already on this exact filter its value
    /// is replaced and the old one returned (a re-SUBSCRIBE replaces the subscription,
    /// [MQTT-3.8.4-3]); the same key on other filters is unaffected.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        // Fast path, taken whenever the filter already has a node (e.g. the 1000th subscriber
        // of a topic): a lookup-only walk that allocates nothing.
        let entries = match self.entries_mut(filter) {
            Some(entries) => entries,
            None => self.entries_or_create(filter),
        };
        let was_empty = entries.is_empty();
        let old = entries.insert(key, value);
        if old.is_none() {
            self.len += 1;
            if was_empty {
                self.filters += 1;
            }
        }
        old
    }

    /// Removes `key` from `filter`, returning its value. When that was the filter's last entry,
    /// the nodes that no other filter uses are freed.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let entries = self.entries_mut(filter)?;
        let old = entries.remove(key)?;
        maybe_shrink(entries);
        let now_empty = entries.is_empty();
        self.len -= 1;
        if now_empty {
            self.filters -= 1;
            self.prune(filter);
        }
        Some(old)
    }

    /// The value of `key` on exactly `filter` (no wildcard matching).
    pub fn get(&self, filter: &TopicFilter, key: &K) -> Option<&V> {
        self.entries(filter)?.get(key)
    }

    /// The value of `key` on exactly `filter`, mutably (e.g. to change subscription options).
    pub fn get_mut(&mut self, filter: &TopicFilter, key: &K) -> Option<&mut V> {
        self.entries_mut(filter)?.get_mut(key)
    }

    /// Calls `f` for every entry whose filter matches `topic` (see
    /// [`filter_matches`](super::filter_matches) for the rules, including `$` topics not
    /// matching leading wildcards). `topic` should be a valid topic name; it is taken as
    /// `&str` so the caller can pass whatever it decoded without building a `TopicName`.
    ///
    /// Returns how many filters matched with at least one entry. A key appears at most once
    /// per filter, so with one filter matched no key was passed twice: a caller that merges
    /// a key's overlapping subscriptions need not look for repeats then.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) -> usize {
        let mut filters = 0;
        let mut visit = |entries: &HashMap<K, V>| {
            if !entries.is_empty() {
                filters += 1;
                entries.iter().for_each(|(k, v)| f(k, v));
            }
        };
        let root = &self.root;
        // [MQTT-4.7.2-1]: `#` and `+` at the first level do not match `$SYS/...`.
        let wildcards_at_root = !topic.starts_with('$');

        // Frames are (node reached, rest of the topic after that node's level); `None` means
        // the whole topic has been consumed.
        let mut stack: InlineStack<(&Node<K, V>, Option<&str>), INLINE_FRAMES> =
            InlineStack::new((root, None));
        if wildcards_at_root {
            visit(&root.hash);
        }
        let (level, rest) = split_level(topic);
        if let Some(child) = root.children.get(level) {
            stack.push((child, rest));
        }
        if let (true, Some(plus)) = (wildcards_at_root, root.plus.as_deref()) {
            stack.push((plus, rest));
        }

        while let Some((node, rest)) = stack.pop() {
            // `x/#` matches `x` itself and everything below it.
            visit(&node.hash);
            let Some(rest) = rest else {
                visit(&node.exact);
                continue;
            };
            let (level, rest) = split_level(rest);
            if let Some(child) = node.children.get(level) {
                stack.push((child, rest));
            }
            if let Some(plus) = node.plus.as_deref() {
                stack.push((plus, rest));
            }
        }
        filters
    }

    /// The entry map of `filter` if its node exists.
    fn entries(&self, filter: &TopicFilter) -> Option<&HashMap<K, V>> {
        let mut node = &self.root;
        for level in filter.levels() {
            if level == "#" {
                return Some(&node.hash);
            }
            node = node.child(level)?;
        }
        Some(&node.exact)
    }

    /// The entry map of `filter` if its node exists, mutably; allocation-free.
    fn entries_mut(&mut self, filter: &TopicFilter) -> Option<&mut HashMap<K, V>> {
        let mut node = &mut self.root;
        for level in filter.levels() {
            if level == "#" {
                return Some(&mut node.hash);
            }
            node = node.child_mut(level)?;
        }
        Some(&mut node.exact)
    }

    /// The entry map of `filter`, creating the nodes on its path.
    fn entries_or_create(&mut self, filter: &TopicFilter) -> &mut HashMap<K, V> {
        let mut node = &mut self.root;
        for level in filter.levels() {
            if level == "#" {
                return &mut node.hash;
            }
            node = node.child_or_create(level);
        }
        &mut node.exact
    }

    /// Frees the nodes on `filter`'s path that hold no entries and lead to no other filter,
    /// after its last entry was removed.
    ///
    /// Two passes (find the topmost removable node, then unlink it from its parent) rather
    /// than recursion, so depth is not limited by the stack.
    fn prune(&mut self, filter: &TopicFilter) {
        // Nodes on the path: the root, then one per level except a trailing `#` (whose entries
        // live on its parent). `cut` is the index of the topmost node from which the rest of
        // the path is removable; it is reset whenever a node must stay.
        let mut cut: Option<usize> = None;
        let mut node = &self.root;
        let mut levels = filter.levels().filter(|l| *l != "#").peekable();
        let mut index = 0;
        while let Some(level) = levels.next() {
            let Some(next) = node.child(level) else {
                return;
            };
            node = next;
            index += 1;
            let is_last = levels.peek().is_none();
            let removable = !node.has_entries()
                && if is_last {
                    node.child_count() == 0
                } else {
                    node.child_count() == 1
                };
            match (removable, cut) {
                (false, _) => cut = None,
                (true, None) => cut = Some(index),
                (true, Some(_)) => {}
            }
        }
        let Some(cut) = cut else {
            return;
        };
        // Walk to the parent of the node at `cut` and unlink that child.
        let mut parent = &mut self.root;
        let mut levels = filter.levels();
        for _ in 1..cut {
            let Some(next) = levels.next().and_then(|level| parent.child_mut(level)) else {
                return;
            };
            parent = next;
        }
        match levels.next() {
            Some("+") => parent.plus = None,
            Some(level) => {
                // The subtree is a chain of single-child nodes; its drop recursion is as deep
                // as the chain, so dismantle it iteratively like `Drop` does.
                if let Some(mut removed) = parent.children.remove(level) {
                    let mut pending = Vec::new();
                    removed.take_children(&mut pending);
                    while let Some(mut n) = pending.pop() {
                        n.take_children(&mut pending);
                    }
                }
                maybe_shrink(&mut parent.children);
            }
            None => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tf(s: &str) -> TopicFilter {
        TopicFilter::try_from(s).unwrap()
    }

    fn node_count<K, V>(n: &Node<K, V>) -> usize {
        1 + n.children.values().map(node_count).sum::<usize>()
            + n.plus.as_deref().map_or(0, node_count)
    }

    #[test]
    fn prune_removes_only_unused_nodes() {
        let mut t = SubscriptionTrie::new();
        t.insert(&tf("a/b/c/d"), 1, ());
        t.insert(&tf("a/b"), 2, ());
        t.insert(&tf("a/+/x/#"), 3, ());
        assert_eq!(node_count(&t.root), 1 + 4 + 2);
        t.remove(&tf("a/b/c/d"), &1);
        // a, b stay (b holds entry 2), c, d go; a/+/x stays.
        assert_eq!(node_count(&t.root), 1 + 2 + 2);
        t.remove(&tf("a/+/x/#"), &3);
        assert_eq!(node_count(&t.root), 1 + 2);
        t.remove(&tf("a/b"), &2);
        assert_eq!(node_count(&t.root), 1);
        assert!(t.is_empty());
        assert_eq!(t.filter_count(), 0);
    }

    #[test]
    fn prune_plus_chain() {
        let mut t = SubscriptionTrie::new();
        t.insert(&tf("+/+/+"), 1, ());
        t.insert(&tf("+"), 2, ());
        t.remove(&tf("+/+/+"), &1);
        assert_eq!(node_count(&t.root), 2);
        t.remove(&tf("+"), &2);
        assert_eq!(node_count(&t.root), 1);
    }

    proptest::proptest! {
        /// After any sequence of inserts, removing every entry leaves only the root: pruning
        /// never leaks nodes, so memory does not grow with subscribe/unsubscribe churn.
        #[test]
        fn remove_all_leaves_only_root(
            filters in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec!["", "a", "b", "+", "#"]), 1..5),
                0..40),
        ) {
            let filters: Vec<TopicFilter> = filters
                .iter()
                .filter_map(|levels| TopicFilter::try_from(levels.join("/").as_str()).ok())
                .collect();
            let mut t = SubscriptionTrie::new();
            for (i, f) in filters.iter().enumerate() {
                t.insert(f, i % 3, ());
            }
            for (i, f) in filters.iter().enumerate().rev() {
                t.remove(f, &(i % 3));
            }
            proptest::prop_assert!(t.is_empty());
            proptest::prop_assert_eq!(t.filter_count(), 0);
            proptest::prop_assert_eq!(node_count(&t.root), 1);
        }
    }

    #[test]
    fn for_each_match_counts_matching_filters_with_entries() {
        let mut t = SubscriptionTrie::new();
        t.insert(&tf("a/b"), 1u8, ());
        t.insert(&tf("a/b"), 2, ());
        t.insert(&tf("a/+"), 1, ());
        t.insert(&tf("x/#"), 3, ());
        let mut hits = Vec::new();
        assert_eq!(t.for_each_match("a/b", |k, _| hits.push(*k)), 2);
        hits.sort_unstable();
        assert_eq!(hits, [1, 1, 2]);
        assert_eq!(t.for_each_match("a/c", |_, _| {}), 1);
        assert_eq!(t.for_each_match("x", |_, _| {}), 1);
        assert_eq!(t.for_each_match("q", |_, _| {}), 0);
        // A filter whose last entry went is not counted (its node may remain).
        t.remove(&tf("a/+"), &1);
        assert_eq!(t.for_each_match("a/b", |_, _| {}), 1);
    }

    #[test]
    fn deep_filter_does_not_overflow_stack() {
        let deep = "/".repeat(65_534);
        let f = tf(&deep);
        let mut t = SubscriptionTrie::new();
        t.insert(&f, 1u8, ());
        t.insert(&tf(&format!("{}#", "+/".repeat(30_000))), 2, ());
        let mut hits = 0;
        t.for_each_match(&deep, |_, _| hits += 1);
        assert_eq!(hits, 2);
        assert_eq!(t.remove(&f, &1), Some(()));
        // The remaining deep `+` chain is dropped iteratively.
        drop(t);
    }
}

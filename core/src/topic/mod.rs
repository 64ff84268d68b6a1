//! Topic names, filters, the subscription trie and the retained tree.

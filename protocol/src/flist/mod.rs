//! File-list model: entries, ordering, encoding and id lists.
//! (placeholder: being written)

//! Reading and writing one dotted path of a document, as update operators do.
//!
//! Unlike query paths (which fan out over arrays), an update path names exactly one place:
//! embedded documents by name, array elements by numeric index. Writing creates missing
//! embedded documents on the way (and pads arrays with `null` up to a written index, as
//! MongoDB does); walking through a scalar is an error naming the obstacle.

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::path::array_index;

/// A container one path component can address.
pub enum Slot<'a> {
    Document(&'a mut Document),
    Array(&'a mut Vec<Bson>),
}

/// The value at `parts`, if any.
pub fn get<'a>(document: &'a Document, parts: &[String]) -> Option<&'a Bson> {
    let (first, rest) = parts.split_first()?;
    let mut current = document.get(first)?;
    for part in rest {
        current = match current {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(items) => items.get(array_index(part)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The container holding the last component of `parts`. With `create`, missing embedded
/// documents are created; without it, a missing step yields `None`.
fn parent<'a>(
    document: &'a mut Document,
    parts: &[String],
    create: bool,
) -> StoreResult<Option<Slot<'a>>> {
    let Some((_, parents)) = parts.split_last() else {
        return Ok(None);
    };
    let mut slot = Slot::Document(document);
    for (depth, part) in parents.iter().enumerate() {
        let next = match slot {
            Slot::Document(d) => {
                if !d.contains_key(part) {
                    if !create {
                        return Ok(None);
                    }
                    d.insert(part.clone(), Document::new());
                }
                d.get_mut(part)
            }
            Slot::Array(items) => {
                let Some(index) = array_index(part) else {
                    return if create {
                        Err(cannot_create(parts, depth, "an array"))
                    } else {
                        Ok(None)
                    };
                };
                if index >= items.len() {
                    if index > MAX_WRITE_INDEX {
                        return Err(StoreError::invalid(format!(
                            "array index {index} in '{}' is beyond {MAX_WRITE_INDEX}",
                            parts.join(".")
                        )));
                    }
                    if !create {
                        return Ok(None);
                    }
                    pad(items, index);
                    items[index] = Bson::Document(Document::new());
                }
                items.get_mut(index)
            }
        };
        slot = match next {
            Some(Bson::Document(d)) => Slot::Document(d),
            Some(Bson::Array(items)) => Slot::Array(items),
            Some(other) if create => {
                return Err(cannot_create(parts, depth, &other.to_string()));
            }
            _ => return Ok(None),
        };
    }
    Ok(Some(slot))
}

fn pad(items: &mut Vec<Bson>, index: usize) {
    if items.len() <= index {
        items.resize(index + 1, Bson::Null);
    }
}

/// Array indexes an update may write: beyond this, padding would let one small update
/// allocate without bound.
const MAX_WRITE_INDEX: usize = 100_000;

fn cannot_create(parts: &[String], depth: usize, obstacle: &str) -> StoreError {
    StoreError::invalid(format!(
        "cannot create field '{}' of '{}': '{}' holds {obstacle}",
        parts[depth + 1],
        parts.join("."),
        parts[..=depth].join(".")
    ))
}

/// Sets the value at `parts`.
pub fn set(document: &mut Document, parts: &[String], value: Bson) -> StoreResult<()> {
    modify(document, parts, |_| Ok(value))
}

/// Replaces the value at `parts` by `change(current)`, creating the path when missing.
pub fn modify(
    document: &mut Document,
    parts: &[String],
    change: impl FnOnce(Option<&Bson>) -> StoreResult<Bson>,
) -> StoreResult<()> {
    let Some(last) = parts.last() else {
        return Err(StoreError::invalid("empty update path"));
    };
    match parent(document, parts, true)? {
        Some(Slot::Document(d)) => {
            let value = change(d.get(last))?;
            d.insert(last.clone(), value);
        }
        Some(Slot::Array(items)) => {
            let index = array_index(last)
                .filter(|i| *i <= MAX_WRITE_INDEX)
                .ok_or_else(|| {
                    StoreError::invalid(format!(
                        "cannot write '{}': '{last}' is not an array index (at most {MAX_WRITE_INDEX})",
                        parts.join(".")
                    ))
                })?;
            let value = change(items.get(index))?;
            pad(items, index);
            items[index] = value;
        }
        None => return Err(StoreError::invalid("update path cannot be created")),
    }
    Ok(())
}

/// Removes the value at `parts`; an array element becomes `null` (MongoDB's `$unset`).
pub fn unset(document: &mut Document, parts: &[String]) {
    let Some(last) = parts.last() else {
        return;
    };
    if let Ok(Some(slot)) = parent(document, parts, false) {
        match slot {
            Slot::Document(d) => {
                d.remove(last);
            }
            Slot::Array(items) => {
                if let Some(item) = array_index(last).and_then(|i| items.get_mut(i)) {
                    *item = Bson::Null;
                }
            }
        }
    }
}

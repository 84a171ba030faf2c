//! Dotted paths as MongoDB's query language reads them.
//!
//! `a.b` walks into embedded documents; when it meets an array it looks inside every element
//! that is a document (so `{"a.b": 1}` matches `{a: [{b: 1}, {b: 2}]}`), and a numeric
//! component also indexes the array (`a.0`). A path can therefore reach several values, or none:
//! `resolve` returns every value it reaches plus whether some branch ended on a missing field,
//! which is what `{f: null}` and `$exists` need.

use bson::{Bson, Document};

/// What a path reaches inside one document.
#[derive(Debug, Default)]
pub struct Reached<'a> {
    /// Every value found at the end of the path (arrays are not flattened here).
    pub values: Vec<&'a Bson>,
    /// True when at least one branch of the walk found no value.
    pub missing: bool,
}

impl<'a> Reached<'a> {
    /// The values a leaf predicate tests: each value found, and the elements of each array
    /// found (one level), as MongoDB's element-wise matching does.
    pub fn leaves(&self) -> impl Iterator<Item = &'a Bson> + '_ {
        self.values.iter().flat_map(|value| {
            let elements: &'a [Bson] = match value {
                Bson::Array(items) => items,
                _ => &[],
            };
            std::iter::once(*value).chain(elements.iter())
        })
    }
}

/// Splits a dotted path into components. Empty components are rejected by callers at parse
/// time; here they simply reach nothing.
pub fn split(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// Every value `path` reaches inside `document`.
pub fn resolve<'a>(document: &'a Document, path: &[&str]) -> Reached<'a> {
    let mut reached = Reached::default();
    walk_document(document, path, &mut reached);
    reached
}

fn walk_document<'a>(document: &'a Document, path: &[&str], out: &mut Reached<'a>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match document.get(first) {
        Some(value) => walk_value(value, rest, out),
        None => out.missing = true,
    }
}

fn walk_value<'a>(value: &'a Bson, path: &[&str], out: &mut Reached<'a>) {
    let Some(first) = path.first() else {
        out.values.push(value);
        return;
    };
    match value {
        Bson::Document(d) => walk_document(d, path, out),
        Bson::Array(items) => {
            let before = out.values.len();
            let index = array_index(first);
            if let Some(element) = index.and_then(|i| items.get(i)) {
                walk_value(element, &path[1..], out);
            }
            for element in items {
                if let Bson::Document(d) = element {
                    // With a numeric component, element documents count only when they have
                    // that field (`{"0": …}`); the positional element already answered.
                    if index.is_none() || d.contains_key(first) {
                        walk_document(d, path, out);
                    }
                }
            }
            // An array that yields nothing for the rest of the path is a missing field.
            if out.values.len() == before {
                out.missing = true;
            }
        }
        _ => out.missing = true,
    }
}

/// A path component that indexes an array: digits only, no sign, no leading zero.
pub fn array_index(component: &str) -> Option<usize> {
    let is_canonical = !component.is_empty()
        && component.bytes().all(|b| b.is_ascii_digit())
        && (component == "0" || !component.starts_with('0'));
    if is_canonical {
        component.parse().ok()
    } else {
        None
    }
}

/// The keys an index on `path` holds for `document`, the way the embedded backend should
/// build them so that `Filter::index_scan` is sound: each value reached, each element of an
/// array reached (multikey) as well as the whole array, and `Null` when some branch is
/// missing. Duplicates (under MongoDB equality) are removed.
pub fn index_keys(document: &Document, path: &str) -> Vec<Bson> {
    let parts = split(path);
    let reached = resolve(document, &parts);
    let mut keys: Vec<Bson> = Vec::new();
    let mut push = |key: &Bson| {
        if !keys.iter().any(|k| super::values_equal(k, key)) {
            keys.push(key.clone());
        }
    };
    for leaf in reached.leaves() {
        push(leaf);
    }
    if reached.missing || reached.values.is_empty() {
        push(&Bson::Null);
    }
    keys
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn values(document: &Document, path: &str) -> (Vec<Bson>, bool) {
        let parts = split(path);
        let reached = resolve(document, &parts);
        (
            reached.values.iter().map(|v| (*v).clone()).collect(),
            reached.missing,
        )
    }

    #[test]
    fn walks_embedded_documents() {
        let d = doc! {"a": {"b": {"c": 3}}};
        assert_eq!(values(&d, "a.b.c"), (vec![Bson::Int32(3)], false));
        assert_eq!(values(&d, "a.x"), (vec![], true));
    }

    #[test]
    fn walks_into_every_document_of_an_array() {
        let d = doc! {"a": [{"b": 1}, {"c": 2}, {"b": [3]}]};
        let (found, missing) = values(&d, "a.b");
        assert_eq!(found, vec![Bson::Int32(1), bson::bson!([3])]);
        assert!(missing);
    }

    #[test]
    fn numeric_components_index_arrays() {
        let d = doc! {"a": [10, {"b": 2}]};
        assert_eq!(values(&d, "a.0"), (vec![Bson::Int32(10)], false));
        assert_eq!(values(&d, "a.1.b"), (vec![Bson::Int32(2)], false));
        assert_eq!(values(&d, "a.7").0, Vec::<Bson>::new());
    }

    #[test]
    fn scalars_in_the_way_mean_missing() {
        assert_eq!(values(&doc! {"a": 5}, "a.b"), (vec![], true));
    }

    #[test]
    fn index_keys_are_multikey_and_null_for_missing() {
        let d = doc! {"tags": ["x", "y", "x"]};
        assert_eq!(
            index_keys(&d, "tags"),
            vec![bson::bson!(["x", "y", "x"]), "x".into(), "y".into()]
        );
        assert_eq!(index_keys(&doc! {}, "tags"), vec![Bson::Null]);
    }
}

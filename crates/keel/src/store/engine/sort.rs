//! Sort specifications (`{field: 1, other: -1}`) with MongoDB's ordering rules.
//!
//! Each key's value is found by the query path rules; a missing field sorts as `null`; when a
//! path reaches an array, ascending order uses its smallest element and descending its
//! largest (an empty array sorts below `null`, as in MongoDB). Sorting is stable, so documents
//! with equal keys keep the order they came in.

use std::cmp::Ordering;

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::compare::compare_values;
use super::filter::parse_path;
use super::path::resolve;

/// A parsed sort specification (`{field: 1, other: -1}`).
#[derive(Debug, Clone)]
pub struct Sort {
    keys: Vec<SortKey>,
}

#[derive(Debug, Clone)]
struct SortKey {
    parts: Vec<String>,
    is_descending: bool,
}

impl Sort {
    /// True for `{_id: 1}` alone: the order in which the embedded tables already hold documents,
    /// so a scan of the table (not of a secondary index) needs no sorting and can stop early.
    pub fn is_id_ascending(&self) -> bool {
        matches!(self.keys.as_slice(), [key] if key.parts == ["_id"] && !key.is_descending)
    }

    /// The sorted paths (`a.b` spelled with dots) when every key has the same direction, and
    /// whether that direction is descending: the order of an index on exactly those paths,
    /// read forwards or backwards.
    pub fn uniform_paths(&self) -> Option<(Vec<String>, bool)> {
        let is_descending = self.keys.first()?.is_descending;
        self.keys
            .iter()
            .all(|key| key.is_descending == is_descending)
            .then(|| {
                (
                    self.keys.iter().map(|key| key.parts.join(".")).collect(),
                    is_descending,
                )
            })
    }

    pub fn parse(sort: &Document) -> StoreResult<Sort> {
        let keys = sort
            .iter()
            .map(|(path, direction)| {
                let is_descending = match direction {
                    Bson::Int32(1) | Bson::Int64(1) => false,
                    Bson::Int32(-1) | Bson::Int64(-1) => true,
                    Bson::Double(f) if *f == 1.0 => false,
                    Bson::Double(f) if *f == -1.0 => true,
                    Bson::Document(d) if d.contains_key("$meta") => {
                        return Err(StoreError::unsupported("$meta sort"));
                    }
                    other => {
                        return Err(StoreError::invalid(format!(
                            "sort direction of '{path}' must be 1 or -1, not {other}"
                        )));
                    }
                };
                Ok(SortKey {
                    parts: parse_path(path)?,
                    is_descending,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Sort { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        self.keys
            .iter()
            .map(|key| key.directed(compare_keys(&key.value_of(a), &key.value_of(b))))
            .find(|order| order.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Sorts in place, stably, computing each document's keys once.
    pub fn sort(&self, documents: &mut Vec<Document>) {
        if self.keys.is_empty() {
            return;
        }
        let mut keyed: Vec<(SortKeys, Document)> =
            documents.drain(..).map(|d| (self.keys_of(&d), d)).collect();
        keyed.sort_by(|(a, _), (b, _)| self.compare_computed(a, b));
        documents.extend(keyed.into_iter().map(|(_, d)| d));
    }
}

/// A document's sort key values, computed once.
#[derive(Debug, Clone)]
pub struct SortKeys(Vec<KeyValue>);

impl Sort {
    pub fn keys_of(&self, document: &Document) -> SortKeys {
        SortKeys(self.keys.iter().map(|k| k.value_of(document)).collect())
    }

    fn compare_computed(&self, a: &SortKeys, b: &SortKeys) -> Ordering {
        a.0.iter()
            .zip(&b.0)
            .zip(&self.keys)
            .map(|((x, y), key)| key.directed(compare_keys(x, y)))
            .find(|order| order.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Keeps the first `k` (in this order, stable) of whatever is pushed, holding at most
    /// `2k` entries: a sorted page costs memory for the page, not for every match.
    pub fn top_k<T>(&self, k: usize) -> TopK<'_, T> {
        TopK {
            sort: self,
            k,
            entries: Vec::new(),
        }
    }
}

/// See `Sort::top_k`. Entries pushed later lose ties, as in a stable sort of everything.
pub struct TopK<'a, T> {
    sort: &'a Sort,
    k: usize,
    entries: Vec<(SortKeys, T)>,
}

impl<T> TopK<'_, T> {
    pub fn push(&mut self, keys: SortKeys, item: T) {
        if self.k == 0 {
            return;
        }
        self.entries.push((keys, item));
        if self.entries.len() >= self.k.saturating_mul(2).max(self.k + 1) {
            self.compact();
        }
    }

    /// Sorting stably and dropping all but the first `k` never drops an entry the full sort
    /// would keep: everything ahead of it here is ahead of it there too.
    fn compact(&mut self) {
        let sort = self.sort;
        self.entries
            .sort_by(|(a, _), (b, _)| sort.compare_computed(a, b));
        self.entries.truncate(self.k);
    }

    /// The first `k`, in order.
    pub fn finish(mut self) -> Vec<T> {
        self.compact();
        self.entries.into_iter().map(|(_, item)| item).collect()
    }
}

/// The value a document sorts by for one key.
#[derive(Debug, Clone)]
enum KeyValue {
    /// A path that reached only empty arrays: below everything.
    EmptyArray,
    Value(Bson),
}

fn compare_keys(a: &KeyValue, b: &KeyValue) -> Ordering {
    match (a, b) {
        (KeyValue::EmptyArray, KeyValue::EmptyArray) => Ordering::Equal,
        (KeyValue::EmptyArray, _) => Ordering::Less,
        (_, KeyValue::EmptyArray) => Ordering::Greater,
        (KeyValue::Value(x), KeyValue::Value(y)) => compare_values(x, y),
    }
}

impl SortKey {
    /// `order` in this key's direction.
    fn directed(&self, order: Ordering) -> Ordering {
        if self.is_descending {
            order.reverse()
        } else {
            order
        }
    }

    fn value_of(&self, document: &Document) -> KeyValue {
        let parts: Vec<&str> = self.parts.iter().map(String::as_str).collect();
        let reached = resolve(document, &parts);
        let mut candidates: Vec<&Bson> = Vec::new();
        let mut saw_empty_array = false;
        for value in &reached.values {
            match value {
                Bson::Array(items) if items.is_empty() => saw_empty_array = true,
                Bson::Array(items) => candidates.extend(items.iter()),
                other => candidates.push(other),
            }
        }
        let null = Bson::Null;
        if reached.missing {
            candidates.push(&null);
        }
        let pick = if self.is_descending {
            candidates.into_iter().max_by(|a, b| compare_values(a, b))
        } else {
            candidates.into_iter().min_by(|a, b| compare_values(a, b))
        };
        match pick {
            Some(value) => KeyValue::Value(value.clone()),
            None if saw_empty_array => KeyValue::EmptyArray,
            None => KeyValue::Value(Bson::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    #[test]
    fn only_id_ascending_alone_is_the_table_order() {
        assert!(Sort::parse(&doc! {"_id": 1}).unwrap().is_id_ascending());
        assert!(!Sort::parse(&doc! {"_id": -1}).unwrap().is_id_ascending());
        assert!(
            !Sort::parse(&doc! {"price": 1, "_id": 1})
                .unwrap()
                .is_id_ascending()
        );
    }

    fn sorted(spec: Document, docs: Vec<Document>) -> Vec<i32> {
        let sort = Sort::parse(&spec).unwrap();
        let mut docs = docs;
        sort.sort(&mut docs);
        docs.iter().map(|d| d.get_i32("id").unwrap()).collect()
    }

    #[test]
    fn multi_key_sort_with_directions() {
        let docs = vec![
            doc! {"id": 1, "a": 1, "b": 1},
            doc! {"id": 2, "a": 2, "b": 1},
            doc! {"id": 3, "a": 1, "b": 2},
        ];
        assert_eq!(sorted(doc! {"a": 1, "b": -1}, docs.clone()), vec![3, 1, 2]);
        assert_eq!(sorted(doc! {"a": -1}, docs), vec![2, 1, 3]);
    }

    #[test]
    fn missing_sorts_as_null_and_types_follow_bracket_order() {
        let docs = vec![
            doc! {"id": 1, "a": "x"},
            doc! {"id": 2},
            doc! {"id": 3, "a": 5},
            doc! {"id": 4, "a": null},
        ];
        assert_eq!(sorted(doc! {"a": 1}, docs), vec![2, 4, 3, 1]);
    }

    #[test]
    fn arrays_sort_by_min_ascending_and_max_descending() {
        let docs = vec![
            doc! {"id": 1, "a": [5, 1]},
            doc! {"id": 2, "a": 3},
            doc! {"id": 3, "a": [2, 9]},
            doc! {"id": 4, "a": []},
        ];
        assert_eq!(sorted(doc! {"a": 1}, docs.clone()), vec![4, 1, 3, 2]);
        assert_eq!(sorted(doc! {"a": -1}, docs), vec![3, 1, 2, 4]);
    }

    #[test]
    fn top_k_equals_the_first_k_of_a_full_stable_sort() {
        // Many ties, several keys, arrays and missing fields: every k against the full sort.
        let documents: Vec<Document> = (0..200)
            .map(|n: i32| match n % 5 {
                0 => doc! {"n": n, "a": n % 7, "b": -(n % 3)},
                1 => doc! {"n": n, "a": [n % 4, 9], "b": n % 2},
                2 => doc! {"n": n, "b": 1},
                3 => doc! {"n": n, "a": [], "b": 0},
                _ => doc! {"n": n, "a": n % 7},
            })
            .collect();
        for spec in [
            doc! {"a": 1, "b": -1},
            doc! {"a": -1},
            doc! {"b": 1, "a": 1},
        ] {
            let sort = Sort::parse(&spec).unwrap();
            let mut full = documents.clone();
            sort.sort(&mut full);
            let expected: Vec<i32> = full.iter().map(|d| d.get_i32("n").unwrap()).collect();
            for k in [0, 1, 2, 7, 50, 199, 200, 500] {
                let mut top = sort.top_k(k);
                for d in &documents {
                    top.push(sort.keys_of(d), d.get_i32("n").unwrap());
                }
                let got = top.finish();
                assert_eq!(got, expected[..k.min(expected.len())], "{spec} k={k}");
            }
        }
    }

    #[test]
    fn sort_is_stable() {
        let docs: Vec<Document> = (0..20).map(|i| doc! {"id": i, "k": i % 2}).collect();
        let order = sorted(doc! {"k": 1}, docs);
        assert_eq!(&order[..3], &[0, 2, 4]);
        assert_eq!(&order[10..13], &[1, 3, 5]);
    }

    #[test]
    fn compare_agrees_with_sort() {
        let sort = Sort::parse(&doc! {"a.b": -1}).unwrap();
        let (x, y) = (doc! {"a": {"b": 2}}, doc! {"a": [{"b": 1}, {"b": 3}]});
        assert_eq!(sort.compare(&x, &y), Ordering::Greater);
    }

    #[test]
    fn bad_directions_are_invalid() {
        assert!(matches!(
            Sort::parse(&doc! {"a": 2}),
            Err(StoreError::InvalidQuery { .. })
        ));
        assert!(matches!(
            Sort::parse(&doc! {"a": {"$meta": "textScore"}}),
            Err(StoreError::Unsupported { .. })
        ));
    }
}

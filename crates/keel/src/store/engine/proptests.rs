//! Property tests: the matcher against a deliberately naive reference evaluator written from
//! MongoDB's documentation, and the key encoding against `compare_values`.
//!
//! The reference works on a small value universe (null, numbers, strings, booleans, arrays,
//! one embedded document) with its own comparison, so a shared bug in `compare.rs` or
//! `path.rs` cannot hide itself.

use std::cmp::Ordering;

use bson::{Bson, Document, RawDocumentBuf, doc};
use proptest::prelude::*;

use super::{Filter, compare_values, encode_key};

// ---------- generators ----------

fn scalar() -> impl Strategy<Value = Bson> {
    prop_oneof![
        Just(Bson::Null),
        (-3i32..=3).prop_map(Bson::Int32),
        (-3i64..=3).prop_map(Bson::Int64),
        (-6i32..=6).prop_map(|n| Bson::Double(f64::from(n) / 2.0)),
        prop::sample::select(vec!["", "a", "b", "ab"]).prop_map(|s| Bson::String(s.into())),
        any::<bool>().prop_map(Bson::Boolean),
    ]
}

fn value() -> impl Strategy<Value = Bson> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(Bson::Array),
    ]
}

/// `c` is missing, a scalar, `{d: v}`, or an array of `{d: v}` / `{}` / scalars.
fn embedded() -> impl Strategy<Value = Option<Bson>> {
    let element = prop_oneof![
        value().prop_map(|v| Bson::Document(doc! {"d": v})),
        Just(Bson::Document(doc! {})),
        scalar(),
    ];
    prop_oneof![
        Just(None),
        scalar().prop_map(Some),
        value().prop_map(|v| Some(Bson::Document(doc! {"d": v}))),
        prop::collection::vec(element, 0..3).prop_map(|items| Some(Bson::Array(items))),
    ]
}

fn document() -> impl Strategy<Value = Document> {
    (
        prop::option::of(value()),
        prop::option::of(value()),
        embedded(),
    )
        .prop_map(|(a, b, c)| {
            let mut d = Document::new();
            for (name, v) in [("a", a), ("b", b), ("c", c)] {
                if let Some(v) = v {
                    d.insert(name, v);
                }
            }
            d
        })
}

fn leaf_filter() -> impl Strategy<Value = Document> {
    let field = prop::sample::select(vec!["a", "b", "c.d"]);
    let op = prop::sample::select(vec![
        "", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not",
    ]);
    (
        field,
        op,
        value(),
        prop::collection::vec(value(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(field, op, v, list, flag)| {
            let condition = match op {
                "" => v,
                "$in" | "$nin" => Bson::Document(doc! {op: list}),
                "$exists" => Bson::Document(doc! {op: flag}),
                "$not" => Bson::Document(doc! {"$not": {"$gt": v}}),
                _ => Bson::Document(doc! {op: v}),
            };
            doc! {field: condition}
        })
}

fn filter() -> impl Strategy<Value = Document> {
    leaf_filter().prop_recursive(2, 8, 3, |inner| {
        (
            prop::sample::select(vec!["$and", "$or", "$nor"]),
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(op, branches)| doc! {op: branches})
    })
}

// ---------- the reference evaluator ----------

fn rank(v: &Bson) -> u8 {
    match v {
        Bson::Null => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => 2,
        Bson::String(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Boolean(_) => 6,
        other => panic!("outside the reference universe: {other:?}"),
    }
}

fn number(v: &Bson) -> f64 {
    match v {
        Bson::Int32(n) => f64::from(*n),
        Bson::Int64(n) => *n as f64,
        Bson::Double(f) => *f,
        _ => 0.0,
    }
}

fn cmp(x: &Bson, y: &Bson) -> Ordering {
    if rank(x) != rank(y) {
        return rank(x).cmp(&rank(y));
    }
    match (x, y) {
        (Bson::String(a), Bson::String(b)) => a.cmp(b),
        (Bson::Boolean(a), Bson::Boolean(b)) => a.cmp(b),
        (Bson::Array(a), Bson::Array(b)) => {
            for (p, q) in a.iter().zip(b) {
                let o = cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
        (Bson::Null, Bson::Null) => Ordering::Equal,
        (Bson::Document(a), Bson::Document(b)) => {
            let a: Vec<_> = a.iter().collect();
            let b: Vec<_> = b.iter().collect();
            for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
                let o = rank(va).cmp(&rank(vb)).then(ka.cmp(kb)).then(cmp(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
        _ => number(x).partial_cmp(&number(y)).unwrap_or(Ordering::Equal),
    }
}

/// The values at `field` and whether some branch is missing, per MongoDB's documentation.
fn values_at<'a>(d: &'a Document, field: &str) -> (Vec<&'a Bson>, bool) {
    if let Some((top, sub)) = field.split_once('.') {
        match d.get(top) {
            Some(Bson::Document(inner)) => values_at(inner, sub),
            Some(Bson::Array(items)) => {
                let mut found = Vec::new();
                let mut missing = false;
                for item in items {
                    if let Bson::Document(inner) = item {
                        match inner.get(sub) {
                            Some(v) => found.push(v),
                            None => missing = true,
                        }
                    }
                }
                let none_found = found.is_empty();
                (found, missing || none_found)
            }
            _ => (vec![], true),
        }
    } else {
        match d.get(field) {
            Some(v) => (vec![v], false),
            None => (vec![], true),
        }
    }
}

fn candidates<'a>(values: &[&'a Bson]) -> Vec<&'a Bson> {
    let mut out = Vec::new();
    for v in values {
        out.push(*v);
        if let Bson::Array(items) = v {
            out.extend(items.iter());
        }
    }
    out
}

fn reference_eq(d: &Document, field: &str, x: &Bson) -> bool {
    let (values, missing) = values_at(d, field);
    if *x == Bson::Null && missing {
        return true;
    }
    candidates(&values)
        .iter()
        .any(|c| cmp(c, x) == Ordering::Equal)
}

fn reference_cmp(d: &Document, field: &str, op: &str, x: &Bson) -> bool {
    if *x == Bson::Null {
        return matches!(op, "$gte" | "$lte") && reference_eq(d, field, x);
    }
    let (values, _) = values_at(d, field);
    candidates(&values).iter().any(|c| {
        rank(c) == rank(x)
            && match op {
                "$gt" => cmp(c, x) == Ordering::Greater,
                "$gte" => cmp(c, x) != Ordering::Less,
                "$lt" => cmp(c, x) == Ordering::Less,
                _ => cmp(c, x) != Ordering::Greater,
            }
    })
}

fn reference(filter: &Document, d: &Document) -> bool {
    filter.iter().all(|(key, condition)| match key.as_str() {
        "$and" | "$or" | "$nor" => {
            let branches: Vec<bool> = match condition {
                Bson::Array(items) => items
                    .iter()
                    .map(|b| match b {
                        Bson::Document(f) => reference(f, d),
                        _ => false,
                    })
                    .collect(),
                _ => vec![],
            };
            match key.as_str() {
                "$and" => branches.iter().all(|b| *b),
                "$or" => branches.iter().any(|b| *b),
                _ => !branches.iter().any(|b| *b),
            }
        }
        field => match condition {
            Bson::Document(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => {
                ops.iter().all(|(op, x)| match op.as_str() {
                    "$eq" => reference_eq(d, field, x),
                    "$ne" => !reference_eq(d, field, x),
                    "$in" | "$nin" => {
                        let any = match x {
                            Bson::Array(items) => items.iter().any(|i| reference_eq(d, field, i)),
                            _ => false,
                        };
                        any == (op == "$in")
                    }
                    "$exists" => {
                        let exists = !values_at(d, field).0.is_empty();
                        exists == (*x == Bson::Boolean(true))
                    }
                    "$not" => match x {
                        Bson::Document(inner) => !reference(&doc! {field: inner.clone()}, d),
                        _ => false,
                    },
                    _ => reference_cmp(d, field, op, x),
                })
            }
            literal => reference_eq(d, field, literal),
        },
    })
}

// ---------- key encoding generator ----------

fn rich_scalar() -> impl Strategy<Value = Bson> {
    prop_oneof![
        Just(Bson::Null),
        Just(Bson::MinKey),
        Just(Bson::MaxKey),
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        (-(1i64 << 60)..(1i64 << 60)).prop_map(|n| Bson::Double(n as f64)),
        any::<f64>().prop_map(Bson::Double),
        prop::sample::select(vec![
            9_007_199_254_740_993i64,
            i64::MAX,
            i64::MIN,
            -9_007_199_254_740_993
        ])
        .prop_map(Bson::Int64),
        "[a\u{0}b]{0,4}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
        any::<i64>().prop_map(|n| Bson::DateTime(bson::DateTime::from_millis(n))),
        any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(bson::oid::ObjectId::from_bytes(b))),
    ]
}

fn rich_value() -> impl Strategy<Value = Bson> {
    rich_scalar().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Bson::Array),
            prop::collection::vec(("[ab]{0,2}", inner), 0..3)
                .prop_map(|fields| Bson::Document(fields.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matcher_agrees_with_the_reference_evaluator(filter in filter(), document in document()) {
        let parsed = Filter::parse(&filter).map_err(|e| TestCaseError::fail(format!("{filter}: {e}")))?;
        prop_assert_eq!(parsed.matches(&document), reference(&filter, &document),
            "filter {} on {}", filter, document);
    }

    /// Matching stored bytes decides as matching the decoded document does, for top-level
    /// fields and-ed (a listing's filter) and for nested logical filters, whenever it decides.
    #[test]
    fn matching_stored_bytes_agrees_with_matching_the_document(
        leaves in prop::collection::vec(leaf_filter(), 1..4),
        nested in filter(),
        document in document(),
    ) {
        let mut top = Document::new();
        for leaf in leaves {
            top.extend(leaf);
        }
        let raw = RawDocumentBuf::try_from(&document).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for filter in [top, nested] {
            let parsed = Filter::parse(&filter).map_err(|e| TestCaseError::fail(format!("{filter}: {e}")))?;
            if let Some(matched) = parsed.matches_raw(&raw) {
                prop_assert_eq!(matched, parsed.matches(&document), "filter {} on {}", filter, document);
            }
        }
    }

    #[test]
    fn key_encoding_orders_like_compare_values(a in rich_value(), b in rich_value()) {
        prop_assert_eq!(encode_key(&a).cmp(&encode_key(&b)), compare_values(&a, &b),
            "{:?} vs {:?}", a, b);
    }

    #[test]
    fn compare_values_is_antisymmetric_and_transitive(a in rich_value(), b in rich_value(), c in rich_value()) {
        prop_assert_eq!(compare_values(&a, &b), compare_values(&b, &a).reverse());
        if compare_values(&a, &b).is_le() && compare_values(&b, &c).is_le() {
            prop_assert!(compare_values(&a, &c).is_le());
        }
    }
}

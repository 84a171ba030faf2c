//! Projections, for `find` and the `$project` stage: inclusion (`{a: 1, "b.c": 1}`, plus
//! computed fields `{total: "$price"}`) or exclusion (`{secret: 0}`), never both except for
//! `_id`, which is included unless excluded.
//!
//! Included fields keep the document's order; computed fields follow, in specification order.
//! Paths reaching into arrays apply to every document element, as in MongoDB.

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::expr::Expression;
use super::filter::{parse_path, truthy};

/// A parsed projection (inclusion or exclusion; `_id` included unless excluded).
#[derive(Debug, Clone)]
pub struct Projection {
    is_exclusion: bool,
    /// Fields below the root, `_id` included when it was mentioned.
    fields: Vec<(String, Node)>,
    /// False only for `_id: 0`.
    keep_id: bool,
}

#[derive(Debug, Clone)]
enum Node {
    Include,
    Exclude,
    Computed(Expression),
    Children(Vec<(String, Node)>),
}

impl Projection {
    pub fn parse(projection: &Document) -> StoreResult<Projection> {
        let mut fields = Vec::new();
        let mut keep_id = true;
        add_spec(&mut fields, &[], projection, &mut keep_id, 0)?;
        let (mut includes, mut excludes) = (false, false);
        visit(&fields, &mut |node| match node {
            Node::Include | Node::Computed(_) => includes = true,
            Node::Exclude => excludes = true,
            Node::Children(_) => {}
        });
        if includes && excludes {
            return Err(StoreError::invalid(
                "a projection cannot mix inclusion and exclusion (except _id: 0)",
            ));
        }
        // `{_id: 0}` alone is an exclusion of `_id`.
        let is_exclusion = excludes || (!includes && !keep_id);
        Ok(Projection {
            is_exclusion,
            fields,
            keep_id,
        })
    }

    /// True for `{}`: documents come back whole.
    pub fn is_identity(&self) -> bool {
        self.fields.is_empty() && self.keep_id
    }

    pub fn apply(&self, document: &Document) -> Document {
        if self.is_identity() {
            return document.clone();
        }
        let mut out = if self.is_exclusion {
            exclude(document, &self.fields)
        } else {
            include(document, &self.fields, document)
        };
        if !self.keep_id {
            out.remove("_id");
        } else if !self.is_exclusion
            && !has_field(&self.fields, "_id")
            && let Some(id) = document.get("_id")
        {
            let mut with_id = Document::new();
            with_id.insert("_id", id.clone());
            with_id.extend(out);
            out = with_id;
        }
        out
    }
}

fn has_field(fields: &[(String, Node)], name: &str) -> bool {
    fields.iter().any(|(n, _)| n == name)
}

fn visit(fields: &[(String, Node)], f: &mut impl FnMut(&Node)) {
    for (_, node) in fields {
        f(node);
        if let Node::Children(children) = node {
            visit(children, f);
        }
    }
}

fn add_spec(
    fields: &mut Vec<(String, Node)>,
    prefix: &[String],
    spec: &Document,
    keep_id: &mut bool,
    depth: usize,
) -> StoreResult<()> {
    if depth > super::MAX_FILTER_DEPTH {
        return Err(StoreError::invalid("projection nests too deeply"));
    }
    for (path, value) in spec {
        let mut parts = prefix.to_vec();
        parts.extend(parse_path(path)?);
        let is_id = parts.len() == 1 && parts[0] == "_id";
        let node = match value {
            Bson::Boolean(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
                if truthy(value) {
                    Node::Include
                } else if is_id {
                    *keep_id = false;
                    continue;
                } else {
                    Node::Exclude
                }
            }
            Bson::Document(d) if !d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                if d.is_empty() {
                    return Err(StoreError::invalid(format!(
                        "projection of '{path}' is an empty document"
                    )));
                }
                add_spec(fields, &parts, d, keep_id, depth + 1)?;
                continue;
            }
            other => Node::Computed(Expression::parse(other)?),
        };
        insert(fields, &parts, node)?;
    }
    Ok(())
}

fn insert(fields: &mut Vec<(String, Node)>, parts: &[String], node: Node) -> StoreResult<()> {
    let collision = || {
        StoreError::invalid(format!(
            "projection path collision at '{}'",
            parts.join(".")
        ))
    };
    let Some((first, rest)) = parts.split_first() else {
        return Err(collision());
    };
    let position = fields.iter().position(|(name, _)| name == first);
    if rest.is_empty() {
        return match position {
            Some(_) => Err(collision()),
            None => {
                fields.push((first.clone(), node));
                Ok(())
            }
        };
    }
    let index = match position {
        Some(i) => i,
        None => {
            fields.push((first.clone(), Node::Children(Vec::new())));
            fields.len() - 1
        }
    };
    match &mut fields[index].1 {
        Node::Children(children) => insert(children, rest, node),
        _ => Err(collision()),
    }
}

fn include(document: &Document, fields: &[(String, Node)], root: &Document) -> Document {
    let mut out = Document::new();
    for (name, value) in document {
        let Some((_, node)) = fields.iter().find(|(n, _)| n == name) else {
            continue;
        };
        match node {
            Node::Include => {
                out.insert(name.clone(), value.clone());
            }
            Node::Children(children) => {
                if let Some(projected) = include_value(value, children, root) {
                    out.insert(name.clone(), projected);
                }
            }
            Node::Exclude | Node::Computed(_) => {}
        }
    }
    add_computed(&mut out, fields, root);
    out
}

/// Appends computed fields (and sub-documents holding computed fields) in spec order.
fn add_computed(out: &mut Document, fields: &[(String, Node)], root: &Document) {
    for (name, node) in fields {
        match node {
            Node::Computed(expression) => {
                if let Some(value) = expression.evaluate(root) {
                    out.insert(name.clone(), value);
                }
            }
            // Included sub-documents got their computed fields while being projected.
            Node::Children(children)
                if has_computed(children)
                    && !matches!(out.get(name), Some(Bson::Document(_) | Bson::Array(_))) =>
            {
                let mut sub = Document::new();
                add_computed(&mut sub, children, root);
                out.insert(name.clone(), sub);
            }
            _ => {}
        }
    }
}

fn has_computed(fields: &[(String, Node)]) -> bool {
    let mut found = false;
    visit(fields, &mut |n| found |= matches!(n, Node::Computed(_)));
    found
}

fn include_value(value: &Bson, children: &[(String, Node)], root: &Document) -> Option<Bson> {
    match value {
        Bson::Document(d) => Some(Bson::Document(include(d, children, root))),
        Bson::Array(items) => Some(Bson::Array(
            items
                .iter()
                .filter_map(|i| include_value(i, children, root))
                .collect(),
        )),
        _ => has_computed(children).then(|| {
            let mut sub = Document::new();
            add_computed(&mut sub, children, root);
            Bson::Document(sub)
        }),
    }
}

fn exclude(document: &Document, fields: &[(String, Node)]) -> Document {
    let mut out = Document::new();
    for (name, value) in document {
        match fields.iter().find(|(n, _)| n == name).map(|(_, node)| node) {
            Some(Node::Exclude) => {}
            Some(Node::Children(children)) => {
                out.insert(name.clone(), exclude_value(value, children));
            }
            _ => {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    out
}

fn exclude_value(value: &Bson, children: &[(String, Node)]) -> Bson {
    match value {
        Bson::Document(d) => Bson::Document(exclude(d, children)),
        Bson::Array(items) => {
            Bson::Array(items.iter().map(|i| exclude_value(i, children)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn project(spec: Document, document: Document) -> Document {
        Projection::parse(&spec).unwrap().apply(&document)
    }

    #[test]
    fn inclusion_keeps_named_fields_and_id() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": 4};
        assert_eq!(
            project(doc! {"a": 1, "b.c": 1}, d.clone()),
            doc! {"_id": 1, "a": 1, "b": {"c": 2}}
        );
        assert_eq!(project(doc! {"a": 1, "_id": 0}, d.clone()), doc! {"a": 1});
        assert_eq!(
            project(doc! {"b": {"d": true}}, d),
            doc! {"_id": 1, "b": {"d": 3}}
        );
    }

    #[test]
    fn exclusion_removes_named_fields() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}};
        assert_eq!(
            project(doc! {"a": 0, "b.c": 0}, d.clone()),
            doc! {"_id": 1, "b": {"d": 3}}
        );
        assert_eq!(
            project(doc! {"_id": 0}, d),
            doc! {"a": 1, "b": {"c": 2, "d": 3}}
        );
    }

    #[test]
    fn paths_into_arrays_apply_to_each_document() {
        let d = doc! {"_id": 1, "items": [{"sku": "x", "qty": 1}, 5, {"qty": 2}]};
        assert_eq!(
            project(doc! {"items.sku": 1}, d.clone()),
            doc! {"_id": 1, "items": [{"sku": "x"}, {}]}
        );
        assert_eq!(
            project(doc! {"items.qty": 0}, d),
            doc! {"_id": 1, "items": [{"sku": "x"}, 5, {}]}
        );
    }

    #[test]
    fn computed_fields_follow_included_ones() {
        let d = doc! {"_id": 1, "price": 5, "name": "n"};
        assert_eq!(
            project(doc! {"cost": "$price", "name": 1, "meta.kind": "fixed"}, d),
            doc! {"_id": 1, "name": "n", "cost": 5, "meta": {"kind": "fixed"}}
        );
    }

    #[test]
    fn mixing_and_collisions_are_invalid() {
        for spec in [
            doc! {"a": 1, "b": 0},
            doc! {"a": 1, "a.b": 1},
            doc! {"a": 0, "b": "$x"},
        ] {
            assert!(
                matches!(
                    Projection::parse(&spec),
                    Err(StoreError::InvalidQuery { .. })
                ),
                "{spec}"
            );
        }
        assert!(matches!(
            Projection::parse(&doc! {"a": {"$slice": 2}}),
            Err(StoreError::Unsupported { .. })
        ));
    }
}

//! Aggregation pipelines: `$match $project $addFields/$set $unset $sort $skip $limit $group
//! $count $unwind`, run over documents in memory. Any other stage is `Unsupported` naming it.
//!
//! The backend feeds `run` the collection's documents (narrowed, when it can, by the leading
//! `$match` via `leading_filter`); every stage, including that `$match`, is applied here.

use bson::{Bson, Document};

use super::super::{StoreError, StoreResult};
use super::expr::{Expression, set_field};
use super::filter::{Filter, parse_path};
use super::group::Group;
use super::projection::Projection;
use super::sort::Sort;

/// A parsed aggregation pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

#[derive(Debug, Clone)]
enum Stage {
    Match(Filter),
    Project(Projection),
    AddFields(Vec<(Vec<String>, Expression)>),
    Sort(Sort),
    Skip(u64),
    Limit(u64),
    Group(Group),
    Count(String),
    Unwind {
        parts: Vec<String>,
        include_array_index: Option<String>,
        preserve_null_and_empty: bool,
    },
}

impl Pipeline {
    pub fn parse(stages: &[Document]) -> StoreResult<Pipeline> {
        let stages = stages
            .iter()
            .map(parse_stage)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Pipeline { stages })
    }

    /// A leading `$match` the backend may use to pick candidates (it is still applied by `run`).
    pub fn leading_filter(&self) -> Option<&Filter> {
        match self.stages.first() {
            Some(Stage::Match(filter)) => Some(filter),
            _ => None,
        }
    }

    pub fn run(&self, documents: Vec<Document>) -> StoreResult<Vec<Document>> {
        let mut documents = documents;
        for stage in &self.stages {
            documents = stage.run(documents);
        }
        Ok(documents)
    }
}

fn parse_stage(stage: &Document) -> StoreResult<Stage> {
    let mut entries = stage.iter();
    let (Some((name, spec)), None) = (entries.next(), entries.next()) else {
        return Err(StoreError::invalid(
            "each pipeline stage is a document with exactly one field",
        ));
    };
    Ok(match name.as_str() {
        "$match" => Stage::Match(Filter::parse(as_document(name, spec)?)?),
        "$project" => {
            let spec = as_document(name, spec)?;
            if spec.is_empty() {
                return Err(StoreError::invalid("$project needs at least one field"));
            }
            Stage::Project(Projection::parse(spec)?)
        }
        "$unset" => Stage::Project(Projection::parse(&unset_spec(spec)?)?),
        "$addFields" | "$set" => Stage::AddFields(
            as_document(name, spec)?
                .iter()
                .map(|(path, value)| Ok((parse_path(path)?, Expression::parse(value)?)))
                .collect::<StoreResult<_>>()?,
        ),
        "$sort" => {
            let spec = as_document(name, spec)?;
            if spec.is_empty() {
                return Err(StoreError::invalid("$sort needs at least one key"));
            }
            Stage::Sort(Sort::parse(spec)?)
        }
        "$skip" => Stage::Skip(count_argument(name, spec, true)?),
        "$limit" => Stage::Limit(count_argument(name, spec, false)?),
        "$group" => Stage::Group(Group::parse(spec)?),
        "$count" => Stage::Count(count_field(spec)?),
        "$unwind" => parse_unwind(spec)?,
        other => return Err(StoreError::unsupported(other)),
    })
}

fn as_document<'a>(stage: &str, spec: &'a Bson) -> StoreResult<&'a Document> {
    match spec {
        Bson::Document(d) => Ok(d),
        _ => Err(StoreError::invalid(format!("{stage} needs a document"))),
    }
}

fn unset_spec(spec: &Bson) -> StoreResult<Document> {
    let names: Vec<&Bson> = match spec {
        Bson::String(_) => vec![spec],
        Bson::Array(items) if !items.is_empty() => items.iter().collect(),
        _ => {
            return Err(StoreError::invalid(
                "$unset needs a field name or an array of them",
            ));
        }
    };
    let mut projection = Document::new();
    for name in names {
        let Bson::String(name) = name else {
            return Err(StoreError::invalid("$unset field names must be strings"));
        };
        projection.insert(name.clone(), 0);
    }
    Ok(projection)
}

fn count_argument(stage: &str, spec: &Bson, allow_zero: bool) -> StoreResult<u64> {
    let n = match spec {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => *f as i64,
        _ => return Err(StoreError::invalid(format!("{stage} needs a whole number"))),
    };
    match u64::try_from(n) {
        Ok(n) if n > 0 || allow_zero => Ok(n),
        _ => Err(StoreError::invalid(format!(
            "{stage} needs a {} number",
            if allow_zero {
                "non-negative"
            } else {
                "positive"
            }
        ))),
    }
}

fn count_field(spec: &Bson) -> StoreResult<String> {
    match spec {
        Bson::String(name) if !name.is_empty() && !name.starts_with('$') && !name.contains('.') => {
            Ok(name.clone())
        }
        _ => Err(StoreError::invalid(
            "$count needs a non-empty field name without '$' or '.'",
        )),
    }
}

fn field_reference(value: &str, what: &str) -> StoreResult<Vec<String>> {
    match value.strip_prefix('$') {
        Some(path) if !path.starts_with('$') => parse_path(path),
        _ => Err(StoreError::invalid(format!(
            "{what} must be a field path starting with '$'"
        ))),
    }
}

fn parse_unwind(spec: &Bson) -> StoreResult<Stage> {
    match spec {
        Bson::String(path) => Ok(Stage::Unwind {
            parts: field_reference(path, "$unwind path")?,
            include_array_index: None,
            preserve_null_and_empty: false,
        }),
        Bson::Document(d) => {
            let mut parts = None;
            let mut include_array_index = None;
            let mut preserve_null_and_empty = false;
            for (key, value) in d {
                match (key.as_str(), value) {
                    ("path", Bson::String(p)) => parts = Some(field_reference(p, "$unwind path")?),
                    ("includeArrayIndex", Bson::String(name))
                        if !name.is_empty() && !name.starts_with('$') =>
                    {
                        include_array_index = Some(name.clone());
                    }
                    ("preserveNullAndEmptyArrays", Bson::Boolean(b)) => {
                        preserve_null_and_empty = *b;
                    }
                    (other, _) => {
                        return Err(StoreError::invalid(format!(
                            "$unwind: unexpected or malformed option '{other}'"
                        )));
                    }
                }
            }
            Ok(Stage::Unwind {
                parts: parts.ok_or_else(|| StoreError::invalid("$unwind needs a path"))?,
                include_array_index,
                preserve_null_and_empty,
            })
        }
        _ => Err(StoreError::invalid("$unwind needs a path or a document")),
    }
}

impl Stage {
    fn run(&self, documents: Vec<Document>) -> Vec<Document> {
        match self {
            Stage::Match(filter) => documents
                .into_iter()
                .filter(|d| filter.matches(d))
                .collect(),
            Stage::Project(projection) => documents.iter().map(|d| projection.apply(d)).collect(),
            Stage::AddFields(fields) => documents
                .into_iter()
                .map(|mut document| {
                    let values: Vec<Option<Bson>> =
                        fields.iter().map(|(_, e)| e.evaluate(&document)).collect();
                    for ((parts, _), value) in fields.iter().zip(values) {
                        if let Some(value) = value {
                            set_field(&mut document, parts, value);
                        }
                    }
                    document
                })
                .collect(),
            Stage::Sort(sort) => {
                let mut documents = documents;
                sort.sort(&mut documents);
                documents
            }
            Stage::Skip(n) => documents
                .into_iter()
                .skip(usize::try_from(*n).unwrap_or(usize::MAX))
                .collect(),
            Stage::Limit(n) => documents
                .into_iter()
                .take(usize::try_from(*n).unwrap_or(usize::MAX))
                .collect(),
            Stage::Group(group) => group.run(documents),
            Stage::Count(name) => {
                if documents.is_empty() {
                    return Vec::new();
                }
                let count = i64::try_from(documents.len()).unwrap_or(i64::MAX);
                let mut out = Document::new();
                out.insert(
                    name.clone(),
                    i32::try_from(count).map_or(Bson::Int64(count), Bson::Int32),
                );
                vec![out]
            }
            Stage::Unwind {
                parts,
                include_array_index,
                preserve_null_and_empty,
            } => documents
                .into_iter()
                .flat_map(|d| {
                    unwind(
                        d,
                        parts,
                        include_array_index.as_deref(),
                        *preserve_null_and_empty,
                    )
                })
                .collect(),
        }
    }
}

/// One document per element of the array at `parts`; see MongoDB's `$unwind`.
fn unwind(
    document: Document,
    parts: &[String],
    include_array_index: Option<&str>,
    preserve_null_and_empty: bool,
) -> Vec<Document> {
    let value = Expression::Field(parts.to_vec()).evaluate(&document);
    let with_index = |mut d: Document, index: Option<i64>| {
        if let Some(name) = include_array_index {
            d.insert(name, index.map_or(Bson::Null, Bson::Int64));
        }
        d
    };
    match value {
        Some(Bson::Array(items)) if !items.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let mut copy = document.clone();
                set_field(&mut copy, parts, item);
                with_index(copy, i64::try_from(i).ok())
            })
            .collect(),
        Some(Bson::Array(_)) | Some(Bson::Null) | None => {
            if preserve_null_and_empty {
                let mut copy = document;
                if matches!(value, Some(Bson::Array(_))) {
                    remove_field(&mut copy, parts);
                }
                vec![with_index(copy, None)]
            } else {
                Vec::new()
            }
        }
        // A non-array value is treated as a one-element array.
        Some(_) => vec![with_index(document, Some(0))],
    }
}

fn remove_field(document: &mut Document, parts: &[String]) {
    match parts {
        [] => {}
        [last] => {
            document.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Bson::Document(inner)) = document.get_mut(first) {
                remove_field(inner, rest);
            }
        }
    }
}

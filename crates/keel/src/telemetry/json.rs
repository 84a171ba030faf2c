//! The production log line: one JSON object per event.
//!
//! `{"timestamp","level","message","service","env","version","hostname","target", <span fields>,
//! <event fields>}`. Span fields come from every enclosing span, outermost first, so a request's
//! `request_id` and `trace_id` are on every line logged while handling it. Dotted field names
//! nest: `evt.category = "task"` becomes `"evt":{"category":"task"}` (see `evt!`), and
//! `evt.tags` (comma-joined) becomes an array.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::config::Config;
use crate::http::json_text::{
    StringContents, write_f64, write_i64, write_str, write_u64, write_utc_millis_now,
};

/// The fields that describe the process, the same on every line.
#[derive(Debug, Clone)]
pub struct ProcessFields {
    pub service: String,
    pub env: String,
    pub version: String,
    pub hostname: String,
}

impl ProcessFields {
    pub fn from_config(config: &Config) -> Self {
        Self {
            service: config.telemetry.service_name.clone(),
            env: config.env.as_str().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
        }
    }
}

/// The `tracing` layer writing keel's JSON lines to `W` (a whole line per `write_all`).
///
/// A layer of its own rather than `tracing_subscriber::fmt` with a custom format: a span's
/// fields are kept as they were encoded (names and JSON values, [`SpanFields`]) instead of as
/// text read back for every line, the process fields are encoded once, and each thread builds
/// its lines in buffers it keeps, so a request's line allocates nothing (it was a fifth of a
/// health request's instructions, `docs/performance.md`).
pub struct JsonLayer<W> {
    /// `service`, `env`, `version`, `hostname`, each value already JSON.
    process: [(&'static str, Box<[u8]>); 4],
    writer: W,
    /// This layer among those the process made (a thread's plan holds the text of one
    /// layer's process fields: a line of another layer plans again).
    id: u64,
}

/// The last [`JsonLayer`] id given (ids start at 1; a plan of layer 0 is no plan).
static LAYERS: AtomicU64 = AtomicU64::new(0);

impl<W> JsonLayer<W> {
    pub fn new(process: ProcessFields, writer: W) -> Self {
        let encoded = |value: &str| {
            let mut out = Vec::with_capacity(value.len() + 2);
            write_str(&mut out, value);
            out.into_boxed_slice()
        };
        Self {
            process: [
                ("service", encoded(&process.service)),
                ("env", encoded(&process.env)),
                ("version", encoded(&process.version)),
                ("hostname", encoded(&process.hostname)),
            ],
            writer,
            id: LAYERS.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }
}

/// A thread's line buffers grown past this are dropped after the line (one huge event must
/// not keep its memory on every thread that ever logged one).
const KEPT_CAPACITY: usize = 64 * 1024;

thread_local! {
    static LINE: RefCell<FlatLine> = RefCell::new(FlatLine::default());
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut Encoder(&mut fields));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Every span got its `SpanFields` from `on_new_span`.
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Encoder(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut FlatLine| self.write_line(line, event, &ctx);
        let kept = LINE.try_with(|line| {
            let mut line = line.try_borrow_mut().ok()?;
            let result = write(&mut line);
            if line.values.capacity() + line.out.capacity() > KEPT_CAPACITY {
                *line = FlatLine::default();
            }
            Some(result)
        });
        // The thread's buffers are taken (a field's `Display` that logs while the line is
        // built) or gone (the thread is exiting): the line is built in fresh ones.
        let result = kept
            .ok()
            .flatten()
            .unwrap_or_else(|| write(&mut FlatLine::default()));
        if let Err(error) = result {
            eprintln!("keel: cannot write a log line: {error}");
        }
    }
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn write_line<S>(
        &self,
        line: &mut FlatLine,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
    ) -> std::io::Result<()>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        line.clear();
        self.collect(ctx, event, line);
        line.render(self.id, &self.process);
        self.writer
            .make_writer_for(event.metadata())
            .write_all(&line.out)
    }

    /// Every field of the line, flat, in the order a later one overrides an earlier one.
    fn collect<S>(&self, ctx: &Context<'_, S>, event: &Event<'_>, line: &mut FlatLine)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        line.push_encoded("timestamp", false, |out| {
            out.push(b'"');
            write_utc_millis_now(out);
            out.push(b'"');
        });
        line.push_constant("level", Constant::Json(level_json(meta.level())));
        line.push_constant("message", Constant::Json(b"\"\""));
        for (index, (name, _)) in self.process.iter().enumerate() {
            line.push_constant(name, Constant::Process(index));
        }
        line.push_constant("target", Constant::Str(meta.target()));
        if let Some(innermost) = ctx.event_span(event) {
            let push_fields = |line: &mut FlatLine, span: &SpanRef<'_, S>| {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.push_span_fields(fields);
                }
            };
            // One span (a request's) is read as it is, without collecting the scope to walk
            // it from its root.
            if innermost.parent().is_none() {
                push_fields(line, &innermost);
            } else {
                for span in innermost.scope().from_root() {
                    push_fields(line, &span);
                }
            }
            line.push_constant("span", Constant::Str(innermost.name()));
        }
        event.record(&mut Encoder(line));
    }
}

/// A level's name as a JSON string.
fn level_json(level: &tracing::Level) -> &'static [u8] {
    match *level {
        tracing::Level::TRACE => b"\"trace\"",
        tracing::Level::DEBUG => b"\"debug\"",
        tracing::Level::INFO => b"\"info\"",
        tracing::Level::WARN => b"\"warn\"",
        tracing::Level::ERROR => b"\"error\"",
    }
}

/// The fields of one line, in the order a later field overrides an earlier one (process
/// fields, span fields outermost first, the event's), and the line rendered from them into
/// `out`. A recorded value (and the timestamp) is encoded once as JSON into `values`; a
/// formatter's constant (level, message placeholder, process fields, target, span name) is
/// only named by where it comes from ([`Constant`]) until a plan or a nested line needs its
/// text.
///
/// A line whose recorded names are all plain (no dots, none reserved) — every request log line —
/// is written without a `Value` tree (`render_flat`): the fields sorted by name, the last of
/// equal names kept, which are the bytes a sorted map would give. Otherwise (`evt.*` events) the
/// recorded fields go through `insert_field`, which nests dotted names and renames reserved ones
/// (`render_nested`). Which of the two, the sorted order and the constants' text depend on the
/// names and the constants alone: they are worked out once per kind of line (`plan`), not per
/// field pushed, and the constants are written with their keys as literal text between the
/// recorded values.
struct FlatLine {
    fields: Vec<LineField>,
    values: Vec<u8>,
    /// The rendered line, newline included.
    out: Vec<u8>,
    /// How `render_flat` writes a line like the one `plan_fields` describes: for each value
    /// kept that is not a constant, in name order, the literal text before it in `literals`
    /// (keys, commas, the constants between) and its index in `fields`; then `plan_tail`, the
    /// text after the last one. Made by sorting once, then reused while a thread's lines are
    /// of the same kind (every request's line).
    plan: Vec<(Range<usize>, usize)>,
    plan_tail: Range<usize>,
    literals: Vec<u8>,
    /// What `plan` was made for (plain names only): each field's name, whether it was
    /// recorded and its constant, and the layer whose process fields those are.
    plan_fields: Vec<(&'static str, bool, Option<Constant>)>,
    plan_layer: u64,
}

struct LineField {
    name: &'static str,
    /// Its JSON text in `values`: a recorded value's, the timestamp's, or a constant's once
    /// written there (`write_constants`).
    value: Range<usize>,
    /// Recorded by a span or the event (rather than set by the formatter): nested and kept
    /// from overwriting process fields on the map path.
    is_recorded: bool,
    constant: Option<Constant>,
}

/// A formatter's value that is the same on every line of a kind, named by where it comes from.
#[derive(Debug, Clone, Copy)]
enum Constant {
    /// JSON text as it is (a level's name, the message placeholder).
    Json(&'static [u8]),
    /// A text written as a JSON string (a target, a span's name).
    Str(&'static str),
    /// The layer's process field of this index, already JSON.
    Process(usize),
}

impl PartialEq for Constant {
    /// The same source: the same `'static` text (its address and length), or the same
    /// process field (of the same layer: `plan_layer`).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Constant::Json(a), Constant::Json(b)) => std::ptr::eq(*a, *b),
            (Constant::Str(a), Constant::Str(b)) => std::ptr::eq(*a, *b),
            (Constant::Process(a), Constant::Process(b)) => a == b,
            _ => false,
        }
    }
}

impl Constant {
    fn write(self, out: &mut Vec<u8>, process: &[(&'static str, Box<[u8]>)]) {
        match self {
            Constant::Json(json) => out.extend_from_slice(json),
            Constant::Str(text) => write_str(out, text),
            Constant::Process(index) => out.extend_from_slice(&process[index].1),
        }
    }
}

impl Default for FlatLine {
    fn default() -> Self {
        FlatLine {
            fields: Vec::with_capacity(24),
            values: Vec::with_capacity(512),
            out: Vec::with_capacity(1024),
            plan: Vec::with_capacity(24),
            plan_tail: 0..0,
            literals: Vec::with_capacity(512),
            plan_fields: Vec::with_capacity(24),
            plan_layer: 0,
        }
    }
}

const RESERVED: &[&str] = &[
    "timestamp",
    "level",
    "service",
    "env",
    "version",
    "hostname",
];

impl FlatLine {
    fn clear(&mut self) {
        self.fields.clear();
        self.values.clear();
        self.out.clear();
    }

    fn push_encoded(
        &mut self,
        name: &'static str,
        is_recorded: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.values.len();
        encode(&mut self.values);
        self.fields.push(LineField {
            name,
            value: start..self.values.len(),
            is_recorded,
            constant: None,
        });
    }

    /// A field the formatter sets to a constant (level, message placeholder, process fields,
    /// target, span name): named, not written.
    fn push_constant(&mut self, name: &'static str, constant: Constant) {
        self.fields.push(LineField {
            name,
            value: 0..0,
            is_recorded: false,
            constant: Some(constant),
        });
    }

    /// A span's fields, as [`SpanFields`] keeps them.
    fn push_span_fields(&mut self, span: &SpanFields) {
        for (name, value) in &span.fields {
            self.push_encoded(name, true, |out| {
                out.extend_from_slice(&span.values[value.clone()])
            });
        }
    }

    fn value(&self, field: &LineField) -> &[u8] {
        &self.values[field.value.clone()]
    }

    /// Writes the line into `out`, newline included. `layer` and `process`: the layer's id
    /// and process fields, which [`Constant::Process`] names.
    fn render(&mut self, layer: u64, process: &[(&'static str, Box<[u8]>)]) {
        // Only plain names are planned: a line of the plan's kind is plain, and a line that
        // is not leaves the plan to the next plain one.
        if self.is_planned(layer) {
            self.render_flat();
        } else if self.names_are_plain() {
            self.plan(layer, process);
            self.render_flat();
        } else {
            self.write_constants(process);
            self.render_nested();
        }
        self.out.push(b'\n');
    }

    /// Writes each constant's text into `values` (the nested path reads every value there).
    fn write_constants(&mut self, process: &[(&'static str, Box<[u8]>)]) {
        for field in &mut self.fields {
            if let Some(constant) = field.constant {
                let start = self.values.len();
                constant.write(&mut self.values, process);
                field.value = start..self.values.len();
            }
        }
    }

    /// No recorded name is dotted or reserved.
    fn names_are_plain(&self) -> bool {
        !self.fields.iter().any(|field| {
            field.is_recorded && (field.name.contains('.') || RESERVED.contains(&field.name))
        })
    }

    /// `plan` was made for a line of this kind: the same names (the same `&'static str`s; equal
    /// text elsewhere only plans again) in the same order, each recorded or not alike, with
    /// the same constants, of the same layer.
    fn is_planned(&self, layer: u64) -> bool {
        self.plan_layer == layer
            && self.plan_fields.len() == self.fields.len()
            && self.plan_fields.iter().zip(&self.fields).all(
                |(&(name, is_recorded, constant), field)| {
                    std::ptr::eq(name, field.name)
                        && is_recorded == field.is_recorded
                        && constant == field.constant
                },
            )
    }

    fn render_flat(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        out.reserve(self.values.len() + self.literals.len() + 1);
        for (literal, index) in &self.plan {
            out.extend_from_slice(&self.literals[literal.clone()]);
            out.extend_from_slice(self.value(&self.fields[*index]));
        }
        out.extend_from_slice(&self.literals[self.plan_tail.clone()]);
        self.out = out;
    }

    /// Makes `plan` for the fields of this line. The fields are sorted by name, stably: among
    /// equal names the last pushed comes last, and is the one kept — the bytes a sorted map
    /// would give.
    fn plan(&mut self, layer: u64, process: &[(&'static str, Box<[u8]>)]) {
        self.plan_layer = layer;
        self.plan_fields.clear();
        self.plan_fields.extend(
            self.fields
                .iter()
                .map(|field| (field.name, field.is_recorded, field.constant)),
        );
        let mut order: Vec<usize> = (0..self.fields.len()).collect();
        let fields = &self.fields;
        order.sort_by(|&a, &b| fields[a].name.cmp(fields[b].name));
        self.plan.clear();
        self.literals.clear();
        self.literals.push(b'{');
        let mut literal_start = 0;
        for (at, &index) in order.iter().enumerate() {
            let field = &fields[index];
            if order
                .get(at + 1)
                .is_some_and(|&next| fields[next].name == field.name)
            {
                continue;
            }
            // Past the opening brace, a field was written before this one.
            if self.literals.len() > 1 {
                self.literals.push(b',');
            }
            write_str(&mut self.literals, field.name);
            self.literals.push(b':');
            match field.constant {
                Some(constant) => constant.write(&mut self.literals, process),
                None => {
                    self.plan.push((literal_start..self.literals.len(), index));
                    literal_start = self.literals.len();
                }
            }
        }
        self.literals.push(b'}');
        self.plan_tail = literal_start..self.literals.len();
    }

    fn render_nested(&mut self) {
        let mut line = Map::new();
        for field in &self.fields {
            // Each value was written as JSON by `Encoder` or `write_str`: it parses.
            let Ok(value) = serde_json::from_slice::<Value>(self.value(field)) else {
                continue;
            };
            if field.is_recorded {
                insert_field(&mut line, field.name, value);
            } else {
                line.insert(field.name.to_owned(), value);
            }
        }
        // A map of `Value`s always serializes.
        let _ = serde_json::to_writer(&mut self.out, &line);
    }
}

/// Where [`Encoder`] puts each recorded field: its name and a closure writing its JSON value.
trait FieldSink {
    fn push_field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>));
}

impl FieldSink for FlatLine {
    fn push_field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>)) {
        self.push_encoded(name, true, encode);
    }
}

/// A span's recorded fields, in its extensions: each name with its JSON value's range in
/// `values`, in the order recorded (a field recorded again later is appended and wins).
struct SpanFields {
    fields: Vec<(&'static str, Range<usize>)>,
    values: Vec<u8>,
}

impl Default for SpanFields {
    fn default() -> Self {
        SpanFields {
            fields: Vec::with_capacity(8),
            values: Vec::with_capacity(160),
        }
    }
}

impl FieldSink for SpanFields {
    fn push_field(&mut self, name: &'static str, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.values.len();
        encode(&mut self.values);
        self.fields.push((name, start..self.values.len()));
    }
}

/// Records each field of an event or span as JSON into a [`FieldSink`].
struct Encoder<'a, S>(&'a mut S);

/// Values are written with `http::json_text`, whose bytes are serde_json's (it pins them);
/// `Display`/`Debug` values are escaped as they are formatted, with no `String` in between.
/// (A formatting implementation that fails leaves what it wrote; `format!` panicked.)
impl<S: FieldSink> Visit for Encoder<'_, S> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_field(field.name(), |out| write_str(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push_field(field.name(), |out| {
            out.extend_from_slice(if value { b"true" } else { b"false" })
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push_field(field.name(), |out| write_i64(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push_field(field.name(), |out| write_u64(out, value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As `Value::from(f64)`: a non-finite number is null.
        self.0.push_field(field.name(), |out| write_f64(out, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.push_field(field.name(), |out| {
            write_formatted(out, format_args!("{value}"))
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_field(field.name(), |out| {
            write_formatted(out, format_args!("{value:?}"))
        });
    }
}

/// `args` formatted as a JSON string.
fn write_formatted(out: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    out.push(b'"');
    let _ = fmt::Write::write_fmt(&mut StringContents(out), args);
    out.push(b'"');
}

/// Inserts `key` (nesting dotted names) without letting an event overwrite process fields.
fn insert_field(line: &mut Map<String, Value>, key: &str, value: Value) {
    if RESERVED.contains(&key) {
        line.insert(format!("field.{key}"), value);
        return;
    }
    let value = if key == "evt.tags" {
        match value {
            Value::String(tags) => Value::Array(
                tags.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.to_owned()))
                    .collect(),
            ),
            other => other,
        }
    } else {
        value
    };
    match key.split_once('.') {
        Some((head, rest)) if !head.is_empty() && !rest.is_empty() => {
            let entry = line
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(nested) = entry {
                insert_field(nested, rest, value);
            }
        }
        _ => {
            line.insert(key.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::secrets::Secret;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn capture(body: impl FnOnce()) -> Vec<Value> {
        capture_text(body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn capture_text(body: impl FnOnce()) -> String {
        capture_text_as("keel", body)
    }

    /// `capture_text` with a layer whose service is `service`.
    fn capture_text_as(service: &str, body: impl FnOnce()) -> String {
        let captured = Captured::default();
        let process = ProcessFields {
            service: service.into(),
            env: "production".into(),
            version: "1.2.3".into(),
            hostname: "host-a".into(),
        };
        let subscriber =
            tracing_subscriber::registry().with(JsonLayer::new(process, captured.clone()));
        tracing::subscriber::with_default(subscriber, body);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_lines_are_written_as_the_sorted_map_would_write_them() {
        let text = capture_text(|| {
            let span = tracing::info_span!("http.request", request_id = "r-1", n = 3u64);
            let _entered = span.enter();
            tracing::info!(
                request_x = 1u64,
                request = 2u64,
                requesta = 3u64,
                e = ?std::io::Error::other("disk \"full\""),
                status = 200u64,
                delta = -4i64,
                ratio = 0.5,
                nan = f64::NAN,
                ok = true,
                who = %"a\"b\u{7}",
                list = ?vec![1, 2],
                target = "mine",
                "done"
            );
        });
        let line = text.lines().next().unwrap();
        let map: Value = serde_json::from_str(line).unwrap();
        assert_eq!(line, serde_json::to_string(&map).unwrap());
        assert_eq!(map["target"], "mine", "a later field of the same name wins");
        assert_eq!(map["nan"], Value::Null);
        assert_eq!(map["who"], "a\"b\u{7}");
        assert_eq!(map["list"], "[1, 2]");
        assert_eq!(
            map["e"],
            format!("{:?}", std::io::Error::other("disk \"full\""))
        );
        assert_eq!(map["n"], 3);
        assert_eq!(map["span"], "http.request");
        assert_eq!(map["message"], "done");
    }

    #[test]
    fn a_message_given_as_text_writes_the_line_a_format_string_writes() {
        let text = capture_text(|| {
            let span = tracing::info_span!("http.request", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!(status = 200u64, user_agent = "a \"b\"", "request completed");
            tracing::info!(
                status = 200u64,
                user_agent = "a \"b\"",
                message = "request completed",
            );
        });
        let lines: Vec<Value> = text
            .lines()
            .map(|line| {
                let mut map: Value = serde_json::from_str(line).unwrap();
                map["timestamp"] = Value::Null;
                map
            })
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"], "request completed");
        assert_eq!(lines[0], lines[1]);
        let without_time = |line: &str| {
            let start = line.find(r#""timestamp":""#).unwrap();
            let end = start + line[start..].find("Z\"").unwrap();
            format!("{}{}", &line[..start], &line[end..])
        };
        let raw: Vec<&str> = text.lines().collect();
        assert_eq!(without_time(raw[0]), without_time(raw[1]), "byte for byte");
    }

    #[test]
    fn repeated_lines_reuse_the_plan_and_still_write_the_sorted_map() {
        // The same kind of line again (its plan reused), another kind in between, a span
        // field recorded later (one more name: a new plan), and the first kind once more.
        let text = capture_text(|| {
            let span = tracing::info_span!(
                "http.request",
                request_id = "r-1",
                user_id = tracing::field::Empty
            );
            let _entered = span.enter();
            for status in [200u64, 404, 200] {
                tracing::info!(status, zeta = "z", alpha = status, "request completed");
            }
            tracing::warn!(other = true, "something else");
            span.record("user_id", "u-1");
            for (status, zeta, alpha) in [(201u64, "z", 1u64), (202, "y", 2)] {
                tracing::info!(status, zeta, alpha, "request completed");
            }
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        for line in &lines {
            let map: Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                *line,
                serde_json::to_string(&map).unwrap(),
                "sorted, each key once"
            );
        }
        let status = |i: usize| serde_json::from_str::<Value>(lines[i]).unwrap()["status"].clone();
        assert_eq!([status(0), status(1), status(2)], [200, 404, 200]);
        assert!(lines[3].contains(r#""other":true"#));
        assert!(lines[4].contains(r#""status":201"#) && lines[4].contains(r#""user_id":"u-1""#));
        assert!(lines[5].contains(r#""status":202"#) && lines[5].contains(r#""zeta":"y""#));
    }

    #[test]
    fn lines_carry_process_span_and_event_fields() {
        let lines = capture(|| {
            let span = tracing::info_span!("http.request", request_id = "r-1", trace_id = "t-1");
            let _entered = span.enter();
            tracing::info!(status = 200u64, "request finished");
        });
        let line = &lines[0];
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["level"], "info");
        assert_eq!(line["service"], "keel");
        assert_eq!(line["env"], "production");
        assert_eq!(line["version"], "1.2.3");
        assert_eq!(line["hostname"], "host-a");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["trace_id"], "t-1");
        assert_eq!(line["status"], 200);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn evt_fields_nest_and_tags_become_a_list() {
        let lines = capture(|| {
            crate::evt!(
                WARN,
                "security",
                "login_failed",
                "failure",
                tags = ["auth", "brute"],
                "login failed"
            );
        });
        let evt = &lines[0]["evt"];
        assert_eq!(evt["category"], "security");
        assert_eq!(evt["name"], "login_failed");
        assert_eq!(evt["outcome"], "failure");
        assert_eq!(evt["tags"], serde_json::json!(["auth", "brute"]));
        assert_eq!(lines[0]["level"], "warn");
    }

    #[test]
    fn span_fields_recorded_later_and_nested_lines_carry_them_too() {
        let lines = capture(|| {
            let span = tracing::info_span!(
                "http.request",
                request_id = "r-9",
                user_id = tracing::field::Empty
            );
            span.record("user_id", "u-1");
            let _entered = span.enter();
            tracing::info!("plain");
            crate::evt!(INFO, "security", "checked", "success", "nested");
        });
        for line in &lines {
            assert_eq!(line["request_id"], "r-9", "{line}");
            assert_eq!(line["user_id"], "u-1", "{line}");
        }
        assert_eq!(lines[1]["evt"]["name"], "checked");
    }

    #[test]
    fn spans_inside_spans_give_their_fields_outermost_first_and_the_innermost_name() {
        let lines = capture(|| {
            let job = tracing::info_span!("job", job = "j-1", shared = "outer");
            let _job = job.enter();
            tracing::warn!("in the job");
            let step = tracing::info_span!("step", step = 2u64, shared = "inner");
            let _step = step.enter();
            tracing::error!("in the step");
        });
        assert_eq!(lines[0]["span"], "job");
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["shared"], "outer");
        assert_eq!(lines[1]["span"], "step");
        assert_eq!(lines[1]["level"], "error");
        assert_eq!(lines[1]["job"], "j-1");
        assert_eq!(lines[1]["step"], 2);
        assert_eq!(lines[1]["shared"], "inner", "the inner span's field wins");
    }

    #[test]
    fn a_nested_line_between_plain_ones_leaves_them_their_plan() {
        let text = capture_text(|| {
            for round in 0..2u64 {
                tracing::info!(status = 200u64, round, "request completed");
                crate::evt!(INFO, "task", "ran", "success", "nested");
            }
            // A recorded field named as a reserved one is nested away, never planned flat.
            tracing::info!(status = 200u64, round = 2u64, "request completed");
            tracing::info!(level = "mine", round = 3u64, "request completed");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        for i in [0, 2, 4] {
            let map: Value = serde_json::from_str(lines[i]).unwrap();
            assert_eq!(lines[i], serde_json::to_string(&map).unwrap(), "line {i}");
            assert_eq!(map["round"], i as u64 / 2);
        }
        for i in [1, 3] {
            let map: Value = serde_json::from_str(lines[i]).unwrap();
            assert_eq!(map["evt"]["name"], "ran", "line {i}");
        }
        let last: Value = serde_json::from_str(lines[5]).unwrap();
        assert_eq!(last["level"], "info", "the formatter's level is kept");
        assert_eq!(last["round"], 3);
    }

    #[test]
    fn lines_with_the_same_names_keep_their_own_level_target_and_span() {
        // Each pair has the same field names, so the same plan if constants were not part of
        // a line's kind: a level, a target or a span name from another line would leak in.
        let lines = capture(|| {
            for round in 0..2u64 {
                let span = tracing::info_span!("first", id = round);
                let entered = span.enter();
                tracing::info!(target: "keel::a", n = round, "m");
                tracing::warn!(target: "keel::b", n = round, "m");
                drop(entered);
                let other = tracing::info_span!("second", id = round);
                let _entered = other.enter();
                tracing::info!(target: "keel::a", n = round, "m");
            }
        });
        assert_eq!(lines.len(), 6);
        for round in 0..2 {
            let [a, b, c] = [
                &lines[3 * round],
                &lines[3 * round + 1],
                &lines[3 * round + 2],
            ];
            assert_eq!(
                (a["level"].as_str(), a["target"].as_str()),
                (Some("info"), Some("keel::a"))
            );
            assert_eq!(
                (b["level"].as_str(), b["target"].as_str()),
                (Some("warn"), Some("keel::b"))
            );
            assert_eq!(
                (a["span"].as_str(), b["span"].as_str()),
                (Some("first"), Some("first"))
            );
            assert_eq!(c["span"], "second");
            for line in [a, b, c] {
                assert_eq!(line["n"], round as u64);
                assert_eq!(line["id"], round as u64);
            }
        }
    }

    #[test]
    fn a_line_of_another_layer_carries_that_layers_process_fields() {
        // The same event on the same thread through two layers, one after the other: the
        // thread's plan holds the first layer's process fields' text.
        let line = || tracing::info!(status = 200u64, "request completed");
        let first = capture_text_as("first-service", line);
        let second = capture_text_as("second-service", line);
        let service = |text: &str| {
            serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["service"].clone()
        };
        assert_eq!(service(&first), "first-service");
        assert_eq!(service(&second), "second-service");
    }

    #[test]
    fn a_huge_line_is_written_whole_and_the_next_one_is_not_touched_by_it() {
        let huge = "x".repeat(3 * KEPT_CAPACITY);
        let lines = capture(|| {
            tracing::info!(blob = huge.as_str(), "big");
            tracing::info!("small");
            tracing::info!(blob = "short", "small again");
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["blob"], huge.as_str());
        assert_eq!(lines[1]["message"], "small");
        assert!(lines[1].get("blob").is_none(), "{}", lines[1]);
        assert_eq!(lines[2]["blob"], "short");
    }

    #[test]
    fn an_event_cannot_overwrite_process_fields() {
        let lines = capture(|| tracing::info!(hostname = "evil", level = "none", "spoof"));
        assert_eq!(lines[0]["hostname"], "host-a");
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["field.hostname"], "evil");
        assert_eq!(lines[0]["field.level"], "none");
    }

    #[test]
    fn secrets_logged_by_mistake_stay_redacted() {
        let secret = Secret::new("hunter2-in-a-log-line");
        let lines = capture(|| tracing::info!(secret = ?secret, shown = %secret, "oops"));
        let text = lines[0].to_string();
        assert!(!text.contains("hunter2"), "{text}");
    }
}

//! A small reader of a stored document's top-level fields, for the paths that turn stored
//! documents straight into responses (a listing decodes 100 per request).
//!
//! bson's `RawIter` validates and wraps every element it passes — about 400 instructions each,
//! a fifth of a 100-item listing (`docs/performance.md`). This reads the types a view needs and
//! steps over every other type by its length. Stored documents are input like any other: every
//! length is checked against the bytes at hand, strings must be UTF-8, and a document that
//! does not parse is an error, never a panic or a read out of bounds.
//!
//! [`fields`] gives names and strings as checked `&str`s. [`elements`] is the same walk with
//! names and string values as [`RawText`] — bounds-checked bytes whose UTF-8 check is the
//! caller's ([`RawText::to_str`], or [`RawText::check`] and the bytes): a listing matches
//! field names as bytes and writes ASCII strings without `str::from_utf8` (a fifth of its
//! reading cost, `docs/performance.md`).

use bson::DateTime;
use bson::oid::ObjectId;

/// One field's value. Types a view has no use for are `Other`. A string is `&str` from
/// [`fields`], [`RawText`] from [`elements`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawField<'a, S = &'a str> {
    Double(f64),
    String(S),
    /// An embedded document's bytes (readable with [`fields`]).
    Document(&'a [u8]),
    /// An array's bytes: a document whose keys are "0", "1", … (readable with [`fields`]).
    Array(&'a [u8]),
    ObjectId(ObjectId),
    Bool(bool),
    DateTime(DateTime),
    Null,
    Int32(i32),
    Int64(i64),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed BSON at byte {at}: {problem}")]
pub struct RawError {
    pub at: usize,
    pub problem: &'static str,
}

/// A field name or string value, bounds-checked but not yet checked to be UTF-8. Not
/// comparable: `is_ascii` records what reading learned, not part of the text.
#[derive(Debug, Clone, Copy)]
pub struct RawText<'a> {
    bytes: &'a [u8],
    /// Where the name or the string's length prefix starts (for the error).
    at: usize,
    is_name: bool,
    /// Known to be ASCII (found while reading it); false: not known either way.
    is_ascii: bool,
}

impl<'a> RawText<'a> {
    /// The bytes, whether or not they are UTF-8.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The text; the error [`fields`] gives for it when it is not UTF-8.
    pub fn to_str(&self) -> Result<&'a str, RawError> {
        std::str::from_utf8(self.bytes).map_err(|_| {
            let problem = if self.is_name {
                "name is not UTF-8"
            } else {
                "string is not UTF-8"
            };
            error(self.at, problem)
        })
    }

    /// [`Self::to_str`]'s verdict, without `from_utf8` for ASCII text.
    pub fn check(&self) -> Result<(), RawError> {
        if self.is_ascii || self.bytes.is_ascii() {
            Ok(())
        } else {
            self.to_str().map(|_| ())
        }
    }
}

/// The fields of one BSON document, in stored order, names and strings checked to be UTF-8.
pub struct RawFields<'a>(RawElements<'a>);

/// The fields of one BSON document, in stored order, names and strings unchecked.
pub struct RawElements<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

/// Reads the fields of `document` (a whole BSON document: length, elements, NUL).
pub fn fields(document: &[u8]) -> Result<RawFields<'_>, RawError> {
    elements(document).map(RawFields)
}

/// [`fields`], with names and string values left to the caller to check ([`RawText`]).
pub fn elements(document: &[u8]) -> Result<RawElements<'_>, RawError> {
    let length = read_len(document, 0)?;
    if length != document.len() || length < 5 || document[length - 1] != 0 {
        return Err(RawError {
            at: 0,
            problem: "document length does not match its bytes",
        });
    }
    Ok(RawElements {
        bytes: &document[..length - 1],
        at: 4,
        failed: false,
    })
}

fn error(at: usize, problem: &'static str) -> RawError {
    RawError { at, problem }
}

fn take(bytes: &[u8], at: usize, n: usize) -> Result<&[u8], RawError> {
    at.checked_add(n)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| error(at, "value runs past the end of the document"))
}

fn read_len(bytes: &[u8], at: usize) -> Result<usize, RawError> {
    let raw = take(bytes, at, 4)?;
    let n = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    usize::try_from(n).map_err(|_| error(at, "negative length"))
}

fn read_i64(bytes: &[u8], at: usize) -> Result<i64, RawError> {
    let raw = take(bytes, at, 8)?;
    let mut buf = [0u8; 8];
    buf.copy_from_slice(raw);
    Ok(i64::from_le_bytes(buf))
}

/// A NUL-terminated key or regex part starting at `at`: the text and the index after the NUL.
///
/// Eight bytes at a time, noting on the way whether every byte before the NUL is ASCII (so
/// [`RawText::check`] of a name costs nothing): a listing reads ~10 names per item, and the
/// byte-at-a-time search was the hottest loop of its rendering (`docs/performance.md`).
#[inline(always)]
fn read_cstr(bytes: &[u8], at: usize) -> Result<(RawText<'_>, usize), RawError> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let rest = bytes.get(at..).unwrap_or_default();
    let mut offset = 0;
    // The OR of every byte before the NUL: its high bits say whether one is not ASCII.
    let mut seen = 0u64;
    let nul = loop {
        let Some(chunk) = rest.get(offset..offset + 8) else {
            let tail = &rest[offset..];
            let i = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| error(at, "unterminated name"))?;
            seen |= tail[..i].iter().fold(0, |acc, &b| acc | u64::from(b));
            break offset + i;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // The lowest byte flagged here is the first zero byte (bytes above it may be flagged
        // by the borrow; they are past the NUL).
        let zeros = word.wrapping_sub(ONES) & !word & HIGH;
        if zeros != 0 {
            let i = (zeros.trailing_zeros() / 8) as usize;
            seen |= word & ((1u64 << (8 * i)) - 1);
            break offset + i;
        }
        seen |= word;
        offset += 8;
    };
    let text = RawText {
        bytes: &rest[..nul],
        at,
        is_name: true,
        is_ascii: seen & HIGH == 0,
    };
    Ok((text, at + nul + 1))
}

/// A length-prefixed string (`int32 length, bytes, NUL`) at `at`: the text and the index after.
fn read_string(bytes: &[u8], at: usize) -> Result<(RawText<'_>, usize), RawError> {
    let length = read_len(bytes, at)?;
    if length == 0 {
        return Err(error(at, "string length 0"));
    }
    let raw = take(bytes, at + 4, length)?;
    if raw[length - 1] != 0 {
        return Err(error(at, "string is not NUL-terminated"));
    }
    let text = RawText {
        bytes: &raw[..length - 1],
        at,
        is_name: false,
        is_ascii: false,
    };
    Ok((text, at + 4 + length))
}

impl<'a> RawElements<'a> {
    #[inline(always)]
    fn element(&mut self) -> Result<(RawText<'a>, RawField<'a, RawText<'a>>), RawError> {
        let bytes = self.bytes;
        let kind = bytes[self.at];
        let (key, at) = read_cstr(bytes, self.at + 1)?;
        let (value, next) = match kind {
            0x01 => {
                let bits = read_i64(bytes, at)?;
                (RawField::Double(f64::from_bits(bits as u64)), at + 8)
            }
            0x02 => {
                let (text, next) = read_string(bytes, at)?;
                (RawField::String(text), next)
            }
            0x03 | 0x04 => {
                let length = read_len(bytes, at)?;
                let nested = take(bytes, at, length)?;
                fields(nested)?;
                let value = if kind == 0x03 {
                    RawField::Document(nested)
                } else {
                    RawField::Array(nested)
                };
                (value, at + length)
            }
            0x05 => {
                let length = read_len(bytes, at)?;
                take(bytes, at + 4, 1 + length)?;
                (RawField::Other, at + 5 + length)
            }
            0x06 | 0x7F | 0xFF => (RawField::Other, at),
            0x07 => {
                let raw = take(bytes, at, 12)?;
                let mut id = [0u8; 12];
                id.copy_from_slice(raw);
                (RawField::ObjectId(ObjectId::from_bytes(id)), at + 12)
            }
            0x08 => match take(bytes, at, 1)?[0] {
                0 => (RawField::Bool(false), at + 1),
                1 => (RawField::Bool(true), at + 1),
                _ => return Err(error(at, "boolean is neither 0 nor 1")),
            },
            0x09 => (
                RawField::DateTime(DateTime::from_millis(read_i64(bytes, at)?)),
                at + 8,
            ),
            0x0A => (RawField::Null, at),
            0x0B => {
                let (pattern, after_pattern) = read_cstr(bytes, at)?;
                pattern.to_str()?;
                let (options, next) = read_cstr(bytes, after_pattern)?;
                options.to_str()?;
                (RawField::Other, next)
            }
            0x0C => {
                let (namespace, next) = read_string(bytes, at)?;
                namespace.to_str()?;
                take(bytes, next, 12)?;
                (RawField::Other, next + 12)
            }
            0x0D | 0x0E => {
                let (code, next) = read_string(bytes, at)?;
                code.to_str()?;
                (RawField::Other, next)
            }
            0x0F => {
                let length = read_len(bytes, at)?;
                if length < 14 {
                    return Err(error(at, "code with scope shorter than its parts"));
                }
                take(bytes, at, length)?;
                (RawField::Other, at + length)
            }
            0x10 => {
                let raw = take(bytes, at, 4)?;
                let n = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                (RawField::Int32(n), at + 4)
            }
            0x11 => {
                take(bytes, at, 8)?;
                (RawField::Other, at + 8)
            }
            0x12 => (RawField::Int64(read_i64(bytes, at)?), at + 8),
            0x13 => {
                take(bytes, at, 16)?;
                (RawField::Other, at + 16)
            }
            _ => return Err(error(self.at, "unknown element type")),
        };
        if next > bytes.len() {
            return Err(error(at, "value runs past the end of the document"));
        }
        self.at = next;
        Ok((key, value))
    }
}

impl<'a> Iterator for RawElements<'a> {
    type Item = Result<(RawText<'a>, RawField<'a, RawText<'a>>), RawError>;

    // Inlined into the loops of the listing's reader: a call returned the ~100-byte element
    // through memory, and its prologue and epilogue were a third of the walk's instructions.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let element = self.element();
        self.failed = element.is_err();
        Some(element)
    }
}

impl<'a> Iterator for RawFields<'a> {
    type Item = Result<(&'a str, RawField<'a>), RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        let checked = self.0.next()?.and_then(|(key, value)| {
            let key = key.to_str()?;
            Ok((key, value.checked()?))
        });
        if checked.is_err() {
            self.0.failed = true;
        }
        Some(checked)
    }
}

impl<'a> RawField<'a, RawText<'a>> {
    /// The value with its string, if it is one, checked to be UTF-8.
    pub fn checked(self) -> Result<RawField<'a>, RawError> {
        Ok(match self {
            RawField::Double(n) => RawField::Double(n),
            RawField::String(text) => RawField::String(text.to_str()?),
            RawField::Document(d) => RawField::Document(d),
            RawField::Array(a) => RawField::Array(a),
            RawField::ObjectId(id) => RawField::ObjectId(id),
            RawField::Bool(b) => RawField::Bool(b),
            RawField::DateTime(at) => RawField::DateTime(at),
            RawField::Null => RawField::Null,
            RawField::Int32(n) => RawField::Int32(n),
            RawField::Int64(n) => RawField::Int64(n),
            RawField::Other => RawField::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use bson::{Binary, Bson, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp};
    use bson::{doc, spec::BinarySubtype};

    use super::*;

    fn every_type() -> Document {
        doc! {
            "double": 1.5, "string": "héllo", "doc": {"a": 1}, "array": ["x", 2],
            "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "undefined": Bson::Undefined, "oid": ObjectId::new(), "yes": true, "no": false,
            "date": DateTime::from_millis(1_700_000_000_123), "null": Bson::Null,
            "regex": Regex { pattern: "a.*".try_into().unwrap(), options: "i".try_into().unwrap() },
            "code": Bson::JavaScriptCode("f()".into()),
            "scoped": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! {"s": 1} },
            "int32": -7, "timestamp": Timestamp { time: 1, increment: 2 }, "int64": 1i64 << 40,
            "decimal": Decimal128::from_bytes([1; 16]), "min": Bson::MinKey, "max": Bson::MaxKey,
            "last": "end",
        }
    }

    #[test]
    fn every_field_is_read_as_bson_reads_it() {
        let document = every_type();
        let bytes = bson::serialize_to_vec(&document).unwrap();
        let read: Vec<(&str, RawField<'_>)> = fields(&bytes).unwrap().map(Result::unwrap).collect();
        let keys: Vec<&str> = read.iter().map(|(k, _)| *k).collect();
        let expected: Vec<&str> = document.keys().map(String::as_str).collect();
        assert_eq!(keys, expected);
        for (key, value) in &read {
            let want = document.get(*key).unwrap();
            let same = match (value, want) {
                (RawField::Double(a), Bson::Double(b)) => a == b,
                (RawField::String(a), Bson::String(b)) => a == b,
                (RawField::ObjectId(a), Bson::ObjectId(b)) => a == b,
                (RawField::Bool(a), Bson::Boolean(b)) => a == b,
                (RawField::DateTime(a), Bson::DateTime(b)) => a == b,
                (RawField::Int32(a), Bson::Int32(b)) => a == b,
                (RawField::Int64(a), Bson::Int64(b)) => a == b,
                (RawField::Null, Bson::Null) => true,
                (RawField::Document(raw), Bson::Document(d)) => {
                    Document::from_reader(*raw).unwrap() == *d
                }
                (RawField::Array(raw), Bson::Array(items)) => {
                    fields(raw).unwrap().count() == items.len()
                }
                (RawField::Other, _) => true,
                _ => false,
            };
            assert!(same, "{key}: {value:?} vs {want:?}");
        }
    }

    #[test]
    fn unchecked_names_and_strings_are_checked_as_fields_checks_them() {
        let mut bytes = bson::serialize_to_vec(&doc! {"name": "abc", "ok": "é"}).unwrap();
        let read = |bytes: &[u8]| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
            elements(bytes)
                .unwrap()
                .map(|e| {
                    let (key, value) = e.unwrap();
                    let text = match value {
                        RawField::String(text) => Some(text.bytes().to_vec()),
                        _ => None,
                    };
                    (key.bytes().to_vec(), text)
                })
                .collect()
        };
        assert_eq!(
            read(&bytes),
            [
                (b"name".to_vec(), Some(b"abc".to_vec())),
                (b"ok".to_vec(), Some("é".as_bytes().to_vec()))
            ]
        );
        let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[at] = 0xFF;
        let via_fields = fields(&bytes).unwrap().find_map(Result::err).unwrap();
        let (_, value) = elements(&bytes).unwrap().next().unwrap().unwrap();
        let RawField::String(text) = value else {
            panic!("a string")
        };
        assert_eq!(text.check().unwrap_err(), via_fields);
        assert_eq!(text.to_str().unwrap_err(), via_fields);
        let key_at = bytes.windows(4).position(|w| w == b"name").unwrap();
        bytes[at] = b'a';
        bytes[key_at] = 0xC3;
        let via_fields = fields(&bytes).unwrap().find_map(Result::err).unwrap();
        let (key, _) = elements(&bytes).unwrap().next().unwrap().unwrap();
        assert!(key.bytes().starts_with(&[0xC3]));
        assert_eq!(key.check().unwrap_err(), via_fields);
    }

    /// The word-at-a-time name scan against the obvious one: every name length around the
    /// word size, a non-ASCII byte at every place in it (or none, or only past the NUL), with
    /// 0–9 bytes after the NUL.
    #[test]
    fn names_are_found_and_checked_as_byte_by_byte() {
        for length in 0..=20usize {
            for bad_at in (0..=length + 1).map(Some).chain([None]) {
                for after in 0..=9usize {
                    let mut bytes = vec![b'k'; 3];
                    let start = bytes.len();
                    bytes.extend((0..length).map(|i| b'a' + (i % 26) as u8));
                    bytes.push(0);
                    bytes.extend(std::iter::repeat_n(0xFF, after));
                    if let Some(bad) = bad_at.filter(|bad| start + bad < bytes.len()) {
                        bytes[start + bad] = 0xC3;
                    }
                    let expected = bytes[start..].iter().position(|&b| b == 0);
                    match read_cstr(&bytes, start) {
                        Ok((text, next)) => {
                            let nul = expected.expect("no NUL, yet a name was read");
                            assert_eq!(text.bytes(), &bytes[start..start + nul]);
                            assert_eq!(next, start + nul + 1);
                            let ascii = text.bytes().is_ascii();
                            assert_eq!(text.is_ascii, ascii, "{bytes:?}");
                            assert_eq!(text.check().is_ok(), ascii, "{bytes:?}");
                            assert_eq!(text.to_str().is_ok(), ascii, "{bytes:?}");
                        }
                        Err(e) => {
                            assert!(expected.is_none(), "{bytes:?}: {e}");
                            assert_eq!(e, error(start, "unterminated name"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn damaged_documents_are_errors_never_panics() {
        let bytes = bson::serialize_to_vec(&every_type()).unwrap();
        let read_all = |bytes: &[u8]| -> Result<usize, RawError> {
            let mut n = 0;
            for field in fields(bytes)? {
                field?;
                n += 1;
            }
            Ok(n)
        };
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        // Every byte changed to every interesting value: an error or a well-formed read.
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] = value;
                let _ = read_all(&damaged);
            }
        }
    }
}

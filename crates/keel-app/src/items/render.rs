//! Stored items written straight into a listing's JSON, with no `ItemView` in between.
//!
//! A listing shows 100 items per request. Decoding each into an owned `ItemView` and handing
//! that to serde cost a `String` per field and serde's byte-at-a-time escaping — most of a
//! listing's CPU once the store was fast (`docs/performance.md`). Here the stored fields are
//! borrowed from the stored bytes ([`StoredItem`]) and written with `keel::http::json_text`.
//!
//! The bytes are `ItemView`'s through serde_json, keys in sorted order; `ItemView::from_raw`
//! reads through the same [`StoredItem`], so a stored item of the wrong shape is the same error
//! on both paths. Debug builds render every listing both ways and compare (`service.rs`).
//!
//! Each thread remembers the items it rendered lately by their stored bytes ([`Memo`]): a page
//! read again and again is copied, not walked and written anew.

use std::cell::RefCell;
use std::collections::HashMap;

use axum::body::Bytes;
use bson::oid::ObjectId;
use bson::{DateTime, RawDocument};
use keel::http::json_text::{write_date_time, write_f64, write_str, write_utf8};
use keel::http::{JsonText, JsonTextWriter};
use keel::store::raw::{self, RawField, RawText};
use keel::store::{PageStamp, PageVisitor, StoreError};

/// One stored item's fields as the API shows them, borrowed from its bytes. The rules are
/// `ItemRecord`'s: `_id`, `name`, `brand`, `price` (any number) and `createdAt` required,
/// `description` (or null) and `tags` (strings only) optional, other fields ignored, a
/// duplicate or mistyped field an error. Every name and string in the document is checked to
/// be UTF-8 as [`raw::fields`] checks it (the same error), ASCII ones without `from_utf8`.
pub struct StoredItem<'a> {
    pub id: ObjectId,
    pub name: RawText<'a>,
    pub brand: RawText<'a>,
    pub price: f64,
    pub description: Option<RawText<'a>>,
    /// The stored array, every element checked to be a UTF-8 string (read with
    /// [`Self::tags`]).
    tags: Option<&'a [u8]>,
    pub created_at: DateTime,
}

impl<'a> StoredItem<'a> {
    pub fn read(document: &'a [u8]) -> Result<StoredItem<'a>, StoreError> {
        let mut id = None;
        let mut name = None;
        let mut brand = None;
        let mut price = None;
        let mut description = None;
        let mut tags = None;
        let mut created_at = None;
        for element in raw::elements(document).map_err(corrupt)? {
            let (key, value) = element.map_err(corrupt)?;
            check_utf8(key, value)?;
            let field = key.bytes();
            let slot_was_empty = match (field, value) {
                (b"_id", RawField::ObjectId(oid)) => id.replace(oid).is_none(),
                (b"name", value) => name.replace(text("name", value)?).is_none(),
                (b"brand", value) => brand.replace(text("brand", value)?).is_none(),
                (b"price", value) => price.replace(number("price", value)?).is_none(),
                (b"description", RawField::Null) => description.replace(None).is_none(),
                (b"description", value) => description
                    .replace(Some(text("description", value)?))
                    .is_none(),
                (b"tags", value) => tags.replace(string_array(value)?).is_none(),
                (b"createdAt", RawField::DateTime(at)) => created_at.replace(at).is_none(),
                (b"_id", _) => return Err(mistyped("_id")),
                (b"createdAt", _) => return Err(mistyped("createdAt")),
                _ => continue,
            };
            if !slot_was_empty {
                let key = key.to_str().map_err(corrupt)?;
                return Err(corrupt(format!("duplicate field `{key}`")));
            }
        }
        let missing = |field: &str| corrupt(format!("missing field `{field}`"));
        Ok(StoredItem {
            id: id.ok_or_else(|| missing("_id"))?,
            name: name.ok_or_else(|| missing("name"))?,
            brand: brand.ok_or_else(|| missing("brand"))?,
            price: price.ok_or_else(|| missing("price"))?,
            description: description.flatten(),
            tags,
            created_at: created_at.ok_or_else(|| missing("createdAt"))?,
        })
    }

    /// The tags, in stored order.
    pub fn tags(&self) -> Result<Vec<&'a str>, StoreError> {
        let Some(array) = self.tags else {
            return Ok(Vec::new());
        };
        raw::fields(array)
            .map_err(corrupt)?
            .map(|element| match element.map_err(corrupt)?.1 {
                RawField::String(tag) => Ok(tag),
                _ => Err(mistyped("tags")),
            })
            .collect()
    }

    /// The item as JSON, as serde_json writes its `ItemView`: keys sorted, `description` only
    /// when there is one.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        out.extend_from_slice(b"{\"_id\":\"");
        write_hex(out, &self.id.bytes());
        out.extend_from_slice(b"\",\"brand\":");
        write_checked(out, self.brand);
        out.extend_from_slice(b",\"createdAt\":");
        write_rfc3339(out, self.created_at);
        if let Some(description) = self.description {
            out.extend_from_slice(b",\"description\":");
            write_checked(out, description);
        }
        out.extend_from_slice(b",\"name\":");
        write_checked(out, self.name);
        out.extend_from_slice(b",\"price\":");
        write_f64(out, self.price);
        out.extend_from_slice(b",\"tags\":[");
        if let Some(array) = self.tags {
            let mut first = true;
            for element in raw::elements(array).map_err(corrupt)? {
                if !first {
                    out.push(b',');
                }
                first = false;
                match element.map_err(corrupt)?.1 {
                    RawField::String(tag) => write_checked(out, tag),
                    _ => return Err(mistyped("tags")),
                }
            }
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

/// A string [`StoredItem::read`] has checked, as a JSON string.
fn write_checked(out: &mut Vec<u8>, text: RawText<'_>) {
    write_utf8(out, text.bytes());
}

/// Stored items written as the JSON array of their views, one at a time as the store reads
/// them (`Collection::find_each`, which hands over the bytes SQLite holds: no copy). A stored
/// item of the wrong shape is an error for the whole listing, as it is for
/// `ItemView::from_raw`. Items this thread rendered lately are copied from its [`Memo`].
///
/// Debug builds also build each item's view (the path this replaced): an item that fails must
/// fail the same way there, and `finish` insists that serializing the views through
/// serde_json's `Value` gives the same bytes. The integration suites run against debug builds,
/// so every listing they fetch checks it.
pub struct ItemArray {
    writer: JsonTextWriter,
    /// The stamp (`PageStamp`) of a read this array is rendered for: `finish` keeps the array
    /// in the thread's [`PAGES`] under it. None when the read had no stamp or the array came
    /// from [`PAGES`].
    stamp: Option<PageStamp>,
    /// Debug builds render a kept page again, compare, and answer with the kept one
    /// (`finish`).
    #[cfg(debug_assertions)]
    kept: Option<Bytes>,
    #[cfg(debug_assertions)]
    views: Vec<super::model::ItemView>,
}

/// About the size of one item's JSON (~130 bytes for the load script's items), to size the
/// buffer once for a page.
const RENDERED_ITEM_GUESS: usize = 160;

impl ItemArray {
    /// An empty array with room for about `expected` items (a page's limit).
    pub fn new(expected: usize) -> ItemArray {
        ItemArray {
            writer: JsonTextWriter::new(expected.min(1000) * RENDERED_ITEM_GUESS + 2),
            stamp: None,
            #[cfg(debug_assertions)]
            kept: None,
            #[cfg(debug_assertions)]
            views: Vec::new(),
        }
    }

    /// Writes the next item.
    pub fn push(&mut self, stored: &RawDocument) -> Result<(), StoreError> {
        let first = self.writer.is_empty();
        let out = self.writer.out();
        out.push(if first { b'[' } else { b',' });
        let bytes = stored.as_bytes();
        // Without the memo only while this thread is being torn down.
        let written = MEMO
            .try_with(|memo| memo.borrow_mut().write(bytes, out))
            .unwrap_or_else(|_| StoredItem::read(bytes)?.write_json(out));
        #[cfg(debug_assertions)]
        {
            match (&written, super::model::ItemView::from_raw(stored)) {
                (Ok(()), Ok(view)) => self.views.push(view),
                (Err(e), Err(expected)) => assert_eq!(e.to_string(), expected.to_string()),
                (written, viewed) => {
                    panic!(
                        "an item rendered from stored bytes and its view disagree: {written:?} vs {viewed:?}"
                    )
                }
            }
        }
        written
    }

    /// The array, closed.
    pub fn finish(mut self) -> JsonText {
        if self.writer.is_empty() {
            self.writer.out().push(b'[');
        }
        #[cfg(debug_assertions)]
        if let Some(kept) = self.kept.take() {
            assert_eq!(
                String::from_utf8_lossy(&self.writer.written()),
                String::from_utf8_lossy(&kept),
                "a page rendered again differs from the rendering kept for its stamp"
            );
            // Answered with the kept page, shared, as release builds answer.
            self.writer = JsonTextWriter::new(0);
            self.writer.share(kept);
        }
        if let Some(stamp) = self.stamp {
            let _ = PAGES.try_with(|pages| pages.borrow_mut().keep(stamp, &self.writer.written()));
        }
        self.writer.out().push(b']');
        #[cfg(debug_assertions)]
        {
            let expected = serde_json::to_value(&self.views)
                .and_then(|v| serde_json::to_vec(&v))
                .expect("views serialize");
            assert_eq!(
                String::from_utf8_lossy(&self.writer.written()),
                String::from_utf8_lossy(&expected),
                "a listing rendered from stored bytes differs from its views"
            );
        }
        self.writer.finish()
    }
}

impl PageVisitor for ItemArray {
    /// Answers a page this thread rendered lately from [`PAGES`], shared rather than copied.
    /// Debug builds render it again instead; `finish` compares and answers with the kept one.
    fn stamped(&mut self, stamp: PageStamp) -> bool {
        if !self.writer.is_empty() {
            return false;
        }
        let kept = PAGES
            .try_with(|pages| pages.borrow().get(stamp))
            .ok()
            .flatten();
        #[cfg(debug_assertions)]
        if let Some(kept) = kept {
            self.kept = Some(kept);
            return false;
        }
        match kept {
            // Sent as it is kept, not copied into this response's buffer (~13 KiB a page).
            Some(kept) => {
                self.writer.share(kept);
                true
            }
            None => {
                self.stamp = Some(stamp);
                false
            }
        }
    }

    fn document(&mut self, document: &RawDocument) -> Result<(), StoreError> {
        self.push(document)
    }
}

/// `items` as a listing, as [`ItemArray`] writes them.
#[cfg(test)]
pub fn item_array(items: &[bson::RawDocumentBuf]) -> Result<JsonText, StoreError> {
    let mut array = ItemArray::new(items.len());
    for item in items {
        array.push(item)?;
    }
    Ok(array.finish())
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    static PAGES: RefCell<Pages> = RefCell::new(Pages::default());
}

/// What one thread's [`Pages`] may hold: the rendered arrays' bytes plus [`PAGE_OVERHEAD`]
/// each. A larger array is rendered every time.
const PAGES_BYTES: usize = 256 * 1024;
/// The most arrays one thread keeps (each read looks through them).
const PAGES_KEPT: usize = 16;
const PAGE_OVERHEAD: usize = 64;

/// The listings (their JSON arrays, without the closing `]`) this thread rendered lately, by
/// the stamp of the read they were rendered from. A stamp names the same stored documents in
/// every read that has it (`PageStamp`), and rendering is a function of those bytes alone, so
/// a kept array is what rendering the read's documents again writes: a page the data changed
/// is read with another stamp (a miss), never a stale answer. Oldest first; bounded by
/// [`PAGES_BYTES`] and [`PAGES_KEPT`], whatever the documents are.
#[derive(Default)]
struct Pages {
    /// Shared with the responses that send them: an array dropped from here lives on until the
    /// last response sending it is written.
    kept: std::collections::VecDeque<(PageStamp, Bytes)>,
    bytes: usize,
}

impl Pages {
    /// The array kept for `stamp`, if one is.
    fn get(&self, stamp: PageStamp) -> Option<Bytes> {
        let (_, array) = self.kept.iter().find(|(kept, _)| *kept == stamp)?;
        Some(array.clone())
    }

    fn keep(&mut self, stamp: PageStamp, array: &[u8]) {
        let size = array.len() + PAGE_OVERHEAD;
        if size > PAGES_BYTES || self.kept.iter().any(|(kept, _)| *kept == stamp) {
            return;
        }
        while self.kept.len() >= PAGES_KEPT || self.bytes + size > PAGES_BYTES {
            let Some((_, oldest)) = self.kept.pop_front() else {
                break;
            };
            self.bytes -= oldest.len() + PAGE_OVERHEAD;
        }
        self.bytes += size;
        self.kept.push_back((stamp, Bytes::copy_from_slice(array)));
    }
}

/// What one generation of a thread's [`Memo`] may hold: stored and rendered bytes plus
/// [`ENTRY_OVERHEAD`] per item. A thread holds at most two generations, so the async worker
/// threads that render listings (one per core) hold at most ~512 KiB each.
const GENERATION_BYTES: usize = 256 * 1024;
/// The memo's own cost per item beyond its bytes: the two allocations and the table's slot.
const ENTRY_OVERHEAD: usize = 64;
/// Items larger than this (stored plus rendered) are rendered every time: a few large items
/// must not push out the many small ones a listing shows.
const LARGEST_REMEMBERED: usize = GENERATION_BYTES / 64;

/// Items one thread has rendered lately, keyed by their whole stored document. Rendering is a
/// function of those bytes alone, so a remembered rendering is exactly what rendering them again
/// would write: a changed item is a different key (a miss), never a stale answer, and an item
/// another replica or process changed is no different. A response never carries more than
/// its query returned: the memo only replaces rendering an item the query returned. Only
/// successful renderings are kept; a stored item of the wrong shape fails every time.
///
/// Bounded by two generations: new items go into the current one; when it would exceed
/// [`GENERATION_BYTES`] it becomes the previous one and the old previous is dropped. An item
/// found in the previous generation moves to the current one, so the items read again and
/// again stay while those read once age out. Per thread, so no lock is taken; the hasher is
/// randomly seeded per generation, and the bound holds whatever the stored bytes are.
#[derive(Default)]
struct Memo {
    current: Generation,
    previous: Generation,
}

#[derive(Default)]
struct Generation {
    items: HashMap<Box<[u8]>, Box<[u8]>, foldhash::fast::RandomState>,
    bytes: usize,
}

impl Generation {
    fn size(stored: &[u8], rendered: &[u8]) -> usize {
        stored.len() + rendered.len() + ENTRY_OVERHEAD
    }
}

impl Memo {
    /// Writes the stored item's JSON, from the memo when this thread rendered these bytes
    /// lately.
    fn write(&mut self, stored: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
        if let Some(rendered) = self.current.items.get(stored) {
            out.extend_from_slice(rendered);
            return Ok(());
        }
        if let Some((key, rendered)) = self.previous.items.remove_entry(stored) {
            self.previous.bytes -= Generation::size(&key, &rendered);
            out.extend_from_slice(&rendered);
            self.keep(key, rendered);
            return Ok(());
        }
        let start = out.len();
        StoredItem::read(stored)?.write_json(out)?;
        let rendered = &out[start..];
        if stored.len() + rendered.len() <= LARGEST_REMEMBERED {
            self.keep(stored.into(), rendered.into());
        }
        Ok(())
    }

    fn keep(&mut self, stored: Box<[u8]>, rendered: Box<[u8]>) {
        let size = Generation::size(&stored, &rendered);
        if self.current.bytes + size > GENERATION_BYTES {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.bytes += size;
        self.current.items.insert(stored, rendered);
    }
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0F)]]);
    }
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in milliseconds: the instants RFC 3339
/// (four-digit years) can write.
const FIRST_RFC3339_MS: i64 = -62_167_219_200_000;
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

/// `at` as `ItemView` shows it, `DateTime::try_to_rfc3339_string` (the `time` crate's RFC 3339:
/// `2025-12-01T22:43:16.5Z`, the fraction without trailing zeros and absent when zero). Instants
/// outside four-digit years are left to that function (it writes `""` or a clamped date).
pub fn write_rfc3339(out: &mut Vec<u8>, at: DateTime) {
    let millis = at.timestamp_millis();
    if !(FIRST_RFC3339_MS..=LAST_RFC3339_MS).contains(&millis) {
        write_str(out, &at.try_to_rfc3339_string().unwrap_or_default());
        return;
    }
    let seconds = millis.div_euclid(1000);
    let fraction = millis.rem_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let mut text = [0u8; 26];
    // In range: four-digit years (checked above), days and seconds of day from `rem_euclid`.
    let part = |n: i64| u32::try_from(n).unwrap_or_default();
    write_date_time(
        &mut text,
        [part(year), part(month), part(day)],
        [
            part(of_day / 3600),
            part(of_day / 60 % 60),
            part(of_day % 60),
        ],
    );
    let mut end = 19;
    if fraction != 0 {
        text[19] = b'.';
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
        let significant = if digits[2] != 0 {
            3
        } else if digits[1] != 0 {
            2
        } else {
            1
        };
        for (i, digit) in digits.iter().take(significant).enumerate() {
            text[20 + i] = b'0' + *digit as u8;
        }
        end = 20 + significant;
    }
    text[end] = b'Z';
    out.push(b'"');
    out.extend_from_slice(&text[..=end]);
    out.push(b'"');
}

/// Year, month, day of a day counted from 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn corrupt(problem: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored item has an unexpected shape: {problem}"))
}

fn mistyped(field: &str) -> StoreError {
    corrupt(format!("invalid type for `{field}`"))
}

/// The UTF-8 check `raw::fields` makes of every name and string, in its order.
#[inline(always)]
fn check_utf8(key: RawText<'_>, value: RawField<'_, RawText<'_>>) -> Result<(), StoreError> {
    key.check().map_err(corrupt)?;
    if let RawField::String(text) = value {
        text.check().map_err(corrupt)?;
    }
    Ok(())
}

/// `value` if it is a string (already checked by [`check_utf8`]).
fn text<'a>(field: &str, value: RawField<'a, RawText<'a>>) -> Result<RawText<'a>, StoreError> {
    match value {
        RawField::String(text) => Ok(text),
        _ => Err(mistyped(field)),
    }
}

fn number(field: &str, value: RawField<'_, RawText<'_>>) -> Result<f64, StoreError> {
    match value {
        RawField::Double(n) => Ok(n),
        RawField::Int32(n) => Ok(f64::from(n)),
        RawField::Int64(n) => Ok(n as f64),
        _ => Err(mistyped(field)),
    }
}

/// `value` if it is an array of UTF-8 strings only.
fn string_array<'a>(value: RawField<'a, RawText<'a>>) -> Result<&'a [u8], StoreError> {
    let RawField::Array(array) = value else {
        return Err(mistyped("tags"));
    };
    for element in raw::elements(array).map_err(corrupt)? {
        let (key, value) = element.map_err(corrupt)?;
        check_utf8(key, value)?;
        text("tags", value)?;
    }
    Ok(array)
}

#[cfg(test)]
mod tests {
    use bson::RawDocumentBuf;
    use bson::{Bson, doc};
    use proptest::prelude::*;

    use super::*;
    use crate::items::model::ItemView;

    /// The listing's bytes through `ItemView` and serde_json's `Value`, as before this writer.
    fn via_views(items: &[RawDocumentBuf]) -> Result<String, StoreError> {
        let views = items
            .iter()
            .map(|raw| ItemView::from_raw(raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(serde_json::to_string(&serde_json::to_value(&views).unwrap()).unwrap())
    }

    fn rendered(items: &[RawDocumentBuf]) -> Result<String, StoreError> {
        item_array(items).map(|text| String::from_utf8(text.to_bytes().to_vec()).unwrap())
    }

    fn stored(document: bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::try_from(&document).unwrap()
    }

    fn item(name: &str, price: impl Into<Bson>, at: i64) -> bson::Document {
        doc! {
            "_id": ObjectId::new(), "name": name, "brand": "Acme \"A\"", "price": price.into(),
            "tags": ["heavy", "ünïcode\t"], "createdBy": ObjectId::new(),
            "createdAt": DateTime::from_millis(at), "processed": true,
        }
    }

    #[test]
    fn listings_have_the_bytes_of_the_view_path() {
        let mut described = item("Anvil", 19.99, 1_764_628_996_500);
        described.insert("description", "line one\nline \"two\" \\ \u{1}");
        let mut null_description = item("Bolt", 7i32, 0);
        null_description.insert("description", Bson::Null);
        null_description.insert("tags", Bson::Array(vec![]));
        let mut untagged = item("日本語 🦀", 1i64 << 53, -1);
        untagged.remove("tags");
        let nan = item("\u{7f}\x00", f64::NAN, 1_000);
        let items: Vec<_> = [described, null_description, untagged, nan]
            .into_iter()
            .map(stored)
            .collect();
        for n in 0..=items.len() {
            assert_eq!(
                rendered(&items[..n]).unwrap(),
                via_views(&items[..n]).unwrap()
            );
        }
        assert_eq!(rendered(&[]).unwrap(), "[]");
    }

    #[test]
    fn stored_items_of_another_shape_fail_as_the_view_path_fails() {
        let oid = ObjectId::new();
        let now = DateTime::now();
        let bad = [
            doc! {"_id": oid, "name": "n", "brand": "b", "createdAt": now},
            doc! {"_id": oid, "name": 5, "brand": "b", "price": 1, "createdAt": now},
            doc! {"_id": "x", "name": "n", "brand": "b", "price": 1, "createdAt": now},
            doc! {"_id": oid, "name": "n", "brand": "b", "price": 1, "createdAt": "yesterday"},
            doc! {"_id": oid, "name": "n", "brand": "b", "price": "1", "createdAt": now},
            doc! {"_id": oid, "name": "n", "brand": "b", "price": 1, "createdAt": now, "tags": [1]},
            doc! {"_id": oid, "name": "n", "brand": "b", "price": 1, "createdAt": now, "tags": "t"},
            doc! {"_id": oid, "name": "n", "brand": "b", "price": 1, "createdAt": now, "description": 2},
        ];
        for document in bad {
            let items = [stored(document.clone())];
            let (written, viewed) = (rendered(&items), via_views(&items));
            assert!(written.is_err(), "{document}");
            assert_eq!(
                written.unwrap_err().to_string(),
                viewed.unwrap_err().to_string()
            );
        }
    }

    #[test]
    fn a_stored_string_that_is_not_utf8_is_an_error_on_both_paths() {
        let mut bytes = stored(item("abc", 1.0, 0)).into_bytes();
        let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[at] = 0xFF;
        let damaged = RawDocumentBuf::from_bytes(bytes).unwrap();
        let items = [damaged];
        assert_eq!(
            rendered(&items).unwrap_err().to_string(),
            via_views(&items).unwrap_err().to_string()
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_the_same_error_wherever_it_is() {
        let mut base = item("abc", 1.0, 0);
        base.insert("_id", "xyz");
        base.insert("other", "xyz");
        base.insert("tags", ["xyz"]);
        for (field, pattern) in [("_id", "xyz"), ("other", "xyz"), ("tags", "xyz")] {
            let mut document = item("abc", 1.0, 0);
            document.insert(field, base.get(field).unwrap().clone());
            let mut bytes = stored(document).into_bytes();
            let at = bytes
                .windows(3)
                .position(|w| w == pattern.as_bytes())
                .unwrap();
            bytes[at] = 0xFF;
            let items = [RawDocumentBuf::from_bytes(bytes).unwrap()];
            let written = rendered(&items).unwrap_err().to_string();
            assert!(written.contains("not UTF-8"), "{field}: {written}");
            if field != "tags" {
                // What reading the top level through `raw::fields` (the reader the view path
                // used before `elements`) refuses first.
                let via_fields = raw::fields(items[0].as_bytes())
                    .unwrap()
                    .find_map(Result::err)
                    .unwrap();
                assert_eq!(written, corrupt(via_fields).to_string());
            }
            assert_eq!(written, via_views(&items).unwrap_err().to_string());
        }
        let mut bytes = stored(item("abc", 1.0, 0)).into_bytes();
        let at = bytes.windows(9).position(|w| w == b"processed").unwrap();
        bytes[at] = 0xC3;
        let items = [RawDocumentBuf::from_bytes(bytes).unwrap()];
        let written = rendered(&items).unwrap_err().to_string();
        assert!(written.contains("name is not UTF-8"), "{written}");
    }

    #[test]
    fn a_duplicate_field_is_an_error_on_both_paths() {
        let mut bytes =
            stored(doc! {"_id": ObjectId::new(), "name": "a", "nama": "b"}).into_bytes();
        let at = bytes.windows(4).position(|w| w == b"nama").unwrap();
        bytes[at + 3] = b'e';
        let raw = RawDocumentBuf::from_bytes(bytes).unwrap();
        let items = [raw];
        assert!(rendered(&items).is_err());
        assert_eq!(
            rendered(&items).unwrap_err().to_string(),
            via_views(&items).unwrap_err().to_string()
        );
    }

    /// Renders `items` as a read stamped `stamp` hands them to the visitor; the flag says the
    /// visitor answered from the thread's kept pages (release builds only).
    fn visited(stamp: PageStamp, items: &[RawDocumentBuf]) -> (String, bool) {
        let mut array = ItemArray::new(items.len());
        let answered = array.stamped(stamp);
        if !answered {
            for item in items {
                array.document(item).unwrap();
            }
        }
        let text = array.finish();
        (
            String::from_utf8(text.to_bytes().to_vec()).unwrap(),
            answered,
        )
    }

    #[test]
    fn a_stamped_page_is_rendered_once_per_thread_and_answered_byte_for_byte() {
        let items: Vec<_> = (0..5)
            .map(|n| stored(item(&format!("item {n}"), n, n)))
            .collect();
        let stamp = PageStamp::fresh();
        let (first, answered) = visited(stamp, &items);
        assert!(!answered, "a new stamp is rendered");
        assert_eq!(first, rendered(&items).unwrap());
        assert!(PAGES.with(|pages| pages.borrow().get(stamp).is_some()));
        // Debug builds render a kept page again (and compare); both answer with the kept one.
        let (again, answered) = visited(stamp, &items);
        assert_eq!(answered, !cfg!(debug_assertions));
        assert_eq!(again, first);
        let (empty, _) = visited(PageStamp::fresh(), &[]);
        assert_eq!(empty, "[]");
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "differs from the rendering kept for its stamp")]
    fn debug_builds_refuse_a_stamp_whose_documents_changed() {
        let stamp = PageStamp::fresh();
        visited(stamp, &[stored(item("before", 1, 0))]);
        visited(stamp, &[stored(item("after", 1, 0))]);
    }

    #[test]
    fn kept_pages_are_bounded_in_count_and_bytes() {
        let mut pages = Pages::default();
        let stamps: Vec<_> = (0..PAGES_KEPT + 4).map(|_| PageStamp::fresh()).collect();
        for (n, stamp) in stamps.iter().enumerate() {
            pages.keep(*stamp, format!("[{n}").as_bytes());
            pages.keep(*stamp, b"[again");
        }
        assert_eq!(pages.kept.len(), PAGES_KEPT);
        assert!(pages.get(stamps[3]).is_none(), "the oldest went first");
        assert_eq!(
            pages.get(stamps[PAGES_KEPT + 3]).unwrap(),
            format!("[{}", PAGES_KEPT + 3).as_bytes(),
            "kept once"
        );

        let big = vec![b'x'; PAGES_BYTES / 3];
        for _ in 0..4 {
            pages.keep(PageStamp::fresh(), &big);
        }
        let held: usize = pages
            .kept
            .iter()
            .map(|(_, a)| a.len() + PAGE_OVERHEAD)
            .sum();
        assert_eq!(held, pages.bytes);
        assert!(pages.bytes <= PAGES_BYTES, "{}", pages.bytes);
        let too_big = PageStamp::fresh();
        pages.keep(too_big, &vec![b'x'; PAGES_BYTES]);
        assert!(pages.get(too_big).is_none(), "larger than the whole budget");
    }

    #[test]
    fn dates_at_the_edges_are_written_as_bson_writes_them() {
        for millis in [
            0,
            -1,
            1,
            10,
            100,
            999,
            951_782_400_000, // 2000-02-29
            FIRST_RFC3339_MS,
            FIRST_RFC3339_MS - 1,
            LAST_RFC3339_MS,
            LAST_RFC3339_MS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            let at = DateTime::from_millis(millis);
            let mut out = Vec::new();
            write_rfc3339(&mut out, at);
            let expected = serde_json::to_vec(&at.try_to_rfc3339_string().unwrap_or_default());
            assert_eq!(out, expected.unwrap(), "{millis}");
        }
    }

    /// One item through `memo`, and the same item rendered without it.
    fn through(memo: &mut Memo, item: &RawDocumentBuf) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        memo.write(item.as_bytes(), &mut out)?;
        Ok(out)
    }

    fn written(item: &RawDocumentBuf) -> Vec<u8> {
        let mut out = Vec::new();
        let read = StoredItem::read(item.as_bytes()).unwrap();
        read.write_json(&mut out).unwrap();
        out
    }

    fn remembers(memo: &Memo, item: &RawDocumentBuf) -> bool {
        [&memo.current, &memo.previous]
            .iter()
            .any(|generation| generation.items.contains_key(item.as_bytes()))
    }

    #[test]
    fn a_remembered_item_is_what_rendering_it_again_writes_and_a_changed_one_is_not_remembered() {
        let mut memo = Memo::default();
        let original = item("Anvil", 19.99, 1_764_628_996_500);
        let first = stored(original.clone());
        assert_eq!(through(&mut memo, &first).unwrap(), written(&first));
        assert!(remembers(&memo, &first));
        assert_eq!(through(&mut memo, &first).unwrap(), written(&first));

        // The same item (same `_id`) after an update: its own bytes, not the remembered ones.
        let mut updated = original;
        updated.insert("price", 21.5);
        let second = stored(updated);
        assert_ne!(written(&second), written(&first));
        assert_eq!(through(&mut memo, &second).unwrap(), written(&second));
        assert_eq!(through(&mut memo, &first).unwrap(), written(&first));
    }

    #[test]
    fn the_memo_holds_two_generations_at_most_and_keeps_what_is_read_again() {
        let mut memo = Memo::default();
        let hot = stored(item("read on every page", 1.0, 0));
        let first_cold = stored(item("read once", 1.0, 0));
        through(&mut memo, &first_cold).unwrap();
        for n in 0..5_000 {
            let cold = stored(item(&format!("cold {n}"), f64::from(n), i64::from(n)));
            assert_eq!(through(&mut memo, &cold).unwrap(), written(&cold));
            if n % 200 == 0 {
                assert_eq!(through(&mut memo, &hot).unwrap(), written(&hot));
            }
            assert!(memo.current.bytes <= GENERATION_BYTES);
            assert!(memo.previous.bytes <= GENERATION_BYTES);
        }
        let held: usize = [&memo.current, &memo.previous]
            .iter()
            .flat_map(|generation| generation.items.iter())
            .map(|(stored, rendered)| Generation::size(stored, rendered))
            .sum();
        assert_eq!(held, memo.current.bytes + memo.previous.bytes);
        // 5,000 items of ~400 bytes are several generations: the first is long gone, the one
        // read every 200 items is still there.
        assert!(!remembers(&memo, &first_cold));
        assert!(remembers(&memo, &hot));
    }

    #[test]
    fn large_items_and_items_of_another_shape_are_not_remembered() {
        let mut memo = Memo::default();
        let mut large = item("large", 1.0, 0);
        large.insert("description", "x".repeat(LARGEST_REMEMBERED));
        let large = stored(large);
        assert_eq!(through(&mut memo, &large).unwrap(), written(&large));
        let broken = stored(doc! {"_id": ObjectId::new(), "name": "n", "brand": "b"});
        for _ in 0..2 {
            assert!(through(&mut memo, &broken).is_err());
        }
        assert!(memo.current.items.is_empty() && memo.previous.items.is_empty());
        assert_eq!(memo.current.bytes, 0);
    }

    proptest! {
        #[test]
        fn any_sequence_of_items_is_written_as_without_the_memo(
            names in proptest::collection::vec(any::<String>(), 1..6),
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
        ) {
            let items: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(n, name)| stored(item(name, n as f64, n as i64)))
                .collect();
            let mut memo = Memo::default();
            for pick in picks {
                let item = &items[pick.index(items.len())];
                prop_assert_eq!(through(&mut memo, item).unwrap(), written(item));
            }
        }

        #[test]
        fn any_date_is_written_as_bson_writes_it(millis in -70_000_000_000_000i64..260_000_000_000_000) {
            let at = DateTime::from_millis(millis);
            let mut out = Vec::new();
            write_rfc3339(&mut out, at);
            let expected = serde_json::to_vec(&at.try_to_rfc3339_string().unwrap_or_default());
            prop_assert_eq!(out, expected.unwrap());
        }

        #[test]
        fn any_item_is_written_as_its_view(
            name in any::<String>(),
            description in proptest::option::of(any::<String>()),
            tags in proptest::collection::vec(any::<String>(), 0..4),
            price in any::<f64>(),
            millis in any::<i64>(),
        ) {
            let mut document = item(&name, price, millis);
            document.insert("tags", tags);
            if let Some(description) = description {
                document.insert("description", description);
            }
            let items = [stored(document)];
            prop_assert_eq!(rendered(&items).unwrap(), via_views(&items).unwrap());
        }
    }
}

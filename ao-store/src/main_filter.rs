//! The stored Bloom filter of the main table's keys (`docs/store-format.md`, "The filter of
//! the main table").
//!
//! The main table changes only when `recent` is merged into it, in the checkpoint's
//! transaction; the same transaction stores the filter of its keys after the merge. It is an
//! accelerator, valid only for the main table it was stored with: `meta/main-filter` records
//! how many keys that table had, and since keys are never removed from it, a table with the
//! same count has the same keys. A store whose filter is missing (a store of an earlier build),
//! malformed, or stale (an earlier build merged without updating it) is read without one, and
//! the next merge builds it afresh from the table.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::{ReadError, WriteError};
use crate::filter::KeyFilter;
use crate::format::{ENTRIES, META};

/// Chunk index (4-byte big-endian) → up to [`CHUNK_WORDS`] filter words, each 8 bytes
/// little-endian.
pub(crate) const MAIN_FILTER: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("main-filter");
/// `meta` key of the filter's header: the main table's key count (8 bytes little-endian),
/// then the filter's word count (8 bytes little-endian).
pub(crate) const META_MAIN_FILTER: &[u8] = b"main-filter";
/// Words per stored chunk (64 KiB).
const CHUNK_WORDS: usize = 8192;
/// Filter bits per key of the planned capacity: about 3 % false positives at capacity, less
/// than 1 % at two thirds of it.
pub(crate) const BITS_PER_KEY: u64 = 12;

/// The keys a filter of a main table of `keys` keys is built for: half as many again, so that
/// it is rebuilt (a scan of the table) each time the table has grown by half.
fn planned(keys: u64) -> u64 {
    (keys + keys / 2).max(1 << 16)
}

/// The number of keys a filter was planned for.
fn capacity(filter: &KeyFilter) -> u64 {
    filter.len_words() as u64 * 64 / BITS_PER_KEY
}

/// The key of chunk `i`: big-endian, so that the chunks are stored in order.
#[expect(clippy::big_endian_bytes, reason = "keys that sort as the numbers do")]
fn chunk_key(i: usize) -> [u8; 4] {
    (i as u32).to_be_bytes()
}

fn header(keys: u64, words: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&keys.to_le_bytes());
    h[8..].copy_from_slice(&words.to_le_bytes());
    h
}

/// The stored filter of the main table of `txn`'s snapshot, if there is a valid one.
pub(crate) fn load(txn: &redb::ReadTransaction) -> Result<Option<KeyFilter>, ReadError> {
    let meta = txn.open_table(META).map_err(redb::Error::from)?;
    let Some(h) = meta.get(META_MAIN_FILTER).map_err(redb::Error::from)? else {
        return Ok(None);
    };
    let Ok(h) = <[u8; 16]>::try_from(h.value()) else {
        return Ok(None);
    };
    let keys = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
    let words = u64::from_le_bytes(h[8..].try_into().unwrap_or_default());
    let entries = txn.open_table(ENTRIES).map_err(redb::Error::from)?;
    if entries.len().map_err(redb::Error::from)? != keys || words == 0 || words > 1 << 25 {
        return Ok(None);
    }
    let chunks = match txn.open_table(MAIN_FILTER) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    // Grown as the chunks are read (a corrupt header must not make the open allocate).
    let mut all = Vec::new();
    for (i, item) in chunks.iter().map_err(redb::Error::from)?.enumerate() {
        let (k, v) = item.map_err(redb::Error::from)?;
        let v = v.value();
        if k.value() != chunk_key(i) || v.len() % 8 != 0 || (all.len() + v.len() / 8) as u64 > words
        {
            return Ok(None);
        }
        all.extend(
            v.chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())),
        );
    }
    if all.len() as u64 != words {
        return Ok(None);
    }
    Ok(Some(KeyFilter::from_words(all)))
}

/// After `recent` was merged into the main table in `txn`: the filter of the main table's keys,
/// stored in `txn`.
///
/// `current` is the filter of the table before the merge, with the merged keys inserted (none:
/// the table had no valid filter). It is kept while the table holds no more keys than it was
/// planned for; otherwise a new filter is built from the table.
pub(crate) fn store_after_merge(
    txn: &redb::WriteTransaction,
    current: Option<Arc<KeyFilter>>,
) -> Result<Arc<KeyFilter>, WriteError> {
    let main = txn.open_table(ENTRIES).map_err(WriteError::storage)?;
    let keys = main.len().map_err(WriteError::storage)?;
    let filter = match current {
        Some(f) if keys <= capacity(&f) => f,
        _ => {
            let f = KeyFilter::with_capacity(planned(keys), BITS_PER_KEY);
            for item in main.iter().map_err(WriteError::storage)? {
                let (k, _) = item.map_err(WriteError::storage)?;
                f.insert(k.value());
            }
            Arc::new(f)
        }
    };
    drop(main);
    // Rewritten whole: a merge sets bits all over it.
    match txn.delete_table(MAIN_FILTER) {
        Ok(_) => {}
        Err(e) => return Err(WriteError::storage(e)),
    }
    let mut chunks = txn.open_table(MAIN_FILTER).map_err(WriteError::storage)?;
    let words: Vec<u64> = filter.words().collect();
    let mut bytes = Vec::with_capacity(CHUNK_WORDS * 8);
    for (i, chunk) in words.chunks(CHUNK_WORDS).enumerate() {
        bytes.clear();
        for w in chunk {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        chunks
            .insert(&chunk_key(i)[..], &bytes[..])
            .map_err(WriteError::storage)?;
    }
    let mut meta = txn.open_table(META).map_err(WriteError::storage)?;
    meta.insert(META_MAIN_FILTER, &header(keys, words.len() as u64)[..])
        .map_err(WriteError::storage)?;
    Ok(filter)
}

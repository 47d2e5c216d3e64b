//! Bulk supply files: a CSV whose header names its columns, read incrementally into chunks of
//! SET updates in the source's own codes (the server's normalization maps them). A row that
//! does not parse is reported with its line and field and the others go on; a header that
//! lacks a required column refuses the file before any row is read.
//!
//! The reader is synchronous (the `csv` crate reads from `std::io::Read`): an edge runs it on
//! a blocking thread and sends the chunks on (the gRPC layer's import module).

use std::io::Read;

use chrono::DateTime;
use csv::{ByteRecord, Position, ReaderBuilder};

use crate::domain::{SupplyType, SupplyUpdate, UpdateOp};

/// Columns every file must have, by their normalized header names.
const REQUIRED: [&str; 5] = ["sku", "node", "supply type", "quantity", "as of"];
/// Columns a file may have: dated receipts need them.
const OPTIONAL: [&str; 2] = ["reference", "eta"];

/// One row read: the update it states, and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub update: SupplyUpdate,
    /// The row's as-of, in Unix milliseconds (also inside `update.op`).
    pub as_of_ms: i64,
}

/// A row that was not applied: its line, the column at fault (or the reason the server
/// gave), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub detail: String,
}

/// Why a whole file is refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("line 1: the header has no column {0:?} (required: sku, node, supply type, quantity, as of)")]
    MissingColumn(&'static str),
    #[error("line {line}: {detail}")]
    Unreadable { line: u64, detail: String },
}

/// Rows read together: those that parsed, those that did not, and how far into the file.
#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: Vec<Row>,
    pub errors: Vec<RowError>,
    /// Bytes of the file read so far, for progress.
    pub bytes_read: u64,
}

/// Where each known column sits in a record.
#[derive(Debug)]
struct Columns {
    required: [usize; REQUIRED.len()],
    optional: [Option<usize>; OPTIONAL.len()],
}

/// An incremental reader of a supply CSV.
pub struct CsvRows<R> {
    reader: csv::Reader<R>,
    columns: Columns,
    record: ByteRecord,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header; a missing required column refuses the file.
    pub fn new(input: R) -> Result<Self, FileError> {
        let mut reader = ReaderBuilder::new().flexible(true).from_reader(input);
        let headers = reader.byte_headers().map_err(unreadable)?;
        let names: Vec<String> = headers.iter().map(header_name).collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let mut required = [0; REQUIRED.len()];
        for (slot, name) in required.iter_mut().zip(REQUIRED) {
            *slot = find(name).ok_or(FileError::MissingColumn(name))?;
        }
        let columns = Columns {
            required,
            optional: OPTIONAL.map(find),
        };
        Ok(Self {
            reader,
            columns,
            record: ByteRecord::new(),
        })
    }

    /// The next chunk of up to `max_rows` rows (parsed or not), or `None` at the end.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, FileError> {
        let mut chunk = Chunk::default();
        while chunk.rows.len() + chunk.errors.len() < max_rows {
            if !self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(unreadable)?
            {
                break;
            }
            let line = self.record.position().map_or(0, Position::line);
            match parse_row(&self.record, &self.columns, line) {
                Ok(row) => chunk.rows.push(row),
                Err(error) => chunk.errors.push(error),
            }
        }
        chunk.bytes_read = self.reader.position().byte();
        let empty = chunk.rows.is_empty() && chunk.errors.is_empty();
        Ok((!empty).then_some(chunk))
    }
}

/// `Supply Type`, `supply_type` and `supply-type` all name the column `supply type`.
fn header_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim()
        .trim_start_matches('\u{feff}')
        .to_ascii_lowercase()
        .replace(['_', '-'], " ")
}

fn unreadable(error: csv::Error) -> FileError {
    let line = error.position().map_or(0, Position::line);
    FileError::Unreadable {
        line,
        detail: error.to_string(),
    }
}

fn parse_row(record: &ByteRecord, columns: &Columns, line: u64) -> Result<Row, RowError> {
    let field = |index: usize, name: &str| -> Result<&str, RowError> {
        let bytes = record.get(index).unwrap_or_default();
        std::str::from_utf8(bytes)
            .map(str::trim)
            .map_err(|error| row_error(line, name, format!("not UTF-8: {error}")))
    };
    let [sku, node, supply_type, quantity, as_of] = columns.required;
    let optional = |slot: Option<usize>, name: &str| slot.map_or(Ok(""), |i| field(i, name));
    let [reference, eta] = columns.optional;
    let supply_type = parse_supply_type(field(supply_type, "supply type")?)
        .ok_or_else(|| row_error(line, "supply type", "not on_hand, in_transit or on_order"))?;
    let quantity = field(quantity, "quantity")?;
    let quantity = quantity
        .parse()
        .map_err(|error| row_error(line, "quantity", format!("{quantity:?}: {error}")))?;
    let as_of = field(as_of, "as of")?;
    let as_of_ms = DateTime::parse_from_rfc3339(as_of)
        .map_err(|error| row_error(line, "as of", format!("{as_of:?} is not RFC 3339: {error}")))?
        .timestamp_millis();
    let update = SupplyUpdate {
        sku: field(sku, "sku")?.to_owned(),
        node_id: field(node, "node")?.to_owned(),
        supply_type: Some(supply_type),
        op: Some(UpdateOp::Set {
            as_of_ms: Some(as_of_ms),
        }),
        quantity,
        reference: optional(reference, "reference")?.to_owned(),
        eta: optional(eta, "eta")?.to_owned(),
    };
    Ok(Row {
        line,
        update,
        as_of_ms,
    })
}

fn parse_supply_type(text: &str) -> Option<SupplyType> {
    match text.to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
        "on_hand" => Some(SupplyType::OnHand),
        "in_transit" => Some(SupplyType::InTransit),
        "on_order" => Some(SupplyType::OnOrder),
        _ => None,
    }
}

fn row_error(line: u64, field: &str, detail: impl Into<String>) -> RowError {
    RowError {
        line,
        field: field.to_owned(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests;

use super::*;

const HEADER: &str = "SKU,Node,Supply_Type,Quantity,Reference,ETA,As-Of\n";

fn chunks(text: &str) -> (Vec<Row>, Vec<RowError>) {
    let mut rows = CsvRows::new(text.as_bytes()).expect("the header has every column");
    let (mut parsed, mut errors) = (Vec::new(), Vec::new());
    while let Some(chunk) = rows.next_chunk(2).expect("readable") {
        parsed.extend(chunk.rows);
        errors.extend(chunk.errors);
    }
    (parsed, errors)
}

#[test]
fn rows_read_in_chunks_with_their_lines() {
    let text = format!(
        "{HEADER}A1,LOC-1,on_hand,3,,,2026-03-02T15:00:00Z\n\
         A2,LOC-1,IN_TRANSIT,4,ASN-1,2026-03-05,2026-03-02T15:00:00Z\n\
         A3,LOC-2,on hand,5,,,2026-03-02T15:00:00Z\n"
    );
    let (rows, errors) = chunks(&text);
    assert!(errors.is_empty(), "{errors:?}");
    let lines: Vec<u64> = rows.iter().map(|row| row.line).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert_eq!(rows[1].update.supply_type, Some(SupplyType::InTransit));
    assert_eq!(
        (
            rows[1].update.reference.as_str(),
            rows[1].update.eta.as_str()
        ),
        ("ASN-1", "2026-03-05")
    );
    assert_eq!(rows[0].as_of_ms, 1_772_463_600_000);
}

#[test]
fn a_bad_row_is_reported_with_its_line_and_field_and_the_others_read() {
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(
        b"A1,LOC-1,on_hand,three,,,2026-03-02T15:00:00Z\n\
          A2,LOC-1,on_shelf,1,,,2026-03-02T15:00:00Z\n\
          A3,LOC-1,on_hand,1,,,yesterday\n\
          A\xff,LOC-1,on_hand,1,,,2026-03-02T15:00:00Z\n\
          A5,LOC-1,on_hand,1,,,2026-03-02T15:00:00Z\n",
    );
    let mut rows = CsvRows::new(bytes.as_slice()).expect("header");
    let chunk = rows.next_chunk(10).expect("readable").expect("rows");
    let found: Vec<(u64, &str)> = chunk
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "quantity"),
            (3, "supply type"),
            (4, "as of"),
            (5, "sku")
        ]
    );
    assert_eq!(chunk.rows.len(), 1);
    assert_eq!(chunk.rows[0].line, 6);
}

#[test]
fn a_missing_required_column_refuses_the_file() {
    let refused =
        CsvRows::new("sku,node,supply type,as of\nA1,L,on_hand,2026-03-02T15:00:00Z\n".as_bytes());
    assert!(matches!(refused, Err(FileError::MissingColumn("quantity"))));
}

#[test]
fn a_header_that_is_not_utf8_is_a_missing_column() {
    let refused = CsvRows::new(&b"sku,node,supply type,quantit\xe9,as of\n"[..]);
    assert!(matches!(refused, Err(FileError::MissingColumn("quantity"))));
}

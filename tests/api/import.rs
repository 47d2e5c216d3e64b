//! CSV imports over gRPC, through the same code as `promised import`: rows in the source's
//! own codes and cases, SET batches or a full sync, every bad row reported by its line.

use std::process::Command;

use indicatif::ProgressBar;
use promised::grpc::client::{self, Client};
use promised::grpc::import::{self, ImportError, Options, Summary};
use promised::grpc::pb;
use promised::import::{FileError, RowError};

use crate::helpers::*;

pub const HEADER: &str = "sku,node,supply type,quantity,reference,eta,as of\n";
pub const AT: &str = "2026-03-02T15:00:00Z";

/// WMS-EAST calls SKU-1 `ITEM-9` and counts it in cases of 12, calls SKU-n `ITEM-n` otherwise,
/// and calls DC-EAST `WH1`.
pub async fn east_codes(app: &mut TestApp) {
    let mapping = pb::SourceMapping {
        source_id: "WMS-EAST".into(),
        items: [
            ("ITEM-9", "SKU-1"),
            ("ITEM-2", "SKU-2"),
            ("ITEM-3", "SKU-3"),
        ]
        .map(|(code, sku)| pb::ItemCode {
            code: code.into(),
            sku: sku.into(),
        })
        .to_vec(),
        locations: vec![pb::LocationCode {
            code: "WH1".into(),
            node_id: "DC-EAST".into(),
        }],
        units: vec![pb::UnitFactor {
            sku: "SKU-1".into(),
            eaches: 12,
            units: 1,
        }],
    };
    let request = pb::UpsertMappingsRequest {
        mappings: vec![mapping],
    };
    app.admin.upsert_mappings(request).await.expect("mapped");
}

async fn client_of(app: &TestApp) -> Client {
    let addr = format!("http://{}", app.grpc_addr);
    client::connect(&addr, None, None).await.expect("connects")
}

async fn import(app: &TestApp, csv: String, full: bool) -> Result<Summary, ImportError> {
    let options = Options {
        source_id: "WMS-EAST".into(),
        full,
        force: false,
        rows_per_call: 2,
    };
    let mut client = client_of(app).await;
    let input = std::io::Cursor::new(csv.into_bytes());
    import::run(input, &mut client, &options, &ProgressBar::hidden()).await
}

fn lines(rejections: &[RowError]) -> Vec<(u64, &str)> {
    rejections
        .iter()
        .map(|r| (r.line, r.field.as_str()))
        .collect()
}

#[tokio::test]
async fn a_csv_in_the_sources_codes_applies_and_reports_each_bad_line() {
    let mut app = spawn_app().await;
    east_codes(&mut app).await;
    let csv = format!(
        "{HEADER}ITEM-9,WH1,on_hand,3,,,{AT}\n\
         ITEM-9,WH1,on_hand,lots,,,{AT}\n\
         ITEM-0,WH1,on_hand,1,,,{AT}\n\
         ITEM-2,WH1,on_hand,5,,,{AT}\n\
         ITEM-3,WH1,in_transit,4,ASN-1,2026-03-05,{AT}\n"
    );
    let summary = import(&app, csv, false).await.expect("imported");
    assert_eq!((summary.rows, summary.applied, summary.rejected), (5, 3, 2));
    let expected = [(3, "quantity"), (4, "UNKNOWN_SKU_CODE")];
    assert_eq!(lines(&summary.rejections), expected, "{summary}");
    let sku1 = app.item("SKU-1").await;
    assert_eq!(node_view(&sku1, "DC-EAST").on_hand, 36, "3 cases of 12");
    assert_eq!(node_view(&app.item("SKU-2").await, "DC-EAST").on_hand, 5);
    let printed = summary.to_string();
    assert!(
        printed.starts_with("rows 5: applied 3, stale 0, rejected 2\n"),
        "{printed}"
    );
    assert!(printed.contains("line 3: quantity: \"lots\""), "{printed}");
}

#[tokio::test]
async fn a_full_csv_sync_zeroes_what_the_file_leaves_out() {
    let mut app = spawn_app().await;
    let before = vec![
        set_on_hand("SKU-1", "DC-EAST", 7, START_MS - 1000),
        set_on_hand("SKU-2", "DC-EAST", 9, START_MS - 1000),
        set_on_hand("SKU-3", "DC-EAST", 4, START_MS - 1000),
    ];
    app.apply("WMS-EAST", 1, before).await;
    east_codes(&mut app).await;
    let csv = format!(
        "{HEADER}ITEM-9,WH1,on_hand,2,,,{AT}\n\
         ITEM-3,WH1,on_hand,4,,,{AT}\n\
         ITEM-2,WH1,on_hand,1,,,2026-03-02T14:00:00Z\n"
    );
    let summary = import(&app, csv, true).await.expect("imported");
    assert_eq!(lines(&summary.rejections), [(4, "as of")], "{summary}");
    let [sync] = summary.syncs.as_slice() else {
        panic!("one sync per supply type in the file: {summary}");
    };
    assert_eq!((sync.set, sync.zeroed, sync.unchanged), (1, 1, 1));
    let on_hand = |item: pb::ItemAvailability| node_view(&item, "DC-EAST").on_hand;
    assert_eq!(on_hand(app.item("SKU-1").await), 24);
    assert_eq!(on_hand(app.item("SKU-2").await), 0, "left out, so zeroed");
    assert_eq!(on_hand(app.item("SKU-3").await), 4);
}

#[tokio::test]
async fn a_file_without_a_required_column_sends_nothing() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 7, START_MS)],
    )
    .await;
    for full in [false, true] {
        let csv = format!("sku,node,supply type,as of\nSKU-2,DC-EAST,on_hand,{AT}\n");
        let refused = import(&app, csv, full).await;
        assert!(
            matches!(
                refused,
                Err(ImportError::File(FileError::MissingColumn("quantity")))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 7);
    let sent = app.stats().await;
    assert_eq!(sent.positions, 1, "{sent:?}");
}

#[tokio::test]
async fn a_million_row_file_imports_with_a_correct_summary() {
    let app = spawn_app().await;
    let rows = 1_000_000;
    let mut csv = String::from(HEADER);
    for i in 0..rows {
        let quantity = if i % 1000 == 999 {
            "x".to_owned()
        } else {
            (i % 50).to_string()
        };
        csv.push_str(&format!("SKU-{i},DC-EAST,on_hand,{quantity},,,{AT}\n"));
    }
    let options = Options {
        source_id: "WMS-EAST".into(),
        full: false,
        force: false,
        rows_per_call: 5000,
    };
    let mut client = client_of(&app).await;
    let input = std::io::Cursor::new(csv.into_bytes());
    let summary = import::run(input, &mut client, &options, &ProgressBar::hidden())
        .await
        .expect("imported");
    assert_eq!(
        (summary.rows, summary.applied, summary.rejected),
        (1_000_000, 999_000, 1_000)
    );
    let first: Vec<u64> = summary.rejections.iter().take(2).map(|r| r.line).collect();
    assert_eq!(first, [1001, 2001], "the header is line 1");
}

#[tokio::test]
async fn the_import_command_prints_its_summary() {
    let mut app = spawn_app().await;
    east_codes(&mut app).await;
    let path = std::env::temp_dir().join(format!("promised-import-{}.csv", std::process::id()));
    let csv = format!("{HEADER}ITEM-9,WH1,on_hand,2,,,{AT}\nITEM-9,WH1,on_hand,-,,,{AT}\n");
    std::fs::write(&path, csv).expect("written");
    let mut command = Command::new(env!("CARGO_BIN_EXE_promised"));
    command
        .arg("import")
        .arg(&path)
        .args(["--source", "WMS-EAST", "--full"])
        .args(["--addr", &format!("http://{}", app.grpc_addr)]);
    // Waited for off the runtime, which serves the calls the command makes.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("waited")
        .expect("runs");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "rows 2: applied 1, stale 0, rejected 1\n\
             full sync csv-on_hand-1772463600000: set 1, zeroed 0, unchanged 0\n\
             line 3: quantity: \"-\": invalid digit found in string\n"
        )
    );
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 24);
}

//! The watches over HTTP as server-sent events, against a real Redis journal: events carry
//! their resume token as `id` and the message's JSON as `data`; `Last-Event-ID` resumes with
//! no gap and no duplicate across a server restart, band watches included (whose bands are
//! replayed from their anchor); the end of a stream is an `end` event saying why; refusals
//! before the stream starts are HTTP refusals naming the field.

use std::time::Duration;

use promised::config::ServeArgs;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::durability::durable;
use crate::helpers::*;
use crate::http_client::Http;
use crate::redis::RedisServer;
use crate::watch::with_small_watch_buffers;

/// Longest a test waits for the next event before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: String,
    /// `message` unless the event names its type.
    kind: String,
    data: Value,
}

/// A server-sent events answer, read as it arrives. Asked over HTTP/1.0, so the body comes
/// as it is (not chunked) and ends with the connection.
struct Events {
    stream: TcpStream,
    buffered: Vec<u8>,
}

/// Opens `path` with `headers`; a refusal is its status and `google.rpc.Status` body.
async fn open(http: &Http, path: &str, headers: &[(&str, &str)]) -> Result<Events, (u16, Value)> {
    let request = http.request("GET", path, headers, None);
    let request = String::from_utf8(request)
        .expect("a request is text")
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut stream = TcpStream::connect(http.addr).await.expect("connects");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut events = Events {
        stream,
        buffered: Vec::new(),
    };
    let head = events.until(b"\r\n\r\n").await.expect("a head");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    if status != 200 {
        let mut body = std::mem::take(&mut events.buffered);
        events
            .stream
            .read_to_end(&mut body)
            .await
            .expect("body read");
        return Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    }
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    Ok(events)
}

impl Events {
    /// The bytes up to and including `end`, or `None` when the stream ends first.
    async fn until(&mut self, end: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.buffered.windows(end.len()).position(|w| w == end) {
                return Some(self.buffered.drain(..at + end.len()).collect());
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("the next bytes in time")
                .expect("readable");
            if read == 0 {
                return None;
            }
            self.buffered.extend_from_slice(&chunk[..read]);
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        let text = self.until(b"\n\n").await?;
        let mut event = Event {
            id: String::new(),
            kind: "message".into(),
            data: Value::Null,
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = value.to_owned(),
                "event" => event.kind = value.to_owned(),
                "data" => event.data = serde_json::from_str(value).expect("JSON data"),
                _ => {}
            }
        }
        Some(event)
    }

    /// The next change other than the network's (the test network is loaded at every start).
    async fn change(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("an event");
            assert_eq!(event.kind, "message", "{event:?}");
            if event.data["networkChanged"] != true {
                return event;
            }
        }
    }
}

fn seq(event: &Event) -> &str {
    event.data["cause"]["seq"].as_str().expect("a feed change")
}

#[tokio::test]
async fn changes_arrive_as_server_sent_events_and_resume_by_last_event_id_across_a_restart() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "sse")).await;
    let watched = "/v1/availability:watch?skus=SKU-A&node_ids=DC-EAST";
    let mut events = open(&Http::new(app.http_addr), watched, &[])
        .await
        .expect("watching");
    let at = |i| START_MS + i;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-A", "DC-EAST", 10, at(1))],
    )
    .await;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-B", "DC-EAST", 5)])
        .await;
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-A", "DC-EAST", 2)])
        .await;
    let first = events.change().await;
    assert_eq!(first.id, first.data["token"], "the id is the resume token");
    assert_eq!(seq(&first), "1");
    assert_eq!(first.data["positions"][0]["atp"], "10");
    let third = events.change().await;
    assert_eq!(seq(&third), "3", "SKU-B is not watched");

    app.shutdown().await;
    let end = events.next().await.expect("a last event");
    assert_eq!(
        (end.kind.as_str(), end.data["code"].as_i64()),
        ("end", Some(14))
    );
    assert_eq!(events.next().await, None, "then the stream ends");
    let mut app = spawn_app_with(durable(&redis, "sse")).await;
    app.apply("WMS-EAST", 4, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    // A reconnecting client sends its first address again: the header wins over it.
    let again = format!("{watched}&resume_token=soon");
    let last = [("last-event-id", first.id.as_str())];
    let mut resumed = open(&Http::new(app.http_addr), &again, &last)
        .await
        .expect("resumed");
    assert_eq!(resumed.change().await, third, "the journal after the id");
    assert_eq!(seq(&resumed.change().await), "4");
    app.apply("WMS-EAST", 5, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let live = resumed.change().await;
    assert_eq!(
        (seq(&live), &live.data["positions"][0]["onHand"]),
        ("5", &Value::from("14"))
    );
}

/// The crossings an event carries, as (seq, from, to, back in stock).
fn crossings(event: &Event) -> Vec<(String, String, String, bool)> {
    let band = |value: &Value| {
        value
            .as_str()
            .unwrap_or("STOCK_BAND_UNSPECIFIED")
            .to_owned()
    };
    event.data["crossings"]
        .as_array()
        .expect("crossings")
        .iter()
        .map(|c| {
            (
                seq(event).to_owned(),
                band(&c["from"]),
                band(&c["to"]),
                c["backInStock"] == true,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_band_watch_sends_only_crossings_and_resumes_without_re_emitting_or_losing_one() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "sse-bands")).await;
    let watched = "/v1/availability:watch?skus=SKU-A&bands.low_at_most=5&bands.margin=2";
    let mut events = open(&Http::new(app.http_addr), watched, &[])
        .await
        .expect("watching");
    let figures = [10, 5, 6, 7, 0, 3, 9];
    let set = |seq: usize| {
        vec![set_on_hand(
            "SKU-A",
            "DC-EAST",
            figures[seq - 1],
            START_MS + seq as i64,
        )]
    };
    for seq in 1..=2 {
        app.apply("WMS-EAST", seq as u64, set(seq)).await;
    }
    let seen = events.change().await;
    assert_eq!(
        crossings(&seen),
        [(
            "1".into(),
            "STOCK_BAND_UNSPECIFIED".into(),
            "STOCK_BAND_IN_STOCK".into(),
            false
        )],
        "a position's first figure after the watch started"
    );
    let low = events.change().await;
    assert_eq!(
        crossings(&low),
        [(
            "2".into(),
            "STOCK_BAND_IN_STOCK".into(),
            "STOCK_BAND_LOW".into(),
            false
        )]
    );
    assert_eq!(low.data["crossings"][0]["position"]["atp"], "5");
    assert!(
        low.id.contains('~'),
        "a band token names its anchor: {}",
        low.id
    );

    app.shutdown().await;
    let mut app = spawn_app_with(durable(&redis, "sse-bands")).await;
    // 6 and 7 stay LOW (inside the margin): a watch that forgot the band would see 6 as
    // IN_STOCK.
    for seq in 3..=figures.len() {
        app.apply("WMS-EAST", seq as u64, set(seq)).await;
    }
    let last = [("last-event-id", low.id.as_str())];
    let mut resumed = open(&Http::new(app.http_addr), watched, &last)
        .await
        .expect("resumed");
    let mut told = Vec::new();
    while told.len() < 3 {
        told.extend(crossings(&resumed.change().await));
    }
    assert_eq!(
        told,
        [
            (
                "5".into(),
                "STOCK_BAND_LOW".into(),
                "STOCK_BAND_OUT_OF_STOCK".into(),
                false
            ),
            (
                "6".into(),
                "STOCK_BAND_OUT_OF_STOCK".into(),
                "STOCK_BAND_LOW".into(),
                true
            ),
            (
                "7".into(),
                "STOCK_BAND_LOW".into(),
                "STOCK_BAND_IN_STOCK".into(),
                false
            ),
        ]
    );
}

/// A request header, name and value.
type Header = (&'static str, &'static str);

/// The field a refusal's BadRequest names first.
fn bad_field(refused: &(u16, Value)) -> &str {
    assert_eq!(refused.0, 400, "{refused:?}");
    refused.1["details"][0]["fieldViolations"][0]["field"]
        .as_str()
        .expect("a field violation")
}

#[tokio::test]
async fn a_watch_refused_before_it_starts_is_an_http_refusal_naming_the_field() {
    let redis = RedisServer::start();
    let app = spawn_app_with(durable(&redis, "sse-refused")).await;
    let http = Http::new(app.http_addr);
    let cases: [(&str, &[Header], &str); 7] = [
        (
            "/v1/availability:watch?node_ids=NOWHERE",
            &[],
            "node_ids[0]",
        ),
        (
            "/v1/availability:watch?resume_token=soon",
            &[],
            "resume_token",
        ),
        (
            "/v1/availability:watch",
            &[("last-event-id", "soon")],
            "resume_token",
        ),
        (
            "/v1/availability:watch?bands.margin=-1",
            &[],
            "bands.margin",
        ),
        (
            "/v1/availability:watch?bands.colour=red",
            &[],
            "bands.colour",
        ),
        (
            "/v1/availability:watch?bands.margin=1&resume_token=1-0",
            &[],
            "resume_token",
        ),
        (
            "/v1/reservations:watch",
            &[("last-event-id", "soon")],
            "resume_token",
        ),
    ];
    for (path, headers, field) in cases {
        let refused = open(&http, path, headers).await.err().expect("refused");
        assert_eq!(bad_field(&refused), field, "{path}");
    }
    let future = "/v1/availability:watch?resume_token=99999999999999-0";
    let (status, body) = open(&http, future, &[]).await.err().expect("refused");
    assert_eq!((status, body["code"].as_i64()), (412, Some(9)), "{body}");
    let memory = spawn_app_with(ServeArgs::default()).await;
    let (status, _) = open(&Http::new(memory.http_addr), "/v1/reservations:watch", &[])
        .await
        .err()
        .expect("no journal");
    assert_eq!(status, 412);
}

#[tokio::test]
async fn an_sse_watcher_that_falls_behind_ends_with_the_token_to_resume_from() {
    let redis = RedisServer::start();
    let mut app = with_small_watch_buffers(&redis, "sse-slow").await;
    let http = Http::new(app.http_addr);
    let mut slow = open(&http, "/v1/availability:watch", &[])
        .await
        .expect("watching");
    const BATCHES: u64 = 60;
    for seq in 1..=BATCHES {
        // Large changes, so that the transport's buffers fill and the watch's follows.
        let updates = (0..2_000)
            .map(|i| adjust_on_hand(&format!("SKU-{i:05}-WITH-A-LONG-NAME"), "DC-EAST", 1))
            .collect();
        app.apply("WMS-EAST", seq, updates).await;
    }
    let mut seqs = Vec::new();
    let mut last_id = String::new();
    let end = loop {
        let event = slow.next().await.expect("an event or the end");
        if event.kind == "end" {
            break event;
        }
        if event.data["networkChanged"] != true {
            seqs.push(seq(&event).parse::<u64>().expect("a number"));
        }
        last_id = event.id;
    };
    assert_eq!(end.data["code"], 10, "ABORTED: {end:?}");
    let info = &end.data["details"][0];
    assert_eq!(info["reason"], "WATCHER_BEHIND");
    assert_eq!(info["metadata"]["last_token"], last_id.as_str());
    let mut resumed = open(
        &http,
        "/v1/availability:watch",
        &[("last-event-id", &last_id)],
    )
    .await
    .expect("resumed");
    while seqs.len() < BATCHES as usize {
        seqs.push(seq(&resumed.change().await).parse().expect("a number"));
    }
    assert_eq!(
        seqs,
        (1..=BATCHES).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

//! `POST /v1/sources/{source_id}/files`: a supply CSV uploaded as `text/csv` and imported as
//! `promised import` does it (SET batches, or with `?full=true` a full sync per supply type;
//! `force=true` passes the wipe guard). The body is read as it arrives, a few chunks ahead of
//! the calls, never whole: its size is not bounded, its memory is. The caller is admitted as
//! for the Supply method the import calls, and each call goes through the Supply adapter, so
//! scopes, checks and the `App` methods are those of the API. The answer is the summary.

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio_stream::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tonic::metadata::MetadataMap;
use tonic::{Code, Extensions, Status};

use super::error::{answer, invalid, refusal};
use super::{json_response, Edge};
use crate::auth::Identity;
use crate::connections::Peer;
use crate::grpc::import::{self, ImportError, Options, Summary, SupplyCalls};
use crate::grpc::pb;
use crate::grpc::pb::supply_server::Supply;
use crate::grpc::SupplyService;
use crate::import::FileError;

/// The route's path, in axum's syntax.
pub const PATH: &str = "/v1/sources/{source_id}/files";
/// Rows per batch or part, as `promised import` sends them by default.
const ROWS_PER_CALL: usize = 5_000;

/// The query string of an upload: `full` and `force`, each `true` or absent.
#[derive(Debug, Default)]
struct Mode {
    full: bool,
    force: bool,
}

impl Mode {
    fn of(query: Option<&str>) -> Result<Self, Status> {
        let mut mode = Mode::default();
        for (name, value) in super::call::query(query) {
            let on = match value.as_str() {
                "true" | "" => true,
                "false" => false,
                _ => return Err(invalid(&name, format!("{value:?} is not true or false"))),
            };
            match name.as_str() {
                "full" => mode.full = on,
                "force" => mode.force = on,
                _ => return Err(invalid(&name, "not a parameter of an upload (full, force)")),
            }
        }
        Ok(mode)
    }
}

/// The route's OpenAPI operation, beside the route table's (it has no RPC of its own).
pub fn operation(status: &str) -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let flag = |name: &str, what: &str| {
        json!({"name": name, "in": "query", "required": false, "description": what,
            "schema": {"type": "boolean"}})
    };
    json!({"post": {
        "operationId": "UploadSupplyFile",
        "summary": "A supply CSV imported as `promised import` does it (gRPC Supply/ApplyBatch, \
            or BeginSync/SyncPart/CommitSync with full=true)",
        "parameters": [
            {"name": "source_id", "in": "path", "required": true, "schema": {"type": "string"}},
            flag("full", "Each supply type in the file is a full sync of the source."),
            flag("force", "A full sync passes the wipe guard."),
        ],
        "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}},
        "responses": {
            "200": {"description": "What the import applied and rejected.", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "rows": count, "applied": count, "stale": count, "rejected": count,
                    "rejections": {"type": "array", "items": {"type": "object", "properties": {
                        "line": count, "field": {"type": "string"},
                        "detail": {"type": "string"}}}},
                    "syncs": {"type": "array", "items": {"type": "object", "properties": {
                        "syncId": {"type": "string"}, "set": count, "zeroed": count,
                        "unchanged": count}}},
                }}}}},
            "default": {"description": "A refusal.", "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{status}")}}}},
        },
    }})
}

/// Serves one upload.
pub async fn handle(edge: Edge, source_id: Path<String>, request: Request) -> Response {
    let Ok(_permit) = edge.in_flight.clone().try_acquire_owned() else {
        return answer(&Status::resource_exhausted("too many calls in flight"));
    };
    let (parts, body) = request.into_parts();
    let mode = match Mode::of(parts.uri.query()) {
        Ok(mode) => mode,
        Err(status) => return answer(&status),
    };
    let rpc = if mode.full {
        "/promised.v1.Supply/BeginSync"
    } else {
        "/promised.v1.Supply/ApplyBatch"
    };
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity =
        match edge
            .authentication
            .admit_call(rpc, authorization, parts.extensions.get::<Peer>())
        {
            Ok(identity) => identity,
            Err(status) => return answer(&status),
        };
    if !is_csv(&parts.headers) {
        let message = "the body must be Content-Type: text/csv";
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            message,
        );
    }
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let input = SyncIoBridge::new(StreamReader::new(stream));
    let mut calls = Adapter {
        service: SupplyService(edge.handlers.clone()),
        identity,
        metadata: MetadataMap::from_headers(parts.headers),
    };
    let options = Options {
        source_id: source_id.0,
        full: mode.full,
        force: mode.force,
        rows_per_call: ROWS_PER_CALL,
    };
    let hidden = indicatif::ProgressBar::hidden();
    match import::run(input, &mut calls, &options, &hidden).await {
        Ok(summary) => json_response(summary_json(&summary).to_string().into_bytes()),
        Err(ImportError::Refused { status, .. }) => answer(&status),
        Err(ImportError::File(error)) => answer(&file_refusal(&error)),
    }
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/csv"))
}

/// A refused file names the column it lacks, or the line it could not read.
fn file_refusal(error: &FileError) -> Status {
    match error {
        FileError::MissingColumn(column) => invalid(column, error.to_string()),
        FileError::Unreadable { line, .. } => invalid(&format!("line {line}"), error.to_string()),
    }
}

fn summary_json(summary: &Summary) -> Value {
    let rejections: Vec<Value> = summary
        .rejections
        .iter()
        .map(|r| json!({"line": r.line, "field": r.field, "detail": r.detail}))
        .collect();
    let syncs: Vec<Value> = summary
        .syncs
        .iter()
        .map(|s| json!({"syncId": s.sync_id, "set": s.set, "zeroed": s.zeroed, "unchanged": s.unchanged}))
        .collect();
    json!({
        "rows": summary.rows,
        "applied": summary.applied,
        "stale": summary.stale,
        "rejected": summary.rejected,
        "rejections": rejections,
        "syncs": syncs,
    })
}

/// The Supply adapter called in process, as the caller the route admitted.
struct Adapter {
    service: SupplyService,
    identity: Option<Identity>,
    metadata: MetadataMap,
}

impl Adapter {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut extensions = Extensions::new();
        if let Some(identity) = &self.identity {
            extensions.insert(identity.clone());
        }
        tonic::Request::from_parts(self.metadata.clone(), extensions, message)
    }
}

impl SupplyCalls for Adapter {
    async fn apply_batch(&mut self, batch: pb::SupplyBatch) -> Result<pb::SupplyAck, Status> {
        let request = self.request(batch);
        Ok(self.service.apply_batch(request).await?.into_inner())
    }

    async fn begin_sync(
        &mut self,
        begin: pb::BeginSyncRequest,
    ) -> Result<pb::BeginSyncResponse, Status> {
        let request = self.request(begin);
        Ok(self.service.begin_sync(request).await?.into_inner())
    }

    async fn sync_part(
        &mut self,
        part: pb::SyncPartRequest,
    ) -> Result<pb::SyncPartResponse, Status> {
        let request = self.request(part);
        Ok(self.service.sync_part(request).await?.into_inner())
    }

    async fn commit_sync(&mut self, commit: pb::CommitSyncRequest) -> Result<pb::SyncAck, Status> {
        let request = self.request(commit);
        Ok(self.service.commit_sync(request).await?.into_inner())
    }
}

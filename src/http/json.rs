//! The canonical proto3 JSON mapping of the API's messages, driven by their descriptors (the
//! same ones gRPC reflection serves), so no JSON shape is written by hand: field names in
//! lowerCamelCase (proto names accepted too), 64-bit integers as strings, enums by name,
//! timestamps in RFC 3339, unknown fields refused. A body becomes the generated message by
//! way of its protobuf encoding, and an answer the other way round.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    ReflectMessage, SerializeOptions, Value,
};
use tonic::Status;

use super::error::invalid;
use crate::grpc::pb;

/// Every `promised.v1` descriptor (with the well-known types they use).
#[allow(clippy::expect_used, reason = "the build writes a set that decodes")]
pub static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the build writes a set that decodes")
});

/// The gRPC method at `path` (`/promised.v1.Service/Method`), if the API has it.
pub fn method(path: &str) -> Option<MethodDescriptor> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    POOL.get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// Reads a JSON body as a message of type `desc`; an empty body is the empty message.
/// Malformed JSON, a wrong type or an unknown field is INVALID_ARGUMENT saying where.
pub fn parse(desc: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    DynamicMessage::deserialize(desc, &mut reader)
        .and_then(|message| reader.end().map(|()| message))
        .map_err(|error| {
            let offset = byte_offset(body, error.line(), error.column());
            invalid(
                "body",
                format!(
                    "invalid JSON at line {} column {} (byte {offset}): {error}",
                    error.line(),
                    error.column()
                ),
            )
        })
}

/// The byte offset of a 1-based line and column, as serde_json reports them.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Sets the field a path or query parameter names from its text: the field of that name, or
/// the repeated field of its plural (`{sku}` fills `skus`), one value per occurrence; a
/// dotted name (`bands.margin`) sets a field of a message field.
pub fn bind(message: &mut DynamicMessage, name: &str, text: &str) -> Result<(), Status> {
    bind_at(message, name, name, text)
}

/// [`bind`] of `name` inside `message`, which `path` (the whole parameter name) reaches.
fn bind_at(message: &mut DynamicMessage, path: &str, name: &str, text: &str) -> Result<(), Status> {
    let desc = message.descriptor();
    let by_name = |name: &str| {
        desc.get_field_by_name(name)
            .or_else(|| desc.get_field_by_json_name(name))
    };
    let unknown = |name: &str| invalid(path, format!("{} has no field {name:?}", desc.name()));
    if let Some((head, rest)) = name.split_once('.') {
        let field = by_name(head)
            .filter(|f| !f.is_list() && !f.is_map() && matches!(f.kind(), Kind::Message(_)))
            .ok_or_else(|| unknown(head))?;
        return match message.get_field_mut(&field) {
            Value::Message(inner) => bind_at(inner, path, rest, text),
            _ => Err(unknown(head)),
        };
    }
    let field = by_name(name)
        .or_else(|| desc.get_field_by_name(&format!("{name}s")))
        .filter(|f| !f.is_map())
        .ok_or_else(|| unknown(name))?;
    let value = scalar(&field, text).ok_or_else(|| {
        invalid(
            path,
            format!("{text:?} is not a {}", kind_name(&field.kind())),
        )
    })?;
    if field.is_list() {
        if let Value::List(values) = message.get_field_mut(&field) {
            values.push(value);
        }
    } else {
        message.set_field(&field, value);
    }
    Ok(())
}

fn scalar(field: &FieldDescriptor, text: &str) -> Option<Value> {
    Some(match field.kind() {
        Kind::String => Value::String(text.to_owned()),
        Kind::Bool => Value::Bool(text.parse().ok()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().ok()?),
        Kind::Double => Value::F64(text.parse().ok()?),
        Kind::Float => Value::F32(text.parse().ok()?),
        Kind::Enum(desc) => Value::EnumNumber(desc.get_value_by_name(text)?.number()),
        Kind::Bytes | Kind::Message(_) => return None,
    })
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Enum(desc) => format!("{} name", desc.name()),
        Kind::Message(desc) => format!("{} (not a parameter)", desc.name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The generated message a parsed body stands for.
pub fn to_message<T: Message + Default>(message: &DynamicMessage) -> Result<T, Status> {
    message
        .transcode_to()
        .map_err(|error| invalid("body", error.to_string()))
}

/// A generated message of type `desc` as canonical JSON, fields at their defaults left out.
pub fn render(desc: MessageDescriptor, message: &impl Message) -> Result<Vec<u8>, Status> {
    let encoded = message.encode_to_vec();
    let dynamic = DynamicMessage::decode(desc, encoded.as_slice())
        .map_err(|error| Status::internal(format!("answer does not encode: {error}")))?;
    let mut out = serde_json::Serializer::new(Vec::with_capacity(encoded.len() * 2));
    dynamic
        .serialize_with_options(&mut out, &SerializeOptions::new())
        .map_err(|error| Status::internal(format!("answer does not render: {error}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve() -> MessageDescriptor {
        method("/promised.v1.Reservations/Reserve")
            .expect("the API has it")
            .input()
    }

    #[test]
    fn a_malformed_body_names_its_byte() {
        let status = parse(reserve(), b"{\n  \"reservationId\": 12,\n}").expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("line 2"), "{}", status.message());
        let body = b"{\"nope\": 1}";
        let status = parse(reserve(), body).expect_err("unknown fields are refused");
        assert!(status.message().contains("nope"), "{}", status.message());
    }

    #[test]
    fn sixty_four_bit_integers_are_strings_and_enums_names() {
        let desc = method("/promised.v1.Supply/ApplyBatch").expect("the API has it");
        let body =
            br#"{"sourceId":"WMS","seq":"7","updates":[{"op":"UPDATE_OP_SET","quantity":"3"}]}"#;
        let batch: pb::SupplyBatch =
            to_message(&parse(desc.input(), body).expect("parses")).expect("transcodes");
        assert_eq!((batch.seq, batch.updates[0].quantity), (7, 3));
        let json = render(desc.input(), &batch).expect("renders");
        let text = String::from_utf8(json).expect("JSON is text");
        assert!(text.contains(r#""seq":"7""#), "{text}");
        assert!(text.contains(r#""op":"UPDATE_OP_SET""#), "{text}");
    }

    #[test]
    fn a_parameter_fills_its_field_or_its_plural() {
        let desc = method("/promised.v1.Availability/GetAvailability").expect("the API has it");
        let mut message = DynamicMessage::new(desc.input());
        bind(&mut message, "sku", "SKU-1").expect("binds skus");
        bind(&mut message, "quantity", "2").expect("binds quantity");
        assert!(bind(&mut message, "quantity", "two").is_err());
        assert!(bind(&mut message, "colour", "red").is_err());
        let request: pb::AvailabilityRequest = to_message(&message).expect("transcodes");
        assert_eq!(
            (request.skus, request.quantity),
            (vec!["SKU-1".to_owned()], 2)
        );
    }

    #[test]
    fn a_dotted_parameter_fills_a_field_of_a_message_field() {
        let desc = method("/promised.v1.Availability/WatchAvailability").expect("the API has it");
        let mut message = DynamicMessage::new(desc.input());
        bind(&mut message, "bands.low_at_most", "5").expect("binds");
        bind(&mut message, "bands.margin", "2").expect("binds");
        let status = bind(&mut message, "bands.colour", "red").expect_err("no such field");
        assert!(status.message().contains("colour"), "{}", status.message());
        assert!(bind(&mut message, "skus.x", "1").is_err());
        let request: pb::WatchAvailabilityRequest = to_message(&message).expect("transcodes");
        assert_eq!(
            request.bands,
            Some(pb::StockBands {
                low_at_most: 5,
                margin: 2
            })
        );
    }

    #[test]
    fn a_byte_offset_counts_earlier_lines() {
        assert_eq!(byte_offset(b"ab\ncd", 2, 2), 4);
        assert_eq!(byte_offset(b"ab", 1, 1), 0);
    }
}

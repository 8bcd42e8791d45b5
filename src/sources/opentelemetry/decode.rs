//! OTLP/HTTP bodies: export requests in (protobuf or JSON, by `Content-Type`), responses and
//! error statuses out in the request's own encoding, as the OTLP specification asks.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

/// The encoding of a request, and so of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json` (OTLP/JSON: hex trace ids, camelCase keys)
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names (parameters such as `charset` ignored).
    pub fn from_content_type(content_type: Option<&[u8]>) -> Result<Self, String> {
        let raw = content_type.unwrap_or_default();
        let text = String::from_utf8_lossy(raw);
        let media = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            "" => {
                Err("missing Content-Type: send application/x-protobuf or application/json".into())
            }
            other => Err(format!(
                "unsupported Content-Type {other:?}: send application/x-protobuf or application/json"
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Decodes an export request.
pub fn request(encoding: Encoding, body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("invalid OTLP protobuf logs request: {e}")),
        Encoding::Json => serde_json::from_slice(body).or_else(|e| {
            with_numeric_times(body).ok_or_else(|| format!("invalid OTLP/JSON logs request: {e}"))
        }),
    }
}

/// 64-bit times are strings in OTLP/JSON, but receivers must take numbers too (protobuf's
/// JSON mapping), and opentelemetry-proto reads strings only: a request that failed is read
/// again with its numeric times as strings.
fn with_numeric_times(body: &[u8]) -> Option<ExportLogsServiceRequest> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    times_as_strings(&mut value);
    serde_json::from_value(value).ok()
}

/// Turns the numbers of `timeUnixNano` and `observedTimeUnixNano` into strings, everywhere.
fn times_as_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::Number(n)
                        if key == "timeUnixNano" || key == "observedTimeUnixNano" =>
                    {
                        *v = serde_json::Value::String(n.to_string());
                    }
                    _ => times_as_strings(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(times_as_strings),
        _ => {}
    }
}

/// How many log records a request holds.
pub fn records(request: &ExportLogsServiceRequest) -> usize {
    request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

/// The partial success of a request whose `rejected` of `records` log records a sink
/// rejected for good.
pub fn rejected(rejected: usize, records: usize) -> ExportLogsPartialSuccess {
    ExportLogsPartialSuccess {
        rejected_log_records: rejected as i64,
        error_message: format!(
            "{rejected} of {records} log records were rejected for good by a sink (they are kept \
             as its dead letters; sending them again would not help)"
        ),
    }
}

/// A success response, with its partial success when some records were rejected.
pub fn response(encoding: Encoding, partial_success: Option<ExportLogsPartialSuccess>) -> Bytes {
    match encoding {
        Encoding::Protobuf => {
            Bytes::from(ExportLogsServiceResponse { partial_success }.encode_to_vec())
        }
        Encoding::Json => {
            let body = match partial_success {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            Bytes::from(body.to_string())
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response and the details of a gRPC
/// one. Written out here because it is three fields and `opentelemetry-proto` does not carry
/// the `google.rpc` protos.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    /// `google.protobuf.Any` messages (a `RetryInfo`, say).
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<super::grpc::ProtoAny>,
}

/// gRPC status codes used in error bodies.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// An error body in the request's encoding (protobuf when it is not known).
pub fn status(encoding: Encoding, code: i32, message: &str) -> Bytes {
    match encoding {
        Encoding::Protobuf => {
            let status = Status { code, message: message.to_owned(), details: Vec::new() };
            Bytes::from(status.encode_to_vec())
        }
        Encoding::Json => {
            Bytes::from(serde_json::json!({"code": code, "message": message}).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_specifications_json_example() {
        // The log record example of the OTLP specification (opentelemetry-proto's
        // examples/logs.json), trimmed to one record, with times as strings and numbers.
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "body":{"stringValue":"Example log record"},
            "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},{"key":"boolean.attribute","value":{"boolValue":true}},
              {"key":"int.attribute","value":{"intValue":"10"}},{"key":"double.attribute","value":{"doubleValue":637.704}},
              {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}},
              {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}}]}]}]}]}"#;
        let request = request(Encoding::Json, body).unwrap();
        assert_eq!(records(&request), 1);
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.attributes.len(), 6);
        // The same times as JSON numbers, which receivers must accept too.
        let numeric = std::str::from_utf8(body)
            .unwrap()
            .replace("\"1544712660300000000\"", "1544712660300000000");
        assert!(!numeric.contains("\"1544712660300000000\""));
        let request = super::request(Encoding::Json, numeric.as_bytes()).unwrap();
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(record.observed_time_unix_nano, 1_544_712_660_300_000_000);
        let err = super::request(Encoding::Json, b"{\"resourceLogs\": 3}").unwrap_err();
        assert!(err.starts_with("invalid OTLP/JSON logs request"), "{err}");
        let err = super::request(Encoding::Protobuf, b"\xff\xff\xff").unwrap_err();
        assert!(err.starts_with("invalid OTLP protobuf logs request"), "{err}");
    }

    #[test]
    fn content_types_and_answers() {
        assert_eq!(
            Encoding::from_content_type(Some(b"application/json; charset=utf-8")),
            Ok(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type(Some(b"application/x-protobuf")),
            Ok(Encoding::Protobuf)
        );
        assert!(
            Encoding::from_content_type(Some(b"text/plain")).unwrap_err().contains("text/plain")
        );
        assert!(Encoding::from_content_type(None).is_err());
        assert_eq!(response(Encoding::Json, None), "{}");
        let partial = Some(rejected(2, 5));
        let r = ExportLogsServiceResponse::decode(response(Encoding::Protobuf, partial.clone()))
            .unwrap();
        assert_eq!(r.partial_success, partial);
        let json: serde_json::Value =
            serde_json::from_slice(&response(Encoding::Json, partial)).unwrap();
        // OTLP/JSON: camelCase keys, 64-bit integers as strings.
        assert_eq!(json["partialSuccess"]["rejectedLogRecords"], "2");
        assert!(json["partialSuccess"]["errorMessage"].as_str().unwrap().starts_with("2 of 5"));
        let s = Status::decode(status(Encoding::Protobuf, code::INVALID_ARGUMENT, "bad")).unwrap();
        assert_eq!((s.code, s.message.as_str()), (3, "bad"));
    }
}

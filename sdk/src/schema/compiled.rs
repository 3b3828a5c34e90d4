//! A schema version compiled once into what validates, encodes and decodes its payloads.
//!
//! JSON Schema through `jsonschema` (built without its HTTP and file retrievers: a schema whose
//! `$ref` points outside itself does not compile, rather than making the validator fetch
//! documents at run time); Avro through `apache-avro`. Errors name the failing place in the
//! payload (a JSON pointer; for Avro the field path) and never quote the payload's values, so
//! they may go into logs and headers.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use apache_avro::types::Value as AvroValue;
use apache_avro::writer::datum::GenericDatumWriter;
use thiserror::Error;
use uuid::Uuid;

use super::registry::{DataFormat, SchemaVersion};

/// An event's payload before it is encoded (producer) or after it was decoded (consumer).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(serde_json::Value),
    Avro(AvroValue),
}

/// Why a payload does not match its schema: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (at `{path}`)")]
pub struct Invalid {
    /// A JSON pointer into the payload (`/items/0/price`; empty for the whole payload). Avro
    /// paths use the same notation over field names, array indexes and map keys.
    pub path: String,
    pub message: String,
}

impl Invalid {
    fn whole(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }
}

/// Why a registry's schema version cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("schema version {id} ({format}) does not compile: {reason}")]
pub struct CompileError {
    pub id: Uuid,
    pub format: DataFormat,
    pub reason: String,
}

/// One schema version, compiled.
pub struct CompiledSchema {
    id: Uuid,
    validator: Validator,
}

enum Validator {
    Json(jsonschema::Validator),
    Avro(Box<AvroCodec>),
}

/// The parsed schema with its writer and reader. Schema versions are immutable and a process
/// meets few of them, so the parsed schema is kept for the process's life (leaked), which lets
/// the writer and reader resolve its named types once instead of on every event.
struct AvroCodec {
    schema: &'static Schema,
    names: NamesRef<'static>,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("id", &self.id)
            .field("format", &self.format())
            .finish()
    }
}

impl CompiledSchema {
    /// Compiles `version`'s definition.
    pub fn compile(version: &SchemaVersion) -> Result<Self, CompileError> {
        let failed = |reason: String| CompileError {
            id: version.id,
            format: version.format,
            reason,
        };
        let validator = match version.format {
            DataFormat::Json => {
                let schema: serde_json::Value = serde_json::from_str(&version.definition)
                    .map_err(|e| failed(format!("not JSON: {e}")))?;
                let validator = jsonschema::options()
                    .build(&schema)
                    .map_err(|e| failed(e.to_string()))?;
                Validator::Json(validator)
            }
            DataFormat::Avro => {
                let schema =
                    Schema::parse_str(&version.definition).map_err(|e| failed(e.to_string()))?;
                let schema: &'static Schema = Box::leak(Box::new(schema));
                let names = ResolvedSchema::try_from(schema)
                    .map_err(|e| failed(e.to_string()))?
                    .get_names()
                    .clone();
                Validator::Avro(Box::new(AvroCodec {
                    schema,
                    names,
                    writer: GenericDatumWriter::builder(schema)
                        .build()
                        .map_err(|e| failed(e.to_string()))?,
                    reader: GenericDatumReader::builder(schema)
                        .build()
                        .map_err(|e| failed(e.to_string()))?,
                }))
            }
        };
        Ok(Self {
            id: version.id,
            validator,
        })
    }

    /// The schema version id (what the value's prefix carries).
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn format(&self) -> DataFormat {
        match self.validator {
            Validator::Json(_) => DataFormat::Json,
            Validator::Avro(_) => DataFormat::Avro,
        }
    }

    /// Validates `payload` and encodes it (UTF-8 JSON, or an Avro binary datum), unframed.
    pub fn encode(&self, payload: &Payload) -> Result<Vec<u8>, Invalid> {
        match (&self.validator, payload) {
            (Validator::Json(validator), Payload::Json(value)) => {
                json_errors(validator, value)?;
                Ok(serde_json::to_vec(value).expect("a serde_json::Value serializes"))
            }
            (Validator::Avro(codec), Payload::Avro(value)) => {
                let mut bytes = Vec::new();
                match codec.writer.write_value_ref(&mut bytes, value) {
                    Ok(_) => Ok(bytes),
                    Err(_) => Err(codec.mismatch(value)),
                }
            }
            (Validator::Json(_), Payload::Avro(_)) => Err(Invalid::whole(
                "the schema is a JSON schema and the payload an Avro value",
            )),
            (Validator::Avro(_), Payload::Json(_)) => Err(Invalid::whole(
                "the schema is an Avro schema and the payload a JSON value",
            )),
        }
    }

    /// Decodes and validates payload bytes written with this schema version.
    pub fn decode(&self, bytes: &[u8]) -> Result<Payload, Invalid> {
        match &self.validator {
            Validator::Json(validator) => {
                let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                    Invalid::whole(format!(
                        "not JSON: {} at line {} column {}",
                        json_error_kind(&e),
                        e.line(),
                        e.column()
                    ))
                })?;
                json_errors(validator, &value)?;
                Ok(Payload::Json(value))
            }
            Validator::Avro(codec) => {
                let mut rest = bytes;
                // apache-avro's error may quote the bytes it read: only the kind is kept.
                let value = codec.reader.read_value(&mut rest).map_err(|_| {
                    Invalid::whole(
                        "not an Avro datum of this schema (truncated, or written with another \
                         schema)",
                    )
                })?;
                if !rest.is_empty() {
                    return Err(Invalid::whole(format!(
                        "{} bytes left after the Avro datum",
                        rest.len()
                    )));
                }
                Ok(Payload::Avro(value))
            }
        }
    }
}

fn json_errors(
    validator: &jsonschema::Validator,
    value: &serde_json::Value,
) -> Result<(), Invalid> {
    // The boolean check stops at the first failure and builds no error: the common, valid case
    // pays only for it.
    if validator.is_valid(value) {
        return Ok(());
    }
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => Err(Invalid {
            path: error.instance_path().as_str().to_string(),
            // Masked: the message says what is wrong without quoting the value.
            message: error.masked().to_string(),
        }),
    }
}

/// serde_json's category of a parse error, without the message (which may quote input).
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "data error",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

impl AvroCodec {
    /// Where an invalid value first departs from the schema. Only called after the writer
    /// refused the value; the writer's own error says no more than "invalid".
    fn mismatch(&self, value: &AvroValue) -> Invalid {
        let mut path = String::new();
        let message = avro_mismatch(value, self.schema, &self.names, &mut path)
            .unwrap_or_else(|| "does not match the schema".to_string());
        Invalid { path, message }
    }
}

/// The first mismatch under `value`, extending `path` down to it. `None` when no structural
/// mismatch was found (the caller then reports the whole value).
fn avro_mismatch(
    value: &AvroValue,
    schema: &Schema,
    names: &NamesRef<'_>,
    path: &mut String,
) -> Option<String> {
    use AvroValue as V;
    match (schema, value) {
        (Schema::Ref { name }, _) => match names.get(name) {
            Some(schema) => avro_mismatch(value, schema, names, path),
            None => Some(format!("names the unknown type {}", name.fullname(None))),
        },
        (Schema::Record(record), V::Record(fields)) => {
            for field in &record.fields {
                let at = path.len();
                path.push('/');
                path.push_str(&field.name);
                match fields.iter().find(|(name, _)| *name == field.name) {
                    None if field.default.is_none() => {
                        return Some("required field is missing".into());
                    }
                    None => {}
                    Some((_, inner)) => {
                        if let Some(message) = avro_mismatch(inner, &field.schema, names, path) {
                            return Some(message);
                        }
                    }
                }
                path.truncate(at);
            }
            if let Some((name, _)) = fields.iter().find(|(n, _)| !record.lookup.contains_key(n)) {
                path.push('/');
                path.push_str(name);
                return Some("the record has no such field".into());
            }
            None
        }
        (Schema::Array(array), V::Array(items)) => {
            items.iter().enumerate().find_map(|(i, item)| {
                let at = path.len();
                path.push_str(&format!("/{i}"));
                let found = avro_mismatch(item, &array.items, names, path);
                if found.is_none() {
                    path.truncate(at);
                }
                found
            })
        }
        // A map's keys are data (ids, emails): the path names no key.
        (Schema::Map(map), V::Map(entries)) => entries.values().find_map(|item| {
            let at = path.len();
            path.push_str("/*");
            let found = avro_mismatch(item, &map.types, names, path);
            if found.is_none() {
                path.truncate(at);
            }
            found
        }),
        (Schema::Union(union), V::Union(branch, inner)) => {
            match union.variants().get(*branch as usize) {
                Some(schema) => avro_mismatch(inner, schema, names, path),
                None => Some(format!(
                    "union branch {branch} does not exist ({} branches)",
                    union.variants().len()
                )),
            }
        }
        (Schema::Union(union), _) => {
            let fits = union.variants().iter().any(|variant| {
                let mut scratch = String::new();
                avro_mismatch(value, variant, names, &mut scratch).is_none()
            });
            (!fits).then(|| {
                format!(
                    "matches none of the union's {} branches",
                    union.variants().len()
                )
            })
        }
        (Schema::Enum(schema), V::Enum(_, symbol)) => (!schema.symbols.contains(symbol))
            .then(|| "is not one of the enum's symbols".to_string()),
        (Schema::Enum(schema), V::String(symbol)) => (!schema.symbols.contains(symbol))
            .then(|| "is not one of the enum's symbols".to_string()),
        (Schema::Fixed(schema), V::Fixed(size, _)) => (*size != schema.size)
            .then(|| format!("is {size} bytes; the fixed type has {}", schema.size)),
        _ if primitive_fits(schema, value) => None,
        _ => Some(format!(
            "expected {}, found {}",
            schema_kind(schema),
            value_kind(value)
        )),
    }
}

/// Whether a primitive (or logical) value may be written with `schema`, following the Avro
/// specification's promotions (int to long, float or double; long to float or double).
fn primitive_fits(schema: &Schema, value: &AvroValue) -> bool {
    use AvroValue as V;
    matches!(
        (schema, value),
        (Schema::Null, V::Null)
            | (Schema::Boolean, V::Boolean(_))
            | (Schema::Int, V::Int(_))
            | (Schema::Long, V::Long(_) | V::Int(_))
            | (Schema::Float, V::Float(_) | V::Int(_) | V::Long(_))
            | (
                Schema::Double,
                V::Double(_) | V::Float(_) | V::Int(_) | V::Long(_)
            )
            | (Schema::Bytes, V::Bytes(_))
            | (Schema::String, V::String(_))
            | (Schema::Date, V::Date(_) | V::Int(_))
            | (Schema::TimeMillis, V::TimeMillis(_) | V::Int(_))
            | (Schema::TimeMicros, V::TimeMicros(_) | V::Long(_))
            | (Schema::TimestampMillis, V::TimestampMillis(_) | V::Long(_))
            | (Schema::TimestampMicros, V::TimestampMicros(_) | V::Long(_))
            | (Schema::TimestampNanos, V::TimestampNanos(_) | V::Long(_))
            | (Schema::Uuid(_), V::Uuid(_) | V::String(_))
            | (Schema::Decimal(_), V::Decimal(_))
    )
}

fn schema_kind(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

fn value_kind(value: &AvroValue) -> String {
    format!("{:?}", apache_avro::schema::SchemaKind::from(value)).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_schema() -> CompiledSchema {
        CompiledSchema::compile(&SchemaVersion {
            id: Uuid::nil(),
            format: DataFormat::Json,
            definition: json!({
                "type": "object",
                "required": ["order_id", "total"],
                "properties": {
                    "order_id": {"type": "string"},
                    "total": {"type": "number", "minimum": 0},
                    "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
                }
            })
            .to_string(),
            number: Some(1),
        })
        .unwrap()
    }

    fn avro_schema() -> CompiledSchema {
        CompiledSchema::compile(&SchemaVersion {
            id: Uuid::nil(),
            format: DataFormat::Avro,
            definition: r#"{"type":"record","name":"Order","fields":[
                {"name":"order_id","type":"string"},
                {"name":"total","type":"double"},
                {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line",
                    "fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
                {"name":"note","type":["null","string"],"default":null}]}"#
                .into(),
            number: Some(1),
        })
        .unwrap()
    }

    fn order(lines: Vec<AvroValue>) -> AvroValue {
        AvroValue::Record(vec![
            ("order_id".into(), AvroValue::String("o-1".into())),
            ("total".into(), AvroValue::Double(12.5)),
            ("lines".into(), AvroValue::Array(lines)),
            (
                "note".into(),
                AvroValue::Union(0, Box::new(AvroValue::Null)),
            ),
        ])
    }

    fn line(sku: AvroValue) -> AvroValue {
        AvroValue::Record(vec![("sku".into(), sku), ("qty".into(), AvroValue::Int(2))])
    }

    #[test]
    fn a_valid_json_payload_round_trips() {
        let schema = json_schema();
        let payload = Payload::Json(json!({"order_id": "o-1", "total": 3}));
        let bytes = schema.encode(&payload).unwrap();
        assert_eq!(schema.decode(&bytes).unwrap(), payload);
    }

    #[test]
    fn an_invalid_json_payload_names_the_path_and_not_the_value() {
        let schema = json_schema();
        let err = schema
            .encode(&Payload::Json(
                json!({"order_id": "o-1", "total": 5, "items": [{"sku": "a"}, {"secret": "s3cr3t"}]}),
            ))
            .unwrap_err();
        assert_eq!(err.path, "/items/1");
        assert!(err.message.contains("sku"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = schema
            .encode(&Payload::Json(json!({"order_id": "o-1", "total": -7})))
            .unwrap_err();
        assert_eq!(err.path, "/total");
        assert!(!err.message.contains("-7"), "{err}");
    }

    #[test]
    fn malformed_json_bytes_are_invalid_without_quoting_them() {
        let err = json_schema().decode(b"{\"order_id\": s3cr3t").unwrap_err();
        assert!(err.message.contains("line 1"), "{err}");
        assert!(!err.message.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_remote_ref_does_not_compile() {
        let err = CompiledSchema::compile(&SchemaVersion {
            id: Uuid::nil(),
            format: DataFormat::Json,
            definition: json!({"$ref": "https://example.com/schema.json"}).to_string(),
            number: None,
        })
        .unwrap_err();
        assert!(err.reason.contains("resolve"), "{err}");
    }

    #[test]
    fn a_valid_avro_payload_round_trips() {
        let schema = avro_schema();
        let payload = Payload::Avro(order(vec![line(AvroValue::String("a".into()))]));
        let bytes = schema.encode(&payload).unwrap();
        assert_eq!(schema.decode(&bytes).unwrap(), payload);
    }

    #[test]
    fn an_invalid_avro_payload_names_the_field_path() {
        let schema = avro_schema();
        let err = schema
            .encode(&Payload::Avro(order(vec![
                line(AvroValue::String("a".into())),
                line(AvroValue::Long(7)),
            ])))
            .unwrap_err();
        assert_eq!(err.path, "/lines/1/sku");
        assert_eq!(err.message, "expected string, found long");
        let missing = AvroValue::Record(vec![("order_id".into(), AvroValue::String("o".into()))]);
        let err = schema.encode(&Payload::Avro(missing)).unwrap_err();
        assert_eq!(err.path, "/total");
    }

    #[test]
    fn truncated_or_padded_avro_bytes_are_invalid() {
        let schema = avro_schema();
        let bytes = schema
            .encode(&Payload::Avro(order(vec![line(AvroValue::String(
                "a".into(),
            ))])))
            .unwrap();
        assert!(schema.decode(&bytes[..bytes.len() - 2]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(schema.decode(&padded).unwrap_err().message.contains("left"));
    }

    #[test]
    fn a_payload_of_the_other_language_is_invalid() {
        assert!(
            json_schema()
                .encode(&Payload::Avro(AvroValue::Null))
                .is_err()
        );
        assert!(avro_schema().encode(&Payload::Json(json!({}))).is_err());
    }
}

"""Decodes Glue-framed Kafka values with implementations independent of this project.

The framing is read here from AWS's description of the Glue Schema Registry wire format
(awslabs/aws-glue-schema-registry, AWSSchemaRegistryConstants): byte 0 is the header version 3,
byte 1 the compression (0 none, 5 zlib), bytes 2-17 the schema version UUID, then the payload.
Avro payloads are decoded with fastavro, JSON payloads validated with the jsonschema package.

Input (stdin): one JSON object per line:
  {"format": "AVRO" | "JSON", "definition": "<schema>", "value": "<hex of the Kafka value>"}
Output (stdout): one JSON object per line:
  {"schema_version_id": "<uuid>", "compressed": bool, "payload": <decoded payload>}
Exits non-zero, naming the line, when a value is not a valid Glue-framed event of its schema.
"""

import io
import json
import sys
import uuid
import zlib

import fastavro
import jsonschema

HEADER_VERSION = 3
COMPRESSION_NONE = 0
COMPRESSION_ZLIB = 5


def decode(line: dict) -> dict:
    value = bytes.fromhex(line["value"])
    if len(value) < 18 or value[0] != HEADER_VERSION:
        raise ValueError("not a Glue header")
    compression = value[1]
    if compression == COMPRESSION_ZLIB:
        payload = zlib.decompress(value[18:])
    elif compression == COMPRESSION_NONE:
        payload = value[18:]
    else:
        raise ValueError(f"unknown compression byte {compression}")
    schema_version_id = str(uuid.UUID(bytes=value[2:18]))
    if line["format"] == "AVRO":
        schema = fastavro.parse_schema(json.loads(line["definition"]))
        reader = io.BytesIO(payload)
        decoded = fastavro.schemaless_reader(reader, schema)
        if reader.read():
            raise ValueError("bytes left after the Avro datum")
    else:
        decoded = json.loads(payload)
        jsonschema.validate(decoded, json.loads(line["definition"]))
    return {
        "schema_version_id": schema_version_id,
        "compressed": compression == COMPRESSION_ZLIB,
        "payload": decoded,
    }


def main() -> int:
    for number, text in enumerate(sys.stdin, start=1):
        try:
            print(json.dumps(decode(json.loads(text))))
        except Exception as error:  # noqa: BLE001 - report which line, then fail
            print(f"line {number}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

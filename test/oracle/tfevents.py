"""An independent reader of TensorBoard event files (TFRecord framing + the Event protobuf), written
from the formats' specifications with nothing shared with lib/report/tensorboard.ts: its own bitwise
CRC-32C and a generic protobuf wire-format parser. No packages beyond the standard library.

    python3 tfevents.py FILE...   ->  JSON list, per file: {"records": [Event...], "tail_bytes": n}

A complete record with a wrong length or data checksum, or an Event with fields or wire types this
reader does not expect, is an error (exit 1, message on stderr). An incomplete last record is what a
writer that is still writing (or crashed mid-write) leaves: it is reported in tail_bytes, the way
TensorBoard waits for the rest. Floats that JSON cannot hold are written as "NaN", "Infinity",
"-Infinity".
"""
import json
import math
import struct
import sys

CASTAGNOLI_REFLECTED = 0x82F63B78


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (CASTAGNOLI_REFLECTED if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) & 0xFFFFFFFF


def records(blob):
    """The complete records' data, and how many bytes of an incomplete record follow them."""
    out, pos = [], 0
    while pos < len(blob):
        if len(blob) - pos < 12:
            break
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if masked(crc32c(header)) != length_crc:
            raise ValueError(f"record at byte {pos}: length checksum mismatch")
        if len(blob) - pos < 12 + length + 4:
            break
        data = blob[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        if masked(crc32c(data)) != data_crc:
            raise ValueError(f"record at byte {pos}: data checksum mismatch")
        out.append(data)
        pos += 16 + length
    return out, len(blob) - pos


def read_varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def fields(buf):
    """(field number, wire type, raw value) for each field of a message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError(f"field {number} runs past the end of its message")
        yield number, wire, value


def json_float(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def int64(raw):
    return raw - (1 << 64) if raw >= 1 << 63 else raw


# The fields this reader accepts, from tensorflow/core/util/event.proto and framework/summary.proto:
# number -> (name, wire type, decoder, repeated). Messages decode to dicts, repeated fields to lists.
SUMMARY_VALUE = {
    1: ("tag", 2, lambda raw: raw.decode("utf-8"), False),
    2: ("simple_value", 5, lambda raw: json_float(struct.unpack("<f", raw)[0]), False),
}
SUMMARY = {1: ("value", 2, lambda raw: decode("Summary.Value", SUMMARY_VALUE, raw), True)}
EVENT = {
    1: ("wall_time", 1, lambda raw: json_float(struct.unpack("<d", raw)[0]), False),
    2: ("step", 0, int64, False),
    3: ("file_version", 2, lambda raw: raw.decode("utf-8"), False),
    5: ("summary", 2, lambda raw: decode("Summary", SUMMARY, raw), False),
}


def decode(message, schema, buf):
    out = {}
    for number, wire, raw in fields(buf):
        if number not in schema:
            raise ValueError(f"unexpected {message} field {number}")
        name, wanted, convert, repeated = schema[number]
        if wire != wanted:
            raise ValueError(f"{message}.{name}: wire type {wire}, expected {wanted}")
        if repeated:
            out.setdefault(name, []).append(convert(raw))
        else:
            out[name] = convert(raw)
    return out


def main(paths):
    result = []
    for path in paths:
        with open(path, "rb") as f:
            datas, tail = records(f.read())
        result.append({"records": [decode("Event", EVENT, d) for d in datas], "tail_bytes": tail})
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ValueError as error:
        sys.stderr.write(f"tfevents: {error}\n")
        sys.exit(1)

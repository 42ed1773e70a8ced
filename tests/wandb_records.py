"""Read a W&B offline run file (run-*.wandb) back: the test-side reader of what was logged.

Format: a 7-byte header (":W&B", magic 0xBEE1, version), then LevelDB-log records in 32 KiB
blocks (4-byte crc, 2-byte length, 1-byte type: full/first/middle/last) whose payloads are
serialized `wandb_internal_pb2.Record` protobufs.
"""

import json
import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks = HEADER, []
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if pos + HEADER + length > len(data):  # the writer is mid-record
            return
        body = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            yield body
        elif kind == FIRST:
            chunks = [body]
        elif kind == MIDDLE:
            chunks.append(body)
        elif kind == LAST:
            chunks.append(body)
            yield b"".join(chunks)


def records(path: Path, timeout: float = 60.0) -> list:
    """Every record of a finished run. wandb.finish() only tells the wandb-core service that the run
    ended (fire and forget), so the service may still be writing the file: re-read it until the
    exit record is there."""
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout
    while True:
        parsed = []
        for raw in payloads(path):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            parsed.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in parsed):
            return parsed
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s: run never finished"
        time.sleep(0.2)


def history(path: Path) -> list[dict]:
    """Every history row (one per wandb.log call) as {key: value}."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def config(path: Path) -> dict:
    merged = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                merged[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return merged

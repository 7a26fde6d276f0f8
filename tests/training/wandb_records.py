"""Read the history rows of an offline W&B run (<run>/wandb/offline-run-*/run-*.wandb) without the network.

wandb (0.31) no longer ships a Python reader; the file is a LevelDB-style log (wandb's datastore format): a
7-byte header (":W&B", magic 0xBEE1, version 1), then 32 KiB blocks of records, each with a 7-byte header
(crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and a protobuf `Record` as payload.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    out, parts, pos = [], [], HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        parts.append(payload)
        if kind in (1, 4):  # full, or the last piece of a split record
            out.append(b"".join(parts))
            parts = []
    return out


def history(run_dir: Path) -> list[dict]:
    """Every logged row, {"_step": ..., "train/loss": ...}, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("**/offline-run-*/run-*.wandb")
    rows = []
    for raw in records(path):
        r = pb.Record()
        r.ParseFromString(raw)
        if r.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return rows

"""Writers for the weight formats gpt2lab reads, used to build good and broken model folders.

An OpenAI TensorFlow checkpoint is a LevelDB table (``model.ckpt.index``) of protobuf entries
plus raw tensor bytes (``model.ckpt.data-00000-of-00001``); ``table`` builds a valid table from
any (key, value) pairs, so fuzzing can hand arbitrary protobuf bytes to the parser with every
block CRC correct.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import crc32c
import numpy as np
import torch

TABLE_MAGIC = 0xDB4775248B80FB57
TF_DTYPES = {np.dtype("<f4"): 1, np.dtype("<f8"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 19}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    """One protobuf field: a varint (wire type 0) or length-delimited bytes (wire type 2)."""
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _block(pairs: list[tuple[bytes, bytes]], restart_interval: int | None = None) -> bytes:
    """A LevelDB block. With ``restart_interval`` keys share their prefix with the one before,
    except at a restart point every ``restart_interval`` entries, as LevelDB writes them; without,
    no key shares anything and the block has one restart point (valid for any keys)."""
    body, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(pairs):
        shared = 0
        if i % (restart_interval or len(pairs)) == 0:
            restarts.append(len(body))
        elif restart_interval:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        body += varint(shared) + varint(len(key) - shared) + varint(len(value))
        body += key[shared:] + value
        last = key
    restarts = restarts or [0]
    body += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(body)


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + struct.pack("<I", _mask(crc32c.crc32c(block + b"\x00")))


def table(pairs: list[tuple[bytes, bytes]], restart_interval: int | None = None) -> bytes:
    """A LevelDB table file (one data block, its index block, an empty metaindex, the footer)."""
    data_block = _block(pairs, restart_interval)
    last_key = pairs[-1][0] if pairs else b""
    index_block = _block([(last_key, varint(0) + varint(len(data_block)))])
    meta_block = _block([])
    index_offset = len(data_block) + 5
    meta_offset = index_offset + len(index_block) + 5
    out = b"".join(_with_trailer(b) for b in (data_block, index_block, meta_block))
    handles = varint(meta_offset) + varint(len(meta_block))
    handles += varint(index_offset) + varint(len(index_block))
    return out + handles.ljust(40, b"\x00") + struct.pack("<Q", TABLE_MAGIC)


def entry(dtype: int, shape: tuple[int, ...], offset: int, raw: bytes) -> bytes:
    """A BundleEntryProto for ``raw`` stored at ``offset`` of the data file."""
    dims = b"".join(field(2, field(1, d)) for d in shape)
    crc = struct.pack("<I", _mask(crc32c.crc32c(raw)))
    head = field(1, dtype) + field(2, dims) + field(4, offset) + field(5, len(raw))
    return head + varint(6 << 3 | 5) + crc  # crc32c: field 6, fixed32


def write_bundle(
    prefix: Path, tensors: dict[str, np.ndarray], restart_interval: int | None = None
) -> None:
    """``prefix``.index + ``prefix``.data-00000-of-00001 holding ``tensors`` as stored."""
    data, pairs = bytearray(), [(b"", field(1, 1))]  # BundleHeaderProto: num_shards = 1
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        pairs.append((name.encode(), entry(TF_DTYPES[array.dtype], array.shape, len(data), raw)))
        data += raw
    prefix.with_name(prefix.name + ".index").write_bytes(table(pairs, restart_interval))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))


def tf_name(hf_name: str) -> str:
    """transformer.h.3.attn.c_attn.weight -> model/h3/attn/c_attn/w (ln weights are g)."""
    *path, leaf = hf_name.removeprefix("transformer.").split(".")
    if path[0] in ("wte", "wpe"):
        return f"model/{path[0]}"
    if path[0] == "h":
        path = [f"h{path[1]}", *path[2:]]
    leaf = "b" if leaf == "bias" else ("g" if path[-1].startswith("ln_") else "w")
    return "/".join(["model", *path, leaf])


def write_tf_checkpoint(
    folder: Path,
    state: dict[str, torch.Tensor],
    hparams: dict,
    restart_interval: int | None = None,
) -> None:
    """An OpenAI-style folder: hparams.json, checkpoint, model.ckpt.* ([1, in, out] kernels)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in state.items():
        array = tensor.detach().numpy()
        if ".c_" in name and name.endswith(".weight"):
            array = array[None]
        tensors[tf_name(name)] = array
    write_bundle(folder / "model.ckpt", tensors, restart_interval)
    (folder / "hparams.json").write_text(json.dumps(hparams))
    (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')


def write_openai_checkpoint(folder: Path, hf_model) -> None:
    """Save a transformers GPT-2 the way OpenAI released theirs (TF names, [1, in, out] kernels)."""
    state = {
        name: t
        for name, t in hf_model.transformer.state_dict().items()
        if not name.endswith((".attn.bias", ".attn.masked_bias"))  # buffers, not weights
    }
    # Shared key prefixes, as TensorFlow's own writer makes them: the reader must undo them.
    write_tf_checkpoint(folder, state, hparams_of(hf_model.config), restart_interval=4)


def hparams_of(config) -> dict[str, int]:
    return {
        "n_vocab": config.vocab_size,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "n_layer": config.n_layer,
    }

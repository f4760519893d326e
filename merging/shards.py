"""safetensors files read and written one tensor at a time.

The format is an 8-byte little-endian header length, a JSON header (per tensor: dtype, shape, byte offsets) and the
tensors' bytes. Both ends are done here with plain file reads and writes rather than through ``safe_open`` and
``save_file``: ``safe_open`` maps the whole file, and every page a merge touches stays in the process's resident set
until the file is closed, so streaming through it still shows the whole model in the peak memory; ``save_file`` needs
a whole shard in memory. Because every output tensor's name, shape and dtype are known before any is computed, each
shard's header is written first and each tensor appended as it is produced: the peak memory holds a few tensors.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
CODES = {dtype: code for code, dtype in DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # a safetensors code: BF16, F32...
    shape: tuple[int, ...]
    path: str = ""  # the file holding it (inputs only)
    offset: int = 0  # absolute byte offset of its data in that file

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * DTYPES[self.dtype].itemsize


def read_header(path: str) -> list[TensorInfo]:
    """The tensors a safetensors file holds, from its header alone."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    start = 8 + length
    return [
        TensorInfo(name, entry["dtype"], tuple(entry["shape"]), path, start + entry["data_offsets"][0])
        for name, entry in header.items()
        if name != "__metadata__"
    ]


def read_tensor(info: TensorInfo) -> torch.Tensor:
    buffer = bytearray(info.nbytes)
    with open(info.path, "rb") as f:
        f.seek(info.offset)
        if f.readinto(buffer) != info.nbytes:
            raise OSError(f"{info.path}: tensor {info.name} is truncated")
    if not buffer:
        return torch.empty(info.shape, dtype=DTYPES[info.dtype])
    return torch.frombuffer(buffer, dtype=DTYPES[info.dtype]).reshape(info.shape)


def shard_names(count: int) -> list[str]:
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


class ShardWriter:
    """Writes tensors, in the order declared, into shards of at most ``max_bytes`` (a larger tensor gets its own)."""

    def __init__(self, out_dir: str, tensors: list[TensorInfo], max_bytes: int):
        groups: list[list[TensorInfo]] = [[]]
        size = 0
        for info in tensors:
            if groups[-1] and size + info.nbytes > max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(info)
            size += info.nbytes
        self.out_dir = out_dir
        self.files = shard_names(len(groups))
        self.order = [(info, self.files[i]) for i, group in enumerate(groups) for info in group]
        self.groups = groups
        self._next = 0
        self._handle = None
        self._file_index = -1

    def write(self, name: str, tensor: torch.Tensor) -> None:
        info, file = self.order[self._next]
        if name != info.name or tuple(tensor.shape) != info.shape or CODES[tensor.dtype] != info.dtype:
            raise ValueError(f"expected {info.name} {info.shape} {info.dtype}, got {name} {tuple(tensor.shape)}")
        if self._file_index < 0 or self.files[self._file_index] != file:
            self._open(self._file_index + 1)
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._handle.write(memoryview(data))
        self._next += 1

    def close(self) -> str:
        if self._handle is not None:
            self._handle.close()
        if self._next != len(self.order):
            raise ValueError(f"{len(self.order) - self._next} tensors were never written")
        total = sum(info.nbytes for info, _ in self.order)
        index = {"metadata": {"total_size": total}, "weight_map": {info.name: file for info, file in self.order}}
        path = os.path.join(self.out_dir, "model.safetensors.index.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
        return path

    def _open(self, index: int) -> None:
        if self._handle is not None:
            self._handle.close()
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for info in self.groups[index]:
            header[info.name] = {
                "dtype": info.dtype,
                "shape": list(info.shape),
                "data_offsets": [offset, offset + info.nbytes],
            }
            offset += info.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self._handle = open(os.path.join(self.out_dir, self.files[index]), "wb")
        self._handle.write(struct.pack("<Q", len(blob)) + blob)
        self._file_index = index

"""A second, independent reader of `.autark` files, written from docs/FORMAT.md alone.

    read(path, check_tensor_sha=False) -> (metadata: dict, tensors: dict[name -> info])
        info = {"dtype": "q4_1", "dtype_code": 3, "shape": [rows, cols], "offset", "nbytes",
                "sha256": hex, "raw": bytes}
    dequantize(dtype, raw, shape) -> np.ndarray (float32, given shape)
    header(path) -> dict of the 128-byte header fields

Every check of "What a reader checks before use" raises AutarkFormatError.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

MAGIC = b"ATRK"
HEADER_LEN = 128
ALIGNMENT = 64
MIN_ENTRY = 73  # 4 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 32: one-byte name, one dimension

# code -> (name, values per block, bytes per block)
DTYPES = {
    0: ("f32", 1, 4),
    1: ("f16", 1, 2),
    2: ("q4_0", 32, 18),
    3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22),
    7: ("q5_1", 32, 24),
    8: ("q8_0", 32, 34),
    12: ("q4_k", 256, 144),
    13: ("q5_k", 256, 176),
    14: ("q6_k", 256, 210),
}
DTYPE_CODES = {name: code for code, (name, _, _) in DTYPES.items()}
REQUIRED_KEYS = ("format", "architecture", "config", "tokenizer")
U64_MAX = 2**64 - 1


class AutarkFormatError(ValueError):
    pass


def _fail(msg):
    raise AutarkFormatError(msg)


def row_bytes(dtype_code: int, cols: int) -> int:
    _, per_block, block_bytes = DTYPES[dtype_code]
    if cols % per_block:
        _fail(f"innermost dimension {cols} is not a whole number of {per_block}-value blocks")
    return cols // per_block * block_bytes


def parse_header(buf: bytes) -> dict:
    if len(buf) < HEADER_LEN:
        _fail(f"file is {len(buf)} bytes, shorter than the {HEADER_LEN}-byte header")
    if buf[0:4] != MAGIC:
        _fail(f"bad magic {buf[0:4]!r}")
    major, minor, header_len, alignment = struct.unpack_from("<HHII", buf, 4)
    (meta_off, meta_len, table_off, table_len, count, data_off, data_len) = struct.unpack_from("<7Q", buf, 16)
    return {
        "version_major": major,
        "version_minor": minor,
        "header_len": header_len,
        "alignment": alignment,
        "metadata_offset": meta_off,
        "metadata_len": meta_len,
        "table_offset": table_off,
        "table_len": table_len,
        "tensor_count": count,
        "data_offset": data_off,
        "data_len": data_len,
        "header_sha256": buf[72:104],
        "reserved": buf[104:128],
    }


def header(path) -> dict:
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_LEN))


def parse(buf: bytes, check_tensor_sha: bool = False, strict: bool = False):
    """strict=True adds the writer's obligations: version 1.0, reserved bytes zero, zero padding
    between tensors, the file ending with the last tensor (the spec's example: D + 8 bytes)."""
    h = parse_header(buf)
    if h["version_major"] > 1:
        _fail(f"unsupported major version {h['version_major']}")
    if h["version_major"] < 1:
        _fail(f"bad major version {h['version_major']}")
    if h["header_len"] != HEADER_LEN:
        _fail(f"header_len {h['header_len']} != {HEADER_LEN}")
    if h["alignment"] != ALIGNMENT:
        _fail(f"alignment {h['alignment']} != {ALIGNMENT}")

    # Sections: in order, not overlapping, inside the file, with the exact positions the spec gives.
    n = len(buf)
    mo, ml = h["metadata_offset"], h["metadata_len"]
    to, tl = h["table_offset"], h["table_len"]
    do, dl = h["data_offset"], h["data_len"]
    if mo != HEADER_LEN:
        _fail(f"metadata_offset {mo} != {HEADER_LEN}")
    if mo + ml > n:
        _fail("metadata section past the end of the file")
    if to != mo + ml:
        _fail(f"table_offset {to} != metadata_offset + metadata_len {mo + ml}")
    if to + tl > n:
        _fail("tensor table past the end of the file")
    expected_do = -(-(to + tl) // ALIGNMENT) * ALIGNMENT
    if do != expected_do:
        _fail(f"data_offset {do} is not the next multiple of {ALIGNMENT} after the table ({expected_do})")
    if do + dl != n:
        _fail(f"data_offset + data_len = {do + dl} but the file is {n} bytes")
    if any(buf[to + tl : do]):
        _fail("non-zero padding between the table and the data")

    meta_bytes = buf[mo : mo + ml]
    table = buf[to : to + tl]
    if hashlib.sha256(meta_bytes + table).digest() != h["header_sha256"]:
        _fail("header_sha256 does not match the metadata and table")

    try:
        metadata = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(f"metadata is not UTF-8 JSON: {e}")
    if not isinstance(metadata, dict):
        _fail("metadata is not a JSON object")
    for key in REQUIRED_KEYS:
        if key not in metadata:
            _fail(f"metadata lacks required key {key!r}")
    if metadata["format"] != "autark":
        _fail(f"metadata format is {metadata['format']!r}")

    count = h["tensor_count"]
    if count > tl // MIN_ENTRY:
        _fail(f"tensor_count {count} cannot fit in a {tl}-byte table")

    tensors = {}
    pos = 0

    def take(k):
        nonlocal pos
        if pos + k > tl:
            _fail("tensor table entry runs past table_len")
        out = table[pos : pos + k]
        pos += k
        return out

    for _ in range(count):
        (name_len,) = struct.unpack("<I", take(4))
        if not 1 <= name_len <= 255:
            _fail(f"name_len {name_len} outside 1..255")
        try:
            name = take(name_len).decode("utf-8")
        except UnicodeDecodeError:
            _fail("tensor name is not UTF-8")
        if name in tensors:
            _fail(f"duplicate tensor name {name!r}")
        code, layout, n_dims = struct.unpack("<III", take(12))
        if code not in DTYPES:
            _fail(f"{name}: unknown dtype code {code}")
        if layout not in (0, 1):
            _fail(f"{name}: unknown layout {layout}")
        if not 1 <= n_dims <= 4:
            _fail(f"{name}: n_dims {n_dims} outside 1..4")
        dims = list(struct.unpack(f"<{n_dims}Q", take(8 * n_dims)))
        offset, nbytes = struct.unpack("<QQ", take(16))
        sha = take(32)

        rows = 1
        for d in dims[:-1]:
            rows *= d
        size = rows * row_bytes(code, dims[-1])
        if size > U64_MAX:
            _fail(f"{name}: dimension product overflows")
        if layout == 1 and (DTYPES[code][0] not in INTERLEAVED or n_dims != 2 or dims[0] % 16):
            _fail(f"{name}: layout 1 does not hold {DTYPES[code][0]} {dims}")
        if layout == 1 and DTYPES[code][0] == "q6_k" and h["version_minor"] < 3:
            _fail(f"{name}: rows16 q6_k in format 1.{h['version_minor']} has the retired piece order")
        if nbytes != size:
            _fail(f"{name}: nbytes {nbytes} != {size} from shape {dims} and dtype {DTYPES[code][0]}")
        if offset % ALIGNMENT:
            _fail(f"{name}: offset {offset} is not a multiple of {ALIGNMENT}")
        if offset < do or offset + nbytes > do + dl:
            _fail(f"{name}: bytes {offset}..{offset + nbytes} outside the data section")
        tensors[name] = {
            "dtype": DTYPES[code][0],
            "dtype_code": code,
            "layout": layout,
            "shape": dims,
            "offset": offset,
            "nbytes": nbytes,
            "sha256": sha.hex(),
        }
    if pos != tl:
        _fail(f"tensor table has {tl - pos} trailing bytes")

    spans = sorted((t["offset"], t["offset"] + t["nbytes"], name) for name, t in tensors.items())
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:]):
        if start_b < end_a:
            _fail(f"tensors {a!r} and {b!r} overlap")

    if strict:
        if (h["version_major"], h["version_minor"]) not in ((1, 0), (1, 1), (1, 2), (1, 3)):
            _fail("strict: version is not 1.0, 1.1, 1.2 or 1.3")
        if any(h["reserved"]):
            _fail("strict: reserved header bytes are not zero")
        used = bytearray(dl)
        for start, end, _ in spans:
            used[start - do : end - do] = b"\x01" * (end - start)
        data = np.frombuffer(buf, dtype=np.uint8, count=dl, offset=do)
        if np.any(data[np.frombuffer(bytes(used), dtype=np.uint8) == 0]):
            _fail("strict: non-zero padding in the data section")
        if spans and spans[-1][1] != do + dl:
            _fail("strict: bytes after the last tensor")

    for name, t in tensors.items():
        t["stored"] = buf[t["offset"] : t["offset"] + t["nbytes"]]
        if check_tensor_sha and hashlib.sha256(t["stored"]).hexdigest() != t["sha256"]:
            _fail(f"{name}: sha256 mismatch")
        # "raw": the tensor's blocks row after row, whatever its stored layout.
        t["raw"] = t["stored"] if t["layout"] == 0 else deinterleave(t["dtype"], t["stored"], t["shape"])
    return metadata, tensors


def read(path, check_tensor_sha: bool = False, strict: bool = False):
    with open(path, "rb") as f:
        return parse(f.read(), check_tensor_sha=check_tensor_sha, strict=strict)


def build(metadata, entries, minor=None) -> bytes:
    """Write a file from the spec, for crafting test inputs. entries: list of dicts with "name",
    "dtype" (name or code), "shape", "raw" and optionally "offset"/"nbytes"/"sha256"/"layout"/
    "name_bytes" overrides (for deliberately inconsistent files); `minor` overrides the lowest
    minor version that holds them. header_sha256 is always right."""
    meta = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    placed, cursor, end = [], 0, 0
    for e in entries:
        off = e.get("data_pos", cursor)  # position inside the data section
        placed.append(off)
        end = max(end, off + len(e["raw"]))  # the file ends right after the last tensor
        cursor = -(-end // ALIGNMENT) * ALIGNMENT
    table_len = sum(4 + len(e.get("name_bytes", e["name"].encode())) + 12 + 8 * len(e["shape"]) + 48 for e in entries)
    to = HEADER_LEN + len(meta)
    do = -(-(to + table_len) // ALIGNMENT) * ALIGNMENT
    data = bytearray(end)
    table = bytearray()
    for e, pos in zip(entries, placed):
        data[pos : pos + len(e["raw"])] = e["raw"]
        name = e.get("name_bytes", e["name"].encode())
        code = e["dtype"] if isinstance(e["dtype"], int) else DTYPE_CODES[e["dtype"]]
        table += struct.pack("<I", len(name)) + name
        table += struct.pack("<III", code, e.get("layout", 0), len(e["shape"]))
        table += struct.pack(f"<{len(e['shape'])}Q", *e["shape"])
        table += struct.pack("<QQ", e.get("offset", do + pos), e.get("nbytes", len(e["raw"])))
        table += e.get("sha256", hashlib.sha256(e["raw"]).digest())
    hdr = bytearray(HEADER_LEN)
    hdr[0:4] = MAGIC
    q5 = any(e.get("layout", 0) and e["dtype"] in ("q5_0", "q5_1", "q4_k", "q5_k", 6, 7, 12, 13) for e in entries)
    q6 = any(e.get("layout", 0) and e["dtype"] in ("q6_k", 14) for e in entries)
    if minor is None:
        minor = 3 if q6 else 2 if q5 else 1 if any(e.get("layout", 0) for e in entries) else 0
    struct.pack_into("<HHII", hdr, 4, 1, minor, HEADER_LEN, ALIGNMENT)
    struct.pack_into("<7Q", hdr, 16, HEADER_LEN, len(meta), to, len(table), len(entries), do, len(data))
    hdr[72:104] = hashlib.sha256(meta + bytes(table)).digest()
    return bytes(hdr) + meta + bytes(table) + bytes(do - to - len(table)) + bytes(data)


# Layout 1 ("rows16"): (f16 fields per block, fifth bits as masks (q5_0/q5_1), the other bytes
# per block, values per block) of the types it holds. A K super-block's bytes after d and dmin
# (packed scales, q5_k's fifth bits, nibbles) are all cut into 4-byte pieces; q6_k's f16 d ends
# its row-major block (TAIL_F16) and still comes first in the group block.
INTERLEAVED = {
    "q4_0": (1, False, 16, 32),
    "q4_1": (2, False, 16, 32),
    "q5_0": (1, True, 16, 32),
    "q5_1": (2, True, 16, 32),
    "q8_0": (1, False, 32, 32),
    "q4_k": (2, False, 140, 256),
    "q5_k": (2, False, 172, 256),
    "q6_k": (1, False, 208, 256),
}
TAIL_F16 = {"q6_k"}
# q6_k's group block: the 16 d, then the 16 rows' scales by scale (byte 16j + row is the row's
# scale j), then the 48 pieces of ql and qh in the order its one-token kernels read them: slot s
# holds source piece Q6K_ORDER[s] (source pieces: ql 0-31, qh 32-47).
Q6K_ORDER = np.r_[0:8, 32:40, 8:16, 16:24, 40:48, 24:32]


def deinterleave(dtype: str, stored: bytes, shape) -> bytes:
    """Row-major block bytes of a layout-1 matrix (FORMAT.md "Layouts"): per group of 16 rows
    and column block b, the 16 rows' f16 fields (field by field), for q5 the fifth bits as 8
    64-bit masks (mask 2k + h: bit 4·row + i is bit 16h + 4k + i of that row's qh), then the
    quant bytes in 4-byte pieces, piece k of rows 0..15 before piece k + 1 (q6_k: its scales
    by scale, then its ql and qh pieces in Q6K_ORDER)."""
    nf, five, q, qk = INTERLEAVED[dtype]
    rows, cols = int(shape[0]), int(shape[1])
    g, nb = rows // 16, cols // qk
    m = 64 if five else 0
    a = np.frombuffer(stored, np.uint8).reshape(g, nb, 32 * nf + m + 16 * q)
    fields = a[:, :, : 32 * nf].reshape(g, nb, nf, 16, 2).transpose(0, 3, 1, 2, 4).reshape(g, 16, nb, 2 * nf)
    parts = [fields]
    if five:
        bits = np.unpackbits(a[:, :, 32 * nf : 32 * nf + m], axis=2, bitorder="little")
        bits = bits.reshape(g, nb, 4, 2, 16, 4).transpose(0, 4, 1, 3, 2, 5).reshape(g, 16, nb, 32)
        parts.append(np.packbits(bits, axis=3, bitorder="little"))
    if dtype == "q6_k":
        scales = a[:, :, 32 : 32 + 256].reshape(g, nb, 16, 16).transpose(0, 3, 1, 2)
        pieces = a[:, :, 32 + 256 :].reshape(g, nb, 48, 16, 4)[:, :, np.argsort(Q6K_ORDER)]
        ql_qh = pieces.transpose(0, 3, 1, 2, 4).reshape(g, 16, nb, 192)
        quants = np.concatenate([ql_qh, scales], axis=3)
    else:
        pieces = a[:, :, 32 * nf + m :].reshape(g, nb, q // 4, 16, 4)
        quants = pieces.transpose(0, 3, 1, 2, 4).reshape(g, 16, nb, q)
    parts.append(quants)
    if dtype in TAIL_F16:
        parts = [quants, fields]
    return np.concatenate(parts, axis=3).reshape(rows, -1).tobytes()


def interleave(dtype: str, raw: bytes, shape) -> bytes:
    """The layout-1 bytes of a row-major matrix (the inverse of `deinterleave`)."""
    nf, five, q, qk = INTERLEAVED[dtype]
    rows, cols = int(shape[0]), int(shape[1])
    g, nb = rows // 16, cols // qk
    head = 2 * nf + (4 if five else 0)
    a = np.frombuffer(raw, np.uint8).reshape(g, 16, nb, head + q)
    if dtype in TAIL_F16:  # the same bytes with the f16 fields moved to the front
        a = np.concatenate([a[:, :, :, q:], a[:, :, :, :q]], axis=3)
    fields = a[:, :, :, : 2 * nf].reshape(g, 16, nb, nf, 2).transpose(0, 2, 3, 1, 4).reshape(g, nb, 32 * nf)
    parts = [fields]
    if five:
        bits = np.unpackbits(a[:, :, :, 2 * nf : head], axis=3, bitorder="little")
        bits = bits.reshape(g, 16, nb, 2, 4, 4).transpose(0, 2, 4, 3, 1, 5).reshape(g, nb, 512)
        parts.append(np.packbits(bits, axis=2, bitorder="little"))
    if dtype == "q6_k":
        scales = a[:, :, :, head + 192 :].transpose(0, 2, 3, 1).reshape(g, nb, 256)
        pieces = a[:, :, :, head : head + 192].reshape(g, 16, nb, 48, 4).transpose(0, 2, 3, 1, 4)
        quants = np.concatenate([scales, pieces[:, :, Q6K_ORDER].reshape(g, nb, 3072)], axis=2)
    else:
        pieces = a[:, :, :, head:].reshape(g, 16, nb, q // 4, 4).transpose(0, 2, 3, 1, 4)
        quants = pieces.reshape(g, nb, 16 * q)
    parts.append(quants)
    return np.concatenate(parts, axis=2).tobytes()


def dequantize(dtype, raw: bytes, shape) -> np.ndarray:
    """Values of a tensor as float32 with the given (NumPy-order) shape."""
    name = DTYPES[dtype][0] if isinstance(dtype, int) else dtype
    data = np.frombuffer(raw, dtype=np.uint8)
    if name == "f32":
        out = data.view("<f4")
    elif name == "f16":
        out = data.view("<f2").astype(np.float32)
    else:
        import gguf  # block bytes are GGUF's, so llama.cpp's gguf-py decodes them

        qtype = {"q4_0": gguf.GGMLQuantizationType.Q4_0,
                 "q4_1": gguf.GGMLQuantizationType.Q4_1,
                 "q5_0": gguf.GGMLQuantizationType.Q5_0,
                 "q5_1": gguf.GGMLQuantizationType.Q5_1,
                 "q8_0": gguf.GGMLQuantizationType.Q8_0,
                 "q4_k": gguf.GGMLQuantizationType.Q4_K,
                 "q5_k": gguf.GGMLQuantizationType.Q5_K,
                 "q6_k": gguf.GGMLQuantizationType.Q6_K}[name]
        cols = int(shape[-1])
        rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
        out = gguf.quants.dequantize(data.reshape(rows, row_bytes(DTYPE_CODES[name], cols)), qtype)
    return np.asarray(out, dtype=np.float32).reshape([int(d) for d in shape])


if __name__ == "__main__":
    import sys

    meta, ts = read(sys.argv[1], check_tensor_sha=True)
    print(json.dumps({k: v for k, v in meta.items() if k != "tokenizer"}, indent=1))
    for name, t in ts.items():
        print(f"{name:40s} {t['dtype']:5s} {t['shape']} @{t['offset']} {t['nbytes']}")

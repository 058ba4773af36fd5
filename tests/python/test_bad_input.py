"""Malformed inputs: every one must end in a clean error -- exit status > 0 (never a signal),
one line on stderr, no panic -- within 20 s, and a failed quantize must leave an existing output
file byte-identical (and no temporary files behind)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

import autark_file
import make_tiny

TIMEOUT = 20
SENTINEL = b"existing output: must survive a failed quantize\n"


def assert_clean_failure(r, what: str):
    err = r.stderr.decode("utf-8", errors="replace")
    assert r.returncode != 0, f"{what}: succeeded (stdout {r.stdout[:200]!r})"
    assert r.returncode > 0, f"{what}: killed by signal {-r.returncode}\n{err[-2000:]}"
    for bad in ("panicked", "RUST_BACKTRACE", "stack backtrace", "Traceback"):
        assert bad not in err, f"{what}: {bad!r} on stderr:\n{err[-2000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: expected a one-line error on stderr, got {len(lines)} lines:\n{err[-2000:]}"


def quantize_must_fail(autark, src, tmp_path, what: str, qtype: str = "q4_1"):
    outdir = tmp_path / "out"
    outdir.mkdir(exist_ok=True)
    out = outdir / "model.autark"
    out.write_bytes(SENTINEL)
    before = sorted(p.name for p in outdir.iterdir())
    r = autark.run("quantize", src, "-o", out, "--type", qtype, timeout=TIMEOUT)
    assert_clean_failure(r, what)
    assert out.read_bytes() == SENTINEL, f"{what}: the existing output file was modified"
    assert sorted(p.name for p in outdir.iterdir()) == before, f"{what}: files left behind in the output folder"


# ----------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------


def test_truncated_gguf(autark, smollm2_gguf, smollm2_reader, tmp_path):
    size = smollm2_gguf.stat().st_size
    data_start = smollm2_reader.data_offset
    cuts = {
        "empty": 0,
        "in magic": 3,
        "in counts": 20,
        "in first key": 30,
        "in token list": smollm2_reader.fields["tokenizer.ggml.tokens"].offset + 5000,
        "in tensor infos": smollm2_reader.tensors[0].field.offset + 10,
        "at data start": data_start,
        "in tensor data": data_start + (size - data_start) // 2,
        "last byte missing": size - 1,
    }
    src = smollm2_gguf.open("rb")
    for what, cut in cuts.items():
        src.seek(0)
        bad = tmp_path / "truncated.gguf"
        bad.write_bytes(src.read(cut))
        quantize_must_fail(autark, bad, tmp_path, f"GGUF truncated {what} ({cut} bytes)")
    src.close()


def gstr(s: bytes | str) -> bytes:
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def ghead(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


ARCH_KV = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
T_STRING, T_ARRAY, T_F32 = 8, 9, 0

CRAFTED_GGUF = {
    "bad magic": b"GGUX" + struct.pack("<IQQ", 3, 0, 0),
    "version 99": ghead(0, 0, version=99),
    "huge tensor count": ghead(2**63 - 1, 0),
    "huge kv count": ghead(0, 2**62),
    "huge key length": ghead(0, 1) + struct.pack("<Q", 2**63) + b"abc",
    "huge string value": ghead(0, 1) + gstr("general.architecture") + struct.pack("<IQ", T_STRING, 2**40) + b"llama",
    "huge array": ghead(0, 1) + gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", T_ARRAY, T_STRING, 2**61) + gstr("a"),
    "unknown value type": ghead(0, 1) + gstr("general.architecture") + struct.pack("<I", 99) + b"\0" * 16,
    "dims overflow": ghead(1, 1) + ARCH_KV + gstr("token_embd.weight")
    + struct.pack("<I", 2) + struct.pack("<QQ", 2**40, 2**40) + struct.pack("<IQ", T_F32, 0),
    "huge n_dims": ghead(1, 1) + ARCH_KV + gstr("token_embd.weight") + struct.pack("<I", 2**31) + b"\0" * 64,
    "tensor data missing": ghead(1, 1) + ARCH_KV + gstr("token_embd.weight")
    + struct.pack("<I", 2) + struct.pack("<QQ", 64, 64) + struct.pack("<IQ", T_F32, 0) + b"\0" * 8,
}


@pytest.mark.parametrize("what", list(CRAFTED_GGUF))
def test_crafted_gguf(autark, tmp_path, what):
    bad = tmp_path / "crafted.gguf"
    bad.write_bytes(CRAFTED_GGUF[what])
    quantize_must_fail(autark, bad, tmp_path, f"GGUF {what}")


# ----------------------------------------------------------------------------------------------
# .autark
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_autark(autark, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_autark")
    folder = make_tiny.make("llama_tied", d / "hf")
    return autark.quantize(folder, d / "tiny.autark", "f32")


def _set(off, fmt, value):
    def f(b):
        struct.pack_into(fmt, b, off, value)
    return f


def _add(off, delta):
    def f(b):
        (v,) = struct.unpack_from("<Q", b, off)
        struct.pack_into("<Q", b, off, (v + delta) % 2**64)
    return f


def _xor(off_fn):
    def f(b):
        i = off_fn(b)
        b[i] ^= 0x20
    return f


HEADER_MUTATIONS = {
    "magic": _xor(lambda b: 0),
    "version_major 2": _set(4, "<H", 2),
    "header_len 64": _set(8, "<I", 64),
    "alignment 32": _set(12, "<I", 32),
    "metadata_offset +8": _add(16, 8),
    "metadata_len +1": _add(24, 1),
    "metadata_len huge": _set(24, "<Q", 2**63),
    "table_offset +8": _add(32, 8),
    "table_len huge": _set(40, "<Q", 2**62),
    "tensor_count +1": _add(48, 1),
    "tensor_count huge": _set(48, "<Q", 2**40),
    "data_offset +64": _add(56, 64),
    "data_len +1": _add(64, 1),
    "header_sha256": _xor(lambda b: 80),
    "metadata byte": _xor(lambda b: 128 + 3),
    "table byte": _xor(lambda b: struct.unpack_from("<Q", b, 32)[0] + 2),
}


@pytest.mark.parametrize("command", ["inspect", "verify", "logits"])
@pytest.mark.parametrize("what", list(HEADER_MUTATIONS))
def test_corrupt_autark_header(autark, tiny_autark, tmp_path, what, command):
    b = bytearray(tiny_autark.read_bytes())
    HEADER_MUTATIONS[what](b)
    bad = tmp_path / "bad.autark"
    bad.write_bytes(bytes(b))
    args = {"inspect": ["inspect", bad, "--json"], "verify": ["verify", bad],
            "logits": ["logits", bad, "--tokens", "1,2", "-o", tmp_path / "l.f32"]}[command]
    assert_clean_failure(autark.run(*args, timeout=TIMEOUT), f"{command} with {what}")


@pytest.mark.parametrize("cut", [0, 100, 200, -1])
def test_truncated_autark(autark, tiny_autark, tmp_path, cut):
    data = tiny_autark.read_bytes()
    bad = tmp_path / "bad.autark"
    bad.write_bytes(data[:cut])
    assert_clean_failure(autark.run("inspect", bad, "--json", timeout=TIMEOUT), f"inspect truncated to {cut}")


def _entries(path):
    meta, tensors = autark_file.read(path)
    entries = [{"name": n, "dtype": t["dtype"], "shape": list(t["shape"]), "raw": t["raw"]}
               for n, t in sorted(tensors.items(), key=lambda kv: kv[1]["offset"])]
    return meta, entries


def _table_mutation(fn):
    def build(path):
        meta, entries = _entries(path)
        fn(meta, entries)
        return autark_file.build(meta, entries)
    return build


def _q6_k_rows16_in_1_2(path, minor=2):
    """A rows16 q6_k matrix in a 1.2 file: its pieces in the order 1.3 retired."""
    meta, entries = _entries(path)
    q6 = {"name": "extra.q6_k", "dtype": "q6_k", "shape": [16, 256], "layout": 1,
          "raw": autark_file.interleave("q6_k", bytes(range(210)) * 16, (16, 256))}
    return autark_file.build(meta, entries + [q6], minor=minor)


def _meta_bytes(raw):
    def build(path):
        _, entries = _entries(path)
        return autark_file.build(raw, entries)
    return build


def _data_end(path):
    h = autark_file.header(path)
    return h["data_offset"] + h["data_len"]


# Files with a correct header_sha256 that break a rule of "What a reader checks before use".
SPEC_VIOLATIONS = {
    "overlapping tensors": _table_mutation(lambda m, e: e[1].update(data_pos=0)),
    "unknown dtype 6": _table_mutation(lambda m, e: e[0].update(dtype=6)),
    "layout 1": _table_mutation(lambda m, e: e[0].update(layout=1)),
    "n_dims 5": _table_mutation(lambda m, e: e[0].update(shape=[1, 1, 1, 1] + e[0]["shape"])),
    "nbytes too large": _table_mutation(lambda m, e: e[0].update(nbytes=len(e[0]["raw"]) + 4)),
    "nbytes too small": _table_mutation(lambda m, e: e[0].update(nbytes=len(e[0]["raw"]) - 4)),
    "duplicate name": _table_mutation(lambda m, e: e[1].update(name=e[0]["name"])),
    "empty name": _table_mutation(lambda m, e: e[0].update(name_bytes=b"")),
    "name not UTF-8": _table_mutation(lambda m, e: e[0].update(name_bytes=b"\xff\xfe.weight")),
    "q8_0 row not whole blocks": _table_mutation(lambda m, e: e.append({"name": "x", "dtype": "q8_0", "shape": [2, 16], "raw": bytes(34)})),
    "missing config": _table_mutation(lambda m, e: m.pop("config")),
    "missing tokenizer": _table_mutation(lambda m, e: m.pop("tokenizer")),
    "q6_k rows16 in 1.2": _q6_k_rows16_in_1_2,
    "metadata not JSON": _meta_bytes(b"{not json"),
    "metadata not UTF-8": _meta_bytes(b'{"format": "autark\xff"}'),
}


def _misplaced(path, how):
    meta, entries = _entries(path)
    base = autark_file.build(meta, entries)
    h = autark_file.parse_header(base)
    first = entries[0]
    if how == "misaligned":
        first["offset"] = h["data_offset"] + 4
    else:
        first["offset"] = h["data_offset"] + h["data_len"] + 64
    return autark_file.build(meta, entries)


SPEC_VIOLATIONS["misaligned offset"] = lambda p: _misplaced(p, "misaligned")
SPEC_VIOLATIONS["offset past data"] = lambda p: _misplaced(p, "past")


def test_crafted_autark_control(autark, tiny_autark, tmp_path):
    """Positive control: the same builder without a violation gives a file autark accepts."""
    meta, entries = _entries(tiny_autark)
    ok = tmp_path / "rebuilt.autark"
    ok.write_bytes(autark_file.build(meta, entries))
    autark_file.read(ok, check_tensor_sha=True, strict=True)
    autark.ok("inspect", ok, "--json", timeout=TIMEOUT)
    autark.ok("verify", ok, timeout=TIMEOUT)
    autark.ok("logits", ok, "--tokens", "1,2", "-o", tmp_path / "l.f32", timeout=TIMEOUT)


@pytest.mark.parametrize("what", list(SPEC_VIOLATIONS))
def test_crafted_autark(autark, tiny_autark, tmp_path, what):
    bad = tmp_path / "bad.autark"
    bad.write_bytes(SPEC_VIOLATIONS[what](tiny_autark))
    with pytest.raises(autark_file.AutarkFormatError):
        autark_file.read(bad)  # the independent reader agrees that the file is bad
    assert_clean_failure(autark.run("inspect", bad, "--json", timeout=TIMEOUT), f"inspect with {what}")


def test_retired_q6_k_order_is_named(autark, tiny_autark, tmp_path):
    """Format 1.3 reordered rows16 q6_k pieces: a 1.2 file holding one is refused by the
    tensor's name with the remedy, and the same file as 1.3 is read."""
    old, new = tmp_path / "old.autark", tmp_path / "new.autark"
    old.write_bytes(_q6_k_rows16_in_1_2(tiny_autark))
    new.write_bytes(_q6_k_rows16_in_1_2(tiny_autark, minor=3))
    r = autark.run("inspect", old, "--json", timeout=TIMEOUT)
    assert_clean_failure(r, "inspect of a 1.2 rows16 q6_k")
    err = r.stderr.decode()
    assert "extra.q6_k" in err and "autark quantize" in err, err
    autark.ok("inspect", new, "--json", timeout=TIMEOUT)
    autark_file.read(new, strict=True)


def test_token_out_of_range(autark, tiny_autark, tmp_path):
    r = autark.run("logits", tiny_autark, "--tokens", f"1,{make_tiny.VOCAB}", "-o", tmp_path / "l.f32", timeout=TIMEOUT)
    assert_clean_failure(r, "token id == vocab_size")


def test_dump_unknown_tensor(autark, tiny_autark, tmp_path):
    r = autark.run("dump", tiny_autark, "no.such.tensor", "-o", tmp_path / "t.f32", timeout=TIMEOUT)
    assert_clean_failure(r, "dump of a missing tensor")


# ----------------------------------------------------------------------------------------------
# Hugging Face folders
# ----------------------------------------------------------------------------------------------


def _read_st(path):
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _write_st(path, header, body, header_len=None):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h) if header_len is None else header_len) + h + body)


def _st_mutation(fn):
    def apply(folder):
        p = folder / "model.safetensors"
        header, body = _read_st(p)
        fn(header, body, p)
    return apply


def _overlap(h, body, p):
    a = h["model.layers.0.self_attn.k_proj.weight"]
    b = h["model.layers.0.self_attn.v_proj.weight"]
    assert a["shape"] == b["shape"]
    b["data_offsets"] = list(a["data_offsets"])
    _write_st(p, h, body)


def _past_end(h, body, p):
    h["model.norm.weight"]["data_offsets"][1] += 10**9
    _write_st(p, h, body)


def _size_mismatch(h, body, p):
    h["model.layers.1.mlp.up_proj.weight"]["shape"] = [96, 65]
    _write_st(p, h, body)


def _bad_dtype(h, body, p):
    h["model.layers.1.mlp.up_proj.weight"]["dtype"] = "F8_E9M9"
    _write_st(p, h, body)


def _missing_tensor(h, body, p):
    del h["model.layers.1.mlp.up_proj.weight"]
    _write_st(p, h, body)


def _wrong_shape(h, body, p):
    # Consistent safetensors (the bytes match), but not the shape the config implies.
    e = h["model.layers.0.self_attn.q_proj.weight"]
    e["shape"] = [e["shape"][1], e["shape"][0] // 2, 2]
    _write_st(p, h, body)


def _config(fn):
    def apply(folder):
        p = folder / "config.json"
        cfg = json.loads(p.read_text())
        fn(cfg)
        p.write_text(json.dumps(cfg))
    return apply


HF_BREAKAGE = {
    "safetensors header length past end": _st_mutation(lambda h, b, p: _write_st(p, h, b, header_len=10**12)),
    "safetensors header length 2^64-1": _st_mutation(lambda h, b, p: _write_st(p, h, b, header_len=2**64 - 1)),
    "safetensors header not JSON": lambda f: (f / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"{nojson}" + bytes(64)),
    "safetensors offsets past end": _st_mutation(_past_end),
    "safetensors overlapping offsets": _st_mutation(_overlap),
    "safetensors shape/size mismatch": _st_mutation(_size_mismatch),
    "safetensors unknown dtype": _st_mutation(_bad_dtype),
    "missing tensor": _st_mutation(_missing_tensor),
    "tensor shape disagrees with config": _st_mutation(_wrong_shape),
    "unknown architecture": _config(lambda c: c.update(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")),
    "config.json not JSON": lambda f: (f / "config.json").write_text("{ not json"),
    "missing config.json": lambda f: (f / "config.json").unlink(),
    "missing safetensors": lambda f: (f / "model.safetensors").unlink(),
}


@pytest.mark.parametrize("what", list(HF_BREAKAGE))
def test_broken_hf_folder(autark, tmp_path, what):
    folder = make_tiny.make("llama_tied", tmp_path / "hf")
    HF_BREAKAGE[what](folder)
    quantize_must_fail(autark, folder, tmp_path, what)


def test_missing_shard(autark, tmp_path):
    folder = make_tiny.make("qwen2", tmp_path / "hf", "f16", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    quantize_must_fail(autark, folder, tmp_path, "shard listed in the index is missing")


# ----------------------------------------------------------------------------------------------
# Missing files
# ----------------------------------------------------------------------------------------------


def test_missing_input_files(autark, tmp_path):
    missing = tmp_path / "does-not-exist"
    quantize_must_fail(autark, missing, tmp_path, "quantize of a missing path")
    quantize_must_fail(autark, tmp_path / "missing.gguf", tmp_path, "quantize of a missing .gguf")
    for args in (["inspect", missing, "--json"], ["verify", missing], ["dump", missing, "x", "-o", tmp_path / "x.f32"],
                 ["logits", missing, "--tokens", "1", "-o", tmp_path / "l.f32"], ["tokenize", missing, "-p", "hi"],
                 ["run", missing, "-p", "hi", "-n", 1]):
        assert_clean_failure(autark.run(*args, timeout=TIMEOUT), " ".join(map(str, args[:1])) + " of a missing file")


def test_quantize_into_missing_folder(autark, tmp_path):
    folder = make_tiny.make("llama_tied", tmp_path / "hf")
    r = autark.run("quantize", folder, "-o", tmp_path / "no" / "such" / "dir" / "m.autark", "--type", "f32", timeout=TIMEOUT)
    assert_clean_failure(r, "output folder does not exist")


def test_failed_quantize_keeps_existing_output_of_good_run(autark, tmp_path):
    """A previous good output survives a later failed quantize to the same path."""
    folder = make_tiny.make("llama_tied", tmp_path / "hf")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = autark.quantize(folder, outdir / "model.autark", "f32")
    good = out.read_bytes()
    (folder / "config.json").write_text("{ broken")
    r = autark.run("quantize", folder, "-o", out, "--type", "f32", timeout=TIMEOUT)
    assert_clean_failure(r, "broken config.json")
    assert out.read_bytes() == good
    assert [p.name for p in outdir.iterdir()] == ["model.autark"]
    shutil.rmtree(folder)

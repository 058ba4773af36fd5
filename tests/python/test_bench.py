"""`autark bench`: llama-bench's jsonl keys, the table, and the bandwidth probe."""

import json

import make_tiny


def _tiny(autark, tmp_path):
    folder = make_tiny.make("llama_tied", tmp_path / "hf")
    return autark.quantize(folder, tmp_path / "tiny.autark", "q4_0")


def test_bench_json_has_llama_bench_keys(autark, tmp_path):
    model = _tiny(autark, tmp_path)
    r = autark.ok("bench", model, "-p", "8", "-n", "4", "-t", "1,2", "-r", "2", "--json")
    rows = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    assert [(o["n_threads"], o["n_prompt"], o["n_gen"]) for o in rows] == [(1, 8, 0), (1, 0, 4), (2, 8, 0), (2, 0, 4)]
    for o in rows:
        assert o["avg_ts"] > 0 and o["stddev_ts"] >= 0 and len(o["samples_ts"]) == 2, o
        assert abs(sum(o["samples_ts"]) / 2 - o["avg_ts"]) < 1e-6 * o["avg_ts"], o
        assert o["peak_rss_bytes"] > 0 and o["load_seconds"] >= 0 and o["isa"], o


def test_bench_table_and_memory_probe(autark, tmp_path):
    model = _tiny(autark, tmp_path)
    out = autark.ok("bench", model, "-p", "8", "-n", "4", "-t", "1", "-r", "1").stdout.decode()
    assert "| 1 | pp8 |" in out and "| 1 | tg4 |" in out and "peak RSS" in out
    # The probe: a buffer (4 GiB unless --memory-mib says otherwise: 256 MiB here, seconds
    # instead of half a minute) and, given a model, its mapping; one row per thread count.
    out = autark.ok("bench", "--memory", "--memory-mib", "256", model, "-t", "1", "-r", "1").stdout.decode()
    assert "read GB/s (256 MiB, best of 1)" in out, out
    row = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(row) == 1, out
    buffer_gbs, file_gbs = (float(v) for v in row[0].strip("|").split("|")[1:3])
    # A 0.1 MB file is read in well under a millisecond: one hiccup of a loaded machine can
    # print it as 0.0 GB/s, so only the buffer's figure has a floor.
    assert "(0.1 MB of tensors)" in out and buffer_gbs > 0.5 and file_gbs >= 0.0, out


def test_bench_needs_a_model_or_memory(autark):
    r = autark.run("bench")
    assert r.returncode != 0
    assert b"model" in r.stderr.lower()


def test_bench_parallel_sequences(autark, tmp_path):
    """`--parallel N`: the tg test decodes N sequences together (one pass per step for all of
    them, as the server does) and counts every sequence's tokens; pp stays one sequence. Only
    plain greedy tg can be measured that way."""
    model = _tiny(autark, tmp_path)
    r = autark.ok("bench", model, "-p", "8", "-n", "4", "-t", "1", "-r", "2", "--parallel", "3", "--json")
    rows = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    assert [(o["n_prompt"], o["n_gen"], o["n_sequences"]) for o in rows] == [(8, 0, 1), (0, 4, 3)], rows
    assert all(o["avg_ts"] > 0 for o in rows), rows
    one = autark.ok("bench", model, "-p", "8", "-n", "4", "-t", "1", "-r", "1", "--json").stdout.decode()
    one = json.loads(one.splitlines()[1])
    assert rows[1]["session_bytes"] == 3 * one["session_bytes"], (rows[1], one)
    out = autark.ok("bench", model, "-p", "0", "-n", "4", "-t", "1", "-r", "1", "--parallel", "2").stdout.decode()
    assert "| 1 | tg4 × 2 sequences |" in out, out
    r = autark.run("bench", model, "-p", "0", "-n", "4", "--parallel", "2", "--temp", "0.5")
    assert r.returncode != 0 and b"sequences" in r.stderr, r.stderr

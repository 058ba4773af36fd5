#!/usr/bin/env python3
"""Writes the f16 source model the quantization comparisons start from (docs/QUANTIZATION.md):
SmolLM2-135M-Instruct with every quantized tensor of the Q4_1 GGUF dequantized (gguf-py) and stored
as F16, f32 tensors (norms) kept, and all metadata copied.

    python3 scripts/smollm2-f16.py [IN.gguf] [OUT.gguf]
"""

import sys
from pathlib import Path

import numpy as np
import gguf

ROOT = Path(__file__).resolve().parent.parent
src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
dst = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "models/SmolLM2-135M-Instruct.F16.gguf"

r = gguf.GGUFReader(src)
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
tmp = dst.with_name(dst.name + ".tmp")
w = gguf.GGUFWriter(tmp, arch)
V = gguf.GGUFValueType
for key, f in r.fields.items():
    if key.startswith("GGUF.") or key == "general.architecture":
        continue
    t = f.types[0]
    if key == "general.file_type":
        w.add_key_value(key, int(gguf.LlamaFileType.MOSTLY_F16), V.UINT32)
    elif t == V.STRING:
        w.add_key_value(key, bytes(f.parts[f.data[0]]).decode(), t)
    elif t == V.ARRAY:
        sub = f.types[1]
        if sub == V.STRING:
            vals = [bytes(f.parts[i]).decode() for i in f.data]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(key, vals, t, sub_type=sub)
    else:
        w.add_key_value(key, f.parts[f.data[0]].tolist()[0], t)
for t in r.tensors:
    values = gguf.quants.dequantize(t.data, t.tensor_type)
    if t.tensor_type == gguf.GGMLQuantizationType.F32:
        w.add_tensor(t.name, np.asarray(values, dtype=np.float32))
    else:
        w.add_tensor(t.name, np.asarray(values, dtype=np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
tmp.rename(dst)
print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")

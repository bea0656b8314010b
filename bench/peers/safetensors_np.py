"""
safetensors_np.py: a model.safetensors file as float32 numpy arrays, for the
peers (hf_torch_peer.py, hf_onnx_export.py) -- without the safetensors
package, which Debian does not ship.  F32 tensors are views of a read-only
memory map (no copy); BF16 and F16 ones are converted.
"""
import json
import struct

import numpy as np


def read_safetensors(path):
    """name -> float32 numpy array of the tensor's shape."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = mm[base + a:base + b]
        if t["dtype"] == "F32":
            arr = raw.view("<f4")
        elif t["dtype"] == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            arr = raw.view("<f2").astype(np.float32)
        else:
            raise SystemExit(f"{name}: dtype {t['dtype']}")
        out[name] = arr.reshape(t["shape"])
    return out

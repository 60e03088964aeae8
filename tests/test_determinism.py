"""Conversion is deterministic: the same module converted in fresh processes gives bit-identical
Keras weights and the same graph. Hugging Face decoders once came out exact in some processes and
wrong by 1e-2 in others (a constant layer cached under the id() of a freed temporary, reused by a
later constant that got the same address)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np, torch, transformers
    import xlate

    torch.manual_seed(0)
    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 vocab_size=100, max_position_embeddings=64, use_cache=False)
    models = {
        "phi": transformers.PhiModel(transformers.PhiConfig(**small)),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=2, **small)),
    }
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    out = {}
    for name, module in models.items():
        km = xlate.torch_to_keras(module.eval(), (ids,), via="direct")
        weights = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in km.get_weights()))
        graph = hashlib.sha256(json.dumps(km.get_config(), sort_keys=True, default=str).encode())
        out[name] = [weights.hexdigest(), graph.hexdigest(), len(km.weights)]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_hf_decoders_convert_bit_identically_in_fresh_processes():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = []
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert all(r == runs[0] for r in runs[1:]), runs

"""model.safetensors written tensor by tensor (xlate.tensorfile) reads back with safetensors itself."""

from __future__ import annotations

import itertools
import json
import struct

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from xlate.tensorfile import save_state_dict, write_safetensors


def _state():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(5, 3, generator=g),
        "w_t": torch.randn(3, 7, generator=g).t(),  # not contiguous: packed on its own
        "half": torch.randn(4, generator=g).to(torch.bfloat16),
        "f16": torch.randn(2, 2, generator=g).half(),
        "steps": torch.tensor(7, dtype=torch.int64),  # 0-d
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "ids": torch.arange(6, dtype=torch.int32).reshape(2, 3),
    }


def test_state_dict_round_trips_through_safetensors(tmp_path):
    state = _state()
    path = tmp_path / "model.safetensors"
    save_state_dict(state, path, metadata={"format": "pt", "generator": "xlate"})
    back = safetensors_torch.load_file(str(path))
    assert back.keys() == state.keys()
    for k, t in state.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape, k
        assert torch.equal(back[k], t), k
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt", "generator": "xlate"}


def test_header_is_aligned_and_tensors_are_ordered_by_item_size(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict(_state(), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    spans = sorted(v["data_offsets"] for v in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gaps, no overlaps
    sizes = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "BOOL": 1, "I32": 4}
    for v in header.values():
        assert v["data_offsets"][0] % sizes[v["dtype"]] == 0


def test_tensors_are_asked_for_one_at_a_time_in_write_order(tmp_path):
    state = _state()
    asked = []

    def tensor(name):
        asked.append(name)
        return state[name]

    specs = [(k, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.element_size()) for k, t in state.items()]
    write_safetensors(tmp_path / "m.safetensors", specs, tensor)
    assert sorted(asked) == sorted(state) and len(asked) == len(state)


def test_a_tensor_that_does_not_fit_its_header_is_refused(tmp_path):
    with pytest.raises(ValueError, match="bytes"):
        write_safetensors(tmp_path / "m.safetensors", [("w", (2, 2), "float32", 4)], lambda name: torch.zeros(3))

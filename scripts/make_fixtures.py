"""Write the committed fixtures: ``fixtures/mnist_mlp.pth``, the MNIST MLP's weights.

Deterministic (fixed seed): running it again gives the same tensors. No data is downloaded; the
weights are the seeded initialization, which is all a parity demo needs.

    python scripts/make_fixtures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611


def main() -> None:
    sys.path.insert(0, str(ROOT / "fixtures"))
    from mnist_mlp import MnistMLP

    torch.manual_seed(SEED)
    model = MnistMLP().eval()
    out = ROOT / "fixtures" / "mnist_mlp.pth"
    # clone: each tensor gets its own storage, so the file holds no more than the weights
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    print(f"wrote {out} ({out.stat().st_size} bytes, seed {SEED})")


if __name__ == "__main__":
    main()

"""The seed articles' workflow, end to end: train in PyTorch, move to Keras, keep training there.

1. PyTorch: the MNIST-style MLP (fixtures/mnist_mlp.py) trained with Adam + CrossEntropyLoss,
   ReduceLROnPlateau on the validation loss and early stopping (xlate's EarlyStopping: torch has
   none), on synthetic MNIST-like data (no download).
2. Translate everything with xlate: the model (torch_to_keras), the optimizer with its state
   (Adam's moments and step count, ported through the weight transforms), the loss, the plateau
   scheduler and the early-stopping state.
3. Continue in Keras with model.fit for more epochs, and continue the original PyTorch run for the
   same epochs; then compare both: validation loss and lr per epoch, final predictions.

Run: .venv/bin/python scripts/seed_mnist_training.py [--epochs-torch 3] [--epochs-keras 3]
Exit 0 when the continued runs agree within --atol (default 1e-4), 1 otherwise. About 30 s on CPU.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
BATCH = 64


def mnist_mlp_class():
    from xlate.load import import_model_class

    return import_model_class(f"{ROOT / 'fixtures' / 'mnist_mlp.py'}:MnistMLP")


def synthetic_mnist(n: int, seed: int):
    """Flattened 28x28 'digits': one smooth random prototype per class plus pixel noise, in [0, 1]."""
    rng = np.random.default_rng(0)  # the same prototypes for the train and validation splits
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    prototypes = []
    for _ in range(10):
        cx, cy, r = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.15, 0.35)]
        ring = np.exp(-((np.hypot(xx - cx, yy - cy) - r) ** 2) / 0.004)
        prototypes.append(ring.reshape(-1))
    prototypes = np.stack(prototypes)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.clip(prototypes[labels] + rng.normal(0, 1.2, (n, 784)), 0, 1).astype(np.float32)
    return images, labels.astype(np.int64)


def torch_epoch(model, optimizer, loss_fn, x, y):
    model.train()
    for i in range(0, len(x), BATCH):
        optimizer.zero_grad()
        loss_fn(model(torch.from_numpy(x[i:i + BATCH])), torch.from_numpy(y[i:i + BATCH])).backward()
        optimizer.step()


def torch_eval(model, loss_fn, x, y):
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        return float(loss_fn(out, torch.from_numpy(y))), float((out.argmax(1).numpy() == y).mean()), out.numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-torch", type=int, default=3)
    parser.add_argument("--epochs-keras", type=int, default=3)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import xlate
    from xlate.training import translation_of
    from xlate.training.torch_schedules import EarlyStopping

    x_train, y_train = synthetic_mnist(2048, seed=1)
    x_val, y_val = synthetic_mnist(512, seed=2)

    # 1. PyTorch
    torch.manual_seed(0)
    model = mnist_mlp_class()()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    # an eager plateau (less than 20% better counts as a plateau) so a short run sees reductions
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.2)
    stopper = EarlyStopping(monitor="val_loss", patience=2, min_delta=1e-3)
    print(f"PyTorch: {args.epochs_torch} epoch(s) of {len(x_train) // BATCH} steps")
    for epoch in range(args.epochs_torch):
        torch_epoch(model, optimizer, loss_fn, x_train, y_train)
        val_loss, val_acc, _ = torch_eval(model, loss_fn, x_val, y_val)
        plateau.step(val_loss)
        stop = stopper.step(val_loss, model)
        print(f"  epoch {epoch}: val_loss {val_loss:.5f}  val_acc {val_acc:.3f}  lr {optimizer.param_groups[0]['lr']:g}")
        if stop:
            print("  early stop")
            break
    done = epoch + 1

    # the original run, continued below for comparison
    reference = copy.deepcopy(model)
    reference_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    reference_opt.load_state_dict(optimizer.state_dict())
    reference_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(reference_opt, factor=0.5, patience=0,
                                                                   threshold=0.2)
    reference_plateau.load_state_dict(plateau.state_dict())
    reference_stopper = copy.deepcopy(stopper)

    # 2. translate model, optimizer (with state), loss, scheduler, early stopping
    keras_model = xlate.torch_to_keras(model, (torch.from_numpy(x_val[:2]),))
    keras_opt = xlate.translate_optimizer(optimizer, keras_model, source_model=model)
    keras_loss = xlate.translate_loss(loss_fn)
    keras_plateau = xlate.translate_schedule(plateau, monitor="val_loss")
    keras_stopper = xlate.translate_schedule(stopper)
    print("translated:")
    for obj in (keras_opt, keras_loss, keras_plateau, keras_stopper):
        t = translation_of(obj)
        print(f"  {t.describe()}" + "".join(f"\n      {n}" for n in t.notes))

    # 3. continue in Keras, and the original in PyTorch
    keras_model.compile(optimizer=keras_opt, loss=keras_loss, jit_compile=False)
    history = keras_model.fit(x_train, y_train, batch_size=BATCH, epochs=done + args.epochs_keras,
                              initial_epoch=done, shuffle=False, validation_data=(x_val, y_val),
                              callbacks=[keras_plateau, keras_stopper], verbose=0)
    torch_history = []
    for epoch in range(done, done + args.epochs_keras):
        torch_epoch(reference, reference_opt, loss_fn, x_train, y_train)
        val_loss, val_acc, _ = torch_eval(reference, loss_fn, x_val, y_val)
        lr = reference_opt.param_groups[0]["lr"]
        reference_plateau.step(val_loss)
        torch_history.append((epoch, val_loss, lr))
        if reference_stopper.step(val_loss, reference):
            break

    # 4. compare
    print(f"continued for {len(torch_history)} epoch(s): PyTorch (original) vs Keras (translated)")
    keras_val = history.history["val_loss"]
    worst = 0.0
    for (epoch, t_loss, t_lr), k_loss in zip(torch_history, keras_val):
        worst = max(worst, abs(t_loss - k_loss))
        print(f"  epoch {epoch}: val_loss torch {t_loss:.6f}  keras {k_loss:.6f}  (lr in that epoch {t_lr:g})")
    k_lr = float(keras_opt.learning_rate.numpy())
    t_lr = reference_opt.param_groups[0]["lr"]
    _, _, torch_out = torch_eval(reference, loss_fn, x_val, y_val)
    keras_out = np.asarray(keras_model(x_val, training=False))
    pred_err = float(np.max(np.abs(torch_out - keras_out)))
    same_epochs = len(keras_val) == len(torch_history)
    ok = pred_err <= args.atol and worst <= args.atol and abs(k_lr - t_lr) <= 1e-6 * t_lr and same_epochs
    print(f"final lr torch {t_lr:g}  keras {k_lr:g}; max |val_loss diff| {worst:.2e}; "
          f"max |prediction diff| on {len(x_val)} images {pred_err:.2e} (atol {args.atol:g})")
    print(f"{'PASS' if ok else 'FAIL'} in {time.perf_counter() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

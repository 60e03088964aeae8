"""The conversion's collector scope: the process's earlier objects are left out of collections while
a conversion runs, and come back afterwards; a process that froze objects itself is left alone."""

import gc

import torch

import xlate
from xlate.gc_scope import new_objects_only


def test_conversion_freezes_earlier_objects_and_unfreezes_them():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(gc.get_freeze_count())
            return x * 2

    assert gc.get_freeze_count() == 0
    xlate.torch_to_keras(Probe(), (torch.randn(2, 3),), via="direct")
    assert seen and min(seen) > 0, "the model ran outside the frozen scope"
    assert gc.get_freeze_count() == 0


def test_garbage_made_inside_the_scope_is_still_collected():
    class Cycle:
        pass

    with new_objects_only():
        a = Cycle()
        a.self = a
        del a
        assert gc.collect() >= 1


def test_nested_scopes_unfreeze_once_at_the_outermost_exit():
    with new_objects_only():
        frozen = gc.get_freeze_count()
        with new_objects_only():
            pass
        assert gc.get_freeze_count() == frozen > 0
    assert gc.get_freeze_count() == 0


def test_objects_the_process_froze_stay_frozen():
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with new_objects_only():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()

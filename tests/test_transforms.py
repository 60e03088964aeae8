"""Every named weight transform is invertible: inverse(forward(w)) == w bit for bit, for random
shapes (hypothesis). The one many-to-one transform (LSTM bias merge) round-trips the other way."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlate.transforms import TRANSFORMS, get_transform

dims = st.integers(1, 5)


def arrays(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# one strategy per transform: torch-side arrays plus the transform's parameters
CASES = {
    "identity": st.builds(lambda s, seed: ((arrays(s, seed),), {}), st.lists(dims, min_size=0, max_size=4),
                          st.integers(0, 99)),
    "dense_kernel": st.builds(lambda o, i, seed: ((arrays((o, i), seed),), {}), dims, dims, st.integers(0, 99)),
    "conv_kernel": st.builds(lambda o, i, k, seed: ((arrays((o, i, *k), seed),), {}), dims, dims,
                             st.lists(dims, min_size=1, max_size=3), st.integers(0, 99)),
    "conv_transpose_kernel": st.builds(lambda i, o, k, seed: ((arrays((i, o, *k), seed),), {}), dims, dims,
                                       st.lists(dims, min_size=1, max_size=3), st.integers(0, 99)),
    "depthwise_kernel": st.builds(lambda c, m, k, seed: ((arrays((c * m, 1, *k), seed),), {"multiplier": m}),
                                  dims, dims, st.lists(dims, min_size=1, max_size=2), st.integers(0, 99)),
    "flatten_dense_kernel": st.builds(
        lambda out, chw, seed: ((arrays((out, int(np.prod(chw))), seed),), {"chw": tuple(chw)}),
        dims, st.lists(dims, min_size=2, max_size=4), st.integers(0, 99)),
    "channels_last_param": st.builds(lambda s, seed: ((arrays(s, seed),), {}),
                                     st.lists(dims, min_size=1, max_size=4), st.integers(0, 99)),
    "prelu_alpha": st.builds(lambda c, r, seed: ((arrays((c,), seed),), {"spatial_rank": r}), dims,
                             st.integers(0, 3), st.integers(0, 99)),
    "gru_kernel": st.builds(lambda h, x, seed: ((arrays((3 * h, x), seed),), {}), dims, dims, st.integers(0, 99)),
    "gru_bias": st.builds(lambda h, seed: ((arrays((3 * h,), seed), arrays((3 * h,), seed + 1)), {}), dims,
                          st.integers(0, 99)),
    "lstm_bias": st.builds(lambda h, seed: ((arrays((4 * h,), seed), arrays((4 * h,), seed + 1)), {}), dims,
                           st.integers(0, 99)),
    "mha_proj": st.builds(lambda h, hd, e, seed: ((arrays((h * hd, e), seed), arrays((h * hd,), seed)),
                                                  {"num_heads": h}), dims, dims, dims, st.integers(0, 99)),
    "mha_in_proj": st.builds(lambda h, hd, seed: ((arrays((3 * h * hd, h * hd), seed), arrays((3 * h * hd,), seed)),
                                                  {"num_heads": h}), dims, dims, st.integers(0, 99)),
    "mha_out_proj": st.builds(lambda h, hd, e, seed: ((arrays((e, h * hd), seed),), {"num_heads": h}),
                              dims, dims, dims, st.integers(0, 99)),
}


def test_every_transform_has_a_round_trip_case():
    assert set(CASES) == set(TRANSFORMS), set(TRANSFORMS) ^ set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip(name):
    transform = get_transform(name)

    @settings(max_examples=40, deadline=None)
    @given(CASES[name])
    def check(case):
        torch_arrays, params = case
        keras_arrays = transform.to_keras(*torch_arrays, **params)
        assert len(keras_arrays) == transform.keras_arity
        if transform.exact:
            back = transform.to_torch(*keras_arrays, **params)
            assert len(back) == len(torch_arrays)
            for a, b in zip(torch_arrays, back):
                assert a.shape == b.shape and np.array_equal(a, b)
        else:
            # many-to-one: the Keras side round-trips exactly instead
            again = transform.to_keras(*transform.to_torch(*keras_arrays, **params), **params)
            for a, b in zip(keras_arrays, again):
                assert np.array_equal(a, b)

    check()


def test_conv_kernel_layout():
    w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    (k,) = get_transform("conv_kernel").to_keras(w)
    assert k.shape == (4, 5, 3, 2) and k[1, 2, 0, 1] == w[1, 0, 1, 2]


def test_depthwise_keeps_the_channel_major_output_order():
    c, m = 3, 2
    w = np.arange(c * m * 9).reshape(c * m, 1, 3, 3)
    (k,) = get_transform("depthwise_kernel").to_keras(w, multiplier=m)
    for ch in range(c):
        for j in range(m):
            assert np.array_equal(k[:, :, ch, j], w[ch * m + j, 0])  # output channel c*M+m on both sides


def test_gru_gates_reordered_r_z_n_to_z_r_h():
    h = 2
    w = np.concatenate([np.full((h, 1), g) for g in (1.0, 2.0, 3.0)])  # r=1, z=2, n=3
    (k,) = get_transform("gru_kernel").to_keras(w)
    assert k[0].tolist() == [2.0, 2.0, 1.0, 1.0, 3.0, 3.0]


def test_lstm_bias_merges_the_two_torch_biases():
    b_ih, b_hh = np.ones(8, np.float32), np.full(8, 2.0, np.float32)
    (b,) = get_transform("lstm_bias").to_keras(b_ih, b_hh)
    assert np.array_equal(b, np.full(8, 3.0)) and not get_transform("lstm_bias").exact

"""Patterns from third-party model code (torchvision, timm, Hugging Face) that once broke the
torch -> Keras converter, each reduced to a small module. The zoo (scripts/zoo.py) finds them;
these keep them fixed without the zoo's venv."""

from __future__ import annotations

import pytest
import torch

import xlate


def _convert(module, *inputs):
    """Convert from each example (batch 1 and 2 are both usual) and gate against torch."""
    module.eval()
    return xlate.torch_to_keras(module, inputs, via="direct")


class FlattenThenHead(torch.nn.Module):
    """torchvision mobilenet_v2 / efficientnet / alexnet: pool, flatten, an elementwise op (a
    Dropout in eval mode, an activation), then Linear."""

    def __init__(self, pool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(pool)
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(8 * pool * pool, 5))

    def forward(self, x):
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.head(torch.nn.functional.hardswish(x) * 2.0)


@pytest.mark.parametrize("pool", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_linear_after_flatten_and_elementwise_ops(pool, batch):
    _convert(FlattenThenHead(pool), torch.randn(batch, 3, 12, 12))


class PackedBias(torch.nn.Module):
    """timm BEiT / EVA: the qkv bias is cat(q_bias, zeros, v_bias), two parameters around a
    buffer, used as F.linear's bias. Both parameters must stay trainable."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(8, 24, bias=False)
        self.q_bias = torch.nn.Parameter(torch.randn(8))
        self.v_bias = torch.nn.Parameter(torch.randn(8))
        self.register_buffer("k_bias", torch.zeros(8), persistent=False)

    def forward(self, x):
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return torch.nn.functional.linear(x, self.qkv.weight, bias)


def test_linear_with_a_bias_computed_from_parameters():
    keras_model = _convert(PackedBias(), torch.randn(2, 5, 8))
    trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert trainable == 8 * 24 + 8 + 8


def test_hf_decoder_with_its_kv_cache_on():
    """A Hugging Face decoder as built (config.use_cache=True) returns a DynamicCache next to
    its logits: traced with the cache off, gated on the logits."""
    import transformers

    config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, vocab_size=50)
    assert config.use_cache
    module = transformers.LlamaForCausalLM(config)
    keras_model = _convert(module, torch.randint(0, 50, (2, 7)))
    assert module.config.use_cache  # restored
    assert "use_cache=False" in " ".join(xlate.record.record_of(keras_model).notes)


class NoGradRegion(torch.nn.Module):
    """HF rotary embeddings run under @torch.no_grad(); torch.export wraps such a region in a
    wrap_with_set_grad_enabled higher-order op whose body is a get_attr submodule."""

    def __init__(self):
        super().__init__()
        self.register_buffer("freq", torch.linspace(0.1, 1.0, 4), persistent=False)
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            angle = x.sum(-1, keepdim=True) * self.freq
        with torch.autocast("cpu", enabled=False):
            angle = angle.cos()
        return self.proj(x) * angle


def test_regions_under_no_grad_and_autocast_off_through_torch_export():
    from xlate.torch2keras.export_trace import trace

    graph = trace(NoGradRegion().eval(), (torch.randn(2, 3, 4),), dynamic=False)
    assert {n.target for n in graph.nodes} >= {"aten.cos.default", "aten.sum.dim_IntList"}
    _convert(NoGradRegion(), torch.randn(2, 3, 4))


class ConstantPositions(torch.nn.Module):
    """timm DINOv3 / EVA rope: position grids from meshgrid over aranges, an op no table row
    converts, but one that only builds a constant."""

    def forward(self, x):
        h, w = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
        return x + torch.stack([h, w]).flatten(1).sum(0)


def test_ops_without_a_row_that_only_build_constants():
    _convert(ConstantPositions(), torch.randn(2, 12))


class ConvOfConstant(torch.nn.Module):
    """timm XCiT's Fourier position encoding: a trainable conv applied to a grid that does not
    depend on the input, then repeated to the batch size."""

    def __init__(self):
        super().__init__()
        self.register_buffer("grid", torch.linspace(-1, 1, 2 * 4 * 4).reshape(1, 2, 4, 4), persistent=False)
        self.proj = torch.nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return x + self.proj(self.grid).repeat(x.shape[0], 1, 1, 1)


def test_a_layer_applied_to_a_constant_keeps_its_weights_trainable():
    keras_model = _convert(ConvOfConstant(), torch.randn(2, 3, 4, 4))
    assert sum(int(w.numpy().size) for w in keras_model.trainable_weights) == 2 * 3 + 3


class SliceAssignedMask(torch.nn.Module):
    """torchvision swin's shifted-window mask: x.new_zeros((H, W)) filled region by region with
    slice assignments (in-place writes through views in the exported program)."""

    def forward(self, x):
        mask = x.new_zeros((4, 4))
        count = 0
        for h in (slice(0, -2), slice(-2, None)):
            for w in (slice(0, -1), slice(-1, None)):
                mask[h, w] = count
                count += 1
        return x + mask


@pytest.mark.parametrize("batch", [1, 2])
def test_mask_built_by_slice_assignment(batch):
    _convert(SliceAssignedMask(), torch.randn(batch, 3, 4, 4))


class ExpandToBatch(torch.nn.Module):
    """Hugging Face BERT / GPT-2 / ViT embeddings: a computed tensor with batch 1 (sliced position
    ids, a layer applied to a buffer) expanded to the input's batch size, which stays dynamic."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("template", torch.randn(1, 3, 6, 6))
        self.register_buffer("ids", torch.arange(12).view(1, 12))
        self.embed = torch.nn.Embedding(12, 4)

    def forward(self, x):
        y = self.conv(x)  # channels-last on the Keras side, as is the template's feature map
        prior = self.conv(self.template).expand(x.shape[0], -1, -1, -1)
        ids = self.ids[:, : x.shape[-1]].expand(x.shape[0], -1)
        return y * prior, self.embed(ids)


@pytest.mark.parametrize("batch", [1, 2])
def test_expand_of_a_computed_tensor_to_the_dynamic_batch(batch):
    module = ExpandToBatch().eval()
    keras_model = _convert(module, torch.randn(batch, 3, 6, 6))
    if keras_model.inputs[0].shape[0] is not None:  # a batch-1 example may pin the batch (issue 14)
        assert batch == 1
        return
    x = torch.randn(3, 3, 6, 6)
    out = keras_model(x.numpy())
    with torch.no_grad():
        ref = module(x)
    for o, r in zip(out, ref):
        assert tuple(o.shape) == tuple(r.shape)
        assert float(abs(o.numpy() - r.numpy()).max()) < 1e-5


def test_a_converter_crash_is_one_xlate_error_naming_the_op_and_module(monkeypatch):
    """A bug in one converter (a foreign TypeError) reaches the user as a ConverterFailure: an
    UnsupportedOpError (exit 3, ONNX fallback under via='auto') naming the op, its module path and
    the cause, never a bare TypeError."""
    from xlate.errors import ConverterFailure
    from xlate.torch2keras import emit

    real = emit.get_converter

    def broken(hook):
        if hook == "activation":
            def crash(ctx, node, row):
                raise TypeError("cannot unpack non-iterable NoneType object")
            return crash
        return real(hook)

    monkeypatch.setattr(emit, "get_converter", broken)
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.ReLU())).eval()
    with pytest.raises(ConverterFailure) as info:
        xlate.torch_to_keras(module, (torch.randn(2, 4),), via="direct")
    message = str(info.value)
    assert "\n" not in message and "TypeError: cannot unpack" in message, message
    assert info.value.unsupported[0][1] == "1.0", info.value.unsupported


class DeepChain(torch.nn.Module):
    """torchvision efficientnet_v2_l / timm's deepest nets: over a thousand ops in a chain, deeper
    than Python's default recursion limit, which Keras' recursive graph walk hits when it builds,
    saves or loads the functional model."""

    def __init__(self, depth: int):
        super().__init__()
        self.depth = depth
        self.head = torch.nn.Linear(4, 4)

    def forward(self, x):
        x = self.head(x)
        for _ in range(self.depth):
            x = x * 0.999 + 0.001
        return x


def test_a_graph_deeper_than_the_recursion_limit_converts_saves_and_reloads(tmp_path):
    import sys

    from xlate.load import load_keras
    from xlate.save import save_keras

    module = DeepChain(1200).eval()
    keras_model = _convert(module, torch.randn(2, 4))
    save_keras(keras_model, tmp_path / "deep.keras")
    reloaded = load_keras(tmp_path / "deep.keras").model
    x = torch.randn(3, 4)
    with torch.no_grad():
        ref = module(x).numpy()
    assert float(abs(reloaded(x.numpy()).numpy() - ref).max()) < 1e-5
    assert sys.getrecursionlimit() < 30_000  # raised only while Keras walks the graph


class PadToStride(torch.nn.Module):
    """timm cpubone: ``pad_h = (-H) % stride; if pad_h or pad_w: F.pad(...)``. Runs at even sizes
    all say "no pad", so a branch decided there would be wrong at odd ones: the sizes such a
    condition reads through % or // stay static (the batch stays dynamic)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 2, stride=2)

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 2, (-w) % 2
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h))
        return self.conv(x)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_branch_on_a_size_modulo_keeps_those_sizes_static(batch):
    keras_model = _convert(PadToStride(), torch.randn(batch, 3, 16, 16))
    assert tuple(keras_model.inputs[0].shape) == (None, 3, 16, 16)


class GlobalQuery(torch.nn.Module):
    """timm gcvit: a global query of batch 1 repeated to the dynamic batch with
    ``repeat_interleave(B // q.shape[0], dim=0)``."""

    def __init__(self):
        super().__init__()
        self.q = torch.nn.Parameter(torch.randn(1, 4, 6))
        self.proj = torch.nn.Linear(6, 6)

    def forward(self, x):
        q = self.q.repeat_interleave(x.shape[0] // self.q.shape[0], dim=0)
        return self.proj(x) * q


@pytest.mark.parametrize("batch", [1, 2])
def test_repeat_interleave_to_the_dynamic_batch(batch):
    keras_model = _convert(GlobalQuery(), torch.randn(batch, 4, 6))
    assert keras_model.inputs[0].shape[0] is None


class GridEncoding(torch.nn.Module):
    """timm XCiT: a positional encoding built over the dynamic patch grid (aranges of H and W),
    then ``repeat(B, 1, 1, 1)`` to the dynamic batch."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(2, 4, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, w)
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, h, w)
        pos = self.proj(torch.cat([ys, xs], dim=1) / 8).repeat(b, 1, 1, 1)
        return x + pos


@pytest.mark.parametrize("batch", [1, 2])
def test_repeat_of_a_grid_over_dynamic_sizes_to_the_batch(batch):
    keras_model = _convert(GridEncoding(), torch.randn(batch, 4, 8, 6))
    assert keras_model.inputs[0].shape[0] is None


class MultiQueryAttention(torch.nn.Module):
    """timm mobilenetv5: multi-query attention with one key/value head of shape (B, 1, S, D),
    broadcast against the query's heads by SDPA without enable_gqa."""

    def __init__(self):
        super().__init__()
        self.q = torch.nn.Linear(8, 16)
        self.kv = torch.nn.Linear(8, 8)

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, 4, 4).transpose(1, 2)
        k, v = self.kv(x).reshape(b, 1, n, 8).chunk(2, dim=-1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, 16)


@pytest.mark.parametrize("batch", [1, 2])
def test_multi_query_attention_broadcasts_its_single_key_head(batch):
    _convert(MultiQueryAttention(), torch.randn(batch, 5, 8))


class SpelledOutOps(torch.nn.Module):
    """HF ConvBERT: ``torch.multiply`` (and its siblings ``subtract``/``divide``), ATen aliases of
    mul/sub/div."""

    def forward(self, a, b):
        return torch.multiply(a, b) + torch.subtract(a, b) + torch.divide(a, b.abs() + 1)


@pytest.mark.parametrize("batch", [1, 2])
def test_spelled_out_aliases_of_arithmetic(batch):
    _convert(SpelledOutOps(), torch.randn(batch, 3), torch.randn(batch, 3))


class WeightNormLinear(torch.nn.Module):
    """HF wav2vec2/HuBERT: a layer under torch's weight_norm parametrization (aten._weight_norm in
    forward); g and v stay trainable."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 3), dim=0)

    def forward(self, x):
        return self.proj(x)


@pytest.mark.parametrize("batch", [1, 2])
def test_weight_norm_parametrization_keeps_g_and_v_trainable(batch):
    module = WeightNormLinear()
    keras_model = _convert(module, torch.randn(batch, 4))
    assert sum(int(w.numpy().size) for w in keras_model.trainable_weights) == sum(p.numel() for p in module.parameters())

class BorderAvgPool(torch.nn.Module):
    """timm resnet10t (avg_down): ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`` on an
    odd size, whose last window runs past the input; timm vitamin's ``AvgPool2d(3, 2, padding=1,
    count_include_pad=False)``, whose border windows divide by their real pixels only. A flatten
    and Linear head pins the spatial sizes (the divisor is a constant); without one they stay
    dynamic (the divisor is a pooled mask)."""

    def __init__(self, pool, shape, head):
        super().__init__()
        self.pool = pool
        self.head = torch.nn.Linear(pool(torch.zeros(1, *shape)).numel(), 3) if head else None

    def forward(self, x):
        y = self.pool(x)
        return self.head(y.flatten(1)) if self.head is not None else y * 2.0


AVG_POOLS = {  # (kernel, stride, padding, ceil_mode, count_include_pad)
    "ceil-exclude": (torch.nn.AvgPool2d, (2, 2, 0, True, False)),
    "ceil-include": (torch.nn.AvgPool2d, (2, 2, 0, True, True)),
    "pad-exclude": (torch.nn.AvgPool2d, (3, 2, 1, False, False)),
    "pad-ceil-include": (torch.nn.AvgPool2d, (3, 2, 1, True, True)),
    "pad-ceil-exclude-1d": (torch.nn.AvgPool1d, (3, 2, 1, True, False)),
}


@pytest.mark.parametrize("head", [True, False])
@pytest.mark.parametrize("pool", list(AVG_POOLS))
@pytest.mark.parametrize("batch", [1, 2])
def test_avg_pool_divides_like_torch_at_the_borders(pool, head, batch):
    cls, args = AVG_POOLS[pool]
    shape = (4, 10) if cls is torch.nn.AvgPool1d else (4, 7, 10)  # an odd and an even size
    keras_model = _convert(BorderAvgPool(cls(*args), shape, head), torch.randn(batch, *shape))
    assert keras_model.inputs[0].shape[0] is None  # whatever the head pins, never the batch


class CropPad(torch.nn.Module):
    """timm nasnetalarge / pnasnet5large: ``nn.ZeroPad2d((-1, 1, -1, 1))`` (drop the first row and
    column, add a zero row and column at the end) before a strided pool; and F.pad mixing crops and
    pads in the other modes, which pad from the cropped edges as torch does."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.pad = torch.nn.ZeroPad2d((-1, 1, -1, 1))
        self.pool = torch.nn.AvgPool2d(1, stride=2, count_include_pad=False)

    def forward(self, x):
        y = torch.nn.functional.pad(x, (1, -2, -1, 1), mode=self.mode)
        return self.pool(self.pad(x)), y * 2.0


@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect", "circular"])
@pytest.mark.parametrize("batch", [1, 2])
def test_negative_padding_crops(mode, batch):
    keras_model = _convert(CropPad(mode), torch.randn(batch, 3, 8, 8))
    assert keras_model.inputs[0].shape[0] is None
class StdConv(torch.nn.Conv2d):
    """timm StdConv2d / ScaledStdConv2d (nfnet, nf_regnet, BiT, vit_*_r_*): the weight is
    standardized in forward by ``F.batch_norm(w.reshape(1, out, -1), None, None, training=True)``
    (times gain * scale for the scaled one), then convolved with F.conv2d."""

    def __init__(self, groups, scaled):
        super().__init__(8, 16, 3, padding=1, stride=2, groups=groups, bias=scaled)
        self.gain = torch.nn.Parameter(torch.rand(16, 1, 1, 1) + 0.5) if scaled else None

    def forward(self, x):
        gain = None if self.gain is None else (self.gain * self.weight[0].numel() ** -0.5).view(-1)
        weight = torch.nn.functional.batch_norm(self.weight.reshape(1, 16, -1), None, None, weight=gain,
                                                training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return torch.nn.functional.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


@pytest.mark.parametrize(("groups", "scaled"), [(1, False), (4, True), (8, True)])
@pytest.mark.parametrize("batch", [1, 2])
def test_conv_with_a_standardized_weight_keeps_it_trainable(groups, scaled, batch):
    module = StdConv(groups, scaled)
    keras_model = _convert(module, torch.randn(batch, 8, 9, 9))
    trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert trainable == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("batch", [2, 3])
def test_batch_norm_without_running_statistics_uses_the_batch(batch):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, track_running_stats=False))
    keras_model = _convert(module, torch.randn(batch, 3, 7, 7))
    trainable = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert trainable == sum(p.numel() for p in module.parameters())


class SliceUpdate(torch.nn.Module):
    """timm MViTv2: ``attn[:, :, sp:, sp:] = (attn[:, :, sp:, sp:].view(...) + rel).view(...)``
    and ``x[:, :, sp:] += q[:, :, sp:]``, in-place slice updates that torch.export turns into
    copy and slice_scatter."""

    def __init__(self, sp):
        super().__init__()
        self.sp = sp
        self.proj = torch.nn.Linear(6, 6)

    def forward(self, x):
        attn = self.proj(x) @ x.transpose(-1, -2)
        b, n, _ = attn.shape
        sp = self.sp
        attn[:, sp:, sp:] = (attn[:, sp:, sp:].view(b, n - sp, 1, n - sp) * 2 + 1).view(b, n - sp, n - sp)
        out = attn.softmax(-1) @ x
        out[:, sp:] += x[:, sp:]
        return out


@pytest.mark.parametrize("sp", [0, 1])
@pytest.mark.parametrize("batch", [1, 2])
def test_in_place_slice_updates(sp, batch):
    keras_model = _convert(SliceUpdate(sp), torch.randn(batch, 5, 6))
    # sp = 0 writes whole tensors: the fast trace records a copy and no scatter
    assert ({"copy", "slice_scatter"} if sp else {"copy"}) <= set(xlate.record.record_of(keras_model).rows_used)


class StridedScatter(torch.nn.Module):
    def forward(self, x, y):
        return torch.slice_scatter(x, y * 2, dim=1, start=0, end=4, step=2)


def test_a_strided_slice_scatter_is_refused():
    with pytest.raises(xlate.errors.UnsupportedOpError, match="slice_scatter with step 2"):
        _convert(StridedScatter(), torch.randn(2, 5, 3), torch.randn(2, 2, 3))


class CachedBias(torch.nn.Module):
    """HF LeViT: ``attention_bias_cache[device] = attention_biases[:, idxs]`` in eval mode. A trace
    must neither keep a Proxy in that cache (the next trace broke on it) nor read a cached tensor
    as a constant (the biases would no longer be trainable)."""

    def __init__(self):
        super().__init__()
        self.biases = torch.nn.Parameter(torch.randn(3, 4))
        self.register_buffer("idxs", torch.tensor([[0, 1, 2], [3, 2, 1]]), persistent=False)
        self.cache = {}
        self.proj = torch.nn.Linear(3, 3)

    def forward(self, x):
        key = str(x.device)
        if key not in self.cache:
            self.cache[key] = self.biases[:, self.idxs]
        return self.proj(x) + self.cache[key].sum(0)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_cache_written_in_forward_is_not_kept_by_the_trace(batch):
    module = CachedBias()
    keras_model = _convert(module, torch.randn(batch, 2, 3))
    assert all(type(v) is torch.Tensor for v in module.cache.values())  # the gate's own runs fill it, no trace does
    assert sum(int(w.numpy().size) for w in keras_model.trainable_weights) == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_a_pooling_window_longer_than_the_input(include_pad, batch):
    """HF EfficientNet: ``AvgPool2d(hidden_dim=1280, ceil_mode=True)`` on a 2x2 map, one window
    each way; padding the input out to the window would allocate 1280x1280 per channel."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2),
                                 torch.nn.AvgPool2d(640, ceil_mode=True, count_include_pad=include_pad),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 4))
    keras_model = _convert(module, torch.randn(batch, 3, 7, 7))
    assert all(max(layer.pool_size) <= 3 for layer in keras_model.layers if hasattr(layer, "pool_size"))


class FixedGrid(torch.nn.Module):
    """timm coatnet / maxvit: a relative-position table of one grid size, so every other H or W
    fails; the fast trace retries other sizes, attempt after attempt (coatnet_pico at batch 2
    kept every failed attempt's activations alive: 8.4 GB)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 13, 3, padding=1)
        self.bias = torch.nn.Parameter(torch.randn(13, 16, 16) * 0.1)

    def forward(self, x):
        return (torch.relu(self.conv(x)) + self.bias).mean((2, 3))


def test_failed_size_attempts_leave_no_activations_behind():
    """A failed attempt's traceback holds its tracer and runs in a reference cycle: with the
    garbage collector off, only breaking it frees their activations (13 channels: no other
    tensor has that shape)."""
    import gc

    def activations():
        return [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.dim() == 4 and o.shape[1] == 13]

    module = FixedGrid().eval()
    gc.collect()
    gc.disable()
    try:
        keras_model = xlate.torch_to_keras(module, (torch.randn(2, 3, 16, 16),), via="direct", check=False)
        alive = activations()
    finally:
        gc.enable()
    assert not alive, f"{len(alive)} activations of the trace are still alive: {[tuple(t.shape) for t in alive]}"
    assert keras_model.input_shape[2:] == (16, 16)  # H and W pinned by the table


def _window_mask(x, window: int, shift: int):
    """torchvision's shifted_window_attention (fx-wrapped there too): pad to whole windows, then a
    mask of the padded size built by slice assignment, counting from the end."""
    _, _, h, w = x.shape
    x = torch.nn.functional.pad(x, (0, (window - w % window) % window, 0, (window - h % window) % window))
    mask = x.new_zeros(x.shape[-2:])
    count = 0
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    for hs in bounds:
        for ws in bounds:
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask[0] = -1.0  # an int index, and a value cast to the mask's dtype
    return (x * (mask + 1.0))[:, :, :h, :w]


torch.fx.wrap("_window_mask")


class WindowMask(torch.nn.Module):
    def __init__(self, wrapped: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.wrapped = wrapped

    def forward(self, x):
        y = self.conv(x)
        if self.wrapped:
            return _window_mask(y, 4, 2)
        mask = y.new_zeros(y.shape[-2:])
        mask[:2, -3:] = 2.0
        mask[..., 1] = y[0, 0, 0, 0]  # a tensor value
        return y * mask


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_slice_assignment_takes_the_fast_path_with_dynamic_sizes(batch, wrapped):
    """In a function fx keeps whole (torchvision's) or in the traced graph itself (the shape
    tracer gives item assignment a node of its own: timm MViT-v2's relative positions)."""
    from xlate.record import record_of

    keras_model = _convert(WindowMask(wrapped), torch.randn(batch, 3, 10, 13))
    notes = record_of(keras_model).notes
    assert "traced by torch.fx (fast path)" in notes, notes
    # a wrapped function pads to whole windows where the graph cannot see it: the odd-size probes
    # find that its sizes follow none of the graph's, so H and W stay static; in the graph they need not
    assert keras_model.input_shape[2:] == ((10, 13) if wrapped else (None, None)), keras_model.input_shape


class ZeroedBiasThird(torch.nn.Module):
    """torchvision swin_v2's attention: the qkv bias cloned, its key third zeroed in place through
    a slice (here also a slice of a slice scaled, and a select), then used by F.linear."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(4, 12)

    def forward(self, x):
        bias = self.qkv.bias.clone()
        n = bias.numel() // 3
        bias[n:2 * n].zero_()
        bias[2 * n:][1:3].mul_(0.5)
        bias[0].fill_(2.0)
        return torch.nn.functional.linear(x, self.qkv.weight, bias)


@pytest.mark.parametrize("batch", [1, 2])
def test_in_place_writes_through_slices_take_the_fast_path(batch):
    from xlate.record import record_of

    keras_model = _convert(ZeroedBiasThird(), torch.randn(batch, 5, 4))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes


def _adapt_window(window: list, sizes: list) -> list:
    """torchvision video Swin's _get_window_and_shift_size: fx-wrapped, and it changes its list argument."""
    for i in range(2):
        window[i] = min(sizes[i], window[i])
    return window


torch.fx.wrap("_adapt_window")


class AdaptiveWindow(torch.nn.Module):
    def forward(self, x):
        window = _adapt_window([4, 6], [x.size(2), x.size(3)])
        return x[:, :, :window[0], :window[1]] * 2.0


@pytest.mark.parametrize("batch", [1, 2])
def test_a_wrapped_function_may_change_its_list_arguments(batch):
    from xlate.record import record_of

    keras_model = _convert(AdaptiveWindow(), torch.randn(batch, 3, 5, 5))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes


class RatioScale(torch.nn.Module):
    """timm MViT-v2's relative positions: ``max(k / q, 1.0)`` on two sizes, a float ratio in a
    condition, then arange(q) * ratio indexes a table."""

    def __init__(self, constant_ratio):
        super().__init__()
        self.constant_ratio = constant_ratio
        self.table = torch.nn.Parameter(torch.randn(64, 3))

    def forward(self, x):
        q = x.shape[-1]
        k = x.shape[-1] * 2 if self.constant_ratio else 8
        ratio = max(k / q, 1.0)
        pos = (torch.arange(q) * ratio).long().clamp(max=63)
        return x * self.table[pos].sum(-1)


@pytest.mark.parametrize("constant_ratio", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_a_condition_on_a_ratio_of_sizes(constant_ratio, batch):
    """Decided when the ratio is the same at every size tried, else that size stays static; the
    fast path either way (it used to stop the fx trace, and torch.export took minutes on MViT-v2)."""
    from xlate.record import record_of

    keras_model = _convert(RatioScale(constant_ratio), torch.randn(batch, 3, 6))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes
    assert keras_model.input_shape[-1] == (None if constant_ratio else 6), keras_model.input_shape


class RecomputedBuffer(torch.nn.Module):
    """timm ConViT's GPSA: a buffer recomputed in forward when the token count changes, built with
    slice assignment (rel[:, :, :, 2] = ...) and moved with .to(device)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rel", torch.zeros(1, 1, 1, 3), persistent=False)
        self.proj = torch.nn.Linear(3, 4)

    def forward(self, x):
        n = x.shape[1]
        if self.rel.shape[1] != n:
            rel = torch.zeros(1, n, n, 3)
            ind = torch.arange(n).view(1, -1) - torch.arange(n).view(-1, 1)
            rel[:, :, :, 2] = (ind ** 2).unsqueeze(0)
            rel[:, :, :, 1] = ind.unsqueeze(0)
            rel[:, :, :, 0] = ind.unsqueeze(0) * 0.5
            self.rel = rel.to(self.proj.weight.device)
        return self.proj(self.rel.expand(x.shape[0], -1, -1, -1)).sum(-1) @ x


@pytest.mark.parametrize("batch", [1, 2])
def test_a_buffer_rebuilt_with_slice_assignment_in_forward(batch):
    from xlate.record import record_of

    module = RecomputedBuffer()
    keras_model = _convert(module, torch.randn(batch, 5, 3))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes
    assert module.rel.shape == (1, 1, 1, 3)  # the module is not changed by the conversion


class ClassTokenSplit(torch.nn.Module):
    """torchvision MViT's pooling: the class token cut off with tensor_split, pooled apart."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        if self.how == "indices":
            cls, rest, empty, tail = torch.tensor_split(x, (1, 7, 5), dim=2)
            return torch.cat([rest * 2, cls, empty, tail], dim=2)
        return torch.cat([p * (k + 1) for k, p in enumerate(torch.tensor_split(x, 3, dim=-1))], dim=-1)


@pytest.mark.parametrize("how", ["indices", "sections"])
@pytest.mark.parametrize("batch", [1, 2])
def test_tensor_split_at_indices_and_into_sections(how, batch):
    _convert(ClassTokenSplit(how), torch.randn(batch, 2, 8, 7))


class BlurPool(torch.nn.Module):
    """timm's BlurPool2d: a fixed filter buffer, F.conv2d with one int for the stride (Python's
    binding repeats it; ATen's schema takes int[2]) and groups read from the input."""

    def __init__(self):
        super().__init__()
        coeffs = torch.tensor([1.0, 2.0, 1.0]) / 4
        self.register_buffer("filt", (coeffs[:, None] * coeffs[None, :])[None, None], persistent=False)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        x = torch.nn.functional.pad(self.conv(x), (1, 1, 1, 1), mode="reflect")
        channels = x.shape[1]
        return torch.nn.functional.conv2d(x, self.filt.expand(channels, 1, 3, 3), stride=2, groups=channels)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_single_int_for_a_fixed_size_list_argument(batch):
    from xlate.record import record_of

    keras_model = _convert(BlurPool(), torch.randn(batch, 3, 12, 10))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes


class TransposeAttributes(torch.nn.Module):
    """.T on a weight (HF Falcon's fused query_key_value) and .mT on an activation."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(6, 4))

    def forward(self, x):
        y = x @ self.weight.T
        return y.mT @ y


@pytest.mark.parametrize("batch", [1, 2])
def test_transpose_attributes_take_the_fast_path(batch):
    from xlate.record import record_of

    keras_model = _convert(TransposeAttributes(), torch.randn(batch, 5, 4))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes


class ListIndex(torch.nn.Module):
    """Indexing with lists of ints: HF Falcon's fused_qkv[..., [-2]], a channel pick."""

    def forward(self, x):
        return x[..., [-2]] * x[:, [2, 0, 1]].sum(-1, keepdim=True)


@pytest.mark.parametrize("batch", [1, 2])
def test_indexing_with_lists_of_ints_takes_the_fast_path(batch):
    from xlate.record import record_of

    keras_model = _convert(ListIndex(), torch.randn(batch, 3, 4, 5))
    assert "traced by torch.fx (fast path)" in record_of(keras_model).notes

"""Tests for models/encoder.py (PESTO-style frame encoder).

Shapes: N frames, Q = 285 CQT bins, Q_out = 285 pitch logits, K = 20 harmonic amplitudes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sotddsp.model import encoder as encoder_module
from sotddsp.model.encoder import PESTOEncoder
from sotddsp.model.original_format import load_original_encoder_state

# The authors' encoder state_dict (SOT-2048 checkpoint), key -> shape, as listed in
# /work/shared/fixtures/original-run/state_dict_keys.txt.
ORIGINAL_SHAPES: dict[str, tuple[int, ...]] = {
    "abs_shift": (),
    "linear.frequency.0.weight": (1, 1, 1139),
    "linear.weights.0.weight": (20, 855),
    "linear.weights.0.bias": (20,),
    "layernorm.weight": (1, 285),
    "layernorm.bias": (1, 285),
    "conv1.0.weight": (40, 1, 15),
    "conv1.0.bias": (40,),
    "prefilt_list.0.0.weight": (40, 40, 15),
    "prefilt_list.0.0.bias": (40,),
    "conv2.0.weight": (30, 40, 1),
    "conv2.0.bias": (30,),
    "conv3.0.weight": (30, 30, 1),
    "conv3.0.bias": (30,),
    "conv4.0.weight": (10, 30, 1),
    "conv4.0.bias": (10,),
    "conv4.3.weight": (3, 10, 1),
    "conv4.3.bias": (3,),
}

# Independent statement of which of their tensors must land in which of our parameters.
EXPECTED_CORRESPONDENCE = {
    "layernorm.weight": "input_norm.weight",
    "layernorm.bias": "input_norm.bias",
    "conv1.0.weight": "input_conv.weight",
    "conv1.0.bias": "input_conv.bias",
    "prefilt_list.0.0.weight": "prefilter_convs.0.weight",
    "prefilt_list.0.0.bias": "prefilter_convs.0.bias",
    "conv2.0.weight": "pointwise_convs.0.weight",
    "conv2.0.bias": "pointwise_convs.0.bias",
    "conv3.0.weight": "pointwise_convs.1.weight",
    "conv3.0.bias": "pointwise_convs.1.bias",
    "conv4.0.weight": "pointwise_convs.2.weight",
    "conv4.0.bias": "pointwise_convs.2.bias",
    "conv4.3.weight": "output_conv.weight",
    "conv4.3.bias": "output_conv.bias",
    "linear.frequency.0.weight": "pitch_head.weight",
    "linear.weights.0.weight": "amplitude_head.weight",
    "linear.weights.0.bias": "amplitude_head.bias",
}


def random_original_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ORIGINAL_SHAPES.items():
        if key == "abs_shift":
            state[key] = torch.tensor(42, dtype=torch.int64)
        else:
            state[key] = 0.2 * torch.randn(shape, generator=g)
    return state


def reference_forward(
    w: dict[str, torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's encoder in eval mode, written out with functional ops on the authors' key names.

    x: (N, 285) -> (logits (N, 285), amplitudes (N, 20)).
    """
    h = x[:, None, :]
    mean = h.mean(dim=(1, 2), keepdim=True)
    var = h.var(dim=(1, 2), unbiased=False, keepdim=True)
    h = (h - mean) / torch.sqrt(var + 1e-5) * w["layernorm.weight"] + w["layernorm.bias"]
    h = F.leaky_relu(F.conv1d(h, w["conv1.0.weight"], w["conv1.0.bias"], padding=7), 0.3)
    h = h + F.leaky_relu(
        F.conv1d(h, w["prefilt_list.0.0.weight"], w["prefilt_list.0.0.bias"], padding=7), 0.3
    )
    h = F.leaky_relu(F.conv1d(h, w["conv2.0.weight"], w["conv2.0.bias"]), 0.3)
    h = F.leaky_relu(F.conv1d(h, w["conv3.0.weight"], w["conv3.0.bias"]), 0.3)
    h = F.leaky_relu(F.conv1d(h, w["conv4.0.weight"], w["conv4.0.bias"]), 0.3)
    h = F.conv1d(h, w["conv4.3.weight"], w["conv4.3.bias"])  # dropout is identity in eval
    flat = h.reshape(h.shape[0], -1)  # (N, 855), channel-major
    logits = F.conv1d(flat[:, None, :], w["linear.frequency.0.weight"], padding=284)[:, 0, :]
    z = flat @ w["linear.weights.0.weight"].T + w["linear.weights.0.bias"]
    amplitudes = 2.0 * torch.sigmoid(z) ** math.log(10.0) + 1e-7
    return logits, amplitudes


class ConvReference(nn.Module):
    """The encoder as plain nn.Conv1d layers (its first formulation), with PESTOEncoder's names.

    forward(x (N, Q), dropout_scale (N, c3, Q) or None) -> (logits (N, Q_out), amplitudes (N, K));
    dropout_scale multiplies the last 1x1 conv's input instead of nn.Dropout when given.
    """

    def __init__(self, n_bins_in: int = 285, n_harmonics: int = 20,
                 channels: Sequence[int] = (40, 30, 30, 10, 3), kernel_size: int = 15,
                 n_prefilter_layers: int = 2, leaky_relu_slope: float = 0.3,
                 dropout: float = 0.5, residual: bool = True, n_bins_out: int | None = None) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = channels
        pad = kernel_size // 2
        self.slope, self.residual = leaky_relu_slope, residual
        self.n_bins_out = n_bins_in if n_bins_out is None else n_bins_out
        self.input_norm = nn.LayerNorm((1, n_bins_in))
        self.input_conv = nn.Conv1d(1, c0, kernel_size, padding=pad)
        self.prefilter_convs = nn.ModuleList(
            nn.Conv1d(c0, c0, kernel_size, padding=pad) for _ in range(n_prefilter_layers - 1)
        )
        self.pointwise_convs = nn.ModuleList(
            [nn.Conv1d(c0, c1, 1), nn.Conv1d(c1, c2, 1), nn.Conv1d(c2, c3, 1)]
        )
        self.dropout = nn.Dropout(dropout)
        self.output_conv = nn.Conv1d(c3, c4, 1)
        n_features = c4 * n_bins_in
        self.pitch_head = nn.Conv1d(1, 1, n_features + self.n_bins_out - 1,
                                    padding=self.n_bins_out - 1, bias=False)
        self.amplitude_head = nn.Linear(n_features, n_harmonics)

    def forward(self, x: torch.Tensor, dropout_scale: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.input_norm(x.unsqueeze(1))
        h = F.leaky_relu(self.input_conv(h), self.slope)
        for conv in self.prefilter_convs:
            y = F.leaky_relu(conv(h), self.slope)
            h = h + y if self.residual else y
        for conv in self.pointwise_convs:
            h = F.leaky_relu(conv(h), self.slope)
        h = self.dropout(h) if dropout_scale is None else h * dropout_scale
        flat = self.output_conv(h).flatten(1)
        logits = self.pitch_head(flat.unsqueeze(1)).squeeze(1)
        amplitudes = 2.0 * torch.sigmoid(self.amplitude_head(flat)) ** math.log(10.0) + 1e-7
        return logits, amplitudes


def perturbed_pair(dtype: torch.dtype = torch.float64, device: str = "cpu", seed: int = 0,
                   **kwargs: object) -> tuple[PESTOEncoder, ConvReference]:
    """A PESTOEncoder with random parameters (LayerNorm and biases too) and the same as reference."""
    torch.manual_seed(seed)
    model = PESTOEncoder(**kwargs).to(device, dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    reference = ConvReference(**kwargs).to(device, dtype)
    reference.load_state_dict(model.state_dict(), strict=True)
    return model, reference


def outputs_and_grads(model: nn.Module, x: torch.Tensor, weights: Sequence[torch.Tensor],
                      **forward_kwargs: object) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Outputs of model(x) and the gradients of sum(weights * outputs) w.r.t. x and parameters."""
    x = x.detach().requires_grad_()
    outputs = model(x, **forward_kwargs)
    loss = sum((w * o.double()).sum() for w, o in zip(weights, outputs))
    names = [name for name, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, [x, *(p for _, p in model.named_parameters())])
    return list(outputs), dict(zip(["input", *names], grads))


def assert_matches(got: Sequence[torch.Tensor], expected: Sequence[torch.Tensor], rtol: float,
                   what: Sequence[str]) -> None:
    """max |got - expected| <= rtol * max |expected|, tensor by tensor."""
    for name, a, b in zip(what, got, expected):
        err = (a.double() - b.double()).abs().max().item()
        scale = b.double().abs().max().item()
        assert err <= rtol * scale, f"{name}: max error {err:.3g} > {rtol} * {scale:.3g}"


def compare_with_reference(model: PESTOEncoder, reference: ConvReference, x: torch.Tensor,
                           out_rtol: float, grad_rtol: float, dropout_p: float = 0.0) -> None:
    """Outputs and every gradient of model vs reference on the same input (and dropout mask)."""
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(x.shape[0], model.n_bins_out, generator=g, dtype=torch.float64),
               torch.randn(x.shape[0], model.n_harmonics, generator=g, dtype=torch.float64)]
    weights = [w.to(x.device) for w in weights]
    scale = None
    if dropout_p > 0.0:
        # the mask PESTOEncoder.features draws: torch.rand(N, c3, Q) >= p, scaled by 1 / (1 - p)
        torch.manual_seed(123)
        shape = (x.shape[0], model.pointwise_convs[-1].out_channels, model.n_bins_in)
        keep = torch.rand(shape, dtype=x.dtype, device=x.device) >= dropout_p
        scale = keep.to(x.dtype) / (1.0 - dropout_p)
        torch.manual_seed(123)
    outputs, grads = outputs_and_grads(model, x, weights)
    ref_x = x.to(reference.pitch_head.weight.dtype)
    ref_outputs, ref_grads = outputs_and_grads(reference, ref_x, weights, dropout_scale=scale)
    assert_matches(outputs, ref_outputs, out_rtol, ["logits", "amplitudes"])
    assert list(grads) == list(ref_grads)
    assert_matches(list(grads.values()), list(ref_grads.values()), grad_rtol, list(ref_grads))


SIZES = [
    {},
    {"n_prefilter_layers": 1},
    {"n_prefilter_layers": 3},
    {"residual": False},
    {"n_prefilter_layers": 3, "residual": False, "leaky_relu_slope": -0.2},
    {"n_bins_in": 48, "n_bins_out": 30, "n_harmonics": 5, "channels": (4, 3, 3, 2, 2),
     "kernel_size": 5, "n_prefilter_layers": 3},
    {"n_bins_in": 40, "n_bins_out": 57, "channels": (8, 6, 5, 4, 1), "kernel_size": 1},
]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few frames, so that small batches still take several (and a partial one)."""
    monkeypatch.setattr(encoder_module, "_CPU_CHUNK_ROWS", 1000)


@pytest.mark.parametrize("kwargs", SIZES,
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
@pytest.mark.parametrize("mode", ["eval", "train-no-dropout"])
def test_matches_conv1d_reference_float64(small_chunks: None, kwargs: dict, mode: str) -> None:
    """Outputs to 1e-5 and all gradients (input, every parameter) to 1e-4, in float64."""
    model, reference = perturbed_pair(**kwargs, dropout=0.5 if mode == "eval" else 0.0)
    model.train(mode != "eval")
    reference.train(mode != "eval")
    x = 3.0 * torch.rand(13, model.n_bins_in, dtype=torch.float64)
    compare_with_reference(model, reference, x, out_rtol=1e-5, grad_rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, SIZES[5]], ids=["defaults", "small"])
def test_train_mode_with_shared_dropout_mask_matches_reference(small_chunks: None,
                                                               kwargs: dict) -> None:
    model, reference = perturbed_pair(**kwargs, dropout=0.3)
    model.train()
    reference.train()
    x = torch.rand(13, model.n_bins_in, dtype=torch.float64)
    compare_with_reference(model, reference, x, out_rtol=1e-5, grad_rtol=1e-4, dropout_p=0.3)


@pytest.mark.parametrize("chunk_rows", [1, 300, 10**9])
def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> None:
    """1 frame per chunk, about one, and the whole batch in one chunk."""
    monkeypatch.setattr(encoder_module, "_CPU_CHUNK_ROWS", chunk_rows)
    model, reference = perturbed_pair(n_prefilter_layers=3)
    model.train()
    reference.train()
    x = torch.rand(9, 285, dtype=torch.float64)
    compare_with_reference(model, reference, x, out_rtol=1e-5, grad_rtol=1e-4, dropout_p=0.5)


@pytest.mark.parametrize("mode", ["eval", "train-no-dropout"])
def test_float32_matches_float64_reference(mode: str) -> None:
    """The float32 path (oneDNN convs, MKL matmuls on CPU) against the float64 reference.

    Gradients are compared with identity activations (slope 1): with kinks, a pre-activation
    within float32 rounding of 0 takes the other branch in float64 (the float32 reference differs
    as much); the branches themselves are tested in float64 above.
    """
    dropout = 0.5 if mode == "eval" else 0.0
    for slope, grad_rtol in ((0.3, math.inf), (1.0, 1e-4)):
        model, reference = perturbed_pair(dtype=torch.float32, dropout=dropout,
                                          leaky_relu_slope=slope)
        reference.double()
        model.train(mode != "eval")
        reference.train(mode != "eval")
        x = 3.0 * torch.rand(64, 285)
        compare_with_reference(model, reference, x, out_rtol=1e-4, grad_rtol=grad_rtol)


def relative_errors(model: nn.Module, x: torch.Tensor, weights: Sequence[torch.Tensor]
                    ) -> dict[str, float]:
    """|bf16 - fp32| / |fp32| (norms) of outputs and gradients, bf16 under CPU autocast."""
    outputs, grads = outputs_and_grads(model, x, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf_outputs, bf_grads = outputs_and_grads(model, x, weights)
    assert all(o.dtype == torch.bfloat16 for o in bf_outputs)
    assert all(bf_grads[k].dtype == grads[k].dtype for k in grads)
    pairs = {"logits": (bf_outputs[0], outputs[0]), "amplitudes": (bf_outputs[1], outputs[1]),
             **{k: (bf_grads[k], grads[k]) for k in grads}}
    return {k: ((a.float() - b).norm() / b.norm()).item() for k, (a, b) in pairs.items()}


def test_bfloat16_autocast_is_as_accurate_as_autocast_on_the_reference() -> None:
    """Under CPU autocast the encoder runs in bfloat16 (outputs within 1 %), parameter gradients
    stay float32; their errors are those of autocast on the plain nn.Conv1d formulation."""
    torch.manual_seed(0)
    model = PESTOEncoder(dropout=0.0)
    reference = ConvReference(dropout=0.0)
    reference.load_state_dict(model.state_dict())
    x = 3.0 * torch.rand(64, 285)
    weights = [torch.randn(64, 285, dtype=torch.float64), torch.randn(64, 20, dtype=torch.float64)]
    errors = relative_errors(model, x, weights)
    ref_errors = relative_errors(reference, x, weights)
    assert errors["logits"] < 1e-2 and errors["amplitudes"] < 1e-2, errors
    for name, err in errors.items():
        assert err <= 1.5 * ref_errors[name] + 1e-3, (name, err, ref_errors[name])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_reference(dtype: torch.dtype) -> None:
    model, reference = perturbed_pair(dtype=dtype, device="cuda", dropout=0.0)
    reference.double()
    model.train()
    reference.train()
    x = 3.0 * torch.rand(40, 285, dtype=dtype, device="cuda")
    compare_with_reference(model, reference, x, out_rtol=1e-5, grad_rtol=1e-4)


def test_toeplitz_kernel_gradient_is_sum_along_diagonals() -> None:
    torch.manual_seed(5)
    x = torch.randn(6, 855, dtype=torch.float64)
    kernel = torch.randn(1, 1, 1139, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 285, dtype=torch.float64)
    (grad,) = torch.autograd.grad((encoder_module.toeplitz_linear(x, kernel, 285) * g).sum(), kernel)
    (expected,) = torch.autograd.grad(
        (F.conv1d(x[:, None, :], kernel, padding=284)[:, 0, :] * g).sum(), kernel)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


def test_inference_under_no_grad_matches_grad_mode() -> None:
    model, _ = perturbed_pair(dtype=torch.float32)
    model.eval()
    x = torch.rand(30, 285)
    with torch.no_grad():
        a = model(x)
    b = model(x)
    for u, v in zip(a, b):
        assert torch.equal(u, v.detach())


def test_paper_parameter_count() -> None:
    model = PESTOEncoder()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_trainable == 46_012


def test_output_shapes_and_amplitude_range() -> None:
    torch.manual_seed(0)
    model = PESTOEncoder()
    x = torch.rand(7, 285)  # (N, Q) CQT magnitudes
    logits, amplitudes = model(x)
    assert logits.shape == (7, 285) and logits.dtype == torch.float32
    assert amplitudes.shape == (7, 20)
    assert torch.all(amplitudes > 1e-7) and torch.all(amplitudes <= 2.0 + 1e-7)

    small = PESTOEncoder(n_bins_in=48, n_bins_out=30, n_harmonics=5, channels=[4, 3, 3, 2, 2],
                         kernel_size=5, n_prefilter_layers=3)
    logits, amplitudes = small(torch.rand(3, 48))
    assert logits.shape == (3, 30) and amplitudes.shape == (3, 5)
    assert len(small.prefilter_convs) == 2


def test_exp_sigmoid_extremes() -> None:
    model = PESTOEncoder()
    with torch.no_grad():
        model.amplitude_head.weight.zero_()
        model.amplitude_head.bias.copy_(torch.linspace(-30.0, 30.0, 20))
    _, amplitudes = model.eval()(torch.rand(2, 285))
    expected = 2.0 * torch.sigmoid(torch.linspace(-30.0, 30.0, 20)) ** math.log(10.0) + 1e-7
    torch.testing.assert_close(amplitudes, expected.expand(2, 20))
    assert amplitudes[0, 0] < 1e-6 and abs(amplitudes[0, -1].item() - 2.0) < 1e-6


def test_channels_argument_not_mutated() -> None:
    channels = [40, 30, 30, 10, 3]
    PESTOEncoder(channels=channels)
    assert channels == [40, 30, 30, 10, 3]


def test_toeplitz_head_equals_matrix_multiply() -> None:
    torch.manual_seed(1)
    model = PESTOEncoder()
    kernel = model.pitch_head.weight.detach().numpy().reshape(-1).astype(np.float64)  # (1139,)
    n_in, n_out = 855, 285
    assert kernel.shape == (n_in + n_out - 1,)
    i = np.arange(n_in)[:, None]
    j = np.arange(n_out)[None, :]
    matrix = kernel[i - j + n_out - 1]  # (855, 285), constant along diagonals
    features = torch.randn(4, n_in)
    expected = features.double().numpy() @ matrix  # (4, 285)
    got = model.pitch_head(features).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout() -> None:
    torch.manual_seed(2)
    model = PESTOEncoder()
    x = torch.rand(5, 285)
    model.eval()
    a1, b1 = model(x)
    a2, b2 = model(x)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    model.train()
    t1, _ = model(x)
    t2, _ = model(x)
    assert not torch.equal(t1, t2)


def test_original_state_round_trip() -> None:
    original = random_original_state()
    mapped = load_original_encoder_state(original)
    model = PESTOEncoder()
    model.load_state_dict(mapped, strict=True)
    ours = model.state_dict()
    assert set(ours) == set(EXPECTED_CORRESPONDENCE.values())
    for theirs, our_key in EXPECTED_CORRESPONDENCE.items():
        assert torch.equal(ours[our_key], original[theirs]), our_key


def test_original_state_with_lightning_prefix() -> None:
    original = random_original_state(3)
    full = {f"encoder.{k}": v for k, v in original.items()}
    full["feature_extractor.cqt.lenghts"] = torch.ones(285)  # not the encoder's: ignored
    mapped = load_original_encoder_state(full)
    assert mapped == load_original_encoder_state(original)


def test_original_weights_reproduce_reference_forward() -> None:
    original = random_original_state(4)
    model = PESTOEncoder()
    model.load_state_dict(load_original_encoder_state(original), strict=True)
    model.eval()
    x = torch.rand(6, 285) * 3.0
    with torch.no_grad():
        logits, amplitudes = model(x)
        ref_logits, ref_amplitudes = reference_forward(original, x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(amplitudes, ref_amplitudes, rtol=1e-4, atol=1e-6)


def test_original_state_bad_keys_raise_one_line() -> None:
    original = random_original_state()
    missing = {k: v for k, v in original.items() if k != "conv3.0.bias"}
    with pytest.raises(ValueError, match="conv3.0.bias") as info:
        load_original_encoder_state(missing)
    assert "\n" not in str(info.value)
    unknown = dict(original, **{"conv9.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="conv9.0.weight") as info:
        load_original_encoder_state(unknown)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"channels": (40, 30, 30, 10)}, "channels"),
        ({"channels": (40, 30, 0, 10, 3)}, "channels"),
        ({"kernel_size": 14}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"n_bins_in": 0}, "n_bins_in"),
        ({"n_bins_out": -3}, "n_bins_out"),
        ({"n_harmonics": 0}, "n_harmonics"),
        ({"n_prefilter_layers": 0}, "n_prefilter_layers"),
    ],
)
def test_bad_sizes_raise(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        PESTOEncoder(**kwargs)
    assert "\n" not in str(info.value)


def test_wrong_input_shape_raises() -> None:
    with pytest.raises(ValueError, match="cqt_frames"):
        PESTOEncoder()(torch.rand(2, 1, 285))

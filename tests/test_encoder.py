"""Tests for models/encoder.py (PESTO-style frame encoder).

Shapes: N frames, Q = 285 CQT bins, Q_out = 285 pitch logits, K = 20 harmonic amplitudes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.encoder import PESTOEncoder, load_original_encoder_state

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

"""The paper authors' release format, read without their code: their configs, their pickles
and their weight names. checkpoints.py reads their checkpoints through it.

Their runs are laid out like ours (``checkpoints/<experiment>/<run>/train_config.yaml`` and
``checkpoints/<experiment>/<run>/checkpoints/*.ckpt``) but differ in three ways:

- ``train_config.yaml`` is a Lightning 1.x config of their classes (``encoder.PESTOEncoder``,
  ``synths.Sinusoidal``, ``losses.MixOfLosses``, ``losses.MSSLoss``, ``losses.Wasserstein1D``).
  :func:`translate_config` turns it into a config of our classes that
  ``cli.build_cli`` accepts; anything we cannot reproduce raises
  :class:`OriginalFormatError` (one line).
- Their checkpoints pickle their encoder, decoder and loss objects in ``hyper_parameters``,
  so ``torch.load`` fails without their modules. :func:`restricted_torch_load` unpickles with
  :class:`RestrictedUnpickler`, which replaces every class from an unknown module by an inert
  stub.
- Their encoder's parameters have other names: :func:`original_encoder_state` renames them
  onto ours (``ORIGINAL_KEY_MAP``).
"""

from __future__ import annotations

import builtins
import importlib
import io
import math
import pickle
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from sotddsp.core.class_paths import normalize_class_path
from sotddsp.dsp.spectral import cqt_n_bins

__all__ = [
    "ORIGINAL_KEY_MAP",
    "OriginalFormatError",
    "RestrictedUnpickler",
    "StubObject",
    "compare_feature_buffers",
    "is_original_config",
    "original_encoder_state",
    "restricted_pickle",
    "restricted_torch_load",
    "translate_config",
    "write_translated_config",
]

ORIGINAL_ENCODER = "encoder.PESTOEncoder"
ORIGINAL_DECODER = "synths.Sinusoidal"
ORIGINAL_MIXTURE = "losses.MixOfLosses"
ORIGINAL_MSS = "losses.MSSLoss"
ORIGINAL_SOT = "losses.Wasserstein1D"
# Their data module's class path (also the name ours had before it moved to datamodule.py).
ORIGINAL_DATA_MODULE = "synthetic_data.PreloadedSinusoidDataModule"
# Our classes, as translated configs name them.
DATA_MODULE = "sotddsp.data.datamodule.PreloadedSinusoidDataModule"
ENCODER = "sotddsp.model.encoder.PESTOEncoder"
FEATURES = "sotddsp.dsp.spectral.CQT"
SYNTH = "sotddsp.dsp.synth.HarmonicSynth"
MSS = "sotddsp.dsp.losses.MultiScaleSpectralLoss"
SOT = "sotddsp.dsp.losses.SpectralOTLoss"
MIXTURE = "sotddsp.dsp.losses.LossMixture"
DEFAULT_MSS_SIZES = [2048, 1024, 512, 256, 128, 64]


class OriginalFormatError(ValueError):
    """The authors' config or checkpoint holds something we cannot reproduce (one line)."""


# ----------------------------------------------------------------------------------------------
# Config translation
# ----------------------------------------------------------------------------------------------

def is_original_config(config: Mapping[str, Any]) -> bool:
    """True for the authors' Lightning 1.x config: their encoder class path or a ``loss_fn`` key."""
    model = config.get("model")
    if not isinstance(model, Mapping):
        return False
    encoder = model.get("encoder")
    encoder_class = encoder.get("class_path") if isinstance(encoder, Mapping) else None
    return encoder_class == ORIGINAL_ENCODER or "loss_fn" in model


def _section(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    if not isinstance(value, Mapping):
        raise OriginalFormatError(f"the authors' config has no mapping at {where}.{key}")
    return value


def _component(
    mapping: Mapping[str, Any], key: str, where: str, expected: str
) -> Mapping[str, Any]:
    """init_args of ``mapping[key]`` after checking its class_path is ``expected``."""
    spec = _section(mapping, key, where)
    if spec.get("class_path") != expected:
        raise OriginalFormatError(
            f"{where}.{key}.class_path is {spec.get('class_path')!r}; only {expected!r} can be "
            "translated"
        )
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise OriginalFormatError(f"{where}.{key}.init_args must be a mapping")
    return init_args


def _require(args: Mapping[str, Any], where: str, key: str, allowed: tuple[Any, ...]) -> None:
    """Options whose other values change the model in ways we do not implement."""
    if key in args and args[key] not in allowed:
        raise OriginalFormatError(
            f"{where}.{key} = {args[key]!r} is not supported (only {list(allowed)}); "
            "this run cannot be reproduced by our code"
        )


def _required_value(args: Mapping[str, Any], where: str, key: str) -> Any:
    if key not in args:
        raise OriginalFormatError(f"the authors' config lacks {where}.{key}")
    return args[key]


def _translate_mss(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    _require(args, where, "loss_type", ("L1",))
    return {
        "class_path": MSS,
        "init_args": {
            "fft_sizes": [int(s) for s in _required_value(args, where, "fft_sizes")],
            "mag_weight": float(args.get("mag_weight", 1.0)),
            "logmag_weight": float(args.get("logmag_weight", 0.0)),
        },
    }


def _translate_sot(args: Mapping[str, Any], transform: Mapping[str, Any], where: str,
                   sample_rate: int) -> dict[str, Any]:
    # Options we reproduce as the paper ran them; other values would be another loss.
    _require(args, where, "cumsum_only", (False,))
    _require(args, where, "hinge", (False,))
    _require(args, where, "fixed_x", (None,))
    _require(args, where, "require_sort", (True,))
    _require(transform, "model.transform", "type", ("stft",))
    _require(transform, "model.transform", "log", (False,))
    # transform.center and output_format are not translated: PAPER.md fixes the SOT front end
    # (not centered, end-padded, power spectrum).
    return {
        "class_path": SOT,
        "init_args": {
            "n_fft": int(_required_value(transform, "model.transform", "n_fft")),
            "hop_length": int(_required_value(transform, "model.transform", "hop_length")),
            "window": str(transform.get("window", "flattop")),
            "power": True,
            "log_frequency": bool(args.get("log_scaled_x", False)),
            "cutoff": bool(args.get("limit_quantile_range", True)),
            "p": float(args.get("p", 2.0)),
            "sample_rate": sample_rate,
        },
    }


def _term_name(loss: Mapping[str, Any]) -> str:
    """Term names as in paper-experiments/*.yaml: sot, mss_lin, mss_<size>, mss."""
    init = loss["init_args"]
    if loss["class_path"] == SOT:
        return "sot"
    if init["logmag_weight"] == 0.0 and init["fft_sizes"] == DEFAULT_MSS_SIZES:
        return "mss_lin"
    if len(init["fft_sizes"]) == 1:
        return f"mss_{init['fft_sizes'][0]}"
    return "mss"


def _translate_loss(model: Mapping[str, Any], sample_rate: int) -> dict[str, Any]:
    """Their loss_fn (MSSLoss, Wasserstein1D or a MixOfLosses of them) -> our loss spec."""
    spec = _section(model, "loss_fn", "model")
    transform = model.get("transform") or {}
    if not isinstance(transform, Mapping):
        raise OriginalFormatError("model.transform must be a mapping")

    def one(loss_spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        class_path = loss_spec.get("class_path")
        args = loss_spec.get("init_args") or {}
        if class_path == ORIGINAL_MSS:
            return _translate_mss(args, where)
        if class_path == ORIGINAL_SOT:
            return _translate_sot(args, transform, where, sample_rate)
        raise OriginalFormatError(
            f"{where}.class_path is {class_path!r}; only {ORIGINAL_MSS!r}, {ORIGINAL_SOT!r} "
            f"and {ORIGINAL_MIXTURE!r} can be translated"
        )

    if spec.get("class_path") != ORIGINAL_MIXTURE:
        return one(spec, "model.loss_fn")
    init = spec.get("init_args") or {}
    losses = init.get("losses") or []
    weights = init.get("weights")
    if weights is None:
        weights = [1.0] * len(losses)
    if not losses or len(weights) != len(losses):
        raise OriginalFormatError(
            f"model.loss_fn has {len(losses)} losses and {len(weights)} weights; they must match"
        )
    translated = [one(loss, f"model.loss_fn.init_args.losses[{i}]")
                  for i, loss in enumerate(losses)]
    if len(translated) == 1 and float(weights[0]) == 1.0:
        return translated[0]
    terms: dict[str, Any] = {}
    term_weights: dict[str, float] = {}
    for loss, weight in zip(translated, weights):
        name = _term_name(loss)
        unique, k = name, 2
        while unique in terms:
            unique, k = f"{name}_{k}", k + 1
        terms[unique] = loss
        term_weights[unique] = float(weight)
    # the SOT term first, as in paper-experiments/*.yaml
    order = sorted(terms, key=lambda n: not n.startswith("sot"))
    return {
        "class_path": MIXTURE,
        "init_args": {"terms": {n: terms[n] for n in order},
                      "weights": {n: term_weights[n] for n in order}},
    }


def translate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the authors' ``train_config.yaml`` (parsed) into a config of our classes.

    Maps encoder sizes (n_chan_layers -> channels, kernel_size, n_prefilt_layers, a_lrelu,
    n_modes -> n_harmonics, n_bins_in, output_size), temperature, the CQT (fmin,
    bins_per_semitone, hop_length), the decoder (n_samples, apply_roll_off -> roll_off),
    the loss (MixOfLosses -> LossMixture; MSSLoss -> MultiScaleSpectralLoss; Wasserstein1D ->
    SpectralOTLoss with limit_quantile_range -> cutoff, log_scaled_x -> log_frequency, p, and
    n_fft / hop_length / window from model.transform), optimizer, data path and batch size,
    sample_rate, trainer step limits, ``experiment`` from ``group`` and ``seed_everything``.
    Returns a dict that, dumped as YAML, ``cli.build_cli(["--config", file])`` accepts
    (paper-experiments/base.yaml supplies everything else). Raises OriginalFormatError.
    """
    if not is_original_config(config):
        raise OriginalFormatError(
            "not the authors' config format (no encoder.PESTOEncoder / loss_fn)"
        )
    model = _section(config, "model", "")
    sample_rate = int(config.get("sample_rate", 16000))

    enc = _component(model, "encoder", "model", ORIGINAL_ENCODER)
    _require(enc, "model.encoder.init_args", "activation_fn", ("leaky",))
    _require(enc, "model.encoder.init_args", "estimation_type", ("soft-argmax",))
    _require(enc, "model.encoder.init_args", "harmonic", (True,))
    _require(enc, "model.encoder.init_args", "n_chan_input", (1,))
    _require(enc, "model.encoder.init_args", "num_output_layers", (1,))
    if enc.get("output_splits", ["frequency", "weights"]) != ["frequency", "weights"]:
        raise OriginalFormatError(
            f"model.encoder.init_args.output_splits = {enc['output_splits']!r} is not supported "
            "(only ['frequency', 'weights'])"
        )

    dec = _component(model, "decoder", "model", ORIGINAL_DECODER)
    _require(dec, "model.decoder.init_args", "harmonic", (True,))
    _require(dec, "model.decoder.init_args", "amp_resample_method", ("window",))
    _require(dec, "model.decoder.init_args", "amp_scale_fn", (None,))
    _require(dec, "model.decoder.init_args", "freq_scale_fn", (None,))
    _require(model, "model", "baseline_gt_pitch", (False,))
    _require(model, "model", "freq_hz_min", ("auto",))
    _require(model, "model", "freq_hz_max", ("auto",))

    fe = _section(model, "feature_extractor", "model")
    _require(fe, "model.feature_extractor", "type", ("cqt",))
    _require(fe, "model.feature_extractor", "center", (True,))
    _require(fe, "model.feature_extractor", "log", (False,))
    _require(fe, "model.feature_extractor", "pad_mode", ("constant",))
    fmin = float(fe.get("fmin", 32.7))
    bins_per_semitone = int(fe.get("bins_per_semitone", 3))
    n_bins_in = int(enc.get("n_bins_in", cqt_n_bins(sample_rate, fmin, bins_per_semitone)))
    fe_bins = fe.get("n_bins", "auto")
    if fe_bins not in ("auto", None) and int(fe_bins) != n_bins_in:
        raise OriginalFormatError(
            f"model.feature_extractor.n_bins ({fe_bins}) differs from the encoder's n_bins_in "
            f"({n_bins_in})"
        )
    auto_bins = cqt_n_bins(sample_rate, fmin, bins_per_semitone)
    output_size = int(enc.get("output_size", n_bins_in))

    features = {
        "sample_rate": sample_rate,
        "fmin": fmin,
        "bins_per_semitone": bins_per_semitone,
        "n_bins": None if n_bins_in == auto_bins else n_bins_in,
        "hop_length": int(fe.get("hop_length", 256)),
    }
    encoder = {
        "n_harmonics": int(_required_value(enc, "model.encoder.init_args", "n_modes")),
        "channels": [int(c) for c in
                     _required_value(enc, "model.encoder.init_args", "n_chan_layers")],
        "kernel_size": int(enc.get("kernel_size", 15)),
        "n_prefilter_layers": int(enc.get("n_prefilt_layers", 2)),
        "leaky_relu_slope": float(enc.get("a_lrelu", 0.3)),
        "residual": bool(enc.get("residual", True)),
        "n_bins_out": None if output_size == n_bins_in else output_size,
    }
    synth = {
        "n_samples": int(dec.get("n_samples", 4096)),
        "roll_off": bool(dec.get("apply_roll_off", False)),
    }
    temperature = float(model.get("temperature", 0.1))
    if not (math.isfinite(temperature) and temperature > 0):
        raise OriginalFormatError(f"model.temperature must be > 0, got {temperature!r}")

    ours: dict[str, Any] = {
        "experiment": str(config.get("group") or config.get("name") or "original"),
        "seed_everything": int(config.get("seed_everything", 42)),
        "model": {
            "encoder": {"class_path": ENCODER, "init_args": encoder},
            "features": {"class_path": FEATURES, "init_args": features},
            "synth": {"class_path": SYNTH, "init_args": synth},
            "loss": _translate_loss(model, sample_rate),
            "temperature": temperature,
        },
    }
    optimizer = model.get("optimizer_init")
    if isinstance(optimizer, Mapping) and optimizer.get("class_path"):
        ours["model"]["optimizer"] = {
            "class_path": str(optimizer["class_path"]),
            "init_args": dict(optimizer.get("init_args") or {}),
        }

    data = config.get("data") or {}
    if normalize_class_path(str(data.get("class_path", ORIGINAL_DATA_MODULE))) != DATA_MODULE:
        raise OriginalFormatError(
            f"data.class_path is {data.get('class_path')!r}; only {ORIGINAL_DATA_MODULE!r} can be "
            "translated"
        )
    data_args: dict[str, Any] = {"sample_rate": sample_rate}
    init_args = data.get("init_args") or {}
    if "data_path" in init_args:
        data_args["data_path"] = str(init_args["data_path"])
    if "batch_size" in config:
        data_args["batch_size"] = int(config["batch_size"])
    ours["data"] = {"class_path": DATA_MODULE, "init_args": data_args}

    trainer = config.get("trainer") or {}
    ours["trainer"] = {
        key: trainer[key]
        for key in ("max_steps", "max_epochs", "check_val_every_n_epoch", "log_every_n_steps")
        if trainer.get(key) is not None
    }
    return ours


def write_translated_config(config: Mapping[str, Any], directory: str | Path) -> Path:
    """Translate the authors' config and write it to ``directory/train_config.yaml``.

    ``directory`` must be ours (a temporary directory), never inside the authors' tree.
    Returns the written path.
    """
    path = Path(directory) / "train_config.yaml"
    path.write_text(
        "# translated by original_format.py from the paper authors' train_config.yaml\n"
        + yaml.safe_dump(translate_config(config), sort_keys=False)
    )
    return path


# ----------------------------------------------------------------------------------------------
# Their encoder's parameter names
# ----------------------------------------------------------------------------------------------

# The authors' encoder state_dict keys -> ours. "{i}" is a prefilter layer index.
ORIGINAL_KEY_MAP: dict[str, str] = {
    "layernorm.weight": "input_norm.weight",
    "layernorm.bias": "input_norm.bias",
    "conv1.0.weight": "input_conv.weight",
    "conv1.0.bias": "input_conv.bias",
    "prefilt_list.{i}.0.weight": "prefilter_convs.{i}.weight",
    "prefilt_list.{i}.0.bias": "prefilter_convs.{i}.bias",
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
# Authors' keys with no counterpart here (PESTO's integer pitch-shift buffer, unused by the paper).
ORIGINAL_DROPPED_KEYS: frozenset[str] = frozenset({"abs_shift"})
_ORIGINAL_PREFIX = "encoder."
_PREFILTER_KEY = re.compile(r"prefilt_list\.(\d+)\.0\.(weight|bias)")


def load_original_encoder_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the paper authors' encoder state_dict onto :class:`PESTOEncoder`'s names.

    state_dict: the authors' encoder keys (see ``ORIGINAL_KEY_MAP``), either bare
    (``conv1.0.weight``) or as in their LightningModule (``encoder.conv1.0.weight``; then keys
    without the ``encoder.`` prefix, e.g. the CQT kernels, are ignored). ``abs_shift`` is dropped.
    Returns a new dict {our key: the same tensor}, ready for ``load_state_dict(strict=True)``.
    Raises ValueError (one line) listing unknown or missing keys.
    """
    if any(k.startswith(_ORIGINAL_PREFIX) for k in state_dict):
        items = {k[len(_ORIGINAL_PREFIX):]: v for k, v in state_dict.items()
                 if k.startswith(_ORIGINAL_PREFIX)}
    else:
        items = dict(state_dict)

    prefilter_indices = set()
    unknown = []
    for key in items:
        match = _PREFILTER_KEY.fullmatch(key)
        if match:
            prefilter_indices.add(int(match.group(1)))
        elif key not in ORIGINAL_KEY_MAP and key not in ORIGINAL_DROPPED_KEYS:
            unknown.append(key)

    n_prefilter = max(prefilter_indices) + 1 if prefilter_indices else 0
    expected = []
    for theirs in ORIGINAL_KEY_MAP:
        if "{i}" in theirs:
            expected += [theirs.format(i=i) for i in range(n_prefilter)]
        else:
            expected.append(theirs)
    missing = [k for k in expected if k not in items]
    if unknown or missing:
        raise ValueError(
            f"state_dict does not match the authors' PESTO encoder: unknown keys "
            f"{sorted(unknown)}, missing keys {missing}; pass the 'encoder.*' entries of their "
            "checkpoint's state_dict"
        )

    mapped: dict[str, Tensor] = {}
    for theirs, ours in ORIGINAL_KEY_MAP.items():
        if "{i}" in theirs:
            for i in range(n_prefilter):
                mapped[ours.format(i=i)] = items[theirs.format(i=i)]
        else:
            mapped[ours] = items[theirs]
    return mapped


# ----------------------------------------------------------------------------------------------
# Checkpoint loading without the authors' code
# ----------------------------------------------------------------------------------------------

class StubObject:
    """Stands in for any object of a class the restricted unpickler does not allow.

    It accepts whatever pickle hands it (constructor arguments, state, list or dict items)
    and keeps none of it, so nothing of the original object survives or runs.
    """

    # pickle calls cls(*args), cls.__new__(cls, *args, **kwargs), then __setstate__/append/
    # extend/__setitem__ with arbitrary values; a stub must take them all.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<stub of {type(self).__module__}.{type(self).__qualname__}>"


_STUB_CLASSES: dict[tuple[str, str], type] = {}

_SAFE_BUILTINS = frozenset({
    "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
    "object", "range", "set", "slice", "str", "tuple",
})
_SAFE_COLLECTIONS = frozenset({"OrderedDict", "defaultdict", "deque", "Counter"})
_TORCH_CONSTANT_TYPES = (torch.dtype, torch.device, torch.layout, torch.memory_format)
# Classes whose construction only builds tensors or modules in memory (no files, no imports).
_TORCH_SAFE_BASES = (torch.Tensor, torch.nn.Module, torch.Size, torch.device,
                     torch.storage.TypedStorage, torch.UntypedStorage)
_NUMPY_MODULES = frozenset({"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                            "numpy.core.numeric", "numpy._core.numeric"})
_NUMPY_NAMES = frozenset({"ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer"})


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(name, (StubObject,), {"__module__": f"stub:{module}"})
    return _STUB_CLASSES[key]


def _allowed_global(module: str, name: str) -> Any | None:
    """The real object for an allowed (module, name), else None.

    Allowed: builtin container and scalar types; collections' dict/deque types; from torch,
    tensor, module, size and storage classes, dtype/device/layout constants and the
    ``_rebuild*`` tensor helpers; from numpy, ndarray, dtype (and ``numpy.dtypes`` classes)
    and the array/scalar reconstructors; ``_codecs.encode`` (numpy's byte payloads). Only
    modules of these installed libraries are ever imported.
    """
    if module == "builtins":
        return getattr(builtins, name) if name in _SAFE_BUILTINS else None
    if module == "collections":
        return getattr(importlib.import_module("collections"), name) \
            if name in _SAFE_COLLECTIONS else None
    if module == "_codecs":
        return importlib.import_module("_codecs").encode if name == "encode" else None
    if module in _NUMPY_MODULES and name not in _NUMPY_NAMES:
        return None
    if not (module == "torch" or module.startswith("torch.") or module in _NUMPY_MODULES
            or module == "numpy.dtypes"):
        return None
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    if module in _NUMPY_MODULES:
        return obj
    if module == "numpy.dtypes":
        numpy_dtype = importlib.import_module("numpy").dtype
        return obj if isinstance(obj, type) and issubclass(obj, numpy_dtype) else None
    if isinstance(obj, _TORCH_CONSTANT_TYPES):
        return obj
    if isinstance(obj, type) and issubclass(obj, _TORCH_SAFE_BASES):
        return obj
    if module in ("torch._utils", "torch._tensor") and name.startswith("_rebuild"):
        return obj
    if (module, name) == ("torch.serialization", "_get_layout"):  # sparse tensors' layout
        return obj
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that never imports or runs code outside an allowlist.

    Why this is safe enough: a pickle can only run code by naming a global (GLOBAL /
    STACK_GLOBAL -> ``find_class``) and calling it. Here every global outside the allowlist of
    :func:`_allowed_global` (builtin types, collections, torch tensor/module classes and tensor
    rebuilders, numpy arrays) resolves to an inert :class:`StubObject` subclass, so the
    authors' modules (``encoder``, ``synths``, ``losses``, ``pytorch_lightning``, ...) are
    never imported and functions such as ``eval``, ``exec``, ``os.system`` or ``getattr``
    can never be reached.
    Lightning's own classes are stubbed too: the checkpoint names ``pytorch_lightning``
    (1.x), which is not installed, and nothing we read needs them. The stubs appear only
    inside ``hyper_parameters`` (their pickled encoder, decoder and loss objects) and other
    bookkeeping we never read: the model is rebuilt from train_config.yaml and only
    ``state_dict``, ``epoch`` and ``global_step`` are used. It is not a sandbox for hostile
    files (a tensor or module can still be built with chosen arguments); it is meant for
    checkpoints the user chose to evaluate. ``stubbed`` records every replaced global.
    """

    def __init__(self, file: io.IOBase, encoding: str = "ASCII", errors: str = "strict") -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        self.stubbed: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_global(module, name)
        if obj is not None:
            return obj
        self.stubbed.add(f"{module}.{name}")
        return _stub_class(module, name)


def _pickle_module(unpickler: type[RestrictedUnpickler]) -> types.ModuleType:
    """A module usable as ``torch.load(pickle_module=...)`` that unpickles with ``unpickler``."""
    module = types.ModuleType("restricted_pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]

    def load(file: io.IOBase, encoding: str = "ASCII", errors: str = "strict") -> Any:
        return unpickler(file, encoding=encoding, errors=errors).load()

    module.load = load  # type: ignore[attr-defined]
    return module


restricted_pickle = _pickle_module(RestrictedUnpickler)


def restricted_torch_load(path: str | Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``torch.load`` of a checkpoint on CPU through :class:`RestrictedUnpickler`.

    Returns (the checkpoint dict, with stubs where unknown classes were, the sorted names of
    the stubbed globals). Raises OriginalFormatError if the file is not a dict checkpoint.
    Torch's own errors (truncated or corrupt file) propagate.
    """
    stubbed: set[str] = set()

    class _Recording(RestrictedUnpickler):
        def __init__(
            self, file: io.IOBase, encoding: str = "ASCII", errors: str = "strict"
        ) -> None:
            super().__init__(file, encoding=encoding, errors=errors)
            self.stubbed = stubbed

    checkpoint = torch.load(path, map_location="cpu", pickle_module=_pickle_module(_Recording),
                            weights_only=False)
    if not isinstance(checkpoint, dict):
        raise OriginalFormatError(
            f"{path}: not a Lightning checkpoint (a {type(checkpoint).__name__})"
        )
    return checkpoint, tuple(sorted(stubbed))


def original_encoder_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Their ``encoder.*`` weights renamed for our ``PESTOEncoder.load_state_dict(strict=True)``.

    Keys outside ``encoder.`` (their CQT kernels, recomputed by our front end) are ignored.
    Raises ValueError (one line) on missing or unknown encoder keys.
    """
    return load_original_encoder_state(
        {k: v for k, v in state_dict.items() if k.startswith("encoder.")}
    )


FEATURE_PREFIX = "feature_extractor."


def compare_feature_buffers(
    state_dict: Mapping[str, Tensor], features: torch.nn.Module, rtol: float = 1e-4
) -> dict[str, bool]:
    """Check their stored CQT kernels (``feature_extractor.*``) against our front end's buffers.

    features: our CQT module; its (non-persistent) buffers are looked up by the same name
    without the prefix (``cqt.cqt_kernels_real`` ...). A buffer matches when the shapes agree
    and max |theirs - ours| <= rtol * max |ours|. Returns {their key: matches}; keys without
    a counterpart here are reported as False. Empty when the checkpoint holds no kernels.
    """
    ours = dict(features.named_buffers())
    result: dict[str, bool] = {}
    for key, theirs in state_dict.items():
        if not key.startswith(FEATURE_PREFIX):
            continue
        mine = ours.get(key[len(FEATURE_PREFIX):])
        if mine is None or tuple(mine.shape) != tuple(theirs.shape):
            result[key] = False
            continue
        mine64 = mine.detach().cpu().double()
        scale = float(mine64.abs().max()) or 1.0
        result[key] = float((theirs.double() - mine64).abs().max()) <= rtol * scale
    return result

"""sotddsp: spectral optimal transport losses for differentiable DSP, and the harmonic
autoencoder of Torres, Peeters & Richard (ICASSP 2024), re-implemented.

The pitch tool's API, at the top level (PESTO's):

    import sotddsp
    model = sotddsp.load_model("default", device="cpu")   # or a checkpoint path
    track = model.predict(audio, sample_rate)              # sotddsp.PitchTrack
    track.time, track.frequency, track.confidence, track.amplitudes

Sub-packages, one per layer, lowest first (a module imports its own layer and the layers below,
never one above; docs/DESIGN.md, tests/test_layout.py):

- ``sotddsp.core``: run layout, command line, atomic files, argument checks, result tables
  (no torch at import);
- ``sotddsp.dsp``: spectra, the harmonic synthesizer, the 1-D OT solver (``ot``), the losses,
  the metrics (no Lightning);
- ``sotddsp.data``: the data-file format, the synthetic and real-instrument sets, the DataModule;
- ``sotddsp.model``: the encoder, the autoencoder, the experiment CLI, checkpoints, the pitch
  tool's loader (``loader``) and model (``pitch``), plots;
- ``sotddsp.apps``: the commands (train, evaluate, sweep, estimate, data generation).

Importing ``sotddsp`` imports none of them: ``load_model``, ``PitchModel`` and ``PitchTrack``
load ``sotddsp.model`` (torch, Lightning) when first used.
"""

__version__ = "0.1.0"

# name -> module that defines it, imported on first use (PEP 562)
_LAZY = {
    "load_model": "sotddsp.model.loader",
    "PitchModel": "sotddsp.model.pitch",
    "PitchTrack": "sotddsp.model.pitch",
}
__all__ = ["PitchModel", "PitchTrack", "__version__", "load_model"]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'sotddsp' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

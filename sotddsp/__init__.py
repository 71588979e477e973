"""sotddsp: spectral optimal transport losses for differentiable DSP, and the harmonic
autoencoder of Torres, Peeters & Richard (ICASSP 2024), re-implemented.

Sub-packages, one per layer, lowest first (a module imports its own layer and the layers below,
never one above; docs/DESIGN.md, tests/test_layout.py):

- ``sotddsp.core``: run layout, command line, atomic files, argument checks, result tables
  (no torch at import);
- ``sotddsp.dsp``: spectra, the harmonic synthesizer, the 1-D OT solver (``ot``), the losses,
  the metrics (no Lightning);
- ``sotddsp.data``: the data-file format, the synthetic and real-instrument sets, the DataModule;
- ``sotddsp.model``: the encoder, the autoencoder, the experiment CLI, checkpoints, plots;
- ``sotddsp.apps``: the commands (train, evaluate, sweep, estimate, data generation).

Importing ``sotddsp`` imports none of them.
"""

__version__ = "0.1.0"

"""Builds the optional C kernels; everything else is in pyproject.toml.

- ``_sot_merge``: the merge kernel of ``losses.wasserstein_1d``;
- ``_harmonic_synth``: the fused CPU path of ``models.synth.HarmonicSynth``.

Both are optional: without a C compiler the install still succeeds and the pure-torch paths
are used (the same values to rounding, slower on the CPU).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "_sot_merge",
            sources=["csrc/sot_merge.c"],
            depends=["csrc/sot_merge_rows.h"],
            extra_compile_args=["-O3", "-std=c99", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
        Extension(
            "_harmonic_synth",
            sources=["csrc/harmonic_synth.c"],
            depends=["csrc/harmonic_synth_rows.h"],
            extra_compile_args=["-O3", "-std=c99", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
    ]
)

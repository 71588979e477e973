"""Builds the optional C kernels (csrc/); everything else is in pyproject.toml.

One extension module, ``sotddsp.dsp._native_kernels`` (inside the package: nothing else installs
at top level): the merge kernel of ``sotddsp.dsp.ot.wasserstein_1d`` and the fused CPU path of
``sotddsp.dsp.synth.HarmonicSynth``. It is optional: without a C compiler the install
still succeeds and the pure-torch paths are used (the same values to rounding, slower on the CPU).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sotddsp.dsp._native_kernels",
            sources=["csrc/native_kernels.c"],
            depends=["csrc/sot_merge.h", "csrc/sot_merge_rows.h", "csrc/harmonic_synth.h",
                     "csrc/harmonic_synth_rows.h"],
            extra_compile_args=["-O3", "-std=c99", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        ),
    ]
)

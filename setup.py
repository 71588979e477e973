"""Builds the optional C merge kernel of losses.wasserstein_1d; everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and
``losses.wasserstein_1d`` uses its pure-torch path (same values, slower on the CPU).
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
        )
    ]
)

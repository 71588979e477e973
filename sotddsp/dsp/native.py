"""The optional C kernels of ot.py and synth.py (csrc/, one extension module,
``sotddsp.dsp._native_kernels``, built by ``pip install`` where a C compiler exists): ``kernels``
is the module, or None without it.

Imported after torch on purpose: the extension links ``libgomp.so.1``, which then resolves to
the OpenMP runtime torch already loaded, so both share one thread pool.
"""

from __future__ import annotations

import torch  # noqa: F401  (first: see above)

try:
    from sotddsp.dsp import _native_kernels as kernels
except ImportError:  # pragma: no cover - exercised only on installs without a C compiler
    kernels = None

__all__ = ["kernels"]

"""Independent references, written without the package's code: the paper's system from PAPER.md
(``paper_reference``: NumPy, float64) and the authors' release format (``authors_format``: their
config, state_dict keys (``original-run/``), pickles and encoder forward pass). The tests and
``scripts/fidelity_report.py`` compare the package against them."""

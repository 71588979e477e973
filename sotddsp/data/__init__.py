"""Data: the data-set file format, the synthetic and real-instrument sets, the DataModule."""

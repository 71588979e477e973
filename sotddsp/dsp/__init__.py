"""DSP and losses: spectra, the harmonic synthesizer, the exact 1-D optimal transport solver
(``ot``), the spectral losses and the metrics. Pure torch: never imports Lightning."""

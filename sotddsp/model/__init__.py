"""The model: the encoder, the harmonic autoencoder, the experiment CLI (config schema),
training callbacks, checkpoint loading, the authors' format, runs, the pYIN baseline, figures."""

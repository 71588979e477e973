"""The commands: train, evaluate, sweep, estimate (the pitch tool), and the data generators.
Each has ``main(argv)`` and ``cli()`` (the console script)."""

"""Test helpers: running entry points, the one-line error rule, the bad-input harness, a
test-only loss, run files as training writes them."""

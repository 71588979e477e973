"""Foundation: run layout, command line, atomic files, argument checks, result tables,
the class-path alias table. Imports no torch at import time."""

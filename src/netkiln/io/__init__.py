"""File I/O every layer may use: atomic writes (files), the run-directory lock (lock), a writer thread (background).
Imports nothing from netkiln but errors."""

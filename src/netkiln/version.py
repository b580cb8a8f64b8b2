"""netkiln's version, written into every bundle and export (the bottom layer, so they need not import the package)."""
__version__ = "0.1.0"

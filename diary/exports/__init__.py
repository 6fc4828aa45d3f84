"""Analysis-ready exports: table builders, writers and the bundle."""
from .bundle import write_bundle, zip_bundle

__all__ = ["write_bundle", "zip_bundle"]

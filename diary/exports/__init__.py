"""Analysis-ready exports: table builders, writers and the bundle."""

from .bundle import export_study, write_bundle, zip_bundle

__all__ = ["export_study", "write_bundle", "zip_bundle"]

"""Data layer: readers for PhysioNet layouts, label sets, splits, the preprocessed cache, downloads."""

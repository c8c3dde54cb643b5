"""hep2tf: TFRecord pipeline, model zoo and trainer for single-cell microscopy images."""

__version__ = "0.1.0"

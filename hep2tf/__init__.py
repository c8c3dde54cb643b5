"""hep2tf: TFRecord pipeline, model zoo and trainer for single-cell microscopy
images (docs/ARCHITECTURE.md: the folders and what each module owns)."""

__version__ = "0.1.0"

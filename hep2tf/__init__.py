"""hep2tf: TFRecord pipeline, model zoo and trainer for single-cell microscopy
images (docs/ARCHITECTURE.md: the folders and what each module owns).

When this process is one of hep2tf's command lines (`python -m hep2tf.train`, a
`hep2tf-*` script), TensorFlow's known C++ start-up lines are filtered from stderr
before TensorFlow loads (hep2tf/console.py says which, and how to see them).
"""

from hep2tf import console as _console

__version__ = "0.1.0"

_console.quiet_start()

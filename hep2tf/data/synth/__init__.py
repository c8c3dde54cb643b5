"""A synthetic HEp-2 set in the ICPR 2014 layout: the embedded default dataset.

Real HEp-2 data cannot be downloaded, so this package draws indirect immunofluorescence
(IIF) cells of the six ICPR 2014 patterns and writes them as the contest released them:

  OUTPUT_DIR/gt_training.csv   Image ID,Image class,Intensity,Specimen
  OUTPUT_DIR/00001.png         8-bit grey cell image (image_size x image_size)
  OUTPUT_DIR/00001_Mask.png    8-bit grey cell mask, 0 background / 255 cell
  OUTPUT_DIR/synth.json        the generation parameters (see `matches`)

As in the real set each specimen (well) has one pattern and one intensity, and its own
gain, background, focus and texture, so a split by specimen is harder than a random one.
Cells are dark like real IIF: background near 0, a nucleus at 10-30% of full scale for
`intermediate` and brighter for `positive`, with Poisson-like shot noise plus read
noise.

`profile="stress"` (`--profile=stress`) draws a harder set for specimen shift: stronger
specimen effects, and split folders (`training/`, `validation/`, `test/`, which the ICPR
2014 reader keeps) whose test specimens come from another "microscope" than the training
and validation ones: out of focus, dimmer, with a brighter background and more shot and
read noise. A recipe that learns its training specimens scores well on validation and
poorly on test there; see docs/RESULTS.md.

Everything is drawn from seeds derived from (seed, specimen, image) with
`numpy.random.SeedSequence`, so the bytes do not depend on the number of workers.
This package does not import TensorFlow, so worker processes start fast. The command
line is `python -m hep2tf.synth` (hep2tf/synth.py).

  plan.py     which cell has which class, intensity, specimen (and split)
  cells.py    one cell: the well's parameters, the six patterns, blur and noise
  folder.py   the ICPR 2014 folder: `generate`, `matches`
"""


from hep2tf.data.synth.cells import (PHOTONS_PER_DN, READ_NOISE_DN, draw_cell,
                                     specimen_params, stress_specimen_params)
from hep2tf.data.synth.folder import (CSV_HEADER, CSV_NAME, GENERATOR_VERSION,
                                      PARAMS_NAME, STRESS_VERSION, generate, matches)
from hep2tf.data.synth.plan import (CLASS_COUNTS, CLASS_NAMES, DEFAULT_NUM_IMAGES,
                                    DEFAULT_NUM_SPECIMENS, INTENSITIES, PROFILES,
                                    STRESS_SPLITS, class_counts, default_num_specimens,
                                    make_plan, stress_num_specimens)

__all__ = [
    "CLASS_COUNTS", "CLASS_NAMES", "CSV_HEADER", "CSV_NAME", "DEFAULT_NUM_IMAGES",
    "DEFAULT_NUM_SPECIMENS", "GENERATOR_VERSION", "INTENSITIES", "PARAMS_NAME",
    "PHOTONS_PER_DN", "PROFILES", "READ_NOISE_DN", "STRESS_SPLITS", "STRESS_VERSION",
    "class_counts", "default_num_specimens", "draw_cell", "generate", "make_plan",
    "matches", "specimen_params", "stress_num_specimens", "stress_specimen_params",
]

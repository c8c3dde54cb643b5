"""The plan of a synthetic set: which cell has which class, intensity and specimen.

Class frequencies follow the real ICPR 2014 training set (Golgi rarest); each specimen
(well) holds one class and one intensity, with unequal numbers of cells. The stress
profile also assigns whole specimens to train / validation / test (`STRESS_SPLITS`).
No TensorFlow here: worker processes import this package.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem", "Golgi")
# Cells per class in the ICPR 2014 / I3A Task 1 training set (13,596 in all).
CLASS_COUNTS = {"Homogeneous": 2494, "Speckled": 2831, "Nucleolar": 2598,
                "Centromere": 2741, "NuMem": 2208, "Golgi": 724}
DEFAULT_NUM_IMAGES = sum(CLASS_COUNTS.values())
DEFAULT_NUM_SPECIMENS = 83
INTENSITIES = ("positive", "intermediate")
PROFILES = ("default", "stress")
# The stress profile's split by specimen, as fractions of each class's specimens
# (about 44 / 36 / 20% of the cells, as in an independent 3,000-cell set), and the
# folders that carry it.
STRESS_SPLITS = (("train", "training", 0.44), ("validation", "validation", 0.36),
                 ("test", "test", 0.20))
STRESS_MIN_SPECIMENS_PER_CLASS = 5


def class_counts(num_images: int) -> dict[str, int]:
  """Cells per class for `num_images`, in the real set's proportions.

  Largest-remainder rounding of CLASS_COUNTS scaled to `num_images`; when
  num_images >= 6 every class gets at least one cell (taken from the largest).
  Returns a dict in CLASS_NAMES order summing to `num_images`.
  """
  if num_images < 1:
    raise ValueError(f"num_images must be >= 1, got {num_images}")
  real = np.array([CLASS_COUNTS[c] for c in CLASS_NAMES], dtype=np.float64)
  exact = real * num_images / real.sum()
  counts = np.floor(exact).astype(int)
  # Ties go to the class listed first, so the result is fully determined.
  order = sorted(range(len(real)), key=lambda i: (-(exact[i] - counts[i]), i))
  for i in order[:num_images - counts.sum()]:
    counts[i] += 1
  if num_images >= len(CLASS_NAMES):
    while (counts == 0).any():
      counts[int(np.argmax(counts))] -= 1
      counts[int(np.argmin(counts))] += 1
  return dict(zip(CLASS_NAMES, (int(c) for c in counts)))


def default_num_specimens(num_images: int) -> int:
  """83 specimens for the full set, scaled down for smaller ones.

  Keeps at least two specimens per class where the class has two cells, so a split
  by specimen can hold every class out, and never more specimens than cells.
  """
  counts = class_counts(num_images)
  floor = sum(min(2, n) for n in counts.values())
  scaled = round(DEFAULT_NUM_SPECIMENS * num_images / DEFAULT_NUM_IMAGES)
  return int(min(num_images, max(floor, scaled)))


def _specimens_per_class(counts: dict[str, int], num_specimens: int,
                         minimum: int = 2) -> list[int]:
  """Splits `num_specimens` over the classes, proportionally, each within [1, cells];
  `minimum` wells per class where the cells and `num_specimens` allow."""
  present = [c for c in CLASS_NAMES if counts[c] > 0]
  if not len(present) <= num_specimens <= sum(counts.values()):
    raise ValueError(
        f"num_specimens must be between {len(present)} (one per class present) and "
        f"{sum(counts.values())} (one per cell), got {num_specimens}")
  cells = np.array([counts[c] for c in CLASS_NAMES])
  # Two wells per class where possible, so a split by specimen can hold each out.
  least = np.minimum(cells, minimum if num_specimens >= np.minimum(
      cells, minimum).sum() else 1)
  wanted = cells * num_specimens / cells.sum()
  alloc = np.maximum(least, np.minimum(cells, np.floor(wanted))).astype(int)
  while alloc.sum() < num_specimens:
    room = np.where(alloc < cells, wanted - alloc, -np.inf)
    alloc[int(np.argmax(room))] += 1
  while alloc.sum() > num_specimens:
    spare = np.where(alloc > least, alloc - wanted, -np.inf)
    alloc[int(np.argmax(spare))] -= 1
  return [int(a) for a in alloc]


def _split_cells(rng: np.random.Generator, num_cells: int, parts: int) -> list[int]:
  """Unequal specimen sizes (as in real wells) that sum to `num_cells`, each >= 1."""
  weights = rng.gamma(3.0, size=parts)
  exact = (num_cells - parts) * weights / weights.sum()
  sizes = np.floor(exact).astype(int)
  order = np.argsort(-(exact - sizes), kind="stable")
  sizes[order[:num_cells - parts - sizes.sum()]] += 1
  return [int(s) + 1 for s in sizes]


def stress_num_specimens(num_images: int) -> int:
  """Specimens of a stress set: the default's, but at least 5 per class (30), so that
  each class has specimens in all three splits."""
  floor = sum(min(STRESS_MIN_SPECIMENS_PER_CLASS, n)
              for n in class_counts(num_images).values())
  return int(min(num_images, max(floor, default_num_specimens(num_images))))


def make_plan(num_images: int, seed: int, num_specimens: int | None = None,
              profile: str = "default") -> list[dict]:
  """The cells to draw, in file order.

  Returns one dict per cell with `image_id` (1-based int), `label` (class name),
  `intensity` ("positive" / "intermediate") and `specimen` (1-based int). Each
  specimen holds one class and one intensity; where a class has two or more
  specimens both intensities occur. Cell order is shuffled, so neither the image id
  nor the specimen id tells the class.

  With profile "stress" each cell also has a `split` (train / validation / test,
  whole specimens, every class in every split where it has three specimens).
  """
  check_profile(profile)
  counts = class_counts(num_images)
  stress = profile == "stress"
  if num_specimens is None:
    num_specimens = (stress_num_specimens if stress else default_num_specimens)(
        num_images)
  per_class = _specimens_per_class(
      counts, num_specimens, STRESS_MIN_SPECIMENS_PER_CLASS if stress else 2)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
  specimen_ids = rng.permutation(num_specimens) + 1
  cells = []
  next_specimen = 0
  for name, num_spec in zip(CLASS_NAMES, per_class):
    if num_spec == 0:
      continue
    first = int(rng.integers(2))
    sizes = _split_cells(rng, counts[name], num_spec)
    split_of = _stress_splits(num_spec) if stress else [""] * num_spec
    for k, size in enumerate(sizes):
      specimen = int(specimen_ids[next_specimen])
      next_specimen += 1
      intensity = INTENSITIES[(first + k) % 2]
      cells.extend([(name, intensity, specimen, split_of[k])] * size)
  order = rng.permutation(len(cells))
  plan = [{"image_id": i + 1, "label": cells[j][0], "intensity": cells[j][1],
           "specimen": cells[j][2]} for i, j in enumerate(order)]
  if stress:
    for cell, j in zip(plan, order):
      cell["split"] = cells[j][3]
  return plan


def _stress_splits(num_spec: int) -> list[str]:
  """Split of each of a class's `num_spec` specimens (in their drawing order, which
  is random): test and validation get at least one each where there are three."""
  if num_spec < 3:
    return ["train"] * num_spec
  n_test = max(1, round(STRESS_SPLITS[2][2] * num_spec))
  n_val = max(1, round(STRESS_SPLITS[1][2] * num_spec))
  n_val = min(n_val, num_spec - n_test - 1)
  n_train = num_spec - n_test - n_val
  # Intensity alternates along the list, so each split with two or more specimens
  # of a class holds both intensities.
  return ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test


def check_profile(profile: str) -> None:
  if profile not in PROFILES:
    raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")

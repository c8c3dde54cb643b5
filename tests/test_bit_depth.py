"""Bit depth end to end: no grey level lost from source file to model input.

Realistic cases made here: uint16 holding 0..235 (8-bit data in a 16-bit container, as
a Data Science Bowl 2018 nuclei crop), a 12-bit camera (0..4095), the full 16-bit
range, 48-bit RGB PNG, float32 TIFF and a multi-page TIFF. For each, the records hold
the source's values exactly (or by the recorded mapping), the distinct levels are
counted before and after, and nothing is clipped.
"""

import json

import numpy as np
import pandas as pd
import png
import pytest
import tensorflow as tf
from PIL import Image

from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import intensity, preprocess, reader, schema
from hep2tf.data.records import INFO_FILE, MANIFEST, Records
from hep2tf.errors import InputError
from hep2tf.evaluation import predict

SIDE = 12
SPLITS = {"train": 2, "test": 1}     # images per class and split
CLASSES = ("a", "b")


def _save(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  if array.dtype == np.uint16 and array.ndim == 3:
    height, width, planes = array.shape
    with open(path, "wb") as f:
      png.Writer(width, height, greyscale=False, bitdepth=16).write_array(
          f, array.reshape(-1))
  else:
    Image.fromarray(array).save(path)
  return path


def _case_arrays(case, rng):
  """(arrays of one case, file suffix, channels)."""
  count = len(CLASSES) * sum(SPLITS.values())
  if case == "uint16_0_235":
    return [rng.integers(0, 236, (SIDE, SIDE)).astype(np.uint16)
            for _ in range(count)], "png", 1
  if case == "12bit":
    return [rng.integers(0, 4096, (SIDE, SIDE)).astype(np.uint16)
            for _ in range(count)], "tif", 1
  if case == "full16":
    return [rng.integers(0, 65536, (SIDE, SIDE)).astype(np.uint16)
            for _ in range(count)], "png", 1
  if case == "rgb48":
    return [rng.integers(0, 65536, (SIDE, SIDE, 3)).astype(np.uint16)
            for _ in range(count)], "png", 3
  if case == "float32":
    # A grid of values 0.01 apart in [-1, 20]: distinct after the 16-bit mapping.
    return [(rng.integers(0, 2101, (SIDE, SIDE)) * 0.01 - 1.0).astype(np.float32)
            for _ in range(count)], "tif", 1
  raise ValueError(case)


def _make_folder(root, arrays, suffix):
  """root/<split>/<class>/NN.suffix; returns {relative file name: array}."""
  sources, index = {}, 0
  for split, per_class in SPLITS.items():
    for label in CLASSES:
      for _ in range(per_class):
        name = f"{split}/{label}/{index:02d}.{suffix}"
        _save(root / name, arrays[index])
        sources[name] = arrays[index]
        index += 1
  return sources


def _convert(source_dir, records_dir, channels, **kwargs):
  summary, _ = create.create_records(ConvertConfig(
      "folder", str(source_dir), output_dir=str(records_dir), num_workers=1,
      progress=False, layout_option=(f"channels={channels}",), **kwargs))
  return summary


def _read_records(records_dir):
  """{file name: stored array} and the DatasetInfo, via the schema's decode."""
  records = Records.open(records_dir)
  info = records.info
  stored = {}
  for split in info.splits:
    for path in records.shards(split):
      for serialized in tf.data.TFRecordDataset(path):
        example = schema.parse_example(serialized, info.channels, False,
                                       info.pixels.dtype)
        stored[example[schema.FILE_NAME].numpy().decode()] = (
            example[schema.IMAGE].numpy())
  return stored, info


def _levels(arrays):
  return int(np.unique(np.concatenate([np.ravel(a) for a in arrays])).size)


@pytest.mark.parametrize("case", ["uint16_0_235", "12bit", "full16", "rgb48",
                                  "float32"])
def test_records_hold_the_source_values_and_every_level(tmp_path, case):
  arrays, suffix, channels = _case_arrays(case, np.random.default_rng(1))
  sources = _make_folder(tmp_path / "src", arrays, suffix)
  summary = _convert(tmp_path / "src", tmp_path / "rec", channels)
  stored, info = _read_records(str(tmp_path / "rec"))
  meta = json.loads((tmp_path / "rec" / INFO_FILE).read_text())
  features = json.loads((tmp_path / "rec" / "features.json").read_text())
  assert info.pixels.dtype == meta["pixels"]["dtype"] == "uint16"
  assert '"uint16"' in json.dumps(features) or "uint16" in json.dumps(features)
  assert summary.pixels == info.pixels

  if case == "float32":
    lo = float(min(a.min() for a in arrays))
    hi = float(max(a.max() for a in arrays))
    assert info.pixels.float_range == pytest.approx((lo, hi))
    expected = {n: np.rint((a.astype(np.float64) - lo) * (65535.0 / (hi - lo)))
                for n, a in sources.items()}
  else:
    expected = {n: a for n, a in sources.items()}
  assert set(stored) == set(sources)
  for name, array in expected.items():
    got = stored[name]
    np.testing.assert_array_equal(got.reshape(np.shape(array)), array,
                                  err_msg=f"{case}: {name}")
  before, after = _levels(sources.values()), _levels(stored.values())
  # The model's input: stored * 255 / white_level, every level still distinct.
  model_levels = _levels([preprocess.to_model_input(s, info.pixels).numpy()
                          for s in stored.values()])
  print(f"\n{case}: distinct levels source {before}, records {after}, "
        f"model input {model_levels}; white level {info.pixels.white_level}")
  assert before == after == model_levels
  top = max(int(s.max()) for s in stored.values())
  assert info.pixels.white_level == intensity.white_level(top)
  expected_white = {"uint16_0_235": 255, "12bit": 4095}.get(case, 65535)
  assert info.pixels.white_level == expected_white
  # Nothing clipped: the extremes survive, and the model input spans [0, 255].
  assert top == max(int(np.max(a)) for a in expected.values())
  batch = next(iter(reader.create_split(
      Records.open(tmp_path / "rec"), "train", batch_size=8,
      training=False).dataset))[0].numpy()
  assert batch.max() <= 255.0 and batch.max() > 200.0 * (case != "uint16_0_235")
  assert (tmp_path / "rec" / "samples.png").stat().st_size > 1000


def test_multi_page_tiff_is_a_named_error_or_a_reject(tmp_path):
  rng = np.random.default_rng(2)
  arrays, _, _ = _case_arrays("12bit", rng)
  _make_folder(tmp_path / "src", arrays, "png")
  stack = tmp_path / "src" / "train" / "a" / "stack.tif"
  pages = [Image.fromarray(a) for a in arrays[:3]]
  pages[0].save(stack, save_all=True, append_images=pages[1:])
  with pytest.raises(InputError, match=r"stack\.tif.*multi-page image \(3 pages"):
    _convert(tmp_path / "src", tmp_path / "rec", 1)
  summary, rejects = create.create_records(ConvertConfig(
      "folder", str(tmp_path / "src"), output_dir=str(tmp_path / "rec"),
      num_workers=1, progress=False, layout_option=("channels=1",),
      on_error="skip"))
  assert len(rejects) == 1 and sum(summary.splits.values()) == 6


def test_mixed_set_stores_8bit_sources_x257_and_the_model_sees_them_unchanged(
    tmp_path):
  rng = np.random.default_rng(3)
  arrays, _, _ = _case_arrays("12bit", rng)
  arrays[0] = rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
  arrays[0][0, 0] = 255
  sources = _make_folder(tmp_path / "src", arrays, "png")
  _convert(tmp_path / "src", tmp_path / "rec", 1)
  stored, info = _read_records(str(tmp_path / "rec"))
  eight_bit = [n for n, a in sources.items() if a.dtype == np.uint8][0]
  assert info.pixels.deep and info.pixels.dtype == "uint16"
  np.testing.assert_array_equal(stored[eight_bit][..., 0],
                                sources[eight_bit].astype(np.uint16) * 257)
  assert info.pixels.white_level == 65535
  model = preprocess.to_model_input(stored[eight_bit], info.pixels).numpy()
  print(f"\nmixed 8/12-bit: distinct levels source {_levels(sources.values())}, "
        f"records {_levels(stored.values())}")
  for name, array in sources.items():   # per image: no level merged or lost
    assert _levels([array]) == _levels([stored[name]]), name
  np.testing.assert_allclose(model[..., 0], sources[eight_bit], atol=1e-4)


def test_rescale_modes_use_recorded_percentiles(tmp_path):
  rng = np.random.default_rng(4)
  arrays, _, _ = _case_arrays("12bit", rng)
  sources = _make_folder(tmp_path / "src", arrays, "png")
  _convert(tmp_path / "src", tmp_path / "dataset", 1, intensity="rescale",
           rescale_percentiles=(1.0, 99.0))
  stored, info = _read_records(str(tmp_path / "dataset"))
  manifest = pd.read_csv(tmp_path / "dataset" / MANIFEST)
  train_files = set(manifest.loc[manifest["split"] == "train", "file_name"])
  train = np.concatenate([a.ravel() for n, a in sources.items()
                          if n in train_files])
  lo, hi = np.percentile(train, [1.0, 99.0], method="inverted_cdf")
  assert info.pixels.dtype == "uint8" and info.pixels.rescale_range == (lo, hi)
  for name, array in sources.items():
    np.testing.assert_array_equal(stored[name][..., 0],
                                  intensity.rescale(array.astype(float), lo, hi))
  meta = json.loads((tmp_path / "dataset" / INFO_FILE).read_text())
  assert f"{lo:g}" in meta["pixels"]["mapping"]
  print(f"\nrescale (12-bit, percentiles 1, 99): distinct levels source "
        f"{_levels(sources.values())}, records {_levels(stored.values())}")

  _convert(tmp_path / "src", tmp_path / "per_image", 1,
           intensity="rescale_per_image")
  stored, info = _read_records(str(tmp_path / "per_image"))
  for name, array in sources.items():
    low, high = np.percentile(array, intensity.DEFAULT_PERCENTILES)
    np.testing.assert_array_equal(stored[name][..., 0],
                                  intensity.rescale(array.astype(float), low, high))


def test_warnings_count_constant_low_level_and_saturated_images_per_class(
    tmp_path):
  rng = np.random.default_rng(5)
  arrays, _, _ = _case_arrays("12bit", rng)
  labels = [c for per_class in SPLITS.values() for c in CLASSES
            for _ in range(per_class)]   # _make_folder's order
  for i, label in enumerate(labels):
    if label == "a":
      arrays[i] = np.full((SIDE, SIDE), 700 + i, np.uint16)  # class a: flat
    else:
      arrays[i][:3] = 4095                                    # class b: 25% at max
  _make_folder(tmp_path / "src", arrays, "png")
  summary = _convert(tmp_path / "src", tmp_path / "rec", 1)
  text = "\n".join(summary.warnings)
  for split, counts in summary.class_counts.items():
    total = sum(counts.values())
    flat, saturated = counts["a"], counts["b"]
    if flat:
      assert (f"{split}: {flat} of {total} images are constant (one grey level): "
              f"a {flat}") in text
    if saturated:
      assert (f"{split}: {saturated} of {total} images have more than 2% of their "
              f"pixels at the full scale 4095 (saturated): b {saturated}") in text
    if flat > total / 2:
      assert f"{split}: {flat} of {total} images use fewer than 16" in text
  assert len(summary.warnings) >= 4


def test_8bit_set_stays_8bit_and_keeps_its_bytes(tmp_path):
  rng = np.random.default_rng(6)
  arrays = [rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8) for _ in range(6)]
  sources = _make_folder(tmp_path / "src", arrays, "png")
  summary = _convert(tmp_path / "src", tmp_path / "rec", 1)
  stored, info = _read_records(str(tmp_path / "rec"))
  assert info.pixels.dtype == "uint8" and info.pixels.white_level == 255
  for name, array in sources.items():
    np.testing.assert_array_equal(stored[name][..., 0], array)
  # 8-bit random images use >16 levels: no low-level warning.
  assert summary.warnings == []


@pytest.mark.parametrize("spec", [
    intensity.PixelSpec(dtype="uint16", deep=True, white_level=4095),
    intensity.PixelSpec(dtype="uint8", intensity="rescale", deep=True,
                        rescale_range=(100.0, 3000.0)),
    intensity.PixelSpec(dtype="uint8", intensity="rescale_per_image", deep=True),
    intensity.PixelSpec()])
def test_saved_model_decode_matches_predict_and_reader(tmp_path, spec):
  """The SavedModel's in-graph decode and predict's agree exactly, at the model's
  size and resized (both through hep2tf.data.preprocess)."""
  rng = np.random.default_rng(7)
  grey16 = rng.integers(0, 4096, (SIDE, SIDE)).astype(np.uint16)
  rgb48 = rng.integers(0, 4096, (SIDE, SIDE, 3)).astype(np.uint16)
  grey8 = rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
  for name, array, channels in (("g16.png", grey16, 1), ("c48.png", rgb48, 3),
                                ("g8.png", grey8, 1)):
    path = _save(tmp_path / name, array)
    ours = predict.load_for_model(str(path), (SIDE, SIDE, channels), spec)
    graph = _in_graph(path, channels, (SIDE, SIDE), spec)
    np.testing.assert_array_equal(graph, ours, err_msg=name)
    if spec.intensity == "keep" and channels == 1:
      if array.dtype == np.uint16 or not spec.deep:
        counts = array.astype(np.float32)
      else:
        counts = array.astype(np.float32) * 257
      np.testing.assert_allclose(ours[..., 0], counts * 255 / spec.white_level,
                                 rtol=1e-6)
  # Resized (up and down) the same way, to the same rounded values.
  path = tmp_path / "g16.png"
  for size in ((20, 20), (7, 9)):
    ours = predict.load_for_model(str(path), size + (1,), spec)
    graph = _in_graph(path, 1, size, spec)
    assert ours.shape == graph.shape == size + (1,)
    np.testing.assert_array_equal(graph, ours)


def _in_graph(path, channels, size, spec):
  """What the SavedModel's signature gives its model for the file at `path`."""
  stored = preprocess.stored_from_encoded(tf.constant(path.read_bytes()), channels,
                                          spec)
  return tf.function(preprocess.model_input)(stored, spec, size).numpy()


def test_pixel_spec_round_trips_through_json():
  spec = intensity.PixelSpec(dtype="uint16", deep=True, float_range=(-1.0, 2.5),
                             white_level=4095)
  assert intensity.PixelSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
  assert intensity.PixelSpec.from_json(None) == intensity.PixelSpec()
  assert [intensity.white_level(v) for v in (0, 235, 255, 256, 4095, 4096, 65535)] \
      == [255, 255, 255, 511, 4095, 8191, 65535]


def _cell(kind, rng, side=32, top=1000):
  """A dim 10-bit cell (values 0..top): a bright rim ("rim") or dots ("dots")."""
  yy, xx = np.mgrid[:side, :side]
  cy, cx = rng.uniform(12, 20, 2)
  radius = rng.uniform(7, 10)
  distance = np.hypot(yy - cy, xx - cx)
  nucleus = distance < radius
  signal = np.zeros((side, side))
  if kind == "rim":
    signal[np.abs(distance - radius + 1.5) < 1.5] = 1.0
  else:
    for _ in range(6):
      y, x = rng.uniform(-0.6, 0.6, 2) * radius + (cy, cx)
      signal[np.hypot(yy - y, xx - x) < 1.5] = 1.0
  image = 60 + 150 * nucleus + rng.uniform(0.4, 0.75) * top * signal
  image += rng.normal(0, 25, image.shape)
  return np.clip(np.rint(image), 0, top).astype(np.uint16)


def test_16bit_set_trains_like_its_8bit_copy_and_predicts_from_16bit_files(
    tmp_path):
  """A dim 10-bit set (0..1000) and its 8-bit copy scaled by the data's own range
  reach the same test MCA (within 0.02); x / 257 would have left 4 grey levels. The
  run then predicts from the 16-bit files, on the command line and in the SavedModel,
  as evaluation does."""
  from hep2tf.evaluation import evaluate
  from hep2tf.training import trainer
  from hep2tf.config.train import TrainConfig
  rng = np.random.default_rng(8)
  counts = {"train": 36, "test": 14}
  deep, shallow = tmp_path / "deep", tmp_path / "shallow"
  for split, per_class in counts.items():
    for kind in ("rim", "dots"):
      for i in range(per_class):
        cell = _cell(kind, rng)
        _save(deep / split / kind / f"{i:02d}.png", cell)
        _save(shallow / split / kind / f"{i:02d}.png",
              np.rint(cell * (255.0 / 1000.0)).astype(np.uint8))
  mca = {}
  for name, folder in (("deep", deep), ("shallow", shallow)):
    records = tmp_path / f"rec_{name}"
    _convert(folder, records, 1, validation_fraction=0.2)
    run = str(tmp_path / f"run_{name}")
    config = TrainConfig(
        records_dir=str(records), model="cnn", epochs=3, steps_per_epoch=15,
        batch_size=16,
        learning_rate=1e-3, shuffle_buffer=256, seed=0, deterministic=True,
        mixed_precision="float32", image_summary_every=100)
    trainer.train_and_evaluate(config, run)
    mca[name] = evaluate.evaluate_run(run, "test")["mca"]
  info = Records.open(tmp_path / "rec_deep").info
  assert info.pixels.dtype == "uint16" and info.pixels.white_level == 1023
  print(f"\ntest MCA: 16-bit records {mca['deep']:.3f}, 8-bit copy "
        f"{mca['shallow']:.3f}")
  assert mca["deep"] >= 0.8 and abs(mca["deep"] - mca["shallow"]) <= 0.02

  run = str(tmp_path / "run_deep")
  predictions = pd.read_csv(tmp_path / "run_deep" / "eval" / "test" /
                            "predictions.csv")
  files = [str(deep / name) for name in predictions["file_name"]]
  frame = predict.predict_files(run, files)
  probabilities = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
  np.testing.assert_allclose(
      probabilities,
      predictions[[c for c in predictions.columns if c.startswith("p_")]].to_numpy(),
      atol=1e-4)
  serve = tf.saved_model.load(f"{run}/export").signatures["serving_default"]
  out = serve(tf.constant([open(f, "rb").read() for f in files[:8]]))
  np.testing.assert_allclose(out["probabilities"].numpy(), probabilities[:8],
                             atol=1e-4)


def test_beam_pipeline_prescans_and_writes_what_the_local_converter_writes(tmp_path):
  """A mixed set (8-bit and 12-bit) through the DirectRunner: the same uint16
  records, PixelSpec and warnings as the local writer."""
  pytest.importorskip("apache_beam")
  from hep2tf.convert import beam
  rng = np.random.default_rng(9)
  arrays, _, _ = _case_arrays("12bit", rng)
  arrays[1] = rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
  sources = _make_folder(tmp_path / "src", arrays, "png")
  local = _convert(tmp_path / "src", tmp_path / "local", 1)
  summary, _ = beam.convert_records(ConvertConfig(
      "folder", str(tmp_path / "src"), layout_option=("channels=1",),
      output_dir=str(tmp_path / "beam"), num_workers=1), ["--runner=DirectRunner"])
  assert summary.pixels == local.pixels and summary.pixels.dtype == "uint16"
  assert summary.warnings == local.warnings
  ours, info = _read_records(str(tmp_path / "beam"))
  theirs, _ = _read_records(str(tmp_path / "local"))
  assert set(ours) == set(theirs) == set(sources)
  for name in ours:
    np.testing.assert_array_equal(ours[name], theirs[name])
  for name in (MANIFEST, INFO_FILE, "features.json"):
    assert ((tmp_path / "beam" / name).read_bytes() ==
            (tmp_path / "local" / name).read_bytes()), name
  assert (tmp_path / "beam" / "samples.png").stat().st_size > 1000

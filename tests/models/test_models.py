"""Tests of the model zoo: every from-scratch model and five backbones build on 78x78
grey cells, give probabilities and train a step; saving, weight transfer, the offline
imagenet error, the input layers and freeze-then-unfreeze."""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hep2tf.errors import InputError  # noqa: E402
from hep2tf.models import (  # noqa: E402
    ContrastStretch, PerImageStandardization, backbones, build_model, coatnet,
    list_models, load_pretrained, set_backbone_trainable)

SHAPE = (78, 78, 1)
CLASSES = 3
SCRATCH_MODELS = [n for n in list_models() if n not in backbones.BACKBONES]
TRAINED_BACKBONES = ["resnet50", "efficientnetv2_b0", "convnext_tiny",
                     "mobilenet_v3_small", "densenet121"]


def dark_cells(n=2, shape=SHAPE, seed=0):
  """IIF-like images: dark background, a dim nucleus at 10-30% of full scale."""
  rng = np.random.default_rng(seed)
  images = rng.normal(8.0, 2.0, (n,) + shape)
  yy, xx = np.mgrid[:shape[0], :shape[1]]
  nucleus = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (shape[0] / 4) ** 2
  images[:, nucleus] += rng.uniform(25, 75, (n, 1, 1))
  return np.clip(images, 0, 255).astype("float32")


def check_probabilities_and_one_step(model, shape=SHAPE):
  images = dark_cells(shape=shape)
  # Eager calls: tracing a graph of a big backbone costs more than one step.
  probs = np.asarray(model(images, training=False))
  assert probs.shape == (2, CLASSES)
  assert probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
  model.compile(optimizer=keras.optimizers.SGD(1e-3),
                loss="sparse_categorical_crossentropy", run_eagerly=True)
  loss = model.train_on_batch(images, np.array([0, CLASSES - 1]))
  assert np.isfinite(loss)
  assert model.losses, "expected L2 weight-decay losses"


def test_registry_lists_models_and_rejects_unknown_names():
  names = list_models()
  for name in ["cnn", "cnn_bn", "alexnet", "alexnet_small", "resnet18", "resnet34",
               "coatnet_mini", "resnet50", "resnet101",
               "resnet50v2", "efficientnet_b3", "efficientnetv2_s", "convnext_base",
               "mobilenet_v2", "mobilenet_v3_large", "densenet169", "inception_v3",
               "xception", "vgg16"]:
    assert name in names
  with pytest.raises(ValueError, match="known models: .*cnn"):
    build_model("lenet", SHAPE, CLASSES)


@pytest.mark.parametrize("name", ["cnn", "resnet34", "coatnet_mini", "mobilenet_v2"])
def test_an_unknown_or_bad_hparam_is_refused_before_building(name):
  """Each model reads its hparams into one options dataclass: a misspelt name is a
  TypeError naming the model and what it takes; a bad value a ValueError."""
  with pytest.raises(TypeError, match=f"{name} has no hparam 'dropuot'.*dropout"):
    build_model(name, SHAPE, CLASSES, dropuot=0.1)
  bad = {"cnn": {"head": "max"}, "resnet34": {"stem": "tiny"},
         "coatnet_mini": {"head_dim": 7}, "mobilenet_v2": {"backbone": "lenet"}}[name]
  with pytest.raises(ValueError, match="must be|unknown backbone"):
    build_model(name, SHAPE, CLASSES, **bad)


@pytest.mark.parametrize("name", SCRATCH_MODELS)
def test_scratch_model_builds_and_trains_a_step(name):
  model = build_model(name, SHAPE, CLASSES, weight_decay=5e-4)
  check_probabilities_and_one_step(model)
  # Every conv and dense kernel carries weight decay, the head included.
  kernels = [l for l in model.layers if isinstance(l, (
      keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))]
  assert len(model.losses) == len(kernels) >= 8
  assert {"logits", "probs"} <= {l.name for l in model.layers}
  if name.startswith(("cnn", "alexnet")):
    assert {"conv1", "conv5", "fc1", "fc2"} <= {l.name for l in model.layers}


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "coatnet_mini"])
def test_resnet_and_coatnet_run_on_224_px_rgb(name):
  model = build_model(name, (224, 224, 3), CLASSES, weight_decay=1e-4)
  check_probabilities_and_one_step(model, shape=(224, 224, 3))


@pytest.mark.parametrize("side,stem,first_stage,last_map", [
    (78, "auto", 39, 5),        # the small stem: one 3x3 stride-2 conv, no pool
    (78, "imagenet", 20, 3),    # the paper's 7x7/2 + max-pool, when asked
    (224, "auto", 56, 7),       # the paper's stem from 160 px up
])
def test_resnet_stem_suits_the_input_size(side, stem, first_stage, last_map):
  model = build_model("resnet18", (side, side, 1), CLASSES, stem=stem)
  names = {l.name for l in model.layers}
  assert ("stem_pool" in names) == (stem == "imagenet" or side >= 160)
  assert model.get_layer("stage1_block1_out").output.shape[1] == first_stage
  assert model.get_layer("stage4_block2_out").output.shape[1:] == (
      last_map, last_map, 512)
  # Basic blocks: 2 per stage, a projection shortcut where a stage begins.
  shortcuts = [n for n in names if n.endswith("_shortcut_conv")]
  assert sorted(shortcuts) == [f"stage{s}_block1_shortcut_conv" for s in (2, 3, 4)]
  assert sum(n.endswith("_add") for n in names) == 8
  assert sum(n.endswith("_add") for n in {
      l.name for l in build_model("resnet34", (side, side, 1), CLASSES).layers}) == 16


def test_resnet_parameter_counts_match_the_paper():
  # torchvision's resnet18 / resnet34 (RGB, 7x7 stem, 1000 classes) have exactly these
  # trainable parameters; Keras counts BatchNorm's moving statistics beside them.
  for name, expected in (("resnet18", 11_689_512), ("resnet34", 21_797_672)):
    model = build_model(name, (224, 224, 3), 1000)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_coatnet_attends_over_the_map_with_a_relative_bias(tmp_path):
  model = build_model("coatnet_mini", SHAPE, CLASSES)
  grids = {l.name: l.grid for l in model.layers
           if isinstance(l, coatnet.RelativeAttention)}
  assert grids == {"s3_block1_attention": (5, 5), "s3_block2_attention": (5, 5),
                   "s3_block3_attention": (5, 5), "s4_block1_attention": (3, 3),
                   "s4_block2_attention": (3, 3)}
  assert model.get_layer("s4_block1_attention").relative_bias.shape == (25, 12)
  # The bias depends on the offset only: every pair at offset (0, 1) shares a row.
  index = coatnet.relative_position_index(3, 4).reshape(12, 12)
  assert index[0, 1] == index[4, 5] == index[10, 11] != index[1, 0]
  assert index.max() == 5 * 7 - 1 and index[0, 0] == index[5, 5] == 2 * 7 + 3
  path = str(tmp_path / "coatnet.keras")
  model.save(path)
  reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
  images = dark_cells()
  np.testing.assert_allclose(np.asarray(model(images)), np.asarray(reloaded(images)),
                             atol=1e-6)


@pytest.mark.parametrize("name", TRAINED_BACKBONES)
def test_backbone_builds_and_trains_a_step(name):
  model = build_model(name, SHAPE, CLASSES, weights=None)
  assert isinstance(model.get_layer("backbone"), keras.Model)
  check_probabilities_and_one_step(model)


@pytest.mark.parametrize("name,shape,side", [
    ("vgg16", (78, 78, 3), 78),           # RGB input, no resize
    ("inception_v3", (40, 40, 1), 75),    # below its minimum: resized up inside
    ("mobilenet_v2", SHAPE, 96),          # image_size asks for a resize
])
def test_backbone_from_table_builds_with_resize(name, shape, side):
  hparams = {"image_size": 96} if name == "mobilenet_v2" else {}
  model = build_model(name, shape, CLASSES, **hparams)
  assert tuple(model.get_layer("backbone").inputs[0].shape[1:3]) == (side, side)
  assert ("resize" in [l.name for l in model.layers]) == (side != shape[0])
  assert model.output_shape == (None, CLASSES)


def test_cnn_reloads_with_safe_mode_and_gives_identical_outputs(tmp_path):
  model = build_model("cnn", SHAPE, CLASSES, normalization="dataset", mean=20.0,
                      std=[15.0])
  path = str(tmp_path / "cnn.keras")
  model.save(path)
  reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
  images = dark_cells()
  np.testing.assert_array_equal(np.asarray(model(images)),
                                np.asarray(reloaded(images)))


def test_backbone_reloads_with_safe_mode(tmp_path):
  model = build_model("mobilenet_v3_small", SHAPE, CLASSES)
  path = str(tmp_path / "m.keras")
  model.save(path)
  reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
  images = dark_cells()
  np.testing.assert_allclose(np.asarray(model(images)),
                             np.asarray(reloaded(images)), atol=1e-6)


def test_load_pretrained_from_run_copies_all_but_the_head(tmp_path):
  source = build_model("cnn", SHAPE, CLASSES)
  run = tmp_path / "run"
  run.mkdir()
  source.save(str(run / "model.keras"))
  target = build_model("cnn", SHAPE, CLASSES + 2)
  head_before = target.get_layer("logits").get_weights()[0].copy()
  loaded = load_pretrained(target, run)
  assert loaded == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2"]
  for name in loaded:
    for a, b in zip(source.get_layer(name).get_weights(),
                    target.get_layer(name).get_weights()):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(target.get_layer("logits").get_weights()[0],
                                head_before)
  # The same through the weights hparam; best.keras wins over model.keras.
  best = build_model("cnn", SHAPE, CLASSES)
  best.save(str(run / "best.keras"))
  again = build_model("cnn", SHAPE, CLASSES, weights=str(run))
  np.testing.assert_array_equal(again.get_layer("conv3").get_weights()[0],
                                best.get_layer("conv3").get_weights()[0])


def test_load_pretrained_matches_nested_backbone_layers(tmp_path):
  source = build_model("mobilenet_v3_small", SHAPE, CLASSES)
  path = tmp_path / "source.keras"
  source.save(str(path))
  target = build_model("mobilenet_v3_small", SHAPE, CLASSES + 1)
  loaded = load_pretrained(target, path)
  assert "logits" not in loaded
  inner = [n for n in loaded if n.startswith("backbone/")]
  assert len(inner) > 20
  name = inner[-1].split("/", 1)[1]
  np.testing.assert_array_equal(
      source.get_layer("backbone").get_layer(name).get_weights()[0],
      target.get_layer("backbone").get_layer(name).get_weights()[0])


def test_load_pretrained_from_weights_h5(tmp_path):
  source = build_model("cnn_bn", SHAPE, CLASSES)
  path = tmp_path / "w.weights.h5"
  source.save_weights(str(path))
  target = build_model("cnn_bn", SHAPE, CLASSES + 1)
  loaded = load_pretrained(target, path)
  assert len(loaded) == 5 + 5 + 2   # conv, bn, fc; not the head
  np.testing.assert_array_equal(source.get_layer("bn2").get_weights()[2],
                                target.get_layer("bn2").get_weights()[2])
  np.testing.assert_array_equal(source.get_layer("fc2").get_weights()[0],
                                target.get_layer("fc2").get_weights()[0])


def test_load_pretrained_rejects_bad_sources(tmp_path):
  model = build_model("cnn", SHAPE, CLASSES)
  broken = tmp_path / "broken.keras"
  broken.write_bytes(b"not a zip")
  with pytest.raises(InputError, match="broken.keras: not a Keras .keras file: it "
                     "is a text file starting 'not a zip'"):
    load_pretrained(model, broken)
  with pytest.raises(InputError, match="neither best.keras nor model.keras"):
    load_pretrained(model, tmp_path)
  other = build_model("alexnet_small", (64, 64, 3), CLASSES, dense_units=256)
  other.save(str(tmp_path / "other.keras"))
  with pytest.raises(InputError, match="other.keras.*no layer"):
    load_pretrained(model, tmp_path / "other.keras")


def test_imagenet_offline_raises_a_clear_error_quickly(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  monkeypatch.setattr(backbones, "host_reachable", lambda *a, **k: False)
  start = time.monotonic()
  with pytest.raises(RuntimeError) as error:
    build_model("mobilenet_v3_small", SHAPE, CLASSES, weights="imagenet")
  message = str(error.value)
  assert os.path.join(str(tmp_path), "models", "weights_mobilenet_v3_small") in message
  assert "--weights=none" in message and "storage.googleapis.com" in message
  assert time.monotonic() - start < 30
  with pytest.raises(ValueError, match="no imagenet weights"):
    build_model("cnn", SHAPE, CLASSES, weights="imagenet")


def test_imagenet_uses_the_cached_file_without_the_network(tmp_path, monkeypatch):
  # A cached file skips the reachability check; Keras then loads it as usual.
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  monkeypatch.setattr(backbones, "host_reachable",
                      lambda *a, **k: pytest.fail("network checked"))
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
   ).write_bytes(b"junk")
  with pytest.raises(Exception) as error:
    build_model("vgg16", (32, 32, 3), CLASSES, weights="imagenet")
  assert not isinstance(error.value, RuntimeError) or "cannot be reached" not in str(
      error.value)


def test_per_image_standardization_gives_zero_mean_unit_std():
  images = dark_cells(n=3, shape=(20, 20, 2))
  out = np.asarray(PerImageStandardization()(images))
  np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)
  flat = np.full((1, 8, 8, 1), 7.0, dtype="float32")
  assert np.all(np.asarray(PerImageStandardization()(flat)) == 0.0)


@pytest.mark.parametrize("name", SCRATCH_MODELS + ["mobilenet_v3_small"])
def test_models_do_not_depend_on_the_scale_a_cell_was_stored_at(name):
  """The same cells as 8-bit (x), as 16-bit x 257 (the reader gives x again) and as
  16-bit holding 0..255 of 65535 (x / 257) get the same probabilities."""
  model = build_model(name, SHAPE, CLASSES, weights=None)
  images = dark_cells(n=4, seed=3)
  stored16 = np.round(images).astype(np.uint16)
  full = stored16.astype(np.float32)
  low = stored16.astype(np.float32) * np.float32(255.0 / 65535.0)
  p_full = np.asarray(model(full, training=False))
  p_low = np.asarray(model(low, training=False))
  np.testing.assert_allclose(p_low, p_full, atol=1e-4)
  # The first layer's output itself matches (not only the argmax of a random net).
  first = keras.Model(model.inputs, model.layers[1].output)
  np.testing.assert_allclose(np.asarray(first(low)), np.asarray(first(full)),
                             rtol=1e-3, atol=1e-3)


def test_standardization_keeps_a_flat_images_noise_small():
  rng = np.random.default_rng(2)
  flat = (100.0 + rng.normal(0, 0.5, (2, 16, 16, 1))).astype("float32")
  layer = PerImageStandardization(epsilon=1e-6, relative_floor=0.02)
  out = np.asarray(layer(flat))
  # std 0.5 is below 2% of the level 100: divided by 2, not blown up to 1.
  assert out.std() < 0.3
  np.testing.assert_allclose(np.asarray(layer(flat / 257.0)), out, rtol=1e-3,
                             atol=1e-4)


def test_contrast_stretch_fills_the_range():
  images = dark_cells(n=2, shape=(30, 30, 1))
  out = np.asarray(ContrastStretch(99.0)(images))
  assert out.min() == 0.0 and out.max() == 255.0
  for image, stretched in zip(images, out):
    assert np.percentile(stretched, 99.5) >= 250 > np.percentile(image, 99.5)


def test_set_backbone_trainable_flips_weights_and_keeps_batchnorm_in_inference():
  model = build_model("mobilenet_v3_small", SHAPE, CLASSES, backbone_trainable=False)
  assert len(model.trainable_weights) == 2   # the head's kernel and bias
  set_backbone_trainable(model, True)
  unfrozen = len(model.trainable_weights)
  assert unfrozen > 2
  net = model.get_layer("backbone")
  norms = [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and not any(l.trainable for l in norms)
  before = [np.array(l.moving_variance) for l in norms]
  model(dark_cells(), training=True)
  for layer, variance in zip(norms, before):
    np.testing.assert_array_equal(np.asarray(layer.moving_variance), variance)
  set_backbone_trainable(model, True, fine_tune_from=len(net.layers) // 2)
  assert 2 < len(model.trainable_weights) < unfrozen
  set_backbone_trainable(model, False)
  assert len(model.trainable_weights) == 2


@pytest.mark.parametrize("name,layer", [("cnn", "conv1"),
                                        ("coatnet_mini", "s3_block1_attention")])
def test_mixed_precision_keeps_float32_probabilities(name, layer):
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = build_model(name, SHAPE, CLASSES)
    assert model.get_layer(layer).compute_dtype == "bfloat16"
    probs = model.predict(dark_cells(), verbose=0)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)

"""Keras Applications backbones with a new head, and loading pretrained weights.

Any backbone in `BACKBONES` is registered under its snake_case name. The model is

  image [0, 255] (N, H, W, C)
    -> ContrastStretch    each image's [min, 99.5th percentile] onto [0, 255]
    -> Resizing           only when the input is smaller than the backbone's minimum
                          (or `image_size` asks for, e.g., 224 to match ImageNet)
    -> grey_to_rgb        grey repeated into the three channels the backbone expects
    -> ApplicationPreprocess  the backbone's own preprocess_input
    -> "backbone"         nested keras.Model, include_top=False, pooling="avg"
    -> dropout -> "logits" (Dense, L2) -> "probs" (float32 softmax)

Grey becomes RGB by repeating the channel rather than by a learnable 1x1 conv: a grey
photograph is what ImageNet filters have seen as (v, v, v), so pretrained first-layer
filters respond as intended from the first step, and there is no randomly initialised
layer in front of them to undo the pre-training while the head is still random.

BatchNorm in inference mode: Keras 3 passes the outer `training` flag to nested models
even where the graph called them with training=False, so the backbone is called with
training=False (which holds in inference) and, in addition, its BatchNormalization
layers are set non-trainable, which in Keras 3 runs them in inference mode in every
case. This is the default whenever pretrained weights are used (`freeze_batch_norm`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import urllib.parse
from typing import Iterator

import keras
import numpy as np

from hep2tf import rundir, storage
from hep2tf.errors import InputError
from hep2tf.models.registry import is_weights_path, read_hparams, register
from hep2tf.models import layers as hep2tf_layers
from hep2tf.models import weights_file

BACKBONE = "backbone"

@dataclasses.dataclass(frozen=True)
class Backbone:
  """constructor: a keras.applications class name; application: the keras.applications
  module whose preprocess_input it expects; min_size: its smallest input side."""

  constructor: str
  application: str
  min_size: int = 32


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone("ResNet50", "resnet50"),
    "resnet101": Backbone("ResNet101", "resnet"),
    "resnet152": Backbone("ResNet152", "resnet"),
    "resnet50v2": Backbone("ResNet50V2", "resnet_v2"),
    "resnet101v2": Backbone("ResNet101V2", "resnet_v2"),
    "efficientnet_b0": Backbone("EfficientNetB0", "efficientnet"),
    "efficientnet_b1": Backbone("EfficientNetB1", "efficientnet"),
    "efficientnet_b2": Backbone("EfficientNetB2", "efficientnet"),
    "efficientnet_b3": Backbone("EfficientNetB3", "efficientnet"),
    "efficientnetv2_b0": Backbone("EfficientNetV2B0", "efficientnet_v2"),
    "efficientnetv2_b1": Backbone("EfficientNetV2B1", "efficientnet_v2"),
    "efficientnetv2_b2": Backbone("EfficientNetV2B2", "efficientnet_v2"),
    "efficientnetv2_b3": Backbone("EfficientNetV2B3", "efficientnet_v2"),
    "efficientnetv2_s": Backbone("EfficientNetV2S", "efficientnet_v2"),
    "efficientnetv2_m": Backbone("EfficientNetV2M", "efficientnet_v2"),
    "convnext_tiny": Backbone("ConvNeXtTiny", "convnext"),
    "convnext_small": Backbone("ConvNeXtSmall", "convnext"),
    "convnext_base": Backbone("ConvNeXtBase", "convnext"),
    "mobilenet_v2": Backbone("MobileNetV2", "mobilenet_v2"),
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "mobilenet_v3"),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "mobilenet_v3"),
    "densenet121": Backbone("DenseNet121", "densenet"),
    "densenet169": Backbone("DenseNet169", "densenet"),
    "densenet201": Backbone("DenseNet201", "densenet"),
    "inception_v3": Backbone("InceptionV3", "inception_v3", 75),
    "xception": Backbone("Xception", "xception", 71),
    "vgg16": Backbone("VGG16", "vgg16"),
    "vgg19": Backbone("VGG19", "vgg19"),
}


@dataclasses.dataclass(frozen=True)
class BackboneOptions:
  """A backbone model's hparams: `backbone`, a key of BACKBONES; `weights`,
  None/"none", "imagenet" (from the Keras cache or the network; `imagenet_guard`) or
  a path, which `build_model` loads after building; `image_size`, the side (or
  (height, width)) images are resized to before the backbone; `dropout` before the
  head; `weight_decay`, L2 on the head's kernel (the backbone's kernels carry none:
  decay them with AdamW if wanted); `backbone_trainable` False freezes the backbone
  (the head-only phase of fine-tuning, `set_backbone_trainable`);
  `freeze_batch_norm` keeps its BatchNorm in inference mode, statistics fixed (None:
  when `weights` is not none); `contrast_stretch` stretches each image to [0, 255]
  first, `upper_percentile` mapped to 255."""
  backbone: str
  weights: str | None = None
  image_size: int | tuple[int, int] | None = None
  dropout: float = 0.2
  weight_decay: float = 5e-4
  backbone_trainable: bool = True
  freeze_batch_norm: bool | None = None
  contrast_stretch: bool = True
  upper_percentile: float = 99.5

  def __post_init__(self):
    if self.backbone not in BACKBONES:
      raise ValueError(f"unknown backbone {self.backbone!r}; known: "
                       f"{', '.join(BACKBONES)}")

  @property
  def imagenet(self) -> bool:
    return isinstance(self.weights, str) and self.weights.lower() == "imagenet"


def build(input_shape: tuple[int, int, int], num_classes: int,
          **hparams) -> keras.Model:
  """A Keras Applications backbone with a new head, from images in [0, 255] of
  `input_shape` (H, W, 1 or 3) to `num_classes` probabilities: a keras.Model named
  after the backbone, holding a nested model named "backbone". `hparams` are the
  fields of `BackboneOptions` (registered with `backbone` set). Inputs smaller than
  the backbone's minimum side (`BACKBONES[...].min_size`, e.g. 75 for inception_v3)
  are resized up inside the model; `image_size` resizes to any size."""
  options = read_hparams(BackboneOptions, hparams.get("backbone", "backbone"), hparams)
  spec = BACKBONES[options.backbone]
  height, width = _backbone_size(input_shape[:2], options.image_size, spec.min_size)
  images = keras.Input(shape=input_shape, name="image")
  x = _to_backbone_input(images, input_shape, (height, width), options)
  constructor = getattr(keras.applications, spec.constructor)
  with imagenet_guard() if options.imagenet else contextlib.nullcontext():
    net = constructor(include_top=False,
                      weights="imagenet" if options.imagenet else None,
                      input_shape=(height, width, 3), pooling="avg")
  # Renamed afterwards: EfficientNetV2 looks its block table up by the `name` argument.
  net.name = BACKBONE
  x = net(x, training=False)
  x = keras.layers.Dropout(options.dropout, name="dropout")(x)
  probs = hep2tf_layers.softmax_head(x, num_classes, options.weight_decay)
  model = keras.Model(images, probs, name=options.backbone)
  freeze_batch_norm = options.freeze_batch_norm
  if freeze_batch_norm is None:   # pretrained weights keep their statistics
    freeze_batch_norm = options.imagenet or is_weights_path(options.weights)
  set_backbone_trainable(model, options.backbone_trainable,
                         freeze_batch_norm=freeze_batch_norm)
  return model


def _to_backbone_input(images, input_shape, size: tuple[int, int],
                       options: BackboneOptions):
  """Contrast stretch, resize, grey to RGB, then the backbone's own preprocessing."""
  x = images
  if options.contrast_stretch:
    x = hep2tf_layers.ContrastStretch(
        options.upper_percentile, relative_floor=hep2tf_layers.RELATIVE_FLOOR,
        dtype="float32", name="contrast_stretch")(x)
  if size != tuple(input_shape[:2]):
    x = keras.layers.Resizing(*size, dtype="float32", name="resize")(x)
  if input_shape[-1] == 1:
    x = keras.layers.Concatenate(dtype="float32", name="grey_to_rgb")([x, x, x])
  return hep2tf_layers.ApplicationPreprocess(
      BACKBONES[options.backbone].application, dtype="float32", name="preprocess")(x)


for _name in BACKBONES:
  register(_name)(functools.partial(build, backbone=_name))


def set_backbone_trainable(model: keras.Model, trainable: bool,
                           fine_tune_from: str | int | None = None,
                           freeze_batch_norm: bool = True) -> None:
  """Freezes or unfreezes the nested "backbone" of `model`, in place.

  Compile the model again afterwards: Keras fixes the trainable weights at compile.

  Args:
    model: a model from this module.
    trainable: False freezes the whole backbone; True unfreezes it.
    fine_tune_from: with trainable=True, unfreeze only from this backbone layer (its
      name or index) on; earlier layers stay frozen.
    freeze_batch_norm: keep every BatchNormalization of the backbone non-trainable,
      i.e. in inference mode with fixed statistics, also when unfrozen.
  """
  net = model.get_layer(BACKBONE)
  net.trainable = trainable
  if not trainable:
    return
  if fine_tune_from is not None:
    if isinstance(fine_tune_from, str):
      names = [layer.name for layer in net.layers]
      if fine_tune_from not in names:
        raise ValueError(f"backbone has no layer {fine_tune_from!r}")
      fine_tune_from = names.index(fine_tune_from)
    for layer in net.layers[:fine_tune_from]:
      layer.trainable = False
  if freeze_batch_norm:
    for layer in net.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.trainable = False


def _backbone_size(size: tuple[int, int], image_size: int | tuple[int, int] | None,
                   min_size: int) -> tuple[int, int]:
  if image_size is not None:
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
  if None in size:
    raise ValueError(f"backbones need a fixed input size, got {size}")
  return max(int(size[0]), min_size), max(int(size[1]), min_size)


# ---------------------------------------------------------------- imagenet weights

def keras_cache_dir(subdir: str = "models") -> str:
  """Where Keras keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"),
                                                      ".keras")
  return os.path.join(home, subdir)


def host_reachable(host: str, port: int = 443, timeout: float = 2.5) -> bool:
  """Whether a TCP connection to host:port opens within `timeout` seconds."""
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


@contextlib.contextmanager
def imagenet_guard() -> Iterator[None]:
  """Makes a Keras Applications constructor fail fast and clearly when offline.

  Keras names the weight file (the name depends on the net, its variant and the input
  size), so the check wraps Keras's own `get_file`: when the file is in the cache or
  its host answers, Keras loads or downloads it as usual; otherwise a RuntimeError
  says which file is needed, from where, and where to put it. Without the wrapper,
  Keras would wait on the network and fail with a bare URL error.
  """
  try:
    from keras.src.utils import file_utils  # pylint: disable=g-import-not-at-top
  except ImportError:  # a Keras that moved its internals: plain Keras behaviour
    yield
    return
  real_get_file = file_utils.get_file

  def checked_get_file(fname=None, origin=None, *args, **kwargs):
    subdir = kwargs.get("cache_subdir", "datasets")
    cache_dir = kwargs.get("cache_dir")
    folder = (os.path.join(os.path.expanduser(cache_dir), subdir) if cache_dir
              else keras_cache_dir(subdir))
    name = fname or os.path.basename(urllib.parse.urlparse(origin).path)
    path = os.path.join(folder, name)
    host = urllib.parse.urlparse(origin or "").hostname or ""
    if not os.path.exists(path) and not host_reachable(host):
      raise RuntimeError(
          f"ImageNet weights are not in the Keras cache and {host} cannot be "
          f"reached. Needed file: {name}, from {origin}. To work offline, download "
          f"it elsewhere and put it at {path} (the Keras cache; KERAS_HOME moves it). "
          f"Alternatives: --weights=none to train from scratch, or --weights=PATH "
          f"with a .weights.h5 / .keras file or an earlier hep2tf run directory.")
    return real_get_file(fname, origin, *args, **kwargs)

  file_utils.get_file = checked_get_file
  try:
    yield
  finally:
    file_utils.get_file = real_get_file


# ---------------------------------------------------------------- local weights

def load_pretrained(model: keras.Model, source: str | os.PathLike) -> list[str]:
  """Copies weights from `source` into `model` where layer names and shapes match.

  Layers are matched by their path of names ("conv1", "backbone/conv1_conv"), so a
  nested backbone is matched by its inner layers; a layer is copied only when all its
  weight shapes match, so a head for another number of classes stays as built
  (pre-train on one cell dataset, fine-tune on another). A `.weights.h5` file does not
  store layer names (Keras 3 keys layers by class and order: "dense_1"), so there the
  key is class and order, which matches between models of the same architecture;
  prefer a `.keras` file or a run directory.

  Args:
    model: the model to fill, in place.
    source: a `.weights.h5` file, a `.keras` file, or a hep2tf run directory (its
      best.keras, else model.keras).

  Returns:
    The paths of the layers copied, in model order.

  Raises:
    InputError naming the file when it is missing or unreadable or nothing matches.
  """
  path = resolve_weights(os.fspath(source))
  stores = _read_stores(path)
  walk = _walk_layers if path.endswith(".keras") else _walk_weights_h5_keys
  loaded = []
  for name, layer in walk(model):
    if name not in stores:
      continue
    own: dict[str, np.ndarray] = {}
    layer.save_own_variables(own)
    theirs = stores[name]
    if not own or sorted(own) != sorted(theirs) or any(
        np.shape(own[k]) != np.shape(theirs[k]) for k in own):
      continue
    layer.load_own_variables(theirs)
    loaded.append(name)
  if not loaded:
    raise InputError(f"no layer of model {model.name!r} matches a layer of the same "
                     f"name and weight shapes in this file", file=path)
  return loaded


def resolve_weights(source: str) -> str:
  """The weights file of a --weights value (a file, or a run directory's best /
  final model); InputError naming it when it is missing or not what it says."""
  if storage.exists(os.path.join(source, "saved_model.pb")):
    raise InputError(weights_file.SAVED_MODEL, file=source)
  if storage.isdir(source):
    for name in rundir.RUN_CHECKPOINTS:
      candidate = os.path.join(source, name)
      if storage.exists(candidate):
        return candidate
    raise InputError(
        f"run directory holds neither {' nor '.join(rundir.RUN_CHECKPOINTS)}",
        file=source)
  if not storage.exists(source) or storage.isdir(source):
    raise InputError("weights file not found", file=source)
  with storage.local_copy(source) as local:
    weights_file.check_weights_file(local)   # says what a wrong file is instead
  return source


def _read_stores(path: str) -> dict[str, dict[str, np.ndarray]]:
  """{layer path: {"0": array, ...}} as Layer.save_own_variables writes them."""
  try:
    if path.endswith(".keras"):
      source_model = keras.saving.load_model(path, safe_mode=True, compile=False)
      stores = {}
      for name, layer in _walk_layers(source_model):
        store: dict[str, np.ndarray] = {}
        layer.save_own_variables(store)
        stores[name] = {k: np.asarray(v) for k, v in store.items()}
      return stores
    with storage.local_copy(path) as local:  # h5py reads local files only
      return _read_weights_h5(local)
  except InputError:
    raise
  except Exception as e:  # h5py, zipfile and Keras raise many kinds
    raise InputError(f"cannot read weights: {type(e).__name__}: {e}",
                     file=path) from e


def _read_weights_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
  """Reads a Keras 3 `.weights.h5`: groups layers/<name>[/layers/<inner>]/vars/<i>."""
  import h5py  # pylint: disable=g-import-not-at-top  (a Keras dependency)
  stores: dict[str, dict[str, np.ndarray]] = {}
  with h5py.File(path, "r") as f:
    def visit(name, obj):
      parts = name.split("/")
      if isinstance(obj, h5py.Group) and parts[-1] == "vars" and len(obj):
        # Keep layer names only: drop the "layers" containers and the "vars" leaf.
        layer_path = "/".join(p for p in parts[:-1] if p != "layers")
        stores[layer_path] = {k: np.asarray(v) for k, v in obj.items()}
    f.visititems(visit)
  return stores


def _walk_weights_h5_keys(model: keras.Model, prefix: str = ""
                          ) -> Iterator[tuple[str, keras.layers.Layer]]:
  """(key, layer) as `_read_weights_h5` keys a model's layers: Keras 3 names each
  after its class, numbered in order within its container ("dense", "dense_1")."""
  from keras.src.utils import naming  # pylint: disable=g-import-not-at-top
  used: dict[str, int] = {}
  for layer in model.layers:
    base = naming.to_snake_case(type(layer).__name__)
    count = used.get(base)
    used[base] = 0 if count is None else count + 1
    name = prefix + (base if count is None else f"{base}_{count + 1}")
    if isinstance(layer, keras.Model):
      yield from _walk_weights_h5_keys(layer, name + "/")
    elif layer.weights:
      yield name, layer


def _walk_layers(model: keras.Model, prefix: str = ""
                 ) -> Iterator[tuple[str, keras.layers.Layer]]:
  """(path, layer) for every layer holding weights, entering nested models."""
  for layer in model.layers:
    name = prefix + layer.name
    if isinstance(layer, keras.Model):
      yield from _walk_layers(layer, name + "/")
    elif layer.weights:
      yield name, layer

"""Shared fixtures: tiny synthetic records made once per test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `auto` precision decides from the CPU flags in tests (and the CLIs they start): a
# probe of each tiny test model would cost seconds apiece. tests/test_hardware.py and
# tests/training/test_precision.py measure on purpose.
os.environ["HEP2TF_PRECISION_PROBE"] = "off"

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
  """A synthetic HEp-2 set of 180 cells (random split) -> records.

  Returns (records_dir, source_dir).
  """
  from hep2tf.convert import create
  from hep2tf.convert.plan import ConvertConfig

  root = tmp_path_factory.mktemp("tiny")
  source = root / "source"
  records = root / "records"
  create.create_records(ConvertConfig(
      data_dir=str(source), output_dir=str(records), synth_num_images=180,
      synth_seed=3, group_split=False, num_workers=1, progress=False))
  return str(records), str(source)

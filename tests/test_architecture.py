"""The folder list is the architecture: imports run one way and modules stay small.

Every module under hep2tf/ is parsed with `ast` (nothing is imported, so this runs in a
second) and each `import` of a hep2tf module, also one inside a function, is checked
against the layer it comes from (docs/ARCHITECTURE.md):

  base        errors, storage, atomic, rundir, figures, hardware: no package subfolder
  data/       base only (never training/, evaluation/, convert/, models/ or a CLI)
  models/     base only
  config/     data/ and base (and no TensorFlow: test_config_imports_no_tensorflow)
  convert/    config/, data/ and base
  evaluation/ config/, data/, models/ and base (never training/ or convert/)
  training/   config/, data/, models/, evaluation/ and base
  CLIs        (create_records, train, evaluate, predict, sweep, synth, beam_pipeline)
              anything: they sit on top
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "hep2tf"
MAX_LINES = 400

STAGES = ("data", "models", "config", "convert", "evaluation", "training")
BASE = ("__init__", "errors", "storage", "atomic", "rundir", "runlock", "figures",
        "hardware", "console")
CLIS = ("create_records", "train", "evaluate", "predict", "sweep", "synth",
        "beam_pipeline")
# Which layers each layer may import, besides its own and the base modules.
ALLOWED = {
    "base": set(),
    "data": set(),
    "models": set(),
    "config": {"data"},
    "convert": {"config", "data"},
    "evaluation": {"config", "data", "models"},
    "training": {"config", "data", "models", "evaluation"},
    "cli": {"data", "models", "config", "convert", "evaluation", "training", "cli"},
}


def layer_of_path(relative: pathlib.PurePath) -> str:
  """The layer of a module file, given its path relative to hep2tf/."""
  if len(relative.parts) > 1:
    stage = relative.parts[0]
    if stage not in STAGES:
      raise ValueError(f"hep2tf/{relative}: {stage}/ is not a known stage "
                       f"({', '.join(STAGES)}); add it to tests/test_architecture.py")
    return stage
  stem = relative.stem
  if stem in CLIS:
    return "cli"
  if stem in BASE:
    return "base"
  raise ValueError(f"hep2tf/{relative}: a top-level module that is neither a base "
                   "module nor a command line; add it to BASE or CLIS in "
                   "tests/test_architecture.py (and to docs/ARCHITECTURE.md)")


def layer_of_module(name: str) -> str:
  """The layer of an imported module name such as 'hep2tf.data.reader'."""
  parts = name.split(".")
  if len(parts) == 1:
    return "base"          # the package itself
  if parts[1] in STAGES:
    return parts[1]
  return "cli" if parts[1] in CLIS else "base"


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
  """(line, name) of every hep2tf import in a module, nested ones included.

  `from hep2tf.a import x` gives hep2tf.a.x (x is a module or a name in one; the layer
  is the same either way); relative imports are resolved against `package`, the
  module's own package.
  """
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names
                if a.name.split(".")[0] == "hep2tf"]
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        module = ".".join(base + ([module] if module else []))
      if module.split(".")[0] == "hep2tf":
        found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
  return found


def arrow_violations(root: pathlib.Path) -> list[str]:
  """One message per import that runs against the arrows, for the tree at `root`."""
  problems = []
  for path in sorted(root.rglob("*.py")):
    relative = path.relative_to(root)
    layer = layer_of_path(relative)
    package = ".".join(("hep2tf",) + relative.parent.parts)
    tree = ast.parse(path.read_text(), filename=str(path))
    for line, module in imported_modules(tree, package):
      target = layer_of_module(module)
      if target not in ALLOWED[layer] | {layer, "base"}:
        problems.append(
            f"hep2tf/{relative}:{line} ({layer}) imports {module} ({target}); "
            f"{layer} may import only {sorted(ALLOWED[layer] | {'base'})}")
  return problems


def oversized_modules(root: pathlib.Path, limit: int = MAX_LINES) -> list[str]:
  return [f"hep2tf/{path.relative_to(root)}: {count} lines (limit {limit})"
          for path in sorted(root.rglob("*.py"))
          if (count := len(path.read_text().splitlines())) > limit]


def test_imports_run_one_way():
  problems = arrow_violations(PACKAGE)
  assert not problems, "imports against the arrows:\n" + "\n".join(problems)


def test_no_module_over_400_lines():
  problems = oversized_modules(PACKAGE)
  assert not problems, "modules over the limit:\n" + "\n".join(problems)


def test_a_wrong_arrow_is_named(tmp_path):
  """The check itself: a data module importing the trainer, even inside a function,
  and a base module importing a stage are both reported by module and import."""
  root = tmp_path / "hep2tf"
  (root / "data").mkdir(parents=True)
  (root / "training").mkdir()
  (root / "__init__.py").write_text("")
  (root / "storage.py").write_text("from hep2tf.data import reader\n")
  (root / "data" / "reader.py").write_text(
      "from hep2tf import storage\n\n\ndef f():\n"
      "  from hep2tf.training import trainer\n")
  (root / "training" / "trainer.py").write_text("from hep2tf.data import reader\n")
  problems = arrow_violations(root)
  assert len(problems) == 2, problems
  assert problems[0].startswith("hep2tf/data/reader.py:5 (data) imports "
                                "hep2tf.training.trainer (training)")
  assert problems[1].startswith("hep2tf/storage.py:1 (base) imports "
                                "hep2tf.data.reader (data)")
  (root / "data" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
  assert oversized_modules(root) == [f"hep2tf/data/big.py: {MAX_LINES + 1} lines "
                                     f"(limit {MAX_LINES})"]

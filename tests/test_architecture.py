"""The folder list is the architecture: imports run one way and modules stay small.

Every module under hep2tf/ is parsed with `ast` (nothing is imported, so this runs in a
second) and each `import` of a hep2tf module, also one inside a function, is checked
against the layer it comes from (docs/ARCHITECTURE.md), and no two modules import each
other (a circle, also one through a function's import; type-only ones allowed by name
in ALLOWED_TYPE_CIRCLES):

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


def _is_type_checking(node: ast.AST) -> bool:
  """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports a type checker runs."""
  test = getattr(node, "test", None)
  return isinstance(node, ast.If) and (
      (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or
      (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def import_graph(root: pathlib.Path, types: bool = False) -> dict[str, set[str]]:
  """Module name -> the hep2tf modules it imports when it runs.

  Every import counts, at module level and inside functions (a function's import runs
  when it is called: a circle all the same); those under `if TYPE_CHECKING:` count
  only with `types=True`. `from hep2tf.data import images` is an edge to the module
  hep2tf.data.images; `from hep2tf.data.records import Records` to
  hep2tf.data.records.
  """
  modules = {}
  for path in sorted(root.rglob("*.py")):
    relative = path.relative_to(root).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    modules[".".join(("hep2tf",) + parts)] = path
  graph = {}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    if not types:
      for node in ast.walk(tree):
        if _is_type_checking(node):
          node.body = []
    graph[name] = set()
    for _, imported in imported_modules(tree, package):
      while imported not in modules and "." in imported:
        imported = imported.rpartition(".")[0]   # a name inside a module
      if imported in modules and imported != name:
        graph[name].add(imported)
  return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The import circles: each set of modules that reach each other (a strongly
  connected component of two or more), sorted, as sorted lists."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):   # Tarjan's algorithm; the package has ~150 modules
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph.get(node, ())):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return sorted(found)


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


# Circles that remain, each in files another change owns; the test fails on any other
# and on one of these that has gone (then delete its line). Type-only circles (imports
# under `if TYPE_CHECKING:`) never run, but still tie two modules to each other.
ALLOWED_TYPE_CIRCLES = [
    # trainer builds the outputs; outputs names trainer's types (issue 29, training/)
    ["hep2tf.training.outputs", "hep2tf.training.trainer"],
    # sweep runs the trials; sweep_results names sweep's types (issue 29, training/)
    ["hep2tf.training.sweep", "hep2tf.training.sweep_results"],
]


def test_no_import_circles_at_run_time():
  circles = import_circles(import_graph(PACKAGE))
  assert not circles, "modules that import each other:\n" + "\n".join(
      " <-> ".join(c) for c in circles)


def test_no_new_import_circles_for_types():
  circles = import_circles(import_graph(PACKAGE, types=True))
  assert circles == ALLOWED_TYPE_CIRCLES, (
      "type-only import circles differ from ALLOWED_TYPE_CIRCLES:\n"
      + "\n".join(" <-> ".join(c) for c in circles))


def test_an_import_circle_is_found(tmp_path):
  """The check itself: a circle through a function's import is found; one under
  TYPE_CHECKING only when types count; a one-way import is no circle."""
  root = tmp_path / "hep2tf"
  (root / "data").mkdir(parents=True)
  (root / "__init__.py").write_text("")
  (root / "data" / "__init__.py").write_text("")
  (root / "data" / "a.py").write_text("from hep2tf.data import b\n")
  (root / "data" / "b.py").write_text("def f():\n  from hep2tf.data.a import x\n")
  (root / "data" / "c.py").write_text(
      "from typing import TYPE_CHECKING\nfrom hep2tf.data import a\n"
      "if TYPE_CHECKING:\n  from hep2tf.data.d import D\n")
  (root / "data" / "d.py").write_text("from hep2tf.data.c import C\n")
  assert import_circles(import_graph(root)) == [["hep2tf.data.a", "hep2tf.data.b"]]
  assert import_circles(import_graph(root, types=True)) == [
      ["hep2tf.data.a", "hep2tf.data.b"], ["hep2tf.data.c", "hep2tf.data.d"]]


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


# ---------------------------------------------------------------- shape of functions
# Reported, not enforced (`python tests/test_architecture.py` prints them): functions
# taking more than MAX_PARAMETERS named parameters (keyword-only ones counted, self
# and cls not, nor *args / **kwargs) want an options object; functions over
# MAX_FUNCTION_LINES lines (decorators and docstring included) want splitting.
MAX_PARAMETERS = 6
MAX_FUNCTION_LINES = 60


def function_shapes(root: pathlib.Path) -> tuple[list[str], list[str]]:
  """(functions with too many parameters, functions too long), one line each,
  longest first: "N hep2tf/path.py:line name"."""
  many, long = [], []
  for path in sorted(root.rglob("*.py")):
    where = f"hep2tf/{path.relative_to(root)}"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
      if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      a = node.args
      names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
      if names[:1] in (["self"], ["cls"]):
        names = names[1:]
      start = min([d.lineno for d in node.decorator_list] + [node.lineno])
      lines = node.end_lineno - start + 1
      if len(names) > MAX_PARAMETERS:
        many.append((len(names), f"{where}:{node.lineno} {node.name}"))
      if lines > MAX_FUNCTION_LINES:
        long.append((lines, f"{where}:{node.lineno} {node.name}"))
  return ([f"{n} {s}" for n, s in sorted(many, reverse=True)],
          [f"{n} {s}" for n, s in sorted(long, reverse=True)])


def test_function_shapes_are_counted(tmp_path):
  root = tmp_path / "hep2tf"
  root.mkdir()
  (root / "a.py").write_text(
      "def wide(a, b, c, d, *, e, f, g, **rest):\n  pass\n\n\n"
      "class C:\n  def narrow(self, a, b, c, d, e, f):\n    pass\n\n\n"
      "def tall():\n" + "  x = 1\n" * MAX_FUNCTION_LINES)
  assert function_shapes(root) == (["7 hep2tf/a.py:1 wide"],
                                   [f"{MAX_FUNCTION_LINES + 1} hep2tf/a.py:10 tall"])


if __name__ == "__main__":
  many, long = function_shapes(PACKAGE)
  circles = import_circles(import_graph(PACKAGE))
  typed = import_circles(import_graph(PACKAGE, types=True))
  print(f"functions with more than {MAX_PARAMETERS} parameters: {len(many)}")
  print("\n".join(f"  {line}" for line in many))
  print(f"functions over {MAX_FUNCTION_LINES} lines: {len(long)}")
  print("\n".join(f"  {line}" for line in long))
  print(f"import circles: {len(circles)} at run time, {len(typed)} with type-only "
        "imports")

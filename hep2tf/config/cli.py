"""Running a command line on config sections: `run(main, sections, doc)`.

Every `python -m hep2tf.X` defines its flags from config sections (hep2tf.config) and
calls `run`. `--help` prints the command's docstring, then its flags by section, one
block per config module (data, model, augment, train, ...), as absl renders a
module's flags; `--helpfull` adds absl's own flags. A flagfile may include other
flagfiles (`--flagfile=` lines; paths relative to the working directory).
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

from absl import app, flags

from hep2tf import console
from hep2tf.config import core

HELP_ARGS = ("--help", "-help", "--helpshort", "-helpshort", "-?")
FLAGFILE_HELP = (
    "\nabsl.flags:\n"
    "  --flagfile: Read flags from this file; a --flagfile= line in it includes\n"
    "    another (paths relative to the working directory). Flags given after it on\n"
    "    the command line override it.\n"
    "  --helpfull: Also list absl's own flags (logging, ...).")


def section_modules(sections: Sequence[type]) -> list[str]:
  """The modules declaring `sections` (and the sections they join), in order."""
  modules = []
  for config_class in sections:
    for section in core.sections_of(config_class):
      if section.__module__ not in modules:
        modules.append(section.__module__)
  return modules


def help_text(sections: Sequence[type], doc: str | None,
              flag_values: flags.FlagValues = flags.FLAGS) -> str:
  """The command's docstring, then its flags by section (module)."""
  blocks = [flag_values.module_help(module) for module in section_modules(sections)]
  return ((doc or "").rstrip() + "\n\nflags, by section (hep2tf/config/):\n"
          + "\n".join(b for b in blocks if b) + "\n" + FLAGFILE_HELP + "\n")


def _parse_or_help(sections, doc, argv: list[str]) -> list[str]:
  """absl's flag parsing, except that --help prints `help_text` (before a `--`,
  after which the arguments are not ours)."""
  ours = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  if any(arg in HELP_ARGS for arg in ours):
    sys.stdout.write(help_text(sections, doc))
    sys.exit(0)
  return app.parse_flags_with_usage(argv)


def run(main: Callable, sections: Sequence[type], doc: str | None,
        interrupted: str = "nothing half-written was published") -> None:
  """Defines the flags of `sections` on the global FLAGS and runs `main` under absl
  (`hep2tf.console.run`: Ctrl-C and a full disk as one line, `interrupted` saying
  what is left); `doc`, the command's docstring, heads its --help."""
  core.define_flags(sections)
  console.run(main, interrupted,
              flags_parser=functools.partial(_parse_or_help, sections, doc))

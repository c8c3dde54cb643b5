"""A config field is a flag: declared once, with its default, help and choices.

A section is a dataclass whose fields are declared with `flag` (a command-line flag)
or `setting` (set in code only), and whose class variable SECTION names it ("data",
"model", ...). A config made of several sections (TrainConfig) inherits from them all
and lists them in SECTIONS; its fields are theirs, so `config.dropout` reads the same
whichever section holds it. Everything else derives from the fields:

  define_flags(sections, flag_values)  the absl flags, each registered under its
                                       section's module, so `--help` lists them by
                                       section (hep2tf.config.cli)
  from_flags(cls, flag_values)         parsed flags -> a config
  read_flagfile(cls, path, ...)        a flagfile (which may include flagfiles) -> a
                                       config
  flag_lines(config)                   a config -> `--name=value` lines
  parse_value(cls, name, text)         one value as its flag parses it
  to_json(config) / from_json(...)     a config <-> JSON, by section; an unknown key
                                       or a value of the wrong type is an InputError
                                       naming it

A flag that was removed is declared in its section's RETIRED ({name: `Retired`}):
old flagfiles and config.json files that name it still read, and a value that asks
for what is gone is refused with a sentence saying so.

Field types: str, int, float, bool, `X | None` of those, `tuple[str, ...]` (a flag
given once per value) and any type with a `parser` (a `TextParser`).

No TensorFlow here (nor in the rest of hep2tf.config), so `--help` stays fast.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, Sequence

from absl import flags, logging

from hep2tf.errors import InputError


def flag(default, help: str, *, choices: Sequence[str] | None = None,
         parser: TextParser | None = None):
  """A field that is a flag: its default, its help and, for an enum flag, its
  choices; `parser` for a type that is read from text in its own way."""
  metadata = {"help": help, "flag": True}
  if choices is not None:
    metadata["choices"] = tuple(choices)
  if parser is not None:
    metadata["parser"] = parser
  return dataclasses.field(default=default, metadata=metadata)


def setting(default, help: str = ""):
  """A field that is not a flag: set by the code that makes the config."""
  return dataclasses.field(default=default, metadata={"help": help, "flag": False})


@dataclasses.dataclass(frozen=True)
class Retired:
  """A flag that was removed, declared in its section's RETIRED {name: Retired}.

  Old flagfiles, RUN/flags.txt and config.json files still name it: as a flag it is
  read and ignored (with a warning) when its value is one of `accepted`, what hep2tf
  now always does, and refused with `note` otherwise; in JSON it is dropped (a run's
  record, not an instruction). It is in no config, no --help (only --helpfull) and
  no written flagfile.
  """
  note: str                        # what became of it, and what to do instead
  accepted: tuple[str, ...] = ()


class TextParser(flags.ArgumentParser):
  """A flag's parser and serializer for a typed value (a tuple, ...): `parse` takes
  the text (or the value itself, as absl passes defaults) and raises ValueError."""

  def parse(self, argument):
    raise NotImplementedError

  def serialize(self, value) -> str:
    raise NotImplementedError

  def flag_type(self) -> str:
    return type(self).__name__


# --- Sections and their fields -------------------------------------------------------


def sections_of(cls) -> tuple[type, ...]:
  """The sections of a config class: its SECTIONS (its own or inherited), or the
  class itself."""
  return tuple(getattr(cls, "SECTIONS", None) or (cls,))


def section_name(section) -> str:
  return section.SECTION


def own_fields(section) -> list[dataclasses.Field]:
  """The fields a section declares itself (not those of the sections it joins)."""
  names = section.__dict__.get("__annotations__", {})
  return [f for f in dataclasses.fields(section) if f.name in names]


def retired(cls) -> dict[str, Retired]:
  """{name: Retired} of the sections of `cls`."""
  return {name: r for section in sections_of(cls)
          for name, r in section.__dict__.get("RETIRED", {}).items()}


def flag_fields(cls) -> list[dataclasses.Field]:
  return [f for f in dataclasses.fields(cls) if f.metadata.get("flag")]


def _hint(cls, name: str):
  return typing.get_type_hints(cls)[name]


def _base(hint) -> tuple[Any, bool, bool]:
  """(scalar type, optional, multi) of a field's type hint."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    rest = [a for a in args if a is not type(None)]
    base, _, multi = _base(rest[0]) if len(rest) == 1 else (hint, False, False)
    return base, True, multi
  if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
    return args[0], False, True
  return hint, False, False


# --- Flags --------------------------------------------------------------------------

_SCALAR_PARSERS = {str: flags.ArgumentParser, int: flags.IntegerParser,
                   float: flags.FloatParser}


def _make_flag(cls, field: dataclasses.Field) -> flags.Flag:
  meta, name, default = field.metadata, field.name, field.default
  if meta.get("parser") is not None:
    return flags.Flag(meta["parser"], meta["parser"], name, default, meta["help"])
  if meta.get("choices"):
    return flags.EnumFlag(name, default, meta["help"], list(meta["choices"]))
  base, _, multi = _base(_hint(cls, name))
  if multi:
    return flags.MultiFlag(_SCALAR_PARSERS[base](), flags.ArgumentSerializer(), name,
                           list(default), meta["help"])
  if base is bool:
    return flags.BooleanFlag(name, default, meta["help"])
  if base not in _SCALAR_PARSERS:
    raise TypeError(f"{cls.__name__}.{name}: a flag of type {base} needs a parser")
  return flags.Flag(_SCALAR_PARSERS[base](), flags.ArgumentSerializer(), name,
                    default, meta["help"])


def define_flags(sections: Iterable[type],
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """One flag per flag field of each section (of each config's sections), registered
  under the module that declares the section."""
  for config_class in sections:
    covered = set()
    for section in sections_of(config_class):
      for field in own_fields(section):
        if field.metadata.get("flag"):
          flags.DEFINE_flag(_make_flag(section, field), flag_values,
                            module_name=section.__module__)
          covered.add(field.name)
      _define_retired(section, flag_values)
    missing = sorted({f.name for f in flag_fields(config_class)} - covered)
    if missing:
      raise TypeError(f"{config_class.__name__}: flag fields {missing} belong to no "
                      "section; declare them in one of its SECTIONS")


def _define_retired(section, flag_values: flags.FlagValues) -> None:
  """The retired flags of `section`, outside its --help (a module of their own)."""
  for name, old in section.__dict__.get("RETIRED", {}).items():
    if name in flag_values:
      continue
    flags.DEFINE_string(name, None, f"Retired: {old.note}", flag_values,
                        module_name=f"{section.__module__}.retired")
    flags.register_validator(
        name, lambda value, old=old: value is None or value in old.accepted,
        message=old.note, flag_values=flag_values)


def own_flag_values(*classes: type) -> flags.FlagValues:
  """The flags of `classes` on a FlagValues of their own (the global FLAGS
  untouched)."""
  flag_values = flags.FlagValues()
  define_flags(classes, flag_values)
  return flag_values


def _typed(value):
  """A flag's value as the field holds it (lists of multi flags as tuples)."""
  return tuple(value) if isinstance(value, list) else value


def from_flags(cls, flag_values: flags.FlagValues = flags.FLAGS, **overrides):
  """The config of parsed flags (define_flags defined them), with `overrides`; a
  retired flag that was given is ignored with a warning."""
  for name, old in retired(cls).items():
    if name in flag_values and flag_values[name].present:
      logging.warning("--%s=%s is ignored: %s", name, flag_values[name].value,
                      old.note)
  values = {f.name: _typed(flag_values[f.name].value)
            for f in flag_fields(cls)}
  return cls(**{**values, **overrides})


def read_flagfile(cls, path: str, *, also: Sequence[type] = (), **overrides):
  """A config from a flagfile, as `--flagfile=PATH` reads it (a `--flagfile=` line
  in it includes that file; paths are relative to the working directory); flags of
  the `also` sections are accepted and left out. ValueError names a flag that is
  not one of these or a value that does not parse."""
  flag_values = own_flag_values(cls, *also)
  try:
    flag_values(["hep2tf", f"--flagfile={path}"])
  except flags.Error as e:
    raise ValueError(f"{path}: {e}") from None
  return from_flags(cls, flag_values, **overrides)


def parse_value(cls, name: str, text: str):
  """`text` parsed as the flag `name` of `cls` parses it (types, choices); KeyError
  for a name that is not one of its flags, ValueError for a bad value."""
  if name not in {f.name for f in flag_fields(cls)}:
    raise KeyError(name)
  return _typed(own_flag_values(cls)[name].parser.parse(text))


def flag_lines(config, skip: Sequence[str] = ()) -> list[str]:
  """`--name=value` lines (`--name` / `--noname` for booleans, one line per value of
  a repeated flag) that reproduce `config`, in field order; fields in `skip` and
  fields holding None (a flag's None can only be its default) are left out."""
  cls = type(config)
  flag_values = own_flag_values(cls)
  lines = []
  for field in flag_fields(cls):
    value = getattr(config, field.name)
    if field.name in skip or value is None:
      continue
    flag_values[field.name].value = list(value) if isinstance(value, tuple) and (
        _base(_hint(cls, field.name))[2]) else value
    text = flag_values[field.name].serialize()
    lines += text.split("\n") if text else []
  return lines


# --- JSON ---------------------------------------------------------------------------


def _jsonable(value):
  return list(value) if isinstance(value, tuple) else value


def to_json(config) -> dict:
  """{section: {field: value}} for a config of several sections, else {field:
  value}; tuples as lists."""
  cls = type(config)
  sections = sections_of(cls)
  if len(sections) == 1:
    return {f.name: _jsonable(getattr(config, f.name))
            for f in dataclasses.fields(cls)}
  return {section_name(s): {f.name: _jsonable(getattr(config, f.name))
                            for f in own_fields(s)} for s in sections}


def from_json(cls, raw: dict, where: str):
  """The config that `to_json` wrote, or its flat form ({field: value}, as runs
  before sections wrote it); missing fields take their defaults and retired keys
  (`Retired`) are dropped. InputError (file `where`) for an unknown section or key,
  or a value of the wrong type."""
  if not isinstance(raw, dict):
    raise InputError(f"expected a JSON object for {cls.__name__}, got {raw!r}",
                     file=where)
  sections = {section_name(s): s for s in sections_of(cls)}
  flat = raw
  if len(sections) > 1 and raw and all(isinstance(v, dict) for v in raw.values()):
    flat = {}
    for name, values in raw.items():
      if name not in sections:
        raise InputError(f"unknown config section {name!r} (known: "
                         f"{', '.join(sections)})", file=where)
      known = {f.name for f in own_fields(sections[name])} | set(
          sections[name].__dict__.get("RETIRED", {}))
      for key in values:
        if key not in known:
          raise InputError(f"unknown key {key!r} in config section {name!r}",
                           file=where)
      flat.update(values)
  flat = {k: v for k, v in flat.items() if k not in retired(cls)}
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(flat) - known)
  if unknown:
    raise InputError(f"unknown config key {unknown[0]!r} (not a field of "
                     f"{cls.__name__})", file=where)
  return cls(**{key: check_value(cls, key, value, where)
                for key, value in flat.items()})


def check_value(cls, name: str, value, where: str):
  """`value` (from JSON) as field `name` of `cls` holds it; InputError when it has
  another type."""
  base, optional, multi = _base(_hint(cls, name))
  field = cls.__dataclass_fields__[name]
  if value is None and (optional or field.default is None):
    return None
  if multi or typing.get_origin(base) is tuple or base is tuple:
    if isinstance(value, (list, tuple)):
      return tuple(value)
  elif base is float and isinstance(value, (int, float)) and not isinstance(
      value, bool):
    return float(value)
  elif base in (str, int, bool) and type(value) is base:
    return value
  elif base not in (str, int, float, bool):
    return value
  raise InputError(f"config key {name!r}: expected {getattr(base, '__name__', base)}"
                   f", got {value!r}", file=where)

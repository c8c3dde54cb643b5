"""The plain-text reports of an evaluation, as `python -m hep2tf.evaluate` prints them.

`format_report` prints a `metrics.classification_report` dict as a table (per class,
averages, ACA and MCA, binary and group scores, the confusion matrix); `format_trust`
adds how far the probabilities can be trusted (calibration, abstention, subgroup and
specimen scores, the explanation checks). Undefined values print as "-".
"""

from __future__ import annotations

from typing import Any, Sequence

def format_report(report: dict[str, Any], title: str | None = None) -> str:
  """A `classification_report` dict as a plain-text table.

  Per class: precision, recall, F1, specificity and support, then the macro and
  weighted rows, ACA and MCA (with ROC-AUC and the positive class's scores for binary
  tasks and group-level scores when present), then the confusion matrix with
  abbreviated class names as headers (rows = true, columns = predicted). Undefined
  values print as "-".
  """
  class_names = report["class_names"]
  width = max(len("weighted avg"), *(len(name) for name in class_names))
  header = (f"{'class':<{width}}  {'precision':>9}  {'recall':>6}  {'f1':>6}  "
            f"{'specificity':>11}  {'support':>7}")
  lines = [title, ""] if title else []
  lines += [header, "-" * len(header)]

  def row(name, scores, support):
    return (f"{name:<{width}}  {_fmt(scores['precision']):>9}  "
            f"{_fmt(scores['recall']):>6}  {_fmt(scores['f1']):>6}  "
            f"{_fmt(scores['specificity']):>11}  {support:>7}")

  for name in class_names:
    scores = report["per_class"][name]
    lines.append(row(name, scores, scores["support"]))
  lines.append("-" * len(header))
  lines.append(row("macro avg", report["macro_avg"], report["num_examples"]))
  lines.append(row("weighted avg", report["weighted_avg"], report["num_examples"]))
  lines.append("")
  lines.append(f"ACA  {_fmt(report['aca'], 4)}  (accuracy over "
               f"{report['num_examples']} examples)")
  lines.append(f"MCA  {_fmt(report['mca'], 4)}  (mean of per-class recall)")
  if "roc_auc" in report:
    lines.append(f"ROC-AUC  {_fmt(report['roc_auc'], 4)}")
    lines.append(f"positive class {report['positive_class']}: "
                 f"precision {_fmt(report['positive_precision'], 4)}  "
                 f"recall {_fmt(report['positive_recall'], 4)}  "
                 f"F1 {_fmt(report['positive_f1'], 4)}")
  if "group" in report:
    group = report["group"]
    lines.append(f"group accuracy  {_fmt(group['accuracy'], 4)}  group MCA  "
                 f"{_fmt(group['mca'], 4)}  (vote over cells, "
                 f"{group['num_groups']} groups)")
  lines.append("")
  lines.append("confusion matrix (rows = true, columns = predicted)")
  lines += _format_confusion(report["confusion_matrix"], class_names)
  return "\n".join(lines) + "\n"


def format_trust(report: dict[str, Any]) -> str:
  """The calibration, abstention, subgroup, specimen-vote and explanation parts of an
  evaluation report (the keys evaluate adds) as plain text; "" when none is present."""
  lines = []
  if "ece" in report:
    line = f"ECE (15 bins)  {_fmt(report['ece'], 4)}"
    if report.get("temperature") is not None:
      line += (f"   after temperature scaling (T = {report['temperature']:.3f})  "
               f"{_fmt(report.get('ece_calibrated'), 4)}")
    lines.append(line)
  at = report.get("accuracy_at_coverage")
  if at:
    lines.append("accuracy at coverage  " + "  ".join(
        f"{100 * float(c):.0f}%: {_fmt(v, 4)}" for c, v in at.items())
        + f"  100%: {_fmt(report['aca'], 4)}")
  if report.get("abstention"):
    a = report["abstention"]
    lines.append(f"min_confidence {a['min_confidence']:.2f}: coverage "
                 f"{_fmt(a['coverage'], 4)}, accuracy on the kept cells "
                 f"{_fmt(a['accuracy'], 4)}")
  for key, title in (("by_intensity", "intensity"), ("by_specimen", "specimen")):
    if report.get(key):
      lines += ["", _subgroup_table(report[key], report["class_names"], title)]
  group = report.get("group")
  if group and group.get("table"):
    lines += ["", f"specimen-level pattern by voting: accuracy "
                  f"{_fmt(group['accuracy'], 4)}  MCA {_fmt(group['mca'], 4)}"]
    width = max(len("specimen"), *(len(r["group"]) for r in group["table"]))
    lines.append(f"{'specimen':<{width}}  {'cells':>5}  {'true':<12}  "
                 f"{'voted':<12}  {'share':>5}")
    for r in group["table"]:
      lines.append(f"{r['group']:<{width}}  {r['cells']:>5}  {r['true']:<12}  "
                   f"{r['voted']:<12}  {r['vote_share']:>5.2f}"
                   + ("" if r["correct"] else "  wrong"))
  if report.get("explanations"):
    e = report["explanations"]
    lines += ["", f"explanations ({e['method']}, {e['num_cells']} cells): mask_lift "
                  f"{_fmt(e['mask_lift'])}  intensity_lift {_fmt(e['intensity_lift'])}"
                  f"  randomisation_rank_corr {_fmt(e['randomisation_rank_corr'])}"]
  return "\n".join(lines) + ("\n" if lines else "")


def _subgroup_table(scores: dict[str, dict[str, Any]], class_names, title: str) -> str:
  short = abbreviate(class_names)
  width = max(len(title), *(len(name) for name in scores))
  rows = [f"{title:<{width}}  {'cells':>5}  {'ACA':>5}  {'MCA':>5}  "
          + "  ".join(f"{s:>8}" for s in short)]
  for name, s in scores.items():
    rows.append(f"{name:<{width}}  {s['num_examples']:>5}  {_fmt(s['aca']):>5}  "
                f"{_fmt(s['mca']):>5}  "
                + "  ".join(f"{_fmt(s['recall'][c]):>8}" for c in class_names))
  return "\n".join(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def abbreviate(class_names: Sequence[str], max_len: int = 8) -> list[str]:
  """Short, unique labels for table and plot headers ("Homogeneous" -> "Homogene")."""
  short = [name if len(name) <= max_len else name[:max_len] for name in class_names]
  if len(set(short)) < len(short):
    # Prefixes collide (coarse_speckled / coarse_...): number them instead.
    short = [f"{k}:{name[:max_len - 2 - len(str(k))]}"
             for k, name in enumerate(class_names)]
  return short


def _format_confusion(cm: list[list[int]], class_names: Sequence[str]) -> list[str]:
  short = abbreviate(class_names)
  cell = max(max(len(s) for s in short), max(len(str(v)) for r in cm for v in r)) + 1
  rows = [" " * cell + "".join(f"{s:>{cell}}" for s in short)]
  for name, counts in zip(short, cm):
    rows.append(f"{name:<{cell}}" + "".join(f"{v:>{cell}}" for v in counts))
  return rows

#!/usr/bin/env python3
"""read_tfevents.py PATH [--svg loss.svg] — reads TensorBoard event files with
TensorBoard's own loader (pip install tensorboard; no TensorFlow needed) and
prints what TensorBoard would show, as JSON:

  {"scalars": {tag: [[step, value], ...]},
   "texts":   {tag: [[step, text], ...]},
   "svg":     {id: [[x, y], ...], "plot": {attribute: value}}}   (with --svg)

PATH is an event file or a directory of them (output_dir/runs): a directory
is read as TensorBoard reads a run, file by file in name order, with
purge_orphaned_data on (TensorBoard's default), so a SessionLog START
discards what earlier files logged at its step and after. --svg parses
lorac's loss.svg with xml.etree (a well-formedness check) and gives the
points of its polylines and the plot rectangle's axis ranges.

tests/test_tfevents.c runs it when LORAC_TB_PYTHON (scripts/test.sh's venv)
or /work/venv-torch's python has the package, and compares its output with metrics.jsonl.
Exit status 0, or 1 with the loader's exception on stderr."""
import json
import sys
import xml.etree.ElementTree as ET

from tensorboard.backend.event_processing import event_accumulator as ea


def read_events(path):
    acc = ea.EventAccumulator(path, size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE},
                              purge_orphaned_data=True)
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags.get("scalars", [])}
    texts = {}
    for t in tags.get("tensors", []):
        events = acc.Tensors(t)
        meta = acc.SummaryMetadata(t)
        if meta.plugin_data.plugin_name != "text":
            continue
        texts[t] = [[e.step, e.tensor_proto.string_val[0].decode("utf-8")] for e in events]
    return {"scalars": scalars, "texts": texts}


def read_svg(path):
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(path).getroot()
    out = {}
    for el in root.iter():
        if el.tag == ns + "polyline":
            pts = el.get("points", "").split()
            out[el.get("id")] = [[float(v) for v in p.split(",")] for p in pts]
        elif el.tag == ns + "rect" and el.get("id") == "plot":
            out["plot"] = {k: float(v) for k, v in el.attrib.items()
                           if k in ("x", "y", "width", "height") or k.startswith("data-")}
    return out


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--svg"):
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    out = read_events(argv[1])
    if len(argv) == 4:
        out["svg"] = read_svg(argv[3])
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

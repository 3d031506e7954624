"""docs/CONTRACTS.md §3 cannot drift from the validators (``dmsbuild.core.results``).

The fields a validator checks are found by running it: ``validate_document`` reads a maximal document
whose every object records which keys it is asked for. Each field is then probed: removed (required when
the validator refuses that) and set to null (allowed in a measured result, or only when ``error`` or
``stats_source`` or a head's ``degenerate`` is set). The §3 field table must list exactly these fields with exactly these answers,
and the table of pass-through keys must list only keys the validator never reads: a field added to the
validator and not to the doc, or documented and no longer checked, fails here in either direction.
"""
from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from dmsbuild.core import results
from dmsbuild.core.results import ResultError, validate_document

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md"
#: object keys that are names (data), shown as a placeholder in a field's path
NAME_MAPS = {"heads": "<head>", "slices": "<slice>"}
STATS = {k: float(i + 1) for i, k in enumerate(results.STAT_KEYS)} | {"std": 0.5}


def _stats() -> dict:
    return dict(sorted(STATS.items(), key=lambda kv: results.STAT_KEYS.index(kv[0])))


def _measured() -> dict:
    """A result with every field the schema has set (a measured artifact)."""
    head = {"max_abs_diff": 0.01, "mean_abs_diff": 0.001, "cosine": 0.99, "cosine_min": 0.98, "sqnr_db": 30.0,
            "psnr_db": 40.0, "top1_agreement": 1.0, "degenerate": None,
            "by_kind": {"kind": "detection", "agreement": 1.0, "string_agreement": 1.0, "recall": 1.0, "precision": 1.0,
                        "mask_iou": 1.0, "score_error": 0.0, "reference_detections": 3, "detections": 3, "matched": 3},
            "slices": {"scores": {"cosine": 0.99, "sqnr_db": 30.0, "collapsed": None}}}
    return {"artifact": "int8-qdq", "precision": "int8-qdq", "runtime": "onnxruntime", "provider": "CPUExecutionProvider",
            "sha256": "0" * 64, "size": 1000, "warmup": 2, "iterations": 3, "threads": 1, "source": "board-runner",
            "latency_ms": _stats(), "samples_ms": [1.0, 4.0, 8.0], "stats_source": None, "throughput_ips": 250.0,
            "load_ms": 1.0, "first_inference_ms": 2.0, "peak_rss_mb": 3.0, "energy_mj": 4.0,
            "profile": {"tool": "trtexec"}, "gpu": {k: _stats() for k in results.GPU_KEYS},
            "verify": {"samples": 2, "heads": {"eye_state": head}, "min_top1_agreement": 1.0}, "error": None}


def _document(result: dict) -> dict:
    return {"schema": results.SCHEMA, "runner": "1", "project": "dms", "target": "rpi5", "release_id": "r1",
            "facts": {"arch": "aarch64"}, "toolchain": {"onnx": "1"}, "bench": {"warmup": 2}, "state": {"before": {}},
            "model": {"file": "m.onnx", "sha256": "1" * 64}, "results": [result]}


def _averaged() -> dict:
    r = _measured()
    r.update(stats_source="snpe-diagview Avg_Total_Inference_Time", samples_ms=[],
             latency_ms={k: (STATS["mean"] if k == "mean" else None) for k in results.STAT_KEYS})
    return r


def _failed() -> dict:
    r = _measured()
    r.update(error="the session did not load", latency_ms=None, samples_ms=None, gpu=None, verify=None)
    return r


def _degenerate() -> dict:
    r = _measured()
    r["verify"]["heads"]["eye_state"].update(degenerate="all outputs zero", cosine=None, cosine_min=None)
    return r


#: the documents each field is probed in: a measured result, and the three kinds of result that relax a rule
BASES = {"measured": _document(_measured()), "stats_source": _document(_averaged()), "error": _document(_failed()),
         "degenerate": _document(_degenerate())}


class _Reads(dict):
    """A dict that records every key it is asked for (``[]``, ``get``, ``in``) under its path."""

    def __init__(self, data: dict, path: str, seen: set[str]) -> None:
        super().__init__(data)
        self.path, self.seen = path, seen

    def _see(self, key: Any) -> None:
        if isinstance(key, str):
            self.seen.add(f"{self.path}.{key}".lstrip("."))

    def __getitem__(self, key: Any) -> Any:
        self._see(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._see(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self._see(key)
        return super().__contains__(key)


def _wrap(value: Any, path: str, seen: set[str]) -> Any:
    if isinstance(value, dict):
        last = path.rpartition(".")[2]
        if last in NAME_MAPS:  # keys are data: each value under the placeholder
            return _Reads({k: _wrap(v, f"{path}.{NAME_MAPS[last]}", seen) for k, v in value.items()}, path, seen)
        return _Reads({k: _wrap(v, f"{path}.{k}".lstrip("."), seen) for k, v in value.items()}, path, seen)
    if isinstance(value, list):
        return [_wrap(v, f"{path}[]", seen) for v in value]
    return value


def checked_fields() -> set[str]:
    """Every field path the validators read, over all base documents (``results[].verify.heads.<head>.cosine``)."""
    seen: set[str] = set()
    for doc in BASES.values():
        validate_document(_wrap(copy.deepcopy(doc), "", seen), board="b")
    return seen


def _locate(doc: dict, path: str) -> tuple[dict, str] | None:
    """(the object holding the field, its key) in ``doc``; None where the base has no such field."""
    obj: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        if part.endswith("[]"):
            obj = obj.get(part[:-2]) if isinstance(obj, dict) else None
            obj = obj[0] if isinstance(obj, list) and obj else None
        elif part in NAME_MAPS.values():
            obj = next(iter(obj.values()), None) if isinstance(obj, dict) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if not isinstance(obj, dict):
            return None
    return (obj, parts[-1]) if parts[-1] in obj else None


def _accepted(doc: dict) -> bool:
    try:
        validate_document(doc, board="b")
    except ResultError:
        return False
    return True


def probe(path: str) -> tuple[str, str]:
    """(required, may be null) of one field, as the validator answers: required ``yes``/``no``; null ``yes``,
    ``no``, or the bases where it may be null (``with error``, ``with stats_source``)."""
    required, null_in = False, []
    for base, doc in BASES.items():
        assert _accepted(copy.deepcopy(doc)), f"the {base} base document is invalid"
        trial = copy.deepcopy(doc)
        at = _locate(trial, path)
        if at is None:
            continue
        obj, key = at
        del obj[key]
        required |= base == "measured" and not _accepted(trial)
        trial = copy.deepcopy(doc)
        obj, key = _locate(trial, path)
        obj[key] = None
        if _accepted(trial):
            null_in.append(base)
    if "measured" in null_in:
        null = "yes"
    elif null_in:
        null = ", ".join(f"with {b}" for b in null_in)
    else:
        null = "no"
    return ("yes" if required else "no"), null


def _expand(cell: str) -> list[str]:
    """``a.{b,c}.d`` -> ``a.b.d``, ``a.c.d``."""
    parts = re.split(r"\{([^}]*)\}", cell)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def doc_tables() -> tuple[dict[str, tuple[str, str]], set[str]]:
    """The §3 field table (field -> (required, null)) and the pass-through keys, as docs/CONTRACTS.md has them."""
    text = DOC.read_text()
    section = text[text.index("## 3."): text.index("## 4.")]
    fields: dict[str, tuple[str, str]] = {}
    passthrough: set[str] = set()
    table = None
    for line in section.splitlines():
        if line.startswith("| field | required |"):
            table = "fields"
        elif line.startswith("| passed through |"):
            table = "passthrough"
        elif not line.startswith("|"):
            table = None
        elif table and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for name in _expand(cells[0].strip("`")):
                if table == "fields":
                    assert name not in fields, f"CONTRACTS §3 lists {name} twice"
                    fields[name] = (cells[1], cells[2].replace("`", ""))
                else:
                    passthrough.add(name)
    return fields, passthrough


def test_every_checked_field_is_documented_and_every_documented_field_is_checked() -> None:
    fields, _ = doc_tables()
    checked = checked_fields()
    assert len(checked) > 50  # the recorder saw the validator work
    missing = sorted(checked - set(fields))
    stale = sorted(set(fields) - checked)
    assert not missing, "docs/CONTRACTS.md §3 lacks fields the validator checks:\n  " + "\n  ".join(missing)
    assert not stale, "docs/CONTRACTS.md §3 lists fields the validator does not check:\n  " + "\n  ".join(stale)


def test_required_and_null_columns_are_what_the_validator_does() -> None:
    fields, _ = doc_tables()
    wrong = [f"{f}: the doc says required {fields[f][0]}, null {fields[f][1]}; the validator: {probe(f)}"
             for f in sorted(set(fields) & checked_fields()) if probe(f) != fields[f]]
    assert not wrong, "docs/CONTRACTS.md §3 field table disagrees with the validator:\n  " + "\n  ".join(wrong)


def test_passed_through_keys_are_not_checked() -> None:
    fields, passthrough = doc_tables()
    assert passthrough and not passthrough & set(fields)
    checked = checked_fields()
    assert not passthrough & checked, f"checked by the validator, so they belong in the field table: {passthrough & checked}"


@pytest.mark.parametrize("path", ["results[].energy_mj", "model.sha256", "results[].verify.heads.<head>.by_kind.recall"])
def test_the_recorder_sees_a_field_and_its_probe(path: str) -> None:
    """The machinery itself: fields last round's doc lacked are seen, and a required field is found required."""
    assert path in checked_fields()
    assert probe("results[].artifact") == ("yes", "no")
    assert probe("results[].energy_mj") == ("no", "yes")


#: keys in §3's example document inside free-form or named objects: a head's and a slice's name, the state
#: snapshots' slots, the bench plan's keys (`bench` is free-form)
EXAMPLE_DATA = {"eye_state", "scores", "before", "during", "after", "verify_samples"}


def test_the_example_document_uses_only_documented_keys() -> None:
    text = DOC.read_text()
    section = text[text.index("## 3."): text.index("## 4.")]
    example = section[section.index("```json"):]
    example = example[: example.index("```", 3)]
    fields, passthrough = doc_tables()
    known = {f.rpartition(".")[2] for f in (*fields, *passthrough)} | EXAMPLE_DATA
    unknown = sorted(set(re.findall(r'"([A-Za-z0-9_]+)":', example)) - known)
    assert not unknown, f"§3's example document has keys the field table lacks: {unknown}"

"""Result schema validation, the parser interface, size limits and the append-only store."""
from __future__ import annotations

import copy
import csv
import io
import json
import sqlite3

import pytest

from dmsbuild.errors import UserError
from dmsbuild.core.results import (MAX_DOCUMENT_BYTES, ResultError, ResultParser, ResultStore, fill_latency,
                              new_result, parse_document, parser_for, validate_document)
from tests.bench_docs import document, result


@pytest.fixture
def doc() -> dict:
    return document("aaaa000000000001", [result("fp32", 6.7), result("int8-qdq", 3.5, agreement=0.94, seed=1)])


def test_valid_document_round_trips_through_the_store(doc, tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    run_id = store.add(parse_document(json.dumps(doc), board="rpi5-01"), board="rpi5-01", target="rpi5")
    rows = store.rows()
    assert [(r["board"], r["target"], r["artifact"], r["run_id"]) for r in rows] == [
        ("rpi5-01", "rpi5", "fp32", run_id), ("rpi5-01", "rpi5", "int8-qdq", run_id)]
    assert rows[0]["median_ms"] == doc["results"][0]["latency_ms"]["median"]
    assert rows[0]["samples"] == doc["results"][0]["samples_ms"]
    assert rows[1]["min_top1_agreement"] == 0.94 and rows[1]["sha256"] == "01" * 32
    assert rows[0]["facts"]["arch"] == "aarch64" and rows[0]["toolchain"]["opset"] == 17
    # a second run of the same release is a new row, never an overwrite
    store.add(doc, board="rpi5-01", target="rpi5")
    assert len(store.rows()) == 4


def test_store_is_append_only(doc, tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.add(doc, board="b", target="rpi5")
    con = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE results SET median_ms = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM results")
    con.close()
    assert len(store.rows()) == 2


def _bad(doc: dict, path: list, value) -> dict:
    bad = copy.deepcopy(doc)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return bad


@pytest.mark.parametrize("path, value, field", [
    (["schema"], 2, "'schema'"),
    (["release_id"], "../../etc", "'release_id'"),
    (["results"], [], "'results'"),
    (["results", 0, "artifact"], "a b;rm", "'results[0].artifact'"),
    (["results", 0, "latency_ms", "median"], "fast", "'results[0].latency_ms.median'"),
    (["results", 0, "latency_ms", "p99"], True, "'results[0].latency_ms.p99'"),
    (["results", 0, "samples_ms"], [1.0, 2.0], "'results[0].samples_ms'"),
    (["results", 0, "samples_ms"], None, "'results[0].latency_ms'"),
    (["results", 1, "verify", "heads", "eye_state", "top1_agreement"], 1.5, "top1_agreement"),
    (["results", 0, "sha256"], "xyz", "'results[0].sha256'"),
    (["facts", "hostname"], "x" * 5000, "'facts.hostname'"),
])
def test_malformed_fields_are_rejected_naming_board_and_field(doc, tmp_path, path, value, field):
    store = ResultStore(tmp_path / "results.sqlite")
    with pytest.raises(ResultError) as err:
        store.add(parse_document(json.dumps(_bad(doc, path, value)), board="orin-03"), board="orin-03")
    first = str(err.value).splitlines()[0]
    assert first.startswith("board orin-03: result field ") and field in first and "nothing was stored" in first
    assert store.rows() == []


@pytest.mark.parametrize("text, kind", [
    ("", "empty"), ("not json at all", "malformed"), ('{"schema": 1, "results": [NaN]}', "malformed"),
    ("[1, 2, 3]", "an object"),
])
def test_malformed_json_is_rejected(text, kind):
    with pytest.raises(ResultError, match=f"board qcs-01: .*{kind}"):
        parse_document(text, board="qcs-01")


def test_truncated_json_is_rejected_and_nothing_stored(doc, tmp_path):
    text = json.dumps(doc)
    store = ResultStore(tmp_path / "results.sqlite")
    for cut in (len(text) // 3, len(text) - 1, 200):
        with pytest.raises(ResultError, match=r"^board rpi5-02: result JSON is truncated"):
            store.add(parse_document(text[:cut], board="rpi5-02"), board="rpi5-02")
    assert store.rows() == [] and not store.path.exists()


def test_oversized_json_is_rejected_unread(doc):
    text = json.dumps(doc) + " " * MAX_DOCUMENT_BYTES
    with pytest.raises(ResultError, match=r"^board big-01: result JSON is \d+ bytes, over the \d+ byte limit"):
        parse_document(text, board="big-01")


def test_duplicate_artifact_rejected(doc):
    doc["results"].append(copy.deepcopy(doc["results"][0]))
    with pytest.raises(ResultError, match="each artifact once"):
        validate_document(doc, board="b")


class _SamplesParser(ResultParser):
    """A stand-in runtime whose tool prints one latency per line (exercises the interface)."""

    runtime = "test-lines"

    def parse_impl(self, output, *, board, artifact, warmup, iterations):
        result = new_result(artifact, warmup=warmup, iterations=iterations)
        return fill_latency(result, [float(line) for line in output.split()])


def test_parser_interface_registers_and_validates():
    parser = parser_for("test-lines")
    art = {"name": "engine-fp16", "precision": "fp16", "runtime": "test-lines"}
    r = parser.parse("1.0\n2.0\n3.0\n4.0\n", board="orin-01", artifact=art, warmup=1, iterations=4)
    assert r["latency_ms"]["median"] == 2.5 and r["latency_ms"]["p90"] == pytest.approx(3.7)
    assert r["throughput_ips"] == pytest.approx(400.0)
    with pytest.raises(ResultError, match="board orin-01: result field 'results\\[engine-fp16\\].samples_ms'"):
        parser.parse("1.0\n2.0\n", board="orin-01", artifact=art, warmup=1, iterations=4)
    with pytest.raises(UserError, match="no result parser for runtime 'nope'"):
        parser_for("nope")


def test_export_json_and_csv(doc, tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.add(doc, board="b1", target="rpi5")
    rows = json.loads(store.export("json"))
    assert [r["artifact"] for r in rows] == ["fp32", "int8-qdq"] and rows[0]["samples"]
    table = list(csv.DictReader(io.StringIO(store.export("csv"))))
    assert [r["board"] for r in table] == ["b1", "b1"] and float(table[1]["median_ms"]) > 0
    with pytest.raises(UserError, match="export format 'xml'"):
        store.export("xml")


def test_store_that_is_not_sqlite_is_a_user_error(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("this is not a database" * 100)
    with pytest.raises(UserError, match="not a usable results store"):
        ResultStore(path).rows()

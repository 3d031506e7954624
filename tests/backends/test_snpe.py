"""SNPE backend: SDK discovery, exact command lines, unique calibration files, parsing, via SDK test doubles."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.backends import snpe
from dmsbuild.backends.toolchain import run_tool
from dmsbuild.doubles.snpe_double import input_files
from dmsbuild.errors import UserError

DOUBLES = Path(__file__).resolve().parents[2] / "dmsbuild" / "doubles"
SHAPE = (1, 3, 8, 8)


@pytest.fixture
def sdk(tmp_path) -> snpe.SnpeSdk:
    """A fake SDK folder whose bin/x86_64-linux-clang holds the test doubles."""
    root = tmp_path / "qairt"
    bin_dir = root / "bin" / snpe.HOST_ARCH_DIR
    bin_dir.mkdir(parents=True)
    for f in DOUBLES.iterdir():
        if f.name.startswith("snpe"):
            shutil.copy2(f, bin_dir / f.name)
    return snpe.find_sdk({"SNPE_ROOT": str(root)})


@pytest.fixture
def argv_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("SNPE_DOUBLE_ARGV_LOG", str(log))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_no_sdk_is_one_clear_line():
    with pytest.raises(UserError) as exc:
        snpe.find_sdk({})
    text = str(exc.value)
    assert len(text.splitlines()) == 1
    assert "SNPE SDK not found" in text and "SNPE_ROOT" in text and "qpm.qualcomm.com" in text


def test_sdk_root_without_tools(tmp_path):
    with pytest.raises(UserError, match=r"QAIRT_SDK_ROOT=.*no bin/x86_64-linux-clang/snpe-onnx-to-dlc"):
        snpe.find_sdk({"QAIRT_SDK_ROOT": str(tmp_path)})


def test_sdk_found_via_fallback_variable(sdk):
    again = snpe.find_sdk({"QNN_SDK_ROOT": str(sdk.root)})
    assert again.env_var == "QNN_SDK_ROOT" and again.bin_dir == sdk.bin_dir
    env = sdk.env()
    assert env["PATH"].startswith(str(sdk.bin_dir)) and env["LD_LIBRARY_PATH"].startswith(str(sdk.lib_dir))


def test_input_list_has_one_unique_file_per_sample(tmp_path):
    xs = [np.full(SHAPE, i, dtype=np.float32) for i in range(12)]
    lst = snpe.write_input_list(xs, tmp_path / "calib", "image")
    files = input_files(lst)
    assert len(files) == 12 and len(set(files)) == 12
    assert all(Path(f).stat().st_size == 3 * 8 * 8 * 4 for f in files)
    # each file holds its own sample (the source article's files all overwrote one another)
    assert [float(np.fromfile(f, dtype=np.float32)[0]) for f in files] == list(range(12))
    assert lst.read_text().splitlines()[0] == f"image:={Path(files[0])}"
    # NCHW samples are written NHWC
    x = np.arange(3 * 8 * 8, dtype=np.float32).reshape(SHAPE)
    one = input_files(snpe.write_input_list([x], tmp_path / "c2", "image"))[0]
    assert np.array_equal(np.fromfile(one, dtype=np.float32), x[0].transpose(1, 2, 0).ravel())


def test_input_list_rewrite_removes_stale_files(tmp_path):
    snpe.write_input_list([np.zeros(SHAPE, np.float32)] * 5, tmp_path, "image")
    snpe.write_input_list([np.zeros(SHAPE, np.float32)] * 2, tmp_path, "image")
    assert len(list(tmp_path.glob("calib_*.raw"))) == 2


def test_no_calibration_samples(tmp_path):
    with pytest.raises(UserError, match="no calibration samples"):
        snpe.write_input_list([], tmp_path, "image")


def test_build_dlc_exact_commands(sdk, argv_log, tmp_path):
    onnx = tmp_path / "fp32.onnx"
    onnx.write_bytes(b"onnx")
    opts = snpe.SnpeOptions(htp_socs=["sm8550", "sa8295"], act_bitwidth=16)
    out = tmp_path / "int8.dlc"
    xs = [np.random.default_rng(i).standard_normal(SHAPE).astype(np.float32) for i in range(6)]
    info = snpe.build_dlc(onnx, xs, out, opts, input_name="image", shape=SHAPE, log_dir=tmp_path / "logs", sdk=sdk)
    work = tmp_path / "int8.work"
    lst = work / "calibration" / "input_list.txt"
    assert calls(argv_log) == [
        ["snpe-onnx-to-dlc", "--input_network", str(onnx), "--output_path", str(work / "fp32.dlc"),
         "--input_dim", "image", "1,3,8,8"],
        ["snpe-dlc-quantize", "--input_dlc", str(work / "fp32.dlc"), "--input_list", str(lst),
         "--output_dlc", str(work / "quantized.dlc"), "--act_bitwidth", "16"],
        ["snpe-dlc-graph-prepare", "--input_dlc", str(work / "quantized.dlc"), "--output_dlc",
         str(work / "prepared.dlc"), "--htp_socs", "sm8550,sa8295"],
    ]
    meta = json.loads(out.read_text())
    assert meta["calibration_samples"] == 6 and meta["htp_cache"] == ["sm8550", "sa8295"] and meta["act_bitwidth"] == 16
    assert info["calibration_samples"] == 6
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["int8.snpe-dlc-graph-prepare.log", "int8.snpe-dlc-quantize.log", "int8.snpe-onnx-to-dlc.log"]
    assert (tmp_path / "logs" / "int8.snpe-onnx-to-dlc.log").read_text().startswith("$ ")


def test_quantizer_rejects_duplicate_calibration_files(sdk, tmp_path):
    """What the source article's input list looked like: N lines naming one file."""
    onnx = tmp_path / "fp32.onnx"
    onnx.write_bytes(b"onnx")
    dlc = tmp_path / "fp32.dlc"
    run_tool(snpe.convert_argv(sdk, onnx, dlc, "image", SHAPE), log_dir=tmp_path / "logs", step="convert", env=sdk.env())
    raw = tmp_path / f"calib_{4}.raw"
    np.zeros((8, 8, 3), np.float32).tofile(raw)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join([str(raw)] * 4) + "\n")
    with pytest.raises(UserError) as exc:
        run_tool(snpe.quantize_argv(sdk, dlc, lst, tmp_path / "q.dlc", snpe.SnpeOptions()),
                 log_dir=tmp_path / "logs", step="quantize", env=sdk.env())
    lines = str(exc.value).splitlines()
    assert lines[0].startswith("snpe-dlc-quantize: failed with exit status 2 (step quantize); log: ")
    assert any("same raw file more than once" in line for line in lines[1:])


def test_tool_runner_unknown_flag_and_missing_tool(sdk, tmp_path):
    with pytest.raises(UserError, match="exit status 2"):
        run_tool([sdk.tool("snpe-dlc-graph-prepare"), "--input_dlc", "x", "--bogus"], log_dir=tmp_path, step="gp")
    with pytest.raises(UserError, match="tool not found"):
        run_tool([str(tmp_path / "nope")], log_dir=tmp_path, step="x")


def test_board_commands_exact():
    o = snpe.SnpeOptions()
    assert snpe.net_run_argv("models/int8.dlc", "verify/input_list.txt", "out", o) == [
        "snpe-net-run", "--container", "models/int8.dlc", "--input_list", "verify/input_list.txt",
        "--output_dir", "out", "--use_dsp", "--perf_profile", "burst"]
    assert snpe.net_run_argv("m.dlc", "l.txt", "o", snpe.SnpeOptions(runtime="cpu"))[-2:] == ["--perf_profile", "burst"]
    assert snpe.throughput_argv("models/int8.dlc", "verify/calib_00000.raw", o) == [
        "snpe-throughput-net-run", "--container", "models/int8.dlc", "--duration", "10", "--use_dsp",
        "--input_raw", "verify/calib_00000.raw", "--perf_profile", "burst"]
    assert snpe.diagview_argv("out/SNPEDiag_0.log", "out/diag.csv") == [
        "snpe-diagview", "--input_log", "out/SNPEDiag_0.log", "--output", "out/diag.csv"]


def test_on_board_run_parsed_into_result(sdk, tmp_path, monkeypatch):
    onnx = tmp_path / "fp32.onnx"
    onnx.write_bytes(b"onnx")
    out = tmp_path / "m.dlc"
    xs = [np.full(SHAPE, float(i), np.float32) for i in range(3)]
    snpe.build_dlc(onnx, xs, out, snpe.SnpeOptions(), input_name="image", shape=SHAPE, log_dir=tmp_path / "logs", sdk=sdk)
    lst = out.with_name("m.work") / "calibration" / "input_list.txt"
    monkeypatch.setenv("SNPE_DOUBLE_OUTPUTS", json.dumps({"eye_state": [1, 2], "head_pose": [1, 3]}))
    o = snpe.SnpeOptions()
    env = sdk.env()
    run_tool(snpe.net_run_argv(out, lst, tmp_path / "run", o, tool=sdk.tool("snpe-net-run")), log_dir=tmp_path, step="run", env=env)
    outputs = snpe.read_outputs(tmp_path / "run", ["eye_state", "head_pose"], [[1, 2], [1, 3]])
    assert [float(s[0][0, 0]) for s in outputs] == [0.0, 1.0, 2.0]
    assert outputs[0][1].shape == (1, 3)
    run_tool(snpe.diagview_argv(tmp_path / "run" / "SNPEDiag_0.log", tmp_path / "diag.csv", tool=sdk.tool("snpe-diagview")),
             log_dir=tmp_path, step="diag", env=env)
    raw = input_files(lst)[0]
    tp = run_tool(snpe.throughput_argv(out, raw, o, tool=sdk.tool("snpe-throughput-net-run")), log_dir=tmp_path, step="tp", env=env)
    res = snpe.result_from_snpe(artifact="int8-dlc", precision="int8-qdq", throughput_stdout=tp.stdout,
                                diag_csv=(tmp_path / "diag.csv").read_text(), iterations=3)
    assert res["runtime"] == "snpe" and res["error"] is None
    assert res["throughput_ips"] == 231.5
    assert res["load_ms"] == pytest.approx(112.233) and res["latency_ms"]["mean"] == pytest.approx(4.321)
    assert res["latency_ms"]["p99"] is None  # SNPE reports averages only; nothing invented


def test_parsers_reject_garbage():
    with pytest.raises(UserError, match="no 'Total throughput' line"):
        snpe.parse_throughput("error_code=402; error_message=Network partition has failed.")
    assert snpe.parse_diagview_csv("garbage\n1,2\n") == {}
    assert snpe.result_from_snpe(artifact="a", precision="int8-qdq")["error"]


@pytest.mark.parametrize("table, message", [
    ({"htp_socs": ["SM 8550"]}, "field 'backend.snpe.htp_socs'"),
    ({"act_bitwidth": 4}, "field 'backend.snpe.act_bitwidth' is 4"),
    ({"runtime": "npu"}, "field 'backend.snpe.runtime' is 'npu'"),
])
def test_options_rejected(table, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        snpe.load_options(table, "targets/qcs8255.toml")

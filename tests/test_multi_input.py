"""Several inputs (issue 24 item 4): a two-input gaze model (face 1x3x64x64 + eye 1x3x32x32 -> gaze [1, 3]),
from PyTorch and brought as ONNX, through config, data, calibration, export, every backend and the board runners.

Done-when of the issue: the two-input model deploys to rpi5 (ONNX Runtime) and qcs8255 (onnxruntime-qnn, the
HTP simulator) on emulated boards with its output check passing; orin's trtexec test double checks that every
input gets its own --loadInputs file and --shapes entry.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dmsbuild.config import load_project
from dmsbuild.errors import UserError
from tests.byom import LOCAL_TARGET
from tests.multiinput import EYE, FACE, INPUTS, make_gaze_project, project_toml, write_npz
from tests.test_targets_e2e import TRT_TARGET, _rows
from tests.test_targets_qnn_e2e import QNN_TARGET
from tests.tinyproject import run_doit

RPI5 = """\
runtime = "onnxruntime"
arch = "aarch64"
precisions = ["fp32", "int8-qdq"]
[deploy]
group = "rpi5"
[bench]
warmup = 1
iterations = 3
verify_samples = 4
"""

ORIN = TRT_TARGET.replace("verify_samples = 3", "verify_samples = 2")


# --------------------------------------------------------------------------- config
def _load(tmp_path: Path, text: str):
    (tmp_path / "dmsbuild.toml").write_text(text)
    return load_project(tmp_path)


def test_inputs_array_loads_every_input_and_input_is_the_first(tmp_path):
    proj = _load(tmp_path, project_toml(brought=False))
    assert [i.name for i in proj.all_inputs] == ["face", "eye"] and proj.input.name == "face"
    assert proj.several_inputs and proj.all_inputs[1].shape == EYE


def test_single_input_project_is_unchanged(tmp_path):
    proj = _load(tmp_path, '[input]\nname = "x"\nshape = [1, 3, 8, 8]\n')
    assert proj.inputs == [] and [i.name for i in proj.all_inputs] == ["x"] and not proj.several_inputs


def test_input_and_inputs_together_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"both \[input\] and \[\[inputs\]\] are set"):
        _load(tmp_path, '[input]\nname = "x"\n' + INPUTS)


def test_inputs_entries_may_be_any_rank_but_named_once(tmp_path):
    proj = _load(tmp_path, '[[inputs]]\nname = "audio"\nshape = [1, 576]\n[[inputs]]\nname = "h"\nshape = [1, 1, 128]\n')
    assert [i.shape for i in proj.all_inputs] == [[1, 576], [1, 1, 128]]
    with pytest.raises(UserError, match=r"'inputs\[1\].name' is 'a', which an earlier entry"):
        _load(tmp_path, '[[inputs]]\nname = "a"\nshape = [1, 4]\n[[inputs]]\nname = "a"\nshape = [1, 4]\n')
    with pytest.raises(UserError, match=r"'inputs\[0\].name' is 'a:b'"):
        _load(tmp_path, '[[inputs]]\nname = "a:b"\nshape = [1, 4]\n[[inputs]]\nname = "c"\nshape = [1, 4]\n')
    with pytest.raises(UserError, match=r"'input.shape' is \[1, 4\]; expected 4 positive dims"):
        _load(tmp_path, '[input]\nname = "a"\nshape = [1, 4]\n')  # one input stays an image input


# --------------------------------------------------------------------------- data
def _project(tmp_path: Path, data: str = ""):
    (tmp_path / "dmsbuild.toml").write_text(project_toml(brought=False, data=data))
    return load_project(tmp_path)


def test_npz_samples_feed_every_input_and_calibration_yields_them_all(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples, make_calibration_reader

    proj = _project(tmp_path)
    write_npz(tmp_path / "data" / "calibration", 3, seed=1)
    files = list_samples(proj, "calibration")
    names, batch = load_samples(files, proj)
    assert [p.name for p in names] == ["000.npz", "001.npz", "002.npz"]
    assert {k: v.shape for k, v in batch.items()} == {"face": (3, 3, 64, 64), "eye": (3, 3, 32, 32)}
    reader = make_calibration_reader(files, proj, proj.input.name, progress=False)
    feeds = [reader.get_next() for _ in range(4)]
    assert feeds[3] is None and all(set(f) == {"face", "eye"} for f in feeds[:3])
    assert feeds[0]["eye"].shape == (1, 3, 32, 32)


def test_npz_missing_an_input_names_the_file_and_the_input(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples

    proj = _project(tmp_path)
    folder = tmp_path / "data" / "calibration"
    folder.mkdir(parents=True)
    np.savez(folder / "000.npz", face=np.zeros(FACE[1:], np.float32))
    with pytest.raises(UserError, match=r"000.npz: no array for input 'eye'"):
        load_samples(list_samples(proj, "calibration"), proj)


def test_shape_mismatch_names_the_file_and_the_input(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples

    proj = _project(tmp_path)
    folder = tmp_path / "data" / "calibration"
    folder.mkdir(parents=True)
    np.savez(folder / "000.npz", face=np.zeros(FACE[1:], np.float32), eye=np.zeros([3, 16, 16], np.float32))
    with pytest.raises(UserError, match=r"000.npz: sample shape \(3, 16, 16\) does not match the input 'eye' shape "
                                        r"\(3, 32, 32\) \(inputs\[1\].shape"):
        load_samples(list_samples(proj, "calibration"), proj)


def test_a_single_input_file_in_a_several_inputs_folder_is_one_line(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples

    proj = _project(tmp_path)
    folder = tmp_path / "data" / "calibration"
    folder.mkdir(parents=True)
    np.save(folder / "000.npy", np.zeros(FACE[1:], np.float32))
    with pytest.raises(UserError, match=r"000.npy: a .npy file holds one input; the model has 2 inputs \(face, eye\)"):
        load_samples(list_samples(proj, "calibration"), proj)


def test_per_input_folders_pair_samples_by_stem(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples
    from tests.tinyproject import write_images

    proj = _project(tmp_path)
    cal = tmp_path / "data" / "calibration"
    write_images(cal / "face", 2, seed=1, size=(64, 64))
    write_images(cal / "eye", 2, seed=2, size=(40, 40))  # resized/cropped to 32x32 like any image input
    names, batch = load_samples(list_samples(proj, "calibration"), proj)
    assert [p.name for p in names] == ["000.png", "001.png"]
    assert batch["face"].shape == (2, 3, 64, 64) and batch["eye"].shape == (2, 3, 32, 32)
    (cal / "eye" / "001.png").unlink()
    with pytest.raises(UserError, match=r"eye: no sample '001' for input 'eye'"):
        list_samples(proj, "calibration")


def test_image_for_a_non_image_input_is_one_line(tmp_path):
    from dmsbuild.convert.data import list_samples, load_samples
    from tests.tinyproject import write_images

    inputs = INPUTS.replace('name = "eye"\nshape = [1, 3, 32, 32]', 'name = "state"\nshape = [1, 16]')
    (tmp_path / "dmsbuild.toml").write_text(project_toml(brought=False, inputs=inputs))
    proj = load_project(tmp_path)
    cal = tmp_path / "data" / "calibration"
    write_images(cal / "face", 1, seed=1, size=(64, 64))
    write_images(cal / "state", 1, seed=2, size=(8, 8))
    with pytest.raises(UserError, match=r"000.png: an image cannot fill input 'state' of shape \[1, 16\] "
                                        r"\(images fill 4-D inputs only\)"):
        load_samples(list_samples(proj, "calibration"), proj)
    np.save(cal / "state" / "000.npy", np.arange(16, dtype=np.float32))
    (cal / "state" / "000.png").unlink()
    _, batch = load_samples(list_samples(proj, "calibration"), proj)
    assert batch["state"].shape == (1, 16)


LOADER = '''\
import numpy as np


def samples(split):
    rng = np.random.default_rng(0 if split == "calibration" else 1)
    for i in range(3):
        item = {"face": rng.standard_normal((1, 3, 64, 64)).astype("float32"),
                "eye": rng.standard_normal((3, 32, 32)).astype("float32")}
        if MODE == "missing" and i == 1:
            del item["eye"]
        if MODE == "unknown" and i == 2:
            item["gaze_target"] = np.zeros(3)
        yield item


MODE = "ok"
'''


@pytest.mark.parametrize("mode, message", [
    ("ok", None),
    ("missing", r"sample 1 of split 'validation' has no input 'eye' \(it names \['face'\]; the model's inputs are "
                r"\['face', 'eye'\]\)"),
    ("unknown", r"sample 2 of split 'validation' names input 'gaze_target', which the model does not have"),
])
def test_loader_dicts_name_every_input(tmp_path, mode, message):
    from dmsbuild.convert.data import list_samples, load_samples

    module = f"gaze_data_{mode}"  # one module name per case: imported modules are cached by name
    (tmp_path / f"{module}.py").write_text(LOADER.replace('MODE = "ok"', f'MODE = "{mode}"'))
    proj = _project(tmp_path, data=f'loader = "{module}:samples"\n')
    files = list_samples(proj, "validation")
    if message is None:
        _, batch = load_samples(files, proj)
        assert batch["face"].shape == (3, 3, 64, 64) and batch["eye"].shape == (3, 3, 32, 32)
        return
    with pytest.raises(UserError, match=rf"field 'data.loader' \({module}:samples\): " + message):
        load_samples(files, proj)


# --------------------------------------------------------------------------- the board runner's reference inputs
def test_board_runner_feeds_every_reference_input_by_name(tmp_path):
    from dmsbuild.board.runner.dms_bench import reference_inputs, verify_outputs
    from dmsbuild.convert.evaluate import reference_input_arrays

    x = {"face": np.ones((2, 3, 4, 4), np.float32), "eye": np.full((2, 1, 2, 2), 2.0, np.float32)}
    np.savez(tmp_path / "r.npz", **reference_input_arrays(x), out=np.asarray([[16.0 + 8.0], [16.0 + 8.0]]))
    ref = dict(np.load(tmp_path / "r.npz"))
    assert {k: v.shape for k, v in reference_inputs(ref).items()} == {"face": (2, 3, 4, 4), "eye": (2, 1, 2, 2)}
    seen = []

    def run(names, feed):  # an ONNX Runtime session.run stand-in: sums every input of the sample
        seen.append(sorted(feed))
        return [np.asarray([[float(feed["face"].sum() + feed["eye"].sum())]])]

    verify = verify_outputs(np, run, "face", {"face": "float32", "eye": "float32"}, ["out"], ref, 2, 1, [])
    assert seen == [["eye", "face"], ["eye", "face"]] and verify["heads"]["out"]["cosine"] == pytest.approx(1.0)
    one = dict(np.load(tmp_path / "r.npz"))
    del one["inputs:1"]
    with pytest.raises(RuntimeError, match=r"lacks inputs:1"):
        reference_inputs(one)


def test_the_shipped_reference_subset_keeps_every_input_name(tmp_path):
    """verify_subset cuts the reference to bench.verify_samples per sample; the input names are not samples."""
    from dmsbuild.board.runner.dms_bench import reference_inputs
    from dmsbuild.convert.evaluate import reference_input_arrays
    from dmsbuild.ship.manifest import verify_subset

    x = {"face": np.zeros((5, 3, 4, 4), np.float32), "eye": np.ones((5, 3, 2, 2), np.float32)}
    np.savez(tmp_path / "r.npz", **reference_input_arrays(x), gaze=np.zeros((5, 3), np.float32))
    sub = verify_subset(tmp_path / "r.npz", 1, tmp_path)
    got = reference_inputs(np.load(sub))
    assert {k: v.shape for k, v in got.items()} == {"face": (1, 3, 4, 4), "eye": (1, 3, 2, 2)}


# --------------------------------------------------------------------------- init
def test_init_writes_an_inputs_table_per_input(tmp_path):
    from dmsbuild.convert.scaffold import init_project
    from tests.multiinput import export_onnx

    export_onnx(tmp_path, tmp_path / "gaze.onnx")
    init_project(tmp_path, onnx_path=str(tmp_path / "gaze.onnx"))
    proj = load_project(tmp_path)
    assert [(i.name, i.shape) for i in proj.all_inputs] == [("face", FACE), ("eye", EYE)]


# --------------------------------------------------------------------------- builds
def _spec(argv: list[str], flag: str) -> dict[str, str]:
    """trtexec's ``--flag='name':value,...`` as {name: value} (one entry per input; the order is free)."""
    [value] = [a.split("=", 1)[1] for a in argv if a.startswith(f"{flag}=")]
    items = [item.split(":", 1) for item in value.split(",")]
    names = [n.strip("'") for n, _ in items]
    assert len(set(names)) == len(names), value  # each input once
    return {n: v for n, (_, v) in zip(names, items)}


def _argv_log(boards: dict, host: str) -> tuple[Path, int]:
    log = Path(boards["dir"]) / host / "trtexec-argv.log"
    return log, (len(log.read_text().splitlines()) if log.is_file() else 0)


def _build_four(root: Path, brought: bool):
    root = make_gaze_project(root, {"local": LOCAL_TARGET, "rpi5": RPI5, "qcs8255": QNN_TARGET, "orin": ORIN},
                             brought=brought)
    return root, run_doit(root, "build", "target=local,rpi5,qcs8255,orin")


@pytest.fixture(scope="module")
def built_from_pytorch(tmp_path_factory: pytest.TempPathFactory, onnxruntime_qnn):
    """The PyTorch gaze project built for the four targets: the build test checks it, the deploy test ships it."""
    return _build_four(tmp_path_factory.mktemp("gaze") / "p", brought=False)


@pytest.mark.usefixtures("onnxruntime_qnn")
@pytest.mark.parametrize("brought", [False, True], ids=["pytorch", "brought-onnx"])
def test_two_input_model_builds_for_local_rpi5_qcs8255_and_orin(tmp_path, brought, request):
    root, run = _build_four(tmp_path / "p", True) if brought else request.getfixturevalue("built_from_pytorch")
    assert run.rc == 0, run.output[-3000:]
    assert "Traceback" not in run.output
    fp32 = root / "artifacts" / "common" / "fp32.onnx"
    import onnx

    graph = onnx.load(str(fp32)).graph
    assert [i.name for i in graph.input] == ["face", "eye"]
    ref = np.load(root / "artifacts" / "common" / "reference.npz")
    assert list(ref["input_names"]) == ["face", "eye"] and ref["inputs:1"].shape == (6, 3, 32, 32)
    for target in ("local", "rpi5", "qcs8255", "orin"):
        build = json.loads((root / "artifacts" / target / "build.json").read_text())
        assert [i["name"] for i in build["inputs"]] == ["face", "eye"], target
    qdq = json.loads((root / "artifacts" / "local" / "build.json").read_text())
    [q] = [a for a in qdq["artifacts"] if a["name"] == "int8-qdq"]
    assert q["eval"]["samples"] == 6 and q["eval"]["heads"]["gaze"]["cosine"] > 0.9
    # the QNN context binary: both inputs fixed and quantized, no node left on the CPU
    placement = json.loads((root / "artifacts" / "qcs8255" / "int8-qdq.placement.json").read_text())
    assert placement["partitions"] == 1 and placement["fallback_ops"] == {}
    shapes = json.loads((root / "artifacts" / "orin" / "fp16.trt.shapes.json").read_text())
    assert shapes["profile"] == {"face": {"min": FACE, "opt": FACE, "max": FACE},
                                 "eye": {"min": EYE, "opt": EYE, "max": EYE}}


@pytest.mark.usefixtures("onnxruntime_qnn")
def test_two_input_model_deploys_to_rpi5_qcs8255_and_orin_with_its_output_check_passing(boards, built_from_pytorch):
    """The issue's done-when, on emulated boards (real sshd; qcs8255: the QNN HTP simulator; orin: trtexec double).
    The project is the one the build test built (deploy ships what that build made; building first is
    tests/test_targets_e2e.py's and test_mender's)."""
    root, build = built_from_pytorch
    assert build.rc == 0, build.output[-3000:]
    inv = f"inventory={boards['inventory']}"
    for target, host in (("rpi5", "emu-01"), ("qcs8255", "emu-02")):
        run = run_doit(root, "deploy", f"target={target}", f"hosts={host}", inv)
        assert run.rc == 0, run.output[-3000:]
        rows = [r for r in _rows(root, target) if r["board"] == host]
        assert rows and all(r["error"] is None for r in rows), rows
        for row in rows:
            verify = json.loads(row["verify_json"])
            assert verify["samples"] > 0 and verify["heads"]["gaze"]["cosine"] > 0.5, (target, verify)
        assert "output check" not in " ".join(str(r.get("verify_note") or "") for r in rows)
    host = "emu-03"
    log, before = _argv_log(boards, host)
    run = run_doit(root, "deploy", "target=orin", f"hosts={host}", inv)
    assert run.rc == 0, run.output[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()[before:]]
    build = next(a for a in calls if any(x.startswith("--onnx=") for x in a))
    for flag in ("--minShapes", "--optShapes", "--maxShapes"):
        assert _spec(build, flag) == {"face": "1x3x64x64", "eye": "1x3x32x32"}
    checks = [a for a in calls if any(x.startswith("--loadInputs=") for x in a)]
    assert checks
    for argv in checks:  # one raw file per input, each at its own shape
        files = _spec(argv, "--loadInputs")
        assert set(files) == {"face", "eye"} and len(set(files.values())) == 2
        assert _spec(argv, "--shapes") == {"face": "1x3x64x64", "eye": "1x3x32x32"}
    rows = [r for r in _rows(root, "orin") if r["board"] == host]
    assert rows and all(r["error"] is None for r in rows)
    assert all(json.loads(r["verify_json"])["samples"] == 2 for r in rows)


def test_litert_target_stops_in_one_line_naming_it(tmp_path):
    target = 'runtime = "litert"\nprecisions = ["fp32"]\ntransport = "local"\n[deploy]\nroot = "artifacts/boards/t"\n'
    root = make_gaze_project(tmp_path / "p", {"t": target}, brought=False)
    run = run_doit(root, "build", "target=t")
    assert run.rc != 0 and "Traceback" not in run.output
    assert "target 't' (runtime litert) cannot take a model with 2 inputs yet" in run.output


def test_trtexec_double_refuses_a_missing_input_file_and_a_wrong_size(tmp_path):
    """The double checks --loadInputs per input: every input named, each file exactly its binding's size."""
    import subprocess
    import sys

    from tests.multiinput import export_onnx

    onnx_path = export_onnx(tmp_path, tmp_path / "g.onnx")
    static = tmp_path / "static.onnx"
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    m = update_inputs_outputs_dims(onnx.load(str(onnx_path)), {"face": FACE, "eye": EYE}, {"gaze": [1, 3]})
    onnx.save(m, str(static))
    double = Path(__file__).resolve().parents[1] / "dmsbuild" / "doubles" / "trtexec"
    engine = tmp_path / "e.engine"

    def trtexec(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(double), *args], capture_output=True, text=True, cwd=tmp_path)

    assert trtexec(f"--onnx={static}", f"--saveEngine={engine}", "--fp16").returncode == 0
    face, eye = tmp_path / "face.raw", tmp_path / "eye.raw"
    np.zeros(FACE, np.float32).tofile(face)
    np.zeros([2, *EYE[1:]], np.float32).tofile(eye)  # two samples for a batch-1 binding
    out = tmp_path / "o.json"
    res = trtexec(f"--loadEngine={engine}", f"--loadInputs='face':{face}", f"--exportOutput={out}")
    assert res.returncode != 0 and "--loadInputs names no file for input eye" in res.stdout + res.stderr
    res = trtexec(f"--loadEngine={engine}", f"--loadInputs='face':{face},'eye':{eye}", f"--exportOutput={out}")
    assert res.returncode != 0 and f"Unexpected file size for input file: {eye}" in res.stdout + res.stderr
    np.zeros(EYE, np.float32).tofile(eye)
    res = trtexec(f"--loadEngine={engine}", f"--loadInputs='face':{face},'eye':{eye}", f"--exportOutput={out}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(out.read_text().replace("\n", ""))[0]["name"] == "gaze"


def test_snpe_input_lists_name_every_input_on_each_line(tmp_path):
    from dmsbuild.backends.snpe import write_input_list
    from dmsbuild.doubles.snpe_double import input_lines

    samples = [{"face": np.zeros([1, *FACE[1:]], np.float32), "eye": np.ones([1, *EYE[1:]], np.float32)}
               for _ in range(2)]
    lst = write_input_list(samples, tmp_path / "cal", "face")
    lines = input_lines(lst)
    assert [sorted(line) for line in lines] == [["eye", "face"], ["eye", "face"]]
    assert len(set(p for line in lines for p in line.values())) == 4  # every raw file named once
    assert all(len(text.split()) == 2 for text in lst.read_text().splitlines())
    assert np.fromfile(lines[0]["eye"], np.float32).size == 3 * 32 * 32


def _sdk_double(tmp_path: Path) -> Path:
    sdk = tmp_path / "qairt"
    bin_dir = sdk / "bin" / "x86_64-linux-clang"
    bin_dir.mkdir(parents=True)
    doubles = Path(__file__).resolve().parents[1] / "dmsbuild" / "doubles"
    for tool in ("snpe-onnx-to-dlc", "snpe-dlc-quantize", "snpe-dlc-quant", "snpe-dlc-graph-prepare",
                 "snpe_double.py"):
        shutil.copy(doubles / tool, bin_dir / tool)
    return sdk


@pytest.mark.usefixtures("onnxruntime_qnn")
def test_snpe_dlc_of_a_two_input_model_gets_every_input(tmp_path):
    sdk = _sdk_double(tmp_path)
    target = QNN_TARGET.replace("[deploy]", "[backend.snpe]\nrequired = true\n[deploy]").replace('group = "rpi5"', "")
    target = 'transport = "local"\n' + target.replace("[deploy]\n", '[deploy]\nroot = "artifacts/boards/q"\n')
    root = make_gaze_project(tmp_path / "p", {"q": target}, brought=False)
    run = run_doit(root, "build", "target=q", env={"SNPE_ROOT": str(sdk)})
    assert run.rc == 0, run.output[-3000:]
    log = (root / "artifacts" / "q" / "logs" / "int8-qdq.snpe-onnx-to-dlc.log").read_text()
    assert "--input_dim face 1,3,64,64 --input_dim eye 1,3,32,32" in log
    lst = root / "artifacts" / "q" / "int8-qdq.work" / "calibration" / "input_list.txt"
    assert [sorted(w.split(":=")[0] for w in line.split()) for line in lst.read_text().splitlines()] == [["eye", "face"]] * 4


def test_snpe_board_input_list_names_every_input_per_inference(tmp_path):
    """The board's snpe-net-run list: one line per inference, ``name:=path`` per input (NHWC raw files)."""
    from dmsbuild.backends.snpe_board import _write_inputs
    from dmsbuild.convert.evaluate import reference_input_arrays

    x = {"face": np.zeros((2, *FACE[1:]), np.float32), "eye": np.ones((2, *EYE[1:]), np.float32)}
    ref = reference_input_arrays(x)
    lst, names = _write_inputs(ref, 3, tmp_path, "/w", "face")
    lines = lst.read_text().splitlines()
    assert len(lines) == 3 and len(names) == 6
    assert lines[0] == "face:=/w/inputs/input_00000.raw eye:=/w/inputs/input_00000_1.raw"
    assert np.fromfile(tmp_path / "inputs" / "input_00002_1.raw", np.float32).size == 32 * 32 * 3


def test_trt_runner_sets_every_engine_input(monkeypatch, tmp_path):
    """trt_runner.run_engine (the board's Python TensorRT path) feeds each engine input its own samples: here
    through a stand-in of the TensorRT 10 API it calls (no GPU on this host), whose engine sums its inputs."""
    import enum
    import types

    from dmsbuild.board.runner import trt_runner

    class Mode(enum.Enum):
        INPUT = 0
        OUTPUT = 1

    shapes = {"face": (1, 3, 4, 4), "eye": (1, 3, 2, 2), "gaze": (1, 1)}
    memory: dict[int, np.ndarray] = {}

    class Context:
        def __init__(self):
            self.addr, self.set = {}, {}

        def set_input_shape(self, name, shape):
            self.set[name] = tuple(shape)

        def get_tensor_shape(self, name):
            return self.set.get(name, shapes[name])

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, _stream):
            total = memory[self.addr["face"]].sum() + memory[self.addr["eye"]].sum()
            memory[self.addr["gaze"]][...] = total
            return True

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return list(shapes)[i]

        def get_tensor_mode(self, name):
            return Mode.OUTPUT if name == "gaze" else Mode.INPUT

        def get_tensor_dtype(self, name):
            return "float32"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine()

    fake = types.SimpleNamespace(Logger=lambda level: None, Runtime=Runtime, TensorIOMode=Mode,
                                 nptype=lambda dtype: np.float32)
    fake.Logger.WARNING = 0
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)

    class Cuda:  # device memory as host arrays
        def malloc(self, nbytes):
            buf = np.zeros(nbytes // 4, np.float32)
            memory[id(buf)] = buf
            return id(buf)

        def ptr(self, mem):
            return mem

        def h2d(self, dev, host):
            memory[dev][...] = host.ravel()

        def d2h(self, host, dev):
            host[...] = memory[dev].reshape(host.shape)

        def handle(self):
            return 0

        def sync(self):
            pass

    monkeypatch.setattr(trt_runner, "_Cuda", Cuda)
    (tmp_path / "e.engine").write_bytes(b"x")
    face = np.stack([np.full((3, 4, 4), k, np.float32) for k in (1, 2)])
    eye = np.stack([np.full((3, 2, 2), k, np.float32) for k in (10, 20)])
    out = trt_runner.run_engine(str(tmp_path / "e.engine"), {"face": face, "eye": eye})
    assert out["gaze"].ravel().tolist() == [48 + 120, 96 + 240]
    with pytest.raises(SystemExit, match=r"the engine's inputs are \['face', 'eye'\], the reference holds \['face'\]"):
        trt_runner.run_engine(str(tmp_path / "e.engine"), {"face": face})

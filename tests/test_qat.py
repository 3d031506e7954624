"""QAT with distillation and structured pruning (dmsbuild/convert/qat.py, issue 12), on the tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmsbuild.config import QATConfig, StaticQuantConfig, load_dataclass, load_target
from dmsbuild.errors import UserError
from dmsbuild.convert.quantize import settings_key
from tests.tinyproject import TARGET_B, make_project, run_doit

# lr: the tiny project's random-init model has vanishing activations (its BatchNorm running statistics, mean 0 and
# variance 1, do not match the real ones: RMS 0.3 after the stem, 7e-7 after the last residual block), so its logits are
# ~1e-10. The distillation gradient on such logits is float32 rounding noise (~1e-8: the ulp of a softmax value
# of 0.2), which Adam, normalising each coordinate, turns into a full lr-sized step: at the default lr 1e-4 one
# step moved heads.activity.bias by 7.5e-5, 1e5-1e6 times the output scale, and the build-time gate rightly calls
# the result degenerate (cosine -0.11, SQNR -106 dB on 'activity'). A step small against the output scale shows
# what these tests check, that the pipeline (BatchNorm folding, fake quantization, stripping, export, ORT
# quantization) is faithful: with lr 1e-12 the tuned FP32 model matches FP32 at SQNR >= 54 dB on every head and
# the QAT artifact matches the PTQ artifact of the same scheme within 1e-5 cosine and 0.04 dB SQNR per head
# (measured on this machine on the 6 validation images).
QAT_TARGET = """\
runtime = "onnxruntime"
precisions = ["fp32", "int8-qdq"]
transport = "local"
[deploy]
root = "artifacts/boards/q"
[quantization]
method = "qat"
activation_type = "QInt8"
symmetric_activations = true
quantize_bias = false
[quantization.qat]
steps = {steps}
batch = 2
seed = 3
lr = 1e-12
{prune}
"""

PRUNE = """[quantization.prune]
fraction = 0.25
steps = 1
"""


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
QAT = '[quantization]\nmethod = "qat"\n'

#: (target profile text, the error it must give)
BAD_PROFILES = [
    (QAT + "[quantization.qat]\nsteps = 0\n", r"t.toml: field 'quantization.qat.steps' is 0"),
    (QAT + "[quantization.qat]\nstep = 5\n", r"unknown field 'quantization.qat.step'"),
    ('[quantization]\nmethod = "qta"\n', r"field 'quantization.method' is 'qta'; allowed values: 'ptq', 'qat'"),
    ("[quantization.prune]\nfraction = 0.3\n", r"pruning runs in the QAT stage only"),
    (QAT + "[quantization.prune]\nfraction = 1.0\n", r"'quantization.prune.fraction' is 1.0"),
    (QAT + "[quantization.prune]\nfraction = 0.3\nlr = 0.0\n", r"field 'quantization.prune.lr' is 0.0; expected a positive value"),
    (QAT + "[quantization.qat]\nthreads = 0\n", r"field 'quantization.qat.threads' is 0"),
    (QAT + "[quantization.prune]\nfraction = 0.3\nround_to = -8\n", r"field 'quantization.prune.round_to' is -8; expected 0"),
]


@pytest.mark.parametrize("text,error", BAD_PROFILES)
def test_bad_profile_fields_are_errors(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "t.toml").write_text(text)
    with pytest.raises(UserError, match=error):
        load_target(tmp_path, "t")


def test_profile_fields_are_read(tmp_path: Path) -> None:
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "t.toml").write_text(QAT + "[quantization.qat]\nsteps = 7\nlr = 0.001\nthreads = 2\n"
                                                 "[quantization.prune]\nfraction = 0.5\nlr = 0.01\n")
    q = load_target(tmp_path, "t").quantization
    assert (q.method, q.qat.steps, q.qat.threads, q.prune.fraction, q.prune.lr) == ("qat", 7, 2, 0.5, 0.01)


def test_missing_qat_labels_file_is_one_line(tmp_path: Path) -> None:
    from dmsbuild.config import load_project
    from dmsbuild.convert.qat import training_files

    root = make_project(tmp_path / "l", {"q": QAT_TARGET.format(steps=1, prune="")})
    with pytest.raises(UserError) as exc:
        training_files(load_project(root), QATConfig(labels="nope.json"))
    assert exc.value.message == "QAT: field 'quantization.qat.labels' is 'nope.json', which does not exist"
    assert "remove qat.labels" in exc.value.hint


def test_settings_key_ptq_ignores_qat_fields_qat_includes_them() -> None:
    ptq = StaticQuantConfig()
    # a PTQ variant's key is what it was before QAT existed (existing artifacts keep their names)
    assert settings_key(ptq, 128) == settings_key(StaticQuantConfig(qat=QATConfig(steps=9)), 128)
    qat = StaticQuantConfig(method="qat")
    assert settings_key(qat, 128) != settings_key(ptq, 128)
    assert settings_key(qat, 128) != settings_key(StaticQuantConfig(method="qat", qat=QATConfig(steps=9)), 128)
    assert settings_key(qat, 128) != settings_key(StaticQuantConfig(method="qat", qat=QATConfig(seed=1)), 128)


def test_prune_round_to_resolves_to_the_target_runtimes_block() -> None:
    from dmsbuild.config import TargetProfile, load_project, static_quant_for

    def resolved(runtime: str, **prune: object) -> int:
        prof = load_dataclass(TargetProfile, {"name": "t", "runtime": runtime, "precisions": ["int8-qdq"],
                                              "quantization": {"method": "qat", "prune": prune}}, "targets/t.toml")
        return static_quant_for(proj, prof).prune.round_to

    proj = load_project(Path(__file__).resolve().parents[1])
    assert [resolved(r, fraction=0.25) for r in ("onnxruntime", "tensorrt", "qnn", "snpe")] == [16, 32, 32, 32]
    assert resolved("tensorrt", fraction=0.25, round_to=8) == 8  # a value the user wrote is kept
    assert resolved("tensorrt", fraction=0.25, round_to=1) == 1
    assert resolved("qnn") == 0  # nothing pruned: nothing resolved, nothing in the key


def test_round_to_keeps_old_keys_where_it_changes_nothing() -> None:
    from dmsbuild.config import PruneConfig

    # keys main computed before prune.round_to existed (QAT without pruning; pruning without rounding)
    assert settings_key(StaticQuantConfig(method="qat"), 100) == "bcaac08635"
    assert settings_key(StaticQuantConfig(method="qat", prune=PruneConfig(fraction=0.25, round_to=1)), 100) == "c3452eec67"
    assert settings_key(StaticQuantConfig(method="qat", prune=PruneConfig(round_to=32)), 100) == "bcaac08635"
    keys = {settings_key(StaticQuantConfig(method="qat", prune=PruneConfig(fraction=0.25, round_to=r)), 100)
            for r in (1, 16, 32)}
    assert len(keys) == 3  # a different alignment is a different model: it retrains


def test_kept_channels_rounds_down_but_never_empties_a_layer() -> None:
    from dmsbuild.convert.qat import kept_channels

    assert kept_channels(48, 12, 32) == 32 and kept_channels(96, 24, 16) == 64 and kept_channels(40, 10, 1) == 30
    assert kept_channels(16, 4, 32) == 16  # narrower than a block: kept whole
    assert kept_channels(48, 40, 32) == 32  # rounding leaves nothing: one block is kept


def test_pruning_keeps_channel_multiples_and_never_empties_a_layer() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from dmsbuild.convert.qat import channel_alignment, prune_channels

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 48, 3), nn.BatchNorm2d(48),
                             nn.ReLU(), nn.Conv2d(48, 96, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 4))

    def widths(fraction: float, round_to: int = 1) -> list[int]:
        m = prune_channels(net(), x, fraction, {4}, round_to)
        assert m(x).shape == (1, 4)
        return [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]

    x = torch.randn(1, 3, 16, 16)
    assert widths(0.25, 32) == [16, 32, 64]  # 16 -> 12 rounds to 0: kept whole; 48 -> 36 -> 32; 96 -> 72 -> 64
    # 48 -> 24 rounds to 0: one block of 32 is kept (torch-pruning's own rounding leaves such a layer unpruned, 48)
    assert widths(0.5, 32) == [16, 32, 32]
    assert widths(0.25) == [12, 36, 72]  # round_to 1: no rounding
    assert channel_alignment(prune_channels(net(), x, 0.25, {4}, 16), 16) == (2, 3)  # the stem's input is the image


def test_batchnorm_recalibration_matches_the_data_and_restores_modes() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    from dmsbuild.convert.qat import recalibrate_batchnorm

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Dropout(0.5)).eval()
    x = 3.0 + 2.0 * torch.randn(64, 3, 8, 8)
    assert recalibrate_batchnorm(m, x, 16) == 1
    with torch.no_grad():
        y = m[0](x)
    bn = m[1]
    assert torch.allclose(bn.running_mean, y.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, y.var(dim=(0, 2, 3)), rtol=0.05)
    assert not m.training and not bn.training and bn.momentum == 0.1


# --------------------------------------------------------------------------
# the pieces
# --------------------------------------------------------------------------
def test_weight_fake_quant_matches_scheme() -> None:
    torch = pytest.importorskip("torch")
    from dmsbuild.convert.qat import fake_quantize_weight

    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 10.0, 0.1, 2.0]).view(4, 1, 1, 1)
    sym = fake_quantize_weight(w, StaticQuantConfig(weight_type="QInt8", per_channel=True))
    for c in range(4):
        step = w[c].abs().max() / 127
        levels = torch.round(sym[c] / step)
        assert torch.allclose(levels * step, sym[c], atol=1e-6)  # on the channel's own symmetric grid
        assert levels.abs().max() <= 127
        assert (sym[c] - w[c]).abs().max() <= step / 2 + 1e-6
    per_tensor = fake_quantize_weight(w, StaticQuantConfig(weight_type="QInt8", per_channel=False))
    # one scale for all: the small channel collapses, which is why per-tensor schemes lose accuracy
    assert len(torch.unique(per_tensor[2])) < len(torch.unique(sym[2]))
    u8 = fake_quantize_weight(w, StaticQuantConfig(weight_type="QUInt8", per_channel=True))
    assert (u8 - w).abs().max() < (sym - w).abs().max() * 1.01


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    from dmsbuild.convert.qat import lr_factor

    f = [lr_factor(i, 100) for i in range(100)]
    assert f[0] == pytest.approx(0.2) and f[4] == pytest.approx(1.0)  # 5 warm-up steps: 0.2, 0.4, ... 1.0
    assert all(a < b for a, b in zip(f[:5], f[1:5]))
    assert all(a >= b for a, b in zip(f[5:], f[6:]))  # then only down
    assert f[-1] < 0.001 and f[52] == pytest.approx(0.5, abs=0.02)  # cosine: half way down in the middle
    assert lr_factor(0, 1) == 1.0  # a one-step run trains at the peak rate


def test_training_cpu_sets_threads_and_puts_them_back() -> None:
    torch = pytest.importorskip("torch")
    from dmsbuild.convert.qat import training_cpu

    before = torch.get_num_threads()
    with training_cpu(1):
        assert torch.get_num_threads() == 1
        tiny = torch.tensor([1e-40], dtype=torch.float32)  # a float32 denormal
        assert float(tiny * 1.0) == 0.0  # flushed while training
    assert torch.get_num_threads() == before
    assert float(torch.tensor([1e-40], dtype=torch.float32) * 1.0) > 0.0  # and not after


def test_activation_fake_quant_keeps_tiny_ranges_like_ort() -> None:
    """A tensor of range 1e-6 keeps its values (ORT's scale floor is float32 tiny), not torch's default 1.2e-7 floor."""
    torch = pytest.importorskip("torch")
    from dmsbuild.convert.qat import _activation_fake_quant

    fq = _activation_fake_quant(StaticQuantConfig(activation_type="QInt8", symmetric_activations=True))
    x = torch.linspace(-1e-6, 1e-6, 101)
    y = fq(x)
    assert float(fq.scale) == pytest.approx(1e-6 / 127.5, rel=1e-3)  # torch: range / ((qmax - qmin) / 2)
    assert (y - x).abs().max() <= float(fq.scale) / 2 * 1.001  # half a step (float32 rounding)


def test_distillation_loss_heads() -> None:
    torch = pytest.importorskip("torch")
    from dmsbuild.convert.qat import distillation_loss

    heads, cls = ["a", "pose"], {"a"}
    t = (torch.tensor([[2.0, -1.0], [0.0, 3.0]]), torch.tensor([[0.5], [-0.2]]))
    assert float(distillation_loss(t, t, heads, cls, 2.0)) == pytest.approx(0.0, abs=1e-7)
    off_cls = (t[0].flip(1), t[1])
    off_reg = (t[0], t[1] + 1.0)
    assert float(distillation_loss(off_cls, t, heads, cls, 2.0)) > 0.1
    assert float(distillation_loss(off_reg, t, heads, cls, 2.0)) == pytest.approx(1.0)
    # with labels: the teacher agrees with the student, but the labels disagree -> loss grows with label_weight
    labels = {"a": torch.tensor([1, 0]), "pose": torch.tensor([[0.5], [-0.2]])}
    mixed = float(distillation_loss(t, t, heads, cls, 2.0, labels, 0.5))
    assert mixed > 0.5
    assert float(distillation_loss(t, t, heads, cls, 2.0, labels, 0.0)) == pytest.approx(0.0, abs=1e-7)


def test_fake_quant_insert_and_strip_roundtrip() -> None:
    torch = pytest.importorskip("torch")
    from dmsbuild.model.dms_net import build_tiny
    from dmsbuild.convert.qat import fold_batchnorm, insert_fake_quant, strip_fake_quant

    torch.manual_seed(0)
    model = build_tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    assert fold_batchnorm(model) > 10
    folded = model(x)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ref, folded))  # folding keeps the function
    n = insert_fake_quant(model, StaticQuantConfig(activation_type="QUInt16"))
    assert n == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in build_tiny().modules())
    model(x)
    strip_fake_quant(model)
    assert not any(type(m).__name__ == "FakeQuantized" for m in model.modules())
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ref, model(x)))


# --------------------------------------------------------------------------
# the build stage, incremental, on the tiny project
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qat_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qat")
    make_project(root, {"q": QAT_TARGET.format(steps=3, prune=""), "b": TARGET_B})
    return root


def _qat_key(root: Path, name: str = "q") -> str:
    from dmsbuild.config import load_project, static_quant_for

    proj = load_project(root)
    return settings_key(static_quant_for(proj, load_target(root, name)), proj.data.max_calibration_samples)


def test_qat_builds_and_is_incremental(qat_project: Path) -> None:
    root = qat_project
    key = _qat_key(root)
    first = run_doit(root, "build", "target=q,b")
    assert first.rc == 0, first.output
    assert f"quantize:int8-qdq-{key}" in first.executed
    assert "qat: step 3/3 loss" in first.output and "s left)" in first.output  # progress lines
    artifact = root / "artifacts" / "common" / f"int8-qdq-{key}.onnx"
    report = json.loads((root / "artifacts" / "common" / f"int8-qdq-{key}.qat.json").read_text())
    assert report["qat"]["steps"] == 3 and report["settings"]["method"] == "qat"
    build = json.loads((root / "artifacts" / "q" / "build.json").read_text())
    shipped = next(a for a in build["artifacts"] if a["precision"] == "int8-qdq")
    assert shipped["sha256"] and shipped["eval"]["samples"] == 6
    # the PTQ target beside it is a different artifact
    assert _qat_key(root, "b") != key
    assert not list(root.glob("artifacts/common/dmsbuild-qat-*"))  # no temporary folder left behind

    again = run_doit(root, "build", "target=q")
    assert again.rc == 0, again.output
    assert f"quantize:int8-qdq-{key}" not in again.executed, "a second build retrained"

    # a backend option changes what ships, not the trained model
    prof = root / "targets" / "q.toml"
    prof.write_text(prof.read_text() + '[backend]\nproviders = ["CPUExecutionProvider"]\n')
    backend = run_doit(root, "build", "target=q")
    assert backend.rc == 0, backend.output
    assert "build:q" in backend.executed
    assert not any(t.startswith("quantize:") for t in backend.executed), "a backend option retrained"

    # a QAT setting is part of the artifact: it trains again (a new variant)
    prof.write_text(prof.read_text().replace("steps = 3", "steps = 2"))
    new_key = _qat_key(root)
    assert new_key != key
    changed = run_doit(root, "build", "target=q")
    assert changed.rc == 0, changed.output
    assert f"quantize:int8-qdq-{new_key}" in changed.executed


def test_qat_artifact_deploys_and_passes_the_output_check(qat_project: Path) -> None:
    """The QAT artifact takes the ordinary deploy path: pushed, verified, benchmarked, output-checked (local board)."""
    root = qat_project
    run = run_doit(root, "deploy", "target=q")
    assert run.rc == 0, run.output
    [report] = sorted((root / "artifacts" / "q" / "rollouts").glob("*.json"))[-1:]
    board = json.loads(report.read_text())["boards"][0]
    assert board["status"] == "done" and board["verified"] and board["output_check"] is True
    build = json.loads((root / "artifacts" / "q" / "build.json").read_text())
    qdq = next(a for a in build["artifacts"] if a["precision"] == "int8-qdq")
    shipped = root / "artifacts" / "boards" / "q" / "current" / "models" / Path(qdq["path"]).name
    assert shipped.is_file() and shipped.stat().st_size == qdq["size"]


def test_qat_is_seeded(qat_project: Path, tmp_path: Path) -> None:
    """Same settings, same data, same seed: the same trained weights (so the same artifact)."""
    from dmsbuild.config import load_project, static_quant_for
    from dmsbuild.convert.data import list_samples
    from dmsbuild.convert.qat import tuned_fp32_path, run_qat

    root = qat_project
    proj = load_project(root)
    cfg = static_quant_for(proj, load_target(root, "q"))
    fp32 = root / "artifacts" / "common" / "fp32.onnx"
    assert fp32.is_file()
    cal = list_samples(proj, "calibration")
    a, b = tmp_path / "a" / "x.onnx", tmp_path / "b" / "x.onnx"
    ra = run_qat(proj, fp32, a, cfg, cal)
    rb = run_qat(proj, fp32, b, cfg, cal)
    assert ra["qat"]["loss_curve"] == rb["qat"]["loss_curve"]
    import onnx
    from onnx import numpy_helper

    wa = [numpy_helper.to_array(i) for i in onnx.load(str(tuned_fp32_path(a))).graph.initializer]
    wb = [numpy_helper.to_array(i) for i in onnx.load(str(tuned_fp32_path(b))).graph.initializer]
    assert all((x == y).all() for x, y in zip(wa, wb))


def test_failure_late_in_the_stage_leaves_no_artifact(qat_project: Path, tmp_path: Path) -> None:
    """An error (or Ctrl-C) after training leaves no target and no temporary folder: doit runs it again."""
    from dmsbuild.config import load_project, static_quant_for
    from dmsbuild.convert.qat import report_path, run_qat, tuned_fp32_path

    root = qat_project
    proj = load_project(root)
    cfg = static_quant_for(proj, load_target(root, "q"))
    out = tmp_path / "x.onnx"
    with pytest.raises(UserError, match="unreadable image"):
        run_qat(proj, root / "artifacts" / "common" / "fp32.onnx", out, cfg, [tmp_path / "missing.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not out.exists() and not report_path(out).exists() and not tuned_fp32_path(out).exists()


def test_pruning_reduces_macs_and_flows_through(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"q": QAT_TARGET.format(steps=1, prune=PRUNE)})
    run = run_doit(root, "build", "target=q")
    key = _qat_key(root)
    # one fine-tune step cannot recover 25 % of the channels (min top-1 agreement 1 of 6 measured): the pruned
    # artifact is built, evaluated and then refused by the accuracy gate like any model (docs/qat.md)
    assert run.rc == 1, run.output
    assert f"quantize:int8-qdq-{key}" in run.executed and f"evaluate:int8-qdq-{key}" in run.executed
    assert f"artifact 'int8-qdq' fails the accuracy gate" in run.failure("build:q"), run.output
    assert "Traceback" not in run.output
    report = json.loads((root / "artifacts" / "common" / f"int8-qdq-{key}.qat.json").read_text())
    pr = report["prune"]
    assert pr["macs_after"] < 0.85 * pr["macs_before"]
    assert pr["params_after"] < pr["params_before"]
    assert pr["fp32_onnx_bytes_after"] < pr["fp32_onnx_bytes_before"]
    assert pr["fp32_latency_ms_before"] > 0 and pr["fp32_latency_ms_after"] > 0
    agreement = pr["agreement_pruned_fp32_vs_fp32"]
    assert set(agreement) == {"eye_state", "yawn", "activity", "head_pose"}
    # the shared metrics' definitions: a regression head has no top-1 agreement, every head a cosine and an SQNR
    assert agreement["head_pose"]["top1_agreement"] is None and 0.0 <= agreement["eye_state"]["top1_agreement"] <= 1.0
    assert all(-1.0 <= m["cosine"] <= 1.0 and isinstance(m["sqnr_db"], float) for m in agreement.values())
    assert "prune: 25% of channels" in run.output
    # the target's runtime (onnxruntime) sets the channel block; BatchNorm statistics are re-estimated after pruning
    assert pr["round_to"] == 16 and pr["batchnorm_recalibrated"] > 0, pr
    assert f"channels kept in multiples of 16 ({pr['convs_aligned']} of {pr['convs']} convolutions aligned)" in run.output
    # the pruning fine-tune runs at prune.lr (default 1e-3), QAT at qat.lr
    assert "prune fine-tune: 1 steps, batch 2, peak lr 0.001 (" in run.output and "qat: 1 steps, batch 2, peak lr 1e-12 (" in run.output


def test_qat_needs_a_pytorch_model(tmp_path: Path) -> None:
    from dmsbuild.config import load_project
    from dmsbuild.convert.qat import run_qat

    root = make_project(tmp_path / "o", {"q": QAT_TARGET.format(steps=1, prune="")})
    proj = load_project(root)
    proj.model.factory, proj.model.onnx = None, "models/x.onnx"
    with pytest.raises(UserError, match=r"method \"qat\" needs the PyTorch model"):
        run_qat(proj, root / "x.onnx", root / "y.onnx", load_target(root, "q").quantization, [])


# --------------------------------------------------------------------------
# the consumers: ORT (session check in the stage), TensorRT rules, QNN context binary
# --------------------------------------------------------------------------
def test_tensorrt_rules_accept_qat_artifact_and_reject_asymmetric(qat_project: Path, tmp_path: Path) -> None:
    from dmsbuild.config import load_project
    from dmsbuild.convert.data import list_samples
    from dmsbuild.convert.qat import tensorrt_qdq_problems
    from dmsbuild.convert.quantize import quantize_static_qdq

    root = qat_project
    key = _qat_key(root)
    artifact = root / "artifacts" / "common" / f"int8-qdq-{key}.onnx"
    if not artifact.is_file():
        assert run_doit(root, "build", "target=q").rc == 0
    assert tensorrt_qdq_problems(artifact) == []
    proj = load_project(root)
    u8 = tmp_path / "u8.onnx"
    quantize_static_qdq(proj, root / "artifacts" / "common" / "fp32.onnx", u8, StaticQuantConfig(), list_samples(proj, "calibration"))
    problems = tensorrt_qdq_problems(u8)
    assert any("uint8 zero point" in p for p in problems)
    assert any("int32 zero point" in p for p in problems)  # int32 bias DequantizeLinear


def test_qnn_context_binary_from_qat_artifact(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn is not installed")
    from dmsbuild.backends import qnn

    target = QAT_TARGET.format(steps=1, prune="").replace('activation_type = "QInt8"\nsymmetric_activations = true\nquantize_bias = false',
                                                            'activation_type = "QUInt16"\nweight_type = "QUInt8"\nfixed_shape = true')
    root = make_project(tmp_path / "n", {"n": target})
    run = run_doit(root, "quantize")
    assert run.rc == 0, run.output
    artifact = root / "artifacts" / "common" / f"int8-qdq-{_qat_key(root, 'n')}.onnx"
    report = qnn.build_context_binary(artifact, tmp_path / "ctx.onnx", qnn.load_options({}, "targets/n.toml"))
    assert report.partitions == 1 and report.fallback_nodes == []
    assert report.activations == "uint16"
    assert (tmp_path / report.files[1]).stat().st_size > 10_000

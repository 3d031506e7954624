"""Calibration and validation data: image folders, ``.npy``/``.npz`` arrays or a Python loader, preprocessed like the model's input.

One sample = one array shaped like the model input without its batch axis
(``C, H, W`` for NCHW, ``H, W, C`` for NHWC). An image of any size is resized
to ``preprocess.resize`` (default: the input's H, W) and centre-cropped to the
input's H, W, put in the configured channel order, divided by
``preprocess.scale`` and normalised by ``mean``/``std``; a ``.npy`` file (or
each array of a ``.npz``, or the array under the input's name) holds either
one sample or a stack of them (``N, ...``) already preprocessed. With
``data.loader = "pkg.mod:fn"``, ``fn(split)`` yields ``{input name: array}``
dicts instead of the folders (its module file is the dependency; sample *i*
is named ``"i"`` in the labels file). Samples are read lazily so a
calibration set never has to fit in memory at once.

Several inputs (``[[inputs]]``): one sample is a dict ``{input name: array}``. It comes from a ``.npz`` with
one array per input name (one sample or a stack ``N, ...`` each), from one sub-folder per input name under the
data folder (``calibration/face/003.png`` + ``calibration/state/003.npy``: the files of one sample share a
stem), or from ``data.loader`` dicts naming every input. Image files fill only 4-D inputs.

Task generators call ``list_samples`` on every doit run, so numpy and Pillow are imported
inside the functions that need them.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..config import ProjectConfig
from ..errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SAMPLE_SUFFIXES = (*IMAGE_SUFFIXES, ".npy", ".npz")


def list_samples(project: ProjectConfig, field: str, limit: int | None = None) -> list[Path]:
    """The sample files of the folder named by ``data.<field>``, sorted by name (stdlib only: used by task generators).

    With ``data.loader`` set: the loader's module file (the dependency that changes the samples)."""
    if project.data.loader is not None:
        from .export import module_source

        src = module_source(project, project.data.loader)
        if src is None:
            raise UserError(f"{project.source}: field 'data.loader' is {project.data.loader!r}; its module file is not "
                            "found under the project folder or on sys.path",
                            hint="put the module in the project folder (e.g. mydata.py for loader = \"mydata:samples\")")
        return [src]
    rel = getattr(project.data, field)
    folder = project.path(rel)
    where = f"{project.source}: field 'data.{field}'"
    if folder is None or not folder.is_dir():
        raise UserError(
            f"{where} is {rel!r}, which is not a folder",
            hint=f"create {folder} with .png/.jpg/.npy samples or point data.{field} at one",
        )
    if len(project.all_inputs) > 1 and all((folder / i.name).is_dir() for i in project.all_inputs):
        return _per_input_files(project, folder, where, limit)
    # DirEntry.is_file() (a symlink followed, like Path.is_file) needs no stat per file: a no-op `doit` lists the
    # folder, and dodo.py's task cache keys on the folder's stat, not on each sample's (dmsbuild/taskcache.py)
    with os.scandir(folder) as entries:
        files = sorted(Path(e.path) for e in entries if e.is_file() and Path(e.name).suffix.lower() in SAMPLE_SUFFIXES)
    if not files:
        raise UserError(
            f"{where}: folder {folder} holds no samples ({', '.join(SAMPLE_SUFFIXES)})",
            hint=f"put calibration/validation samples into {folder}",
        )
    return files[:limit] if limit else files


def _per_input_files(project: ProjectConfig, folder: Path, where: str, limit: int | None) -> list[Path]:
    """Per-input sub-folders: the first input's files (the sample names, up to ``limit``), then each other input's
    file of the same stem; a sample missing from one input's folder is an error naming both."""
    first, *rest = project.all_inputs
    names = sorted(p for p in (folder / first.name).iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)
    if not names:
        raise UserError(f"{where}: folder {folder / first.name} (input '{first.name}') holds no samples "
                        f"({', '.join(SAMPLE_SUFFIXES)})", hint="put one file per sample into each input's folder")
    names = names[:limit] if limit else names
    out = list(names)
    for inp in rest:
        by_stem = {p.stem: p for p in (folder / inp.name).iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES}
        for p in names:
            if p.stem not in by_stem:
                raise UserError(f"{folder / inp.name}: no sample '{p.stem}' for input '{inp.name}' ({p} has one for "
                                f"input '{first.name}')", hint="give every input a file of the same stem per sample")
            out.append(by_stem[p.stem])
    return out


def sample_shape(project: ProjectConfig, inp=None) -> tuple[int, ...]:
    """The shape of one sample: the input shape without its batch axis (``inp``: one of several inputs)."""
    return tuple((inp or project.input).shape[1:])


def _load_image(path: Path, project: ProjectConfig, inp=None) -> np.ndarray:
    import numpy as np

    from PIL import Image, UnidentifiedImageError

    inp = inp or project.input
    if len(inp.shape) != 4:
        raise UserError(f"{path}: an image cannot fill input '{inp.name}' of shape {inp.shape} (images fill 4-D inputs "
                        "only)", hint=f"give input '{inp.name}' its samples as .npy/.npz arrays or from data.loader")
    pre = project.preprocess
    h, w = pre.resize or list(inp.hw)
    out_h, out_w = inp.hw
    try:
        with Image.open(path) as img:
            img = img.convert("L" if pre.channel_order == "GRAY" else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            if (w, h) != (out_w, out_h):  # centre crop to the model's input
                if w < out_w or h < out_h:
                    raise UserError(f"{project.source}: field 'preprocess.resize' is {[h, w]}, smaller than the input's "
                                    f"H, W {[out_h, out_w]}", hint="resize to at least the input size (it is then centre-cropped)")
                top, left = (h - out_h) // 2, (w - out_w) // 2
                img = img.crop((left, top, left + out_w, top + out_h))
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
    if inp.dtype != "uint8":
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
    if inp.layout == "NCHW":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _check_shape(arr: np.ndarray, path: Path, project: ProjectConfig, inp=None) -> np.ndarray:
    import numpy as np

    inp = inp or project.input
    want = sample_shape(project, inp)
    if tuple(arr.shape) != want:
        hint = "resize/convert the sample, or fix [input]/[preprocess] in dmsbuild.toml"
        field = "input.shape" if inp is project.input and not project.inputs else \
            f"inputs[{project.all_inputs.index(inp)}].shape"
        raise UserError(
            f"{path}: sample shape {tuple(arr.shape)} does not match the input '{inp.name}' "
            f"shape {want} ({field} {inp.shape} without the batch axis)",
            hint=hint,
        )
    return arr.astype(np.uint8 if inp.dtype == "uint8" else np.dtype(inp.dtype), copy=False)


def _npz_arrays(path: Path, project: ProjectConfig, inputs=None):
    """A single-input model: the array under the input's name, else every array (a list). Several inputs (or
    ``inputs``): ``{input name: array}``, each input's array required."""
    import zipfile

    import numpy as np

    several = inputs if inputs is not None else (project.all_inputs if len(project.all_inputs) > 1 else None)
    try:
        with np.load(path, allow_pickle=False) as z:
            if several is not None:
                missing = [i.name for i in several if i.name not in z.files]
                if missing:
                    raise UserError(f"{path}: no array for input '{missing[0]}' (the archive holds {sorted(z.files)})",
                                    hint="save one array per input name: np.savez(path, **{name: array})")
                return {i.name: z[i.name] for i in several}
            names = [project.input.name] if project.input.name in z.files else list(z.files)
            return [z[n] for n in names]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: unreadable .npz archive ({exc})", hint="replace or delete that file") from None


def _loader_samples(project: ProjectConfig, split: str) -> Iterator[tuple[Path, np.ndarray]]:
    """``data.loader``'s samples for ``split``, checked to be dicts naming the model's input."""
    import numpy as np

    from .export import import_callable

    fn = import_callable(project, project.data.loader or "", "data.loader",
                         "name a function fn(split) yielding {input name: array} dicts")
    where = f"{project.source}: field 'data.loader' ({project.data.loader})"
    try:
        items = iter(fn(split))
    except TypeError as exc:
        raise UserError(f"{where}: calling it with the split name {split!r} failed: {exc}",
                        hint="define fn(split) returning an iterable of {input name: array} dicts") from None
    if len(project.all_inputs) > 1:
        yield from _loader_dicts(project, items, where, split)
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict) or project.input.name not in item:
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise UserError(f"{where}: sample {i} of split {split!r} is {got}; expected a dict with the input "
                            f"'{project.input.name}'", hint="yield {input.name: array} for every sample")
        unknown = sorted(set(item) - {project.input.name})
        if unknown:
            raise UserError(f"{where}: sample {i} of split {split!r} names inputs {unknown} the model does not have "
                            f"(its input is '{project.input.name}')", hint="yield only the model's input")
        arr = np.asarray(item[project.input.name])
        if arr.ndim == len(sample_shape(project)) + 1 and arr.shape[0] == 1:
            arr = arr[0]
        yield Path(str(i)), arr


def _loader_dicts(project: ProjectConfig, items, where: str, split: str) -> Iterator[tuple[Path, dict]]:
    """data.loader's dicts for a model with several inputs: every input named, no other name."""
    import numpy as np

    names = [i.name for i in project.all_inputs]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(f"{where}: sample {i} of split {split!r} is {type(item).__name__}; expected a dict with "
                            f"the inputs {names}", hint="yield {input name: array} with every input for every sample")
        missing = [n for n in names if n not in item]
        if missing:
            raise UserError(f"{where}: sample {i} of split {split!r} has no input '{missing[0]}' (it names "
                            f"{sorted(item)}; the model's inputs are {names})",
                            hint="yield {input name: array} with every input for every sample")
        unknown = sorted(set(item) - set(names))
        if unknown:
            raise UserError(f"{where}: sample {i} of split {split!r} names input '{unknown[0]}', which the model does "
                            f"not have (its inputs are {names})", hint="yield only the model's inputs")
        sample = {}
        for inp in project.all_inputs:
            arr = np.asarray(item[inp.name])
            if arr.ndim == len(sample_shape(project, inp)) + 1 and arr.shape[0] == 1:
                arr = arr[0]
            sample[inp.name] = arr
        yield Path(str(i)), sample


def _several(files: list[Path], project: ProjectConfig, limit: int | None, split: str) -> Iterator[tuple[Path, dict]]:
    """Samples of a model with several inputs: loader dicts, .npz files (one array per input name) or per-input
    folders (``list_samples`` lists the first input's files, then the others' of the same stems)."""
    import numpy as np

    inputs = project.all_inputs
    count = 0

    def done() -> bool:
        nonlocal count
        count += 1
        return bool(limit) and count >= limit

    if project.data.loader is not None:
        for name, sample in _loader_samples(project, split):
            where = f"{project.data.loader}[{split}][{name}]"
            yield name, {i.name: _check_shape(sample[i.name], Path(f"{where}[{i.name}]"), project, i) for i in inputs}
            if done():
                return
        return
    per_input = {i.name: [p for p in files if p.parent.name == i.name] for i in inputs}
    if files and all(per_input.values()):
        partner = {i.name: {p.stem: p for p in per_input[i.name]} for i in inputs[1:]}
        for first in per_input[inputs[0].name]:
            sample = {inputs[0].name: _one(first, project, inputs[0])}
            for inp in inputs[1:]:
                sample[inp.name] = _one(partner[inp.name][first.stem], project, inp)
            yield first, sample
            if done():
                return
        return
    for path in files:
        if path.suffix.lower() != ".npz":
            raise UserError(f"{path}: a {path.suffix} file holds one input; the model has {len(inputs)} inputs "
                            f"({', '.join(i.name for i in inputs)})",
                            hint="give each sample as a .npz with one array per input name, or one sub-folder per "
                                 "input (docs/byom.md \"Several inputs\")")
        arrays = _npz_arrays(path, project)
        rows: dict[str, list] = {}
        for inp in inputs:
            arr = arrays[inp.name]
            rows[inp.name] = [arr] if arr.ndim == len(sample_shape(project, inp)) else list(arr)
        counts = {n: len(r) for n, r in rows.items()}
        if len(set(counts.values())) > 1:
            raise UserError(f"{path}: the inputs hold different sample counts {counts}",
                            hint="stack the same number of samples for every input")
        for k in range(next(iter(counts.values()))):
            yield path, {i.name: _check_shape(np.asarray(rows[i.name][k]), path, project, i) for i in inputs}
            if done():
                return


def _one(path: Path, project: ProjectConfig, inp) -> np.ndarray:
    """One sample of one input from a per-input folder: an image (4-D inputs) or a .npy/.npz of one sample."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable .npy array ({exc})", hint="replace or delete that file") from None
    elif path.suffix.lower() == ".npz":
        arrays = _npz_arrays(path, project, [inp])
        arr = arrays[inp.name]
    else:
        arr = _load_image(path, project, inp)
    if arr.ndim == len(sample_shape(project, inp)) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    return _check_shape(np.asarray(arr), path, project, inp)


def iter_samples(files: list[Path], project: ProjectConfig, limit: int | None = None,
                 split: str = "validation") -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (file, sample) one at a time; a ``.npy`` stack yields each of its rows; with data.loader, its samples.

    With several inputs a sample is a dict ``{input name: array}``."""
    import numpy as np

    if len(project.all_inputs) > 1:
        yield from _several(files, project, limit, split)
        return
    count = 0
    if project.data.loader is not None:
        for name, arr in _loader_samples(project, split):
            yield name, _check_shape(arr, Path(f"{project.data.loader}[{split}][{name}]"), project)
            count += 1
            if limit and count >= limit:
                return
        return
    for path in files:
        if path.suffix.lower() in (".npy", ".npz"):
            if path.suffix.lower() == ".npz":
                arrays = _npz_arrays(path, project)
            else:
                try:
                    arrays = [np.load(path, allow_pickle=False)]
                except (OSError, ValueError) as exc:
                    raise UserError(f"{path}: unreadable .npy array ({exc})", hint="replace or delete that file") from None
            rows = [r for arr in arrays for r in ([arr] if arr.ndim == len(sample_shape(project)) else list(arr))]
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


def load_samples(files: list[Path], project: ProjectConfig, limit: int | None = None,
                 split: str = "validation") -> tuple[list[Path], np.ndarray]:
    """All samples stacked into one batch (validation sets are small)."""
    import numpy as np

    names: list[Path] = []
    arrays: list[np.ndarray] = []
    for path, arr in iter_samples(files, project, limit, split):
        names.append(path)
        arrays.append(arr)
    if arrays and isinstance(arrays[0], dict):  # several inputs: {input name: stacked samples}
        return names, {n: np.stack([a[n] for a in arrays]) for n in arrays[0]}
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
            #: what the log line says about the sample count
            self.described = f"{self.total} samples"
            if project.data.loader is not None:
                self.described = f"up to {limit} samples of data.loader {project.data.loader}"

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._it is None:
                self._it = iter_samples(files, project, limit, "calibration")
            item = next(self._it, None)
            if item is None:
                return None
            self.seen += 1
            if progress and (self.seen % 16 == 0):
                print(f"  calibration: {self.seen} samples read", flush=True)
            if isinstance(item[1], dict):  # several inputs: every one, each with its batch axis
                return {n: a[None, ...] for n, a in item[1].items()}
            return {input_name: item[1][None, ...]}

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
    named = sorted({h for entry in table.values() if isinstance(entry, dict) for h in entry})
    unknown = [h for h in named if h not in heads]
    if unknown:
        raise UserError(f"{path}: labels name heads {unknown} that are not in outputs.names {heads}",
                        hint="use the model's output names as label keys (or fix outputs.names)")
    if not named:
        raise UserError(f"{path}: labels no head at all; outputs.names are {heads}",
                        hint="give {\"<sample>\": {\"<head>\": <label>}} entries, or remove data.labels")
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

"""Reading user data and target specifications into problems, with clear errors for bad input."""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mongeflow.devices import gather_rows, process_gather, process_rows, process_sum
from mongeflow.problems.base import (
    EmpiricalSource,
    EmpiricalTarget,
    Gaussian,
    PotentialTarget,
    Problem,
    Target,
)
from mongeflow.problems.standardise import Standardiser


class InputError(ValueError):
    """Bad user input (a file, a target specification): the message says what and why."""


SUFFIXES = (".npy", ".npz", ".csv", ".h5ad")
#: the most values (rows × columns, after a selection) read from an ``.h5ad`` file: a
#: sparse matrix is made dense to be fitted, and a gene-expression matrix rarely fits
MAX_H5AD_VALUES = 2**28


def split_array_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``FILE``, ``FILE.npz:KEY`` or ``FILE.h5ad:obsm/KEY`` → (file, key or ``None``).

    A path that exists as written is a file, even if it contains ``:``; otherwise the text
    after the last ``:`` is a key when the text before it names a ``.npy``, ``.npz``,
    ``.csv`` or ``.h5ad`` file.
    """
    text = str(spec)
    if ":" not in text or Path(text).exists():
        return Path(text), None
    file, key = text.rsplit(":", 1)
    if Path(file).suffix.lower() in SUFFIXES:
        return Path(file), key
    return Path(text), None


def load_array(spec: str | Path, what: str = "data", *, where: str | None = None) -> np.ndarray:
    """Read ``[n, d]`` samples from ``.npy``, ``.npz``, ``.csv`` (values separated by
    commas, semicolons, tabs or blanks, found from the data; with or without a header line)
    or ``.h5ad`` (AnnData, read with the optional ``anndata`` package).

    An ``.npz`` holding one array needs no key; one holding several needs ``FILE.npz:KEY``
    to say which (no array is picked by guessing). An ``.h5ad`` file gives its ``X`` by
    default, ``FILE.h5ad:obsm/KEY`` one of its ``obsm`` arrays (``obsm/X_pca``, say) and
    ``FILE.h5ad:layers/KEY`` a layer; a sparse matrix is made dense, up to
    :data:`MAX_H5AD_VALUES` values.

    Args:
        spec: ``FILE``, ``FILE.npz:KEY``, ``FILE.h5ad``, ``FILE.h5ad:X``,
            ``FILE.h5ad:obsm/KEY`` or ``FILE.h5ad:layers/KEY``.
        what: what the file is, for the messages (``"data"``, ``"source"``, ...).
        where: for an ``.h5ad`` file only, the rows to read, by a column of its ``obs``:
            ``COLUMN == VALUE``, ``COLUMN != VALUE`` or ``COLUMN in [VALUE, ...]`` (see
            :func:`select_rows`; parsed here, never evaluated).

    Raises:
        InputError: missing or unreadable file, unknown format, a missing or unknown key,
            a key for a file that is not ``.npz`` or ``.h5ad``, ``where`` for a file that is
            not ``.h5ad`` or that selects no row, an ``.h5ad`` file without the ``anndata``
            package, too many values, empty data, non-numeric entries, NaN/inf, or a shape
            that is not ``[n, d]``.
    """
    return read_points(spec, what, where=where).values


@dataclass
class Points:
    """Samples read by :func:`read_points`, with what a writer of results keeps of them.

    Attributes:
        values: the samples ``[n, d]``, checked, in float64.
        columns: a CSV file's header, the names of its d columns (``None``: no header, or
            not a CSV file).
        adata: the ``anndata.AnnData`` an ``.h5ad`` file holds, all its rows (``None`` for
            other files).
        rows: the rows of ``adata`` that ``values`` are, a boolean mask over its ``obs``
            (``None``: all of them).
    """

    values: np.ndarray
    columns: list[str] | None = None
    adata: object | None = None
    rows: np.ndarray | None = None


def read_points(spec: str | Path, what: str = "data", *, where: str | None = None) -> Points:
    """:func:`load_array`, with a CSV file's header and an ``.h5ad`` file's AnnData kept
    beside the samples (:class:`Points`), for writing results in the input's terms."""
    p, key = split_array_spec(spec)
    suffix = p.suffix.lower()
    if key is not None and suffix not in (".npz", ".h5ad"):
        raise InputError(
            f"{what} {str(spec)!r}: a key (':{key}') selects one array of an .npz file, but "
            f"{str(p)!r} is a {suffix} file, which holds one array; give it without ':{key}'"
        )
    if where is not None and suffix != ".h5ad":
        raise InputError(
            f"{what} {str(spec)!r}: a selection of rows ({where!r}) applies to an .h5ad "
            f"file, by the columns of its obs; {str(p)!r} is a {suffix or 'plain'} file, "
            "which has none: select the rows before saving it"
        )
    if not p.exists():
        raise InputError(f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise InputError(f"{what} path {str(p)!r} is not a file")
    points = Points(np.empty((0, 0)))
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            arr = _read_npz(p, key, what)
        elif suffix == ".csv":
            arr, points.columns = _read_csv_table(p, what)
        elif suffix == ".h5ad":
            arr, points.adata, points.rows = _read_h5ad(p, key, what, where)
        else:
            raise InputError(
                f"{what} file {str(p)!r}: unknown format {suffix or '(none)'!r}; "
                "expected .npy, .npz or .csv (or .h5ad, with the 'anndata' extra)"
            )
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError) as err:
        raise InputError(f"cannot read {what} file {str(p)!r}: {err}") from None
    place = f"{what} file {str(p)!r}" + ("" if key is None else f", array {key!r}")
    points.values = check_samples(arr, place)
    return points


def _anndata():
    """The ``anndata`` module, or an :class:`InputError` saying how to install it."""
    try:
        import anndata
    except ImportError:
        raise InputError(
            "reading .h5ad files needs the 'anndata' extra: pip install 'mongeflow[anndata]'"
        ) from None
    return anndata


def _read_h5ad(p: Path, key: str | None, what: str, where: str | None):
    """``(values, adata, rows)``: the matrix ``key`` names (``X``, ``obsm/KEY``,
    ``layers/KEY``; ``None``: ``X``) of the AnnData in ``p``, its rows selected by
    ``where`` (:func:`select_rows`), dense."""
    adata = _anndata().read_h5ad(p, backed=None)
    place = f"{what} file {str(p)!r}" + ("" if key is None else f", array {key!r}")
    obsm, layers = list(adata.obsm.keys()), list(adata.layers.keys())
    kinds = (
        f"X, obsm/KEY (its obsm: {', '.join(obsm) or 'none'}) or layers/KEY (its layers: "
        f"{', '.join(layers) or 'none'})"
    )
    part, _, name = (key or "X").partition("/")
    if part == "X" and not name:
        matrix = adata.X
        if matrix is None:
            raise InputError(f"{place}: the AnnData has no X; choose {kinds}")
    elif part in ("obsm", "layers") and name:
        store = adata.obsm if part == "obsm" else adata.layers
        names = obsm if part == "obsm" else layers
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {part}/{close[0]}?" if close else ""
            listed = ", ".join(names) or "none"
            raise InputError(
                f"{place}: the AnnData has no {part}/{name} (its {part}: {listed}){hint}"
            )
        matrix = store[name]
    else:
        hint = ""
        if key in obsm or key in layers:
            hint = f"; did you mean {'obsm' if key in obsm else 'layers'}/{key}?"
        raise InputError(f"{place}: unknown key {key!r}; expected {kinds}{hint}")
    rows = None if where is None else select_rows(adata.obs, where, place)
    if _is_frame(matrix):  # obsm may hold a DataFrame
        matrix = frame_values(matrix, place)
    if rows is not None:
        matrix = matrix[rows]
    shape = getattr(matrix, "shape", ())
    if len(shape) == 2 and shape[0] * shape[1] > MAX_H5AD_VALUES:
        n, d = shape
        better = "obsm/X_pca" if "X_pca" in obsm else (f"obsm/{obsm[0]}" if obsm else None)
        raise InputError(
            f"{place}: {n} rows × {d} columns = {n * d:,} values ({n * d * 8 / 1e9:.1f} GB "
            f"as float64), more than the {MAX_H5AD_VALUES:,} read from an .h5ad file; fit a "
            "reduced representation"
            + (f", e.g. {p}:{better}" if better else " (a PCA, saved in obsm)")
            + ", or fewer rows"
        )
    return _dense(matrix), adata, rows


def _dense(matrix) -> np.ndarray:
    """A dense numpy array of a matrix that may be sparse."""
    if hasattr(matrix, "toarray"):  # scipy.sparse
        return np.asarray(matrix.toarray())
    return np.asarray(matrix)


def _is_frame(data) -> bool:
    pandas = sys.modules.get("pandas")  # (data cannot be a DataFrame before pandas loads)
    return pandas is not None and isinstance(data, pandas.DataFrame)


def frame_values(frame, where: str = "data") -> np.ndarray:
    """The values of a pandas DataFrame of numeric columns, in float64 (a missing value
    becomes NaN, refused by :func:`check_samples`).

    Raises:
        InputError: a column that is not numeric (named, with its dtype).
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    for column in frame.columns:
        dtype = frame[column].dtype
        if not is_numeric_dtype(dtype) or is_bool_dtype(dtype):
            raise InputError(
                f"{where}: column {str(column)!r} is not numeric (dtype {dtype}); give the "
                "numeric columns only (e.g. frame.select_dtypes('number'))"
            )
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


_WHERE = re.compile(
    r"\s*(?:`(?P<quoted>[^`]+)`|(?P<column>[^\s=!`\[\]]+))\s*"
    r"(?:(?P<op>==|!=)(?P<value>.*)|\s(?P<isin>in)\s*\[(?P<values>.*)\])\s*",
    re.S,
)
_VALUE = re.compile(
    r"""\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<word>[^,'"\[\]\s]+))\s*"""
)


def _where_values(text: str) -> list[str] | None:
    """The values of ``V1, V2, ...`` (each quoted or a word without blanks), or ``None``."""
    values, at = [], 0
    while True:
        match = _VALUE.match(text, at)
        if match is None:
            return None
        values.append(next(v for v in match.group("double", "single", "word") if v is not None))
        at = match.end()
        if at == len(text):
            return values
        if text[at] != ",":
            return None
        at += 1


def select_rows(obs, where: str, place: str = "data") -> np.ndarray:
    """The rows of ``obs`` (an AnnData's ``obs`` DataFrame) that ``where`` selects, as a
    boolean mask.

    ``where`` is one of ``COLUMN == VALUE``, ``COLUMN != VALUE`` and ``COLUMN in [V1, V2,
    ...]``: COLUMN a column of ``obs`` (in backquotes when its name holds blanks), each
    VALUE quoted (``"drug"``, ``'T cell'``) or a word or number without blanks. A column of
    numbers is compared by number, a column of True/False by truth, any other (categories,
    text) by the values' text. The expression is parsed here and nothing else is
    accepted: it is never evaluated (no pandas ``query``), so one stored in a run
    directory (``run.json``'s ``source_where``) is data, like the rest of the run.

    Raises:
        InputError: an expression of another form, an unknown column (its columns listed),
            a value that is not a number for a column of numbers, a value that is neither
            True nor False for a column of truth values, or no row selected (the column's
            first distinct values listed).
    """
    forms = (
        "expected COLUMN == VALUE, COLUMN != VALUE or COLUMN in [VALUE, ...] (COLUMN a "
        "column of obs, in `backquotes` if it holds blanks; a VALUE with blanks in quotes); "
        "nothing else is accepted"
    )
    if not isinstance(where, str):
        raise InputError(f"{place}: a selection must be text ({forms}), got {where!r}")
    match = _WHERE.fullmatch(where)
    values = None
    if match:
        text = match.group("value") if match.group("op") else match.group("values")
        values = _where_values(text)
        if match.group("op") and values is not None and len(values) != 1:
            values = None
    if not values:
        raise InputError(f"{place}: cannot read the selection {where!r}: {forms}")
    column = match.group("quoted") or match.group("column")
    if column not in obs.columns:
        names = [str(c) for c in obs.columns]
        close = difflib.get_close_matches(column, names, n=1)
        raise InputError(
            f"{place}: the selection {where!r} names the column {column!r}, which obs does "
            f"not have (its columns: {', '.join(names[:20]) or 'none'}"
            f"{', ...' if len(names) > 20 else ''})"
            + (f"; did you mean {close[0]!r}?" if close else "")
        )
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    series = obs[column]
    if is_bool_dtype(series.dtype):
        truth = {"true": True, "1": True, "false": False, "0": False}
        bad = [v for v in values if v.lower() not in truth]
        if bad:
            raise InputError(
                f"{place}: the selection {where!r}: column {column!r} holds True/False, "
                f"and {bad[0]!r} is neither"
            )
        mask = series.isin([truth[v.lower()] for v in values]).to_numpy()
    elif is_numeric_dtype(series.dtype):
        numbers = []
        for v in values:
            try:
                numbers.append(float(v))
            except ValueError:
                raise InputError(
                    f"{place}: the selection {where!r}: column {column!r} holds numbers, and "
                    f"{v!r} is not a number"
                ) from None
        mask = series.isin(numbers).to_numpy()
    else:
        mask = series.astype(str).isin(values).to_numpy()
    if match.group("op") == "!=":
        mask = ~mask
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        seen = series.astype(str).drop_duplicates()
        shown = ", ".join(repr(v) for v in seen.head(8))
        more = f", ... ({len(seen)} distinct)" if len(seen) > 8 else ""
        raise InputError(
            f"{place}: the selection {where!r} matches none of the {len(series)} rows; "
            f"column {column!r} has the values {shown}{more}"
        )
    return mask


def _read_npz(p: Path, key: str | None, what: str) -> np.ndarray:
    with np.load(p, allow_pickle=False) as z:
        names = list(z.keys())
        if not names:
            raise InputError(f"{what} file {str(p)!r} holds no arrays")
        if key is None:
            if len(names) > 1:
                raise InputError(
                    f"{what} file {str(p)!r} holds several arrays ({', '.join(names)}); say "
                    f"which with {p}:KEY, e.g. {p}:{names[0]}"
                )
            key = names[0]
        if key not in names:
            raise InputError(
                f"{what} file {str(p)!r} has no array {key!r}; its arrays: {', '.join(names)}"
            )
        return z[key]


def _read_csv_table(p: Path, what: str) -> tuple[np.ndarray, list[str] | None]:
    """The rows of a text file of numbers, their separator found from the data, and its
    header's names (``None`` without a header).

    The separator is the one of comma, semicolon, tab and blanks that splits the most data
    rows into the same number (≥ 2) of numbers (none: one column). The first line is a
    header when some of its fields are not numbers and it has as many fields as the data
    rows; blank lines and lines starting with ``#`` are skipped. A line that cannot be read
    is named by its number in the file.
    """
    import re

    where = f"{what} file {str(p)!r}"
    text = p.read_text(encoding="utf-8-sig")  # (a byte-order mark, as spreadsheets write)
    lines = [
        (i, ln)
        for i, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(f"{where} is empty")
    separators = {",": "commas", ";": "semicolons", "\t": "tabs", None: "blanks"}

    def fields(line: str, sep) -> list[str]:
        return line.split() if sep is None else line.split(sep)

    def numeric(values: list[str]) -> bool:
        try:
            [float(v) for v in values]
        except ValueError:
            return False
        return True

    def splits(line: str, sep) -> bool:  # into two numbers or more
        values = fields(line, sep)
        return len(values) >= 2 and numeric(values)

    sample = [ln for _, ln in (lines[1:21] or lines[:1])]  # data rows (the first may not be)
    score = {sep: sum(splits(ln, sep) for ln in sample) for sep in separators}
    sep = max(separators, key=lambda s: score[s])  # the first of the best, in order
    if score[sep] == 0:  # no row reads: split on the separator the rows hold (to say where)
        present = [s for s in ("\t", ";", ",") if all(s in ln for ln in sample)]
        sep = present[0] if present else None
    counts = [len(fields(ln, sep)) for ln in sample]
    width = max(set(counts), key=counts.count)
    kind = f"{width} numbers separated by {separators[sep]}" if width > 1 else "one number"

    def read(i: int, line: str) -> list[float]:
        values = fields(line, sep)
        if len(values) != width:
            plural = "s" if len(values) != 1 else ""
            raise InputError(
                f"{where}, line {i} has {len(values)} field{plural}, expected {width} "
                f"({kind} on each line, or a header naming the {width} columns)"
            )
        for v in values:
            try:
                float(v)
            except ValueError:
                comma = re.fullmatch(r"\s*[-+]?\d*,\d+\s*", v)
                hint = " (a decimal comma? write 1.5, not 1,5)" if comma else ""
                raise InputError(
                    f"{where}, line {i}: non-numeric entry {v.strip()[:30]!r}{hint}; expected "
                    f"{kind}"
                ) from None
        return [float(v) for v in values]

    first = fields(lines[0][1], sep)
    header = len(first) == width and not numeric(first)
    rows = [read(i, line) for i, line in lines[1 if header else 0 :]]
    if not rows:
        raise InputError(f"{where} has a header but no data rows")
    names = [f.strip().strip('"') for f in first] if header else None  # "quoted" names too
    return np.asarray(rows, dtype=np.float64), names


def check_samples(arr, where: str = "data") -> np.ndarray:
    """Validate an ``[n, d]`` array of samples (see :func:`load_array`)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{where}: expected numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{where}: no data (shape {arr.shape})")
    if arr.ndim == 1:
        raise InputError(
            f"{where}: got a 1-D array of {arr.shape[0]} values; expected [n, d] samples. "
            f"For n = {arr.shape[0]} one-dimensional samples save it as a column ([n, 1]); "
            "for one d-dimensional sample, give at least 2 samples"
        )
    if arr.ndim != 2:
        raise InputError(f"{where}: expected a 2-D array [n, d], got shape {arr.shape}")
    n, d = arr.shape
    if n == 1 and d > 1:
        raise InputError(
            f"{where}: one row of {d} values; expected [n, d] samples with n ≥ 2 — "
            "if these are n one-dimensional samples, save them as a column ([n, 1])"
        )
    if n < 2:
        raise InputError(f"{where}: need at least 2 samples, got {n}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(
            f"{where}: {int(bad.sum())} NaN/inf value(s), the first at row {r}, column {c} "
            "(0-based); expected finite numbers: remove or fill in those rows"
        )
    return arr.astype(np.float64)


def parse_target(spec: str, dim: int, data: np.ndarray | None = None) -> Target:
    """A target from a specification, checked against the data's dimension.

    ``gaussian`` (standard normal), ``gaussian:MEAN.npy,COV.npy``, ``samples:FILE`` (a
    target known by samples, read as a source is), or ``FILE.py:NAME`` with NAME a JAX
    function V: [d] → scalar (γ ∝ exp(−V), V convex). A target read from a file
    remembers where from (``PotentialTarget.origin``), so a saved map can rebuild it
    (:func:`mongeflow.mapping.target_record`, :func:`target_from_record`).

    Args:
        spec: the specification.
        dim: the data's dimension d.
        data: points ``[n, d]`` at which V is checked (see :func:`check_potential`).

    Raises:
        InputError: an unknown specification, files that cannot be read, shapes that do not
            match ``dim``, a covariance that is not positive definite, or a V that fails
            :func:`check_potential`.
    """
    if spec == "gaussian":
        return Gaussian.standard(dim)
    if spec.startswith("gaussian:"):
        parts = spec[len("gaussian:") :].split(",")
        if len(parts) != 2:
            raise InputError(f"target {spec!r}: expected gaussian:MEAN.npy,COV.npy")
        mean = _load_plain(parts[0], "target mean")
        cov = _load_plain(parts[1], "target covariance")
        if mean.shape != (dim,) or cov.shape != (dim, dim):
            raise InputError(
                f"target {spec!r}: mean {mean.shape} and covariance {cov.shape} must have "
                f"shapes ({dim},) and ({dim}, {dim}) to match the data's dimension {dim}"
            )
        if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise InputError(f"target {spec!r}: the covariance must be symmetric positive definite")
        return Gaussian(mean, cov)
    if spec.startswith("samples:"):
        return EmpiricalTarget(jnp.asarray(_target_rows(spec, dim), jnp.zeros(()).dtype))
    if (code := python_spec(spec)) is not None:
        file, name = code
        fn = _load_function(file, name)
        target = PotentialTarget(fn, dim, origin=(str(Path(file).resolve()), name))
        check_potential(target, dim, data, spec)
        return target
    raise InputError(
        f"unknown target {spec!r}{_target_hint(spec)}; expected 'gaussian', "
        "'gaussian:MEAN.npy,COV.npy', 'samples:FILE' (target samples: .npy, .npz:KEY, "
        ".csv or .h5ad[:obsm/KEY]) or 'FILE.py:NAME' (NAME a JAX function V: [d] -> scalar, "
        "target ∝ exp(-V))"
    )


def _target_hint(spec: str) -> str:
    """``"; did you mean '…'?"`` for an unknown target specification that looks like
    a known one: a file of samples given without ``samples:``, a Python file without
    ``:NAME``, a misspelt ``samples:`` / ``gaussian`` (``""`` when nothing fits)."""
    prefix, colon, rest = spec.partition(":")
    if colon and prefix.lower() not in ("samples", "gaussian"):
        close = difflib.get_close_matches(prefix.lower(), ["samples", "gaussian"], n=1)
        if close:
            return f"; did you mean '{close[0]}:{rest}'?"
    file, _ = split_array_spec(spec)
    suffix = file.suffix.lower()
    if suffix == ".py":
        return (
            f"; did you mean '{spec}:NAME', NAME the function V: [d] -> scalar in "
            f"{file.name} (target ∝ exp(-V))?"
        )
    if suffix in SUFFIXES:
        return f"; did you mean 'samples:{spec}' (a target known by these samples)?"
    if file.is_file() or suffix == ".txt":
        return (
            f"; did you mean 'samples:FILE' (a target known by samples), with the "
            f"samples of {file.name} saved as .npy, .npz or .csv?"
        )
    close = difflib.get_close_matches(spec.lower(), ["gaussian"], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _target_rows(spec: str, dim: int, where: str | None = None) -> np.ndarray:
    """The rows of ``samples:FILE`` (those ``where`` selects, for an ``.h5ad`` file),
    checked (:func:`load_array`), in float64."""
    samples = load_array(spec[len("samples:") :], "target samples", where=where)
    if samples.shape[1] != dim:
        raise InputError(
            f"target {spec!r}: the target samples have dimension {samples.shape[1]} but "
            f"the source has dimension {dim}"
        )
    return samples


def target_from_record(record: dict, base: str | Path | None = None) -> Target:
    """Rebuild a target from its record (written by :func:`mongeflow.mapping.target_record`).

    ``{"kind": "gaussian", "dim", "mean", "cov"}`` (without mean and cov: standard normal)
    or ``{"kind": "samples", "dim", "file"}`` (a target known by samples, their rows in the
    ``.npy`` file ``file`` inside ``base``, the saved map's directory, checked against the
    record's ``sha256`` when it has one). A record of a potential V read from a Python file
    (``"kind": "python"``) is refused: a record is data, and rebuilding V would run the
    code it names; give that target explicitly (:func:`parse_target`).

    Raises:
        InputError: an unknown or damaged record, a Python target, or a samples file that is
            gone, outside ``base``, changed since it was saved, unreadable or not
            ``[n, dim]`` finite numbers.
    """
    try:
        return _target_from_record(record, base)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"damaged target record {json.dumps(record, default=str)[:100]}: "
            f"{type(err).__name__}: {err}"
        ) from None


def _target_from_record(record: dict, base: str | Path | None) -> Target:
    from mongeflow.files import confined, sha256

    kind = record.get("kind")
    if kind == "samples":
        if base is None:
            raise InputError("a target record of samples needs the saved map's folder (base)")
        try:
            file = confined(base, record["file"], "target samples file")
        except ValueError as err:
            raise InputError(str(err)) from None
        if not file.is_file():
            raise InputError(f"target samples file {str(file)!r} does not exist")
        digest = record.get("sha256")
        if digest is not None and sha256(file) != digest:
            raise InputError(
                f"target samples file {str(file)!r} has changed since the map was saved "
                "(its SHA-256 differs from the one in map.json)"
            )
        rows = load_array(file, "target samples")
        if rows.shape[1] != int(record["dim"]):
            raise InputError(
                f"target samples file {str(file)!r} has dimension {rows.shape[1]}, the map "
                f"{int(record['dim'])}"
            )
        return EmpiricalTarget(jnp.asarray(rows, record.get("dtype") or jnp.zeros(()).dtype))
    if kind == "gaussian":
        if "mean" in record:
            return Gaussian(np.asarray(record["mean"]), np.asarray(record["cov"]))
        return Gaussian.standard(int(record["dim"]))
    if kind == "python":
        raise InputError(
            f"the target is the function {record.get('name')!r} of the Python file "
            f"{record.get('file')!r}: a saved record never makes mongeflow import code; give "
            f"the target explicitly ({record.get('file')}:{record.get('name')})"
        )
    raise InputError(f"unknown target record {json.dumps(record)[:100]}")


def _load_plain(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {path!r} does not exist")
    try:
        arr = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {what} file {path!r}: {err}") from None
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} file {path!r} contains NaN/inf")
    return arr


def python_spec(spec: str) -> tuple[str, str] | None:
    """``(FILE, NAME)`` for a target specification ``FILE.py:NAME`` (a potential V written in
    Python), else ``None``: the text after the last ``:`` is the name (a Windows drive's
    ``C:`` stays in the file), and the file must end in ``.py``. The one test of what is
    code, for every reader of a specification."""
    if not isinstance(spec, str) or ":" not in spec:
        return None
    file, name = spec.rsplit(":", 1)
    if not file.endswith(".py") or not name.isidentifier():
        return None
    return file, name


def _load_function(file: str, name: str):
    p = Path(file)
    if p.suffix != ".py":  # only Python source: no compiled module or extension is loaded
        raise InputError(f"target file {file!r}: expected a Python source file (.py)")
    if not p.is_file():
        raise InputError(f"target file {file!r} does not exist")
    spec = importlib.util.spec_from_file_location(
        f"mongeflow_user_{p.stem}",
        p,
        loader=importlib.machinery.SourceFileLoader(f"mongeflow_user_{p.stem}", str(p)),
    )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: any error it raises is theirs to see
        raise InputError(
            f"importing target file {file!r} failed: {type(err).__name__}: {err}"
        ) from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise InputError(f"{file!r} has no function {name!r}; functions found: {found}")
    return fn


def check_potential(target: Target, dim: int, data: np.ndarray | None, spec: str) -> float | None:
    """Check a user's V at the data: it accepts [d], returns a finite scalar, is convex.

    V and its gradient must be finite at every row checked: the first 256 rows of ``data``
    and others drawn with a fixed seed, 4096 rows in all (every row of smaller data). The
    Hessian is checked at 256 rows drawn with a fixed seed (fewer in high dimension: at most
    2^26 Hessian entries in all). V runs vmapped over blocks of rows, so memory stays
    bounded whatever the number of rows.

    Returns the smallest Hessian eigenvalue found (or None without data). Raises
    :class:`InputError` when V fails, is not finite (the data row said), or is clearly not
    convex (eigenvalue below −1e-3 · the largest); warns when it is only slightly negative.
    """
    dtype = jnp.zeros(()).dtype
    points = np.zeros((1, dim)) if data is None else np.asarray(data)
    try:
        out = jax.eval_shape(target.potential, jnp.zeros(dim))
    except Exception as err:
        raise InputError(
            f"target {spec!r}: V fails on a point of dimension {dim} (the data's): "
            f"{type(err).__name__}: {str(err)[:200]}"
        ) from None
    if out.shape != ():
        raise InputError(f"target {spec!r}: V must return a scalar, got shape {out.shape}")
    # JAX clamps out-of-range indices silently: a V written for another dimension would run
    from jax.experimental import checkify

    err, _ = checkify.checkify(target.potential, errors=checkify.index_checks)(
        jnp.asarray(points[0], dtype=dtype)
    )
    if err.get() is not None:
        raise InputError(
            f"target {spec!r}: V indexes beyond a point of dimension {dim} (the data's): "
            f"{err.get().splitlines()[0][:160]}"
        )

    def rows(count: int, seed: int, first: int = 0) -> np.ndarray:
        """``count`` row numbers (all when there are fewer): the first ``first``, the others
        drawn with ``seed``; in order."""
        n = len(points)
        if n <= count:
            return np.arange(n)
        first = min(first, count)
        drawn = np.random.default_rng(seed).choice(n - first, count - first, replace=False)
        return np.concatenate([np.arange(first), np.sort(drawn) + first])

    def evaluate(fn, at: np.ndarray, block: int):
        """``fn`` at the rows ``at`` of ``points``, vmapped over blocks of ``block`` rows
        (the last one padded, so one program serves all), as numpy arrays."""
        block = max(1, min(block, len(at)))
        batched = jax.jit(jax.vmap(fn))
        parts = []
        for start in range(0, len(at), block):
            chunk = points[at[start : start + block]]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], block - len(chunk), axis=0)])
            parts.append(jax.tree_util.tree_map(np.asarray, batched(jnp.asarray(padded, dtype))))
        joined = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)
        return jax.tree_util.tree_map(lambda a: a[: len(at)], joined)  # without the padding

    def refuse_nonfinite(values: np.ndarray, at: np.ndarray, what: str) -> None:
        bad = ~np.isfinite(values.reshape(len(at), -1)).all(axis=1)
        if bad.any():
            i = int(at[np.argmax(bad)])
            x = ", ".join(f"{v:.4g}" for v in points[i][:4]) + (", …" if dim > 4 else "")
            raise InputError(
                f"target {spec!r}: {what} is not finite at data row {i} (0-based; the point "
                f"[{x}]); V must be finite, with a finite gradient, wherever the data lie"
            )

    checked = rows(4096, seed=0, first=256)
    values, grads = evaluate(jax.value_and_grad(target.potential), checked, block=512)
    refuse_nonfinite(values, checked, "V")
    refuse_nonfinite(grads, checked, "the gradient of V")
    if data is None:
        return None
    checked = rows(min(256, max(1, 2**26 // dim**2)), seed=1)
    hess = evaluate(jax.hessian(target.potential), checked, block=max(1, 2**22 // dim**2))
    refuse_nonfinite(hess, checked, "the Hessian of V")
    eig = np.linalg.eigvalsh(np.asarray(hess, dtype=np.float64))
    low, high = float(eig.min()), float(np.abs(eig).max())
    if low < -1e-3 * max(high, 1e-12):
        raise InputError(
            f"target {spec!r}: V is not convex at the data: smallest Hessian eigenvalue "
            f"{low:.3g} (largest |eigenvalue| {high:.3g}); the method needs a log-concave target"
        )
    if low < 0:
        warnings.warn(
            f"target {spec!r}: smallest Hessian eigenvalue of V at the data is {low:.3g} "
            "(slightly negative, treated as round-off)",
            stacklevel=2,
        )
    return low


def data_problem(
    data,
    target: str | Target = "gaussian",
    *,
    standardize: bool = True,
    validation: float = 0.1,
    name: str = "data",
    seed: int = 0,
    per_feature: bool = False,
    target_where: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Problem:
    """The problem of mapping data samples to a target: where data become a :class:`Problem`.

    A fraction ``validation`` of the rows (and of the target's rows, for a target known by
    samples) is set aside, never trained on: the final metrics, the choice of the best map
    and early stopping use it (see :func:`mongeflow.fit`).

    With ``standardize`` (the default), the problem is posed in z = (x − m)/s with m the
    training rows' mean and one overall scale s = sqrt(mean_i |x_i − m|² / d) (the root mean
    squared coordinate deviation), so the z have mean 0 and mean squared norm d. One scale
    for all coordinates keeps the Brenier map of the standardised data the gradient of a
    convex function in the data's units (see :class:`~mongeflow.maps.MongeMap`): the map is
    still optimal for the squared distance in the data's units. When the features' scales
    differ by more than 100×, a :class:`DataWarning` says so: the map is then ruled by the
    widest features, and one scale per feature (``per_feature``) may be what is wanted.

    With ``per_feature`` (and ``standardize``), each coordinate j gets its own scale,
    s_j = the root mean square deviation of column j (for a target known by samples, the
    two sides' average, s_j² = ½ (mean (x_j − m_j)² + mean (y_j − m1_j)²)). Every feature
    then weighs alike, whatever its units. The caveat: the map is then the Brenier map of
    the rescaled source z = D⁻¹(x − m), D = diag(s), optimal for |z − y|² (for a target
    known by samples, rescaled alike: for the rescaled cost Σ_j (x_j − y_j)²/s_j²), not
    for the squared distance in the data's units. It is still applied, inverted and
    evaluated in the data's units (see :class:`~mongeflow.maps.MongeMap`).

    A target known by samples (``samples:FILE`` or an
    :class:`~mongeflow.problems.EmpiricalTarget`) is standardised with the source, as
    :func:`mongeflow.problems.standardize` does: one scale s for both sides,
    s² = ½ (mean |x − m|² + mean |y − m1|²) / d over the training rows of each, and each
    side centred on its own mean, z = (x − m)/s, w = (y − m1)/s (``target_shift`` = m1); the
    learnt map is then T(x) = m1 + s ∇φ(z), still a Brenier map. The statistics and the
    change of coordinates are a :class:`~mongeflow.problems.Standardiser`'s
    (:meth:`~mongeflow.problems.Standardiser.from_samples`), applied in float64 before the
    rows are cast to the fit's float type.

    A column with one value in every training row gets a :class:`DataWarning`: the data
    have no spread along it, so no map can spread them there. The fit computes in JAX's
    default float type (float32 unless ``jax_enable_x64`` is on): data, means and scales
    that it cannot hold (beyond ±3.4e38, or a scale below 1.2e-38, in float32) are refused.

    Args:
        data: samples ``[n, d]`` (checked by :func:`check_samples`): an array, a pandas
            DataFrame of numeric columns, or an ``anndata.AnnData``, whose ``X`` is used
            (sparse: made dense); for another of its matrices pass it, e.g.
            ``adata.obsm["X_pca"]``, or ``adata[adata.obs["condition"] == "control"]
            .obsm["X_pca"]`` for some of its cells.
        target: a specification for :func:`parse_target` (its V is checked at the
            standardised data) or a :class:`~mongeflow.problems.Target` of dimension d
            (an :class:`~mongeflow.problems.EmpiricalTarget`'s rows are checked as the
            data are).
        standardize: pose the problem in standardised coordinates.
        validation: the fraction of rows held out, in [0, 0.5) (0: none).
        name: the problem's label.
        seed: the seed of the random split.
        per_feature: with ``standardize``, one scale per coordinate instead of one overall
            scale (the map is then optimal for the rescaled cost, see above).
        target_where: with a target ``samples:FILE.h5ad[:KEY]``, the rows of the file
            that are the target's (``COLUMN == VALUE``, ``COLUMN != VALUE`` or ``COLUMN in
            [VALUE, ...]`` on its ``obs``, see :func:`select_rows`).
        mesh: rows held per process, for a fit on this mesh
            (:func:`mongeflow.devices.data_mesh`, after :func:`mongeflow.devices.initialize`
            when several processes run): ``data`` (and an
            :class:`~mongeflow.problems.EmpiricalTarget`'s rows) are this process's own
            rows. Every process checks its rows and holds out ``validation`` of them; the
            standardisation's statistics are those of every process's training rows
            (their sums cross between processes, not the rows); the training rows become
            one array split over the mesh, each process's on its own devices
            (:func:`mongeflow.devices.process_rows`: every process keeps as many rows as
            the one with the fewest, rounded down to a multiple of its devices, and a
            :class:`DataWarning` says how many are left out); the held-out rows of every
            process are gathered on each. ``None``: the rows are all here.

    Returns:
        ``Problem(name, EmpiricalSource(z_train), target, shift=m or None, scale=s,
        validation=z_val, validation_target=y_val, target_shift=m1 or None)``.

    Raises:
        InputError: bad data or target samples (NaN/inf, the row and column said; a
            DataFrame column that is not numeric), a target ``samples:FILE`` with a
            ``mesh`` (each process gives its own rows instead),
            samples that are all equal (with ``standardize``; with ``per_feature``, a column
            whose values are all equal), a bad target specification,
            a target whose dimension is not the data's, a validation fraction that
            leaves too few rows, or numbers beyond the range of the float type the fit
            computes in (the column said).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(100, 2)) * 3.0 + 5.0
        >>> problem = data_problem(x)
        >>> problem.dim, bool(abs(problem.scale - 3.0) < 0.5), problem.validation.shape
        (2, True, (10, 2))
    """
    if per_feature and not standardize:
        raise InputError(
            "per-feature scaling is a kind of standardisation: it cannot be combined with "
            "standardize=False"
        )
    data = check_samples(_table_values(data, name), name)
    n, d = data.shape
    # rows held per process: statistics summed over the processes, splits of their own
    total = None if mesh is None else process_sum
    part = jax.process_index() if mesh is not None else 0
    dtype = jnp.zeros(()).dtype  # what the fit computes in: float32 unless jax_enable_x64
    limit, tiny = float(jnp.finfo(dtype).max), float(jnp.finfo(dtype).tiny)
    advice = (
        "compute in float64 (jax.config.update('jax_enable_x64', True)) or rescale the data"
        if dtype == jnp.float32
        else "rescale the data"
    )

    def in_range(values, says: str) -> None:
        """Refuse numbers that ``dtype`` cannot hold; ``says`` names the first (``{column}``,
        ``{value}``)."""
        if values is None:
            return
        a = np.atleast_1d(np.asarray(values, dtype=np.float64))
        bad = ~(np.abs(a) <= limit)  # NaN too (a mean or spread that overflowed float64)
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            raise InputError(
                f"{says.format(column=int(where[-1]), value=a[where])}, beyond the "
                f"{np.dtype(dtype).name} range (±{limit:.3g}) in which the fit computes; {advice}"
            )

    in_range(data, f"{name}: column {{column}} has a value {{value:.3g}}")
    says_scale = (
        f"{name}: the scale of column {{column}} is {{value:.3g}}"
        if per_feature
        else f"{name}: the overall scale is {{value:.3g}}"
    )
    raw_train, raw_held = train, held = _split(data, validation, _seed(seed, part), name)
    # a target known by samples is standardised with the source (below, once read)
    by_samples = isinstance(target, EmpiricalTarget) or (
        isinstance(target, str) and target.startswith("samples:")
    )
    standardiser = None  # the statistics, in float64
    first, flat_columns = _flat_columns(raw_train, mesh)  # of every process's rows
    if standardize:
        if flat_columns.all():
            raise InputError(
                f"{name}: cannot standardise: all {n} samples are equal (no spread to scale by)"
            )
        spread = np.asarray(
            Standardiser.from_samples(train, per_feature=True, total=total).scale, np.float64
        )
        flat = np.flatnonzero(flat_columns)
        if per_feature and flat.size and not by_samples:
            raise InputError(
                f"{name}: cannot scale each feature: column {int(flat[0])} has the same "
                "value in every training row (no spread to scale by)"
            )
        if not per_feature and d > 1 and spread.min() > 0 and spread.max() / spread.min() > 100:
            warnings.warn(
                f"{name}: the features' standard deviations range from {spread.min():.3g} "
                f"(column {int(spread.argmin())}) to {spread.max():.3g} (column "
                f"{int(spread.argmax())}); the map is optimal for the squared distance in "
                "these units, so the widest features rule it. For a map optimal for the "
                "rescaled cost instead, scale each feature (per_feature=True)",
                DataWarning,
                stacklevel=2,
            )
        one_sided = Standardiser.from_samples(train, per_feature=per_feature, total=total)
        in_range(one_sided.shift, f"{name}: the mean of column {{column}} is {{value:.3g}}")
        if not by_samples:
            standardiser = one_sided
            in_range(standardiser.scale, says_scale)
            train = standardiser.to_z(train)
            held = None if held is None else standardiser.to_z(held)
    rows = None  # the rows of a target known by samples, in float64 until standardised
    if target_where is not None and not (isinstance(target, str) and target.startswith("samples:")):
        raise InputError(
            f"target_where={target_where!r} selects rows of a target "
            "'samples:FILE.h5ad[:KEY]', and the target is not one"
        )
    if isinstance(target, str) and target.startswith("samples:") and mesh is not None:
        raise InputError(
            f"target {target!r}: with rows held per process (mesh=...), each process gives "
            "its own target rows (EmpiricalTarget(rows)); a file would give every process all "
            "of its rows"
        )
    if isinstance(target, str) and target.startswith("samples:"):
        rows = _target_rows(target, d, target_where)
    elif isinstance(target, str):
        target = parse_target(target, d, train)
    elif not isinstance(target, Target):
        raise InputError(
            f"target must be a specification string or a Target, got {type(target).__name__}"
        )
    elif target.dim != d:
        raise InputError(
            f"{name}: the data have dimension {d} but the target "
            f"({type(target).__name__}) has dimension {target.dim}"
        )
    elif isinstance(target, EmpiricalTarget):
        rows = check_samples(np.asarray(target.data), "target samples")
    held_target = None
    if rows is not None:
        in_range(rows, "target samples: column {column} has a value {value:.3g}")
        rows_held = None
        if validation > 0:
            rows, rows_held = _split(rows, validation, _seed(seed + 1, part), "target samples")
        if standardize:
            # one scale for both sides (per feature: one per column), each centred on its
            # own mean
            standardiser = Standardiser.from_samples(
                raw_train, rows, per_feature=per_feature, total=total
            )
            if per_feature and (flat := np.flatnonzero(np.asarray(standardiser.scale) == 0)).size:
                raise InputError(
                    f"{name}: cannot scale each feature: column {int(flat[0])} has one "
                    "value in every training row of both the data and the target samples"
                )
            train = standardiser.to_z(raw_train)
            held = None if raw_held is None else standardiser.to_z(raw_held)
            rows = standardiser.to_w(rows)
            rows_held = None if rows_held is None else standardiser.to_w(rows_held)
        target = EmpiricalTarget(_placed(rows, dtype, mesh, "target samples"))
        held_target = rows_held
    if standardiser is not None:
        scale = standardiser.scale
        in_range(
            standardiser.target_shift, "target samples: the mean of column {column} is {value:.3g}"
        )
        in_range(scale, says_scale)
        if (small := np.atleast_1d(scale) < tiny).any():
            column = int(np.argmax(small))
            raise InputError(
                says_scale.format(column=column, value=np.atleast_1d(scale)[column])
                + f", below the smallest normal {np.dtype(dtype).name} number ({tiny:.3g}); "
                + advice
            )
    for values, side in ((train, name), (held, name), (rows, "target samples")):
        in_range(values, f"{side}: column {{column}}, standardised, reaches {{value:.3g}}")
    flat = np.flatnonzero(flat_columns)
    if flat.size:
        values = ", ".join(f"{first[j]:g}" for j in flat)
        which = (
            f"column {int(flat[0])} has the same value ({values})"
            if flat.size == 1
            else f"columns {', '.join(str(int(j)) for j in flat)} each have one value ({values})"
        )
        warnings.warn(
            f"{name}: {which} in every training row: the data have no spread along "
            f"{'it' if flat.size == 1 else 'them'}, so the map there is undetermined (no map "
            "spreads one value over the target's range); drop such a column if it carries "
            "no information",
            DataWarning,
            stacklevel=2,
        )
    posed = None if standardiser is None else standardiser.astype(dtype)
    return Problem(
        name,
        EmpiricalSource(_placed(train, dtype, mesh, name)),
        target,
        shift=None if posed is None else posed.shift,
        scale=1.0 if posed is None else posed.scale,
        validation=_gathered(held, dtype, mesh),
        validation_target=_gathered(held_target, dtype, mesh),
        target_shift=None if posed is None else posed.target_shift,
    )


def _table_values(data, name: str):
    """The values of a pandas DataFrame (:func:`frame_values`) or of an AnnData's ``X``
    (dense); anything else as it is. (Neither package is imported: data cannot be one of
    their objects unless it was loaded.)"""
    if _is_frame(data):
        return frame_values(data, name)
    anndata = sys.modules.get("anndata")
    if anndata is not None and isinstance(data, anndata.AnnData):
        if data.X is None:
            raise InputError(
                f'{name}: the AnnData has no X; pass the matrix to fit, e.g. adata.obsm["X_pca"]'
            )
        n, d = data.shape
        if n * d > MAX_H5AD_VALUES and hasattr(data.X, "toarray"):
            raise InputError(
                f"{name}: the AnnData's sparse X has {n} rows × {d} columns = {n * d:,} "
                f"values, more than the {MAX_H5AD_VALUES:,} made dense; pass a reduced "
                'representation, e.g. adata.obsm["X_pca"]'
            )
        return _dense(data.X)
    return data


def check_batch_size(problem: Problem, batch_size: int | None) -> None:
    """Refuse a batch larger than the training rows of either side of ``problem``.

    A mini-batch draws ``batch_size`` rows of each side that is a fixed sample (an
    :class:`~mongeflow.problems.EmpiricalSource` / :class:`~mongeflow.problems.EmpiricalTarget`);
    more than there are training rows (those left after the validation split) would repeat
    rows within every batch. ``None`` (the default batch size) passes.

    Raises:
        InputError: ``batch_size`` exceeds the source's or the target's training rows.
    """
    if batch_size is None:
        return
    n, m = problem.training_sizes()
    for rows, side in ((n, "source (the data)"), (m, "target")):
        if rows is not None and int(batch_size) > rows:
            raise InputError(
                f"batch size {int(batch_size)} is larger than the {rows} training samples of "
                f"the {side} (those left after the validation split); use batch_size="
                f"{rows} or less, or give more samples"
            )


def gaussian_source_problem(target: str | Target, dim: int) -> Problem:
    """The problem of pushing N(0, I_d), a built-in source that needs no file, to a target
    (``mongeflow fit --source gaussian --dim D --target ...``): the map is then a sampler
    of the target and, through its inverse, a density model of it.

    Raises:
        InputError: a dimension below 1, or a bad target specification.
    """
    if dim is None or int(dim) < 1:
        raise InputError(f"a Gaussian source needs its dimension, dim ≥ 1, got dim={dim}")
    dim = int(dim)
    source = Gaussian.standard(dim)
    if isinstance(target, str):
        check_at = np.asarray(source.sample(jax.random.key(0), 64), dtype=np.float64)
        target = parse_target(target, dim, check_at)
    elif target.dim != dim:
        raise InputError(f"the target has dimension {target.dim}, the source {dim}")
    return Problem("gaussian-source", source, target)


class DataWarning(UserWarning):
    """Data that can be fitted, but perhaps not as meant."""


def _seed(seed: int, part: int):
    """The seed of a random split of the rows of process ``part`` (``seed`` itself for the
    first, or for rows that are all here)."""
    return seed if part == 0 else [seed, part]


def _flat_columns(rows: np.ndarray, mesh) -> tuple[np.ndarray, np.ndarray]:
    """``(smallest, flat)``: each column's smallest value and whether it has one value in
    every row (of every process's ``rows``, with a ``mesh``)."""
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    if mesh is not None:
        lo, hi = process_gather(lo).min(axis=0), process_gather(hi).max(axis=0)
    return lo, lo == hi


def _placed(rows, dtype, mesh, name: str):
    """Training rows as the fit holds them: one array, or with a ``mesh``, every process's
    rows split over it (:func:`~mongeflow.devices.process_rows`)."""
    if mesh is None:
        return jnp.asarray(rows, dtype)
    placed, left_out = process_rows(np.asarray(rows, dtype), mesh)
    if left_out:
        warnings.warn(
            f"{name}: {left_out} of this process's {np.shape(rows)[0]} training rows are left "
            f"out, so that every process holds {np.shape(rows)[0] - left_out} (the fewest, "
            "in a multiple of its devices)",
            DataWarning,
            stacklevel=3,
        )
    return placed


def _gathered(rows, dtype, mesh):
    """Held-out rows (``None``: none), with a ``mesh`` those of every process."""
    if rows is None:
        return None
    return jnp.asarray(rows if mesh is None else gather_rows(rows), dtype)


def _split(rows: np.ndarray, fraction: float, seed: int, name: str):
    """``(train, held)``: a random ``fraction`` of ``rows`` held out (``held`` is ``None``
    for a fraction of 0)."""
    fraction = float(fraction)
    if not 0.0 <= fraction < 0.5:
        raise InputError(f"validation fraction must be in [0, 0.5), got {fraction}")
    if fraction == 0.0:
        return rows, None
    n = rows.shape[0]
    n_held = max(1, int(round(fraction * n)))
    if n - n_held < 2:
        raise InputError(
            f"{name}: {n} rows are too few to hold out {fraction:.0%} for validation and "
            "train on the rest; give more rows or validation=0"
        )
    order = np.random.default_rng(seed).permutation(n)
    return rows[order[n_held:]], rows[order[:n_held]]

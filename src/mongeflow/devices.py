"""Several devices and hosts: a data-parallel mesh, with JAX's own sharding machinery.

A fit on a mesh (``mongeflow.fit(..., mesh=data_mesh())``, ``mongeflow fit --devices N``)
splits each training batch's rows over the mesh's first axis and replicates the
parameters; XLA partitions the compiled step (the map, the sample divergences' kernel
sums, the gradient's mean) and inserts the reductions. Several hosts join through
:func:`jax.distributed.initialize` before the fit, each process running the same program
(see :func:`initialize`); the mesh then spans every process's devices. Each process may
hold only its own rows (:func:`process_rows`): the statistics that standardise them are
then summed over the processes (:func:`process_sum`) and the few held-out rows gathered
(:func:`gather_rows`).
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: the name of the mesh axis that splits the batches
DATA_AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh (``"data"``) over the first ``devices`` devices (default: all, of
    every process when several have joined).

    Raises:
        ValueError: ``devices`` is not between 1 and the number of devices.
    """
    every = jax.devices()
    if devices is None:
        devices = len(every)
    if not 1 <= devices <= len(every):
        raise ValueError(
            f"devices must be between 1 and the {len(every)} available "
            f"({every[0].platform}), got {devices}"
        )
    return Mesh(np.array(every[:devices]), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Rows ``[n, d]`` split over the mesh's first axis, columns whole."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` copied whole to each device of ``mesh``, except arrays that
    span several processes (rows placed by :func:`process_rows`, which stay split); other
    leaves kept."""
    whole = NamedSharding(mesh, PartitionSpec())

    def place(a):
        if not eqx.is_array(a):
            return a
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a
        return jax.device_put(a, whole)

    return jax.tree_util.tree_map(place, tree)


def process_gather(values) -> np.ndarray:
    """Every process's ``values`` (the same shape in each), stacked in process order,
    ``[P, ...]``, on every process. Float64 values cross exactly (as their bits), whatever
    JAX's default float type."""
    a = np.ascontiguousarray(np.atleast_1d(np.asarray(values, dtype=np.float64)))
    if jax.process_count() == 1:
        return a[None]
    bits = np.asarray(multihost_utils.process_allgather(a.view(np.uint32)))
    return np.ascontiguousarray(bits).view(np.float64).reshape((-1, *a.shape))


def process_sum(values) -> np.ndarray:
    """The sum over the processes of each process's ``values`` (float64, exact transfer)."""
    return process_gather(values).sum(axis=0)


def gather_rows(local) -> np.ndarray:
    """Every process's rows ``[n_p, d]`` (their numbers may differ), concatenated in process
    order, on every process (float64): for a few rows, such as the held-out ones."""
    local = np.asarray(local, dtype=np.float64)
    if jax.process_count() == 1:
        return local
    counts = process_gather([local.shape[0]])[:, 0].astype(int)
    padded = np.zeros((int(counts.max()), local.shape[1]))
    padded[: local.shape[0]] = local
    every = process_gather(padded)
    return np.concatenate([every[p, :c] for p, c in enumerate(counts)])


def process_rows(local, mesh: Mesh) -> tuple[jax.Array, int]:
    """``(rows, left_out)``: one array ``[N, d]`` of every process's rows, split over the
    mesh's first axis, each process's rows on its own devices
    (:func:`jax.make_array_from_process_local_data`); no process holds another's rows.

    Every process contributes the same number of rows: the smallest count over the
    processes, rounded down to a multiple of a process's devices in the mesh. ``left_out``
    is how many of this process's rows were left out for that.

    Raises:
        ValueError: the mesh leaves out a process's devices, or too few rows remain.
    """
    local = np.asarray(local)
    mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    per_process = process_gather([len(mine)])[:, 0]
    if per_process.min() < 1 or per_process.min() != per_process.max():
        raise ValueError(
            "rows held by each process need a mesh with the same number of devices of every "
            f"process, got {per_process.astype(int).tolist()} (data_mesh() takes them all)"
        )
    counts = process_gather([local.shape[0]])[:, 0].astype(int)
    n = int(counts.min()) // len(mine) * len(mine)
    if n < 1:
        raise ValueError(
            f"the processes hold {counts.tolist()} rows: too few for {len(mine)} device(s) each"
        )
    rows = jax.make_array_from_process_local_data(data_sharding(mesh), local[:n])
    return rows, local.shape[0] - n


def initialize(
    coordinator: str | None = None, processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process run (:func:`jax.distributed.initialize`), before any JAX work.

    On CPUs the processes exchange data through gloo collectives. Arguments left ``None``
    are read from ``MONGEFLOW_COORDINATOR`` (``host:port`` of process 0),
    ``MONGEFLOW_PROCESSES`` and ``MONGEFLOW_PROCESS_ID``, or found by JAX itself on
    clusters it knows (SLURM, Open MPI, Cloud TPU).
    """
    coordinator = coordinator or os.environ.get("MONGEFLOW_COORDINATOR")
    if processes is None and "MONGEFLOW_PROCESSES" in os.environ:
        processes = int(os.environ["MONGEFLOW_PROCESSES"])
    if process_id is None and "MONGEFLOW_PROCESS_ID" in os.environ:
        process_id = int(os.environ["MONGEFLOW_PROCESS_ID"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, processes, process_id)

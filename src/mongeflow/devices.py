"""Several devices and hosts: a data-parallel mesh, with JAX's own sharding machinery.

A fit on a mesh (``mongeflow.fit(..., mesh=data_mesh())``, ``mongeflow fit --devices N``)
splits each training batch's rows over the mesh's first axis and replicates the
parameters; XLA partitions the compiled step (the map, the sample divergences' kernel
sums, the gradient's mean) and inserts the reductions. Several hosts join through
:func:`jax.distributed.initialize` before the fit, each process running the same program
(see :func:`initialize`); the mesh then spans every process's devices.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import numpy as np
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
    """Every array of ``tree`` copied whole to each device of ``mesh`` (other leaves kept)."""
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.device_put(a, whole) if eqx.is_array(a) else a, tree
    )


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

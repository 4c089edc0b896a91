"""Data-parallel training on several devices or hosts with Keras' distribution API (JAX).

Keras shards each global batch across the devices of a `DataParallel` distribution and
keeps the weights replicated, so a run on N devices computes the same steps as a run on
one device with the same global batch. Multi-host: every process calls
`keras.distribution.initialize` (coordinator address, process count and id, from flags or
the KERAS_DISTRIBUTION_* variables a cluster launcher sets) before anything else.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

import keras

from cnnzoo.errors import UserError


def parse_devices(value) -> int | str:
    """'all' or a positive whole number of devices."""
    if value in (None, "", "all"):
        return value or 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UserError(f"--devices must be 'all' or a positive whole number. Received: {value!r}")
    return count


HOST_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                  "KERAS_DISTRIBUTION_PROCESS_ID")


def multi_host_requested(coordinator, num_processes, process_id) -> bool:
    """True when flags or a cluster launcher's KERAS_DISTRIBUTION_* variables ask for it."""
    given = coordinator or num_processes is not None or process_id is not None
    return bool(given or any(os.environ.get(v) for v in HOST_VARIABLES))


def initialize_hosts(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-host job (JAX); arguments left None come from KERAS_DISTRIBUTION_*."""
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num-processes must be at least 1. Received: --num-processes {num_processes}")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        top = f"between 0 and {num_processes - 1}" if num_processes else "at least 0"
        raise UserError(f"--process-id must be {top} (0 is the coordinator). Received: --process-id {process_id}")
    _require_jax("Multi-host training")
    import jax

    # CPU devices of different processes reach each other over gloo (TCP); without it, XLA:CPU
    # has no collectives across processes. GPU and TPU clients ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "").split(",")[0]
    pid = process_id if process_id is not None else int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "0") or 0)
    if pid == 0 and address:
        _check_port_free(address)
    # What keras.distribution.initialize does, with a shorter heartbeat timeout than JAX's 100 s:
    # a process whose peer died (and could not tell it over gloo) is stopped within ~HEARTBEAT_S.
    from keras.src.backend.jax.distribution_lib import initialize_rng

    count = num_processes if num_processes is not None else os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES")
    given = process_id if process_id is not None else os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID")
    jax.distributed.initialize(address or None, _number(count), _number(given),
                               heartbeat_timeout_seconds=HEARTBEAT_S, shutdown_timeout_seconds=HEARTBEAT_S)
    initialize_rng()


HEARTBEAT_S = 30


def _number(value) -> int | None:
    return None if value in (None, "") else int(value)
# How a collective or the coordination service reports that another process of the job is gone.
_PEER_LOST = re.compile(r"gloo|coordination|heartbeat|connection (reset|closed|refused)|barrier|peer", re.IGNORECASE)


def peer_lost(error: BaseException) -> str | None:
    """The first line of `error` when it says another process of a multi-process job is gone."""
    if process()[1] > 1 and not isinstance(error, UserError) and _PEER_LOST.search(str(error)):
        return str(error).strip().splitlines()[0]
    return None


def abandon(message: str, code: int = 1) -> None:
    """Print one line and end now: JAX's exit hook would wait on the lost process in a shutdown
    barrier and then abort with a native stack trace."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    os._exit(code)


def _check_port_free(address: str) -> None:
    """Process 0 hosts the coordinator at `address`: a port already taken is one sentence."""
    import socket

    host, _, port = address.rpartition(":")
    with socket.socket() as probe:
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except (OSError, ValueError) as error:
            raise UserError(f"Cannot host the coordinator at {address} ({getattr(error, 'strerror', None) or error}): "
                            "choose a free port with --coordinator HOST:PORT.") from None


def process() -> tuple[int, int]:
    """(index, count) of this process in its job; (0, 1) outside a multi-process job."""
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def data_parallel(devices, batch_size: int):
    """(scope, count): a DataParallel distribution's scope over `devices` ('all' or N).

    Build, fit and evaluate inside the scope. One device gives a null scope, so the plain
    single-device path stays exactly as it is.
    """
    devices = parse_devices(devices)
    processes = process()[1]
    if devices == 1 and processes == 1:
        return contextlib.nullcontext(), 1
    _require_jax("Multi-device training")
    available = keras.distribution.list_devices()
    if processes > 1 and devices not in (1, "all", len(available)):
        raise UserError(f"A job of {processes} processes trains on all its {len(available)} devices: leave out "
                        f"--devices or give --devices all. Received: --devices {devices}")
    count = len(available) if devices == "all" or processes > 1 else devices
    if count > len(available):
        raise UserError(
            f"--devices {count} asks for more devices than the {len(available)} visible "
            f"({', '.join(available)})."
        )
    if batch_size % count:
        raise UserError(
            f"The batch size {batch_size} does not split evenly over {count} devices: choose a "
            f"--batch-size that is a multiple of {count}."
        )
    if count == 1:
        return contextlib.nullcontext(), 1
    # Keras shards only tf.data datasets per process; cnnzoo's batches give each process its
    # own share themselves (ArrayBatches' `part`), so Keras must take them as they are.
    distribution = keras.distribution.DataParallel(devices=available[:count], auto_shard_dataset=False)
    return distribution.scope(), count


class Lockstep(keras.callbacks.Callback):
    """Finish each step of a distribution over CPU devices before the next one is queued.

    Keras' JAX loop dispatches steps asynchronously and, since 3.11, runs the batch-end
    callbacks in a thread, so nothing makes it wait: it queues step after step, each a
    program per device with all-reduces in it. The simulated CPU devices of a process
    launch and run those programs on one shared thread pool, and an XLA:CPU all-reduce
    holds its thread until every device arrives; with steps queued, the threads fill with
    launches of later steps waiting on a device's in-flight limit while one device waits
    in an all-reduce for a device that has no thread left, and XLA aborts after 40 s
    (a longer timeout only waits longer). Waiting on each step's outputs keeps one step in
    flight. GPU collectives run on device streams, so only CPU devices need it.
    """

    def on_train_batch_end(self, batch, logs=None):
        _wait(logs)

    def on_test_batch_end(self, batch, logs=None):
        _wait(logs)


def _wait(logs) -> None:
    import jax

    jax.block_until_ready([value for value in (logs or {}).values() if value is not None])


def step_callbacks(device_count: int) -> list:
    """What a fit over `device_count` devices needs besides cnnzoo's own: Lockstep on CPU."""
    if device_count > 1 and keras.distribution.list_devices()[0].lower().startswith("cpu"):
        return [Lockstep()]
    return []


def _require_jax(what: str) -> None:
    if keras.backend.backend() != "jax":
        raise UserError(
            f"{what} uses Keras' distribution API, which needs the JAX backend: rerun with "
            "`cnnzoo --backend jax train ...` (or KERAS_BACKEND=jax)."
        )

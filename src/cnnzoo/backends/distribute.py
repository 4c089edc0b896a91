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


def job_position(num_processes: int | None, process_id: int | None) -> tuple[int | None, int | None]:
    """(process id, process count) of this process in its job, from the flags or else the
    KERAS_DISTRIBUTION_* variables (None where neither says: JAX may find it in a cluster's own)."""
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num-processes must be at least 1. Received: --num-processes {num_processes}")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        top = f"between 0 and {num_processes - 1}" if num_processes else "at least 0"
        raise UserError(f"--process-id must be {top} (0 is the coordinator). Received: --process-id {process_id}")
    count = num_processes if num_processes is not None else _number(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"))
    index = process_id if process_id is not None else _number(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"))
    return index, count


def initialize_hosts(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-host job (JAX); arguments left None come from KERAS_DISTRIBUTION_*."""
    given, count = job_position(num_processes, process_id)
    require_jax("Multi-host training")
    import jax

    # CPU devices of different processes reach each other over gloo (TCP); without it, XLA:CPU
    # has no collectives across processes. GPU and TPU clients ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "").split(",")[0]
    if not given and address:
        _check_port_free(address)
    # What keras.distribution.initialize does, with a shorter heartbeat timeout than JAX's 100 s:
    # a process whose peer died (and could not tell it over gloo) is stopped within ~HEARTBEAT_S.
    from keras.src.backend.jax.distribution_lib import initialize_rng

    jax.distributed.initialize(address or None, count, given,
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


SUPERVISED = "CNNZOO_JOB_PROCESS"  # set in the child that a supervising `cnnzoo train` runs
# A native (absl) log record of the coordination client, and the lines that continue one.
_NATIVE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
_CONTINUED = re.compile(r"^(\s|:|Additional GRPC error information)")
_SERVICE_LOST = "JAX distributed service detected fatal errors"


def supervise(index: int | None, count: int | None, out) -> int:
    """Run this `cnnzoo` command again as a child and pass its output through; return its exit code.

    When the coordinator (process 0) dies, the coordination client of every other process
    ends it from a native thread with log lines and exit code 1, often before Python hears of
    it. Here those lines are dropped and the loss is said in one sentence. The child dies with
    this process (Linux), so killing the process a launcher started kills its training. The
    child's command line is this process's (`sys.argv`): call it from the `cnnzoo` command."""
    import signal
    import subprocess
    import threading

    env = dict(os.environ, **{SUPERVISED: str(os.getpid())})
    child = subprocess.Popen([sys.executable, "-m", "cnnzoo", *sys.argv[1:]], env=env, stderr=subprocess.PIPE,
                             text=True, errors="replace")
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl+C reaches the child itself
    said = lost = False  # an error sentence of the child's own; the coordination service lost

    def relay():
        nonlocal said, lost
        native = False
        for line in child.stderr:
            native = bool(_NATIVE.match(line)) or (native and bool(_CONTINUED.match(line)))
            if native:
                lost = lost or _SERVICE_LOST in line
                continue
            said = said or line.startswith("error:")
            sys.stderr.write(line)
            sys.stderr.flush()

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    code = child.wait()
    reader.join()
    if code != 0 and lost and not said:
        print(lost_sentence(index, count, "the job's coordination service is gone", out), file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


def lost_sentence(index: int | None, count: int | None, detail: str, out) -> str:
    who = "this process" if index is None or count is None else f"process {index} of {count}"
    return (f"error: {who} lost another process of the job ({detail}): finished epochs are "
            f"saved in {out or 'the run folder'}; restart every process with --resume.")


def supervised() -> bool:
    """True in the child that `supervise` runs."""
    return bool(os.environ.get(SUPERVISED))


def die_with_supervisor() -> None:
    """In the child: be killed when the supervising process dies (Linux's PR_SET_PDEATHSIG; asked
    for here, not between fork and exec, which is unsafe in a process with threads)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != int(os.environ[SUPERVISED]):  # the supervisor died before that
        os._exit(1)


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
    require_jax("Multi-device training")
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


def require_jax(what: str) -> None:
    if keras.backend.backend() != "jax":
        raise UserError(
            f"{what} uses Keras' distribution API, which needs the JAX backend: rerun with "
            "`cnnzoo --backend jax train ...` (or KERAS_BACKEND=jax)."
        )

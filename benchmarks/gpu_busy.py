"""GPU busy time during training: the share of time a kernel was running on the GPU, as NVML
reports it (nvidia-smi's "utilization.gpu"), sampled in a thread.

Issue 7 asks that the small models not be launch-bound: when the host cannot queue kernels as
fast as the GPU runs them, the GPU idles between kernels and this share falls well below
100%, however fast each kernel is. NVML averages over its own sample period (1/6 s to 1 s by
product), so a measured window should last a few seconds. Where NVML (the nvidia-ml-py
package, which imports as pynvml) or an NVIDIA GPU is missing, the figure is None.
"""

from __future__ import annotations

import statistics
import threading


class GpuBusy:
    """`with GpuBusy() as busy: ...` then `busy.percent` (mean of the samples, or None)."""

    def __init__(self, interval: float = 0.02, device: int = 0):
        self.interval, self.device = interval, device
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.device)
        except Exception:  # no package, no driver or no GPU: nothing to sample
            return self
        self._thread = threading.Thread(target=self._sample, args=(pynvml, handle), daemon=True)
        self._thread.start()
        return self

    def _sample(self, pynvml, handle) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def percent(self) -> float | None:
        return round(statistics.fmean(self.samples), 1) if self.samples else None

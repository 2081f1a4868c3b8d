"""The few CUDA driver calls the TensorRT runner needs, through ctypes (standard library; no torch).

TensorRT executes on device buffers and a CUDA stream that the caller provides. The lean runtime gets
them from the CUDA driver library that ships with every NVIDIA driver (``libcuda.so.1``), like
Polygraphy's own CUDA wrapper, instead of pulling in torch or cuda-python: the device's primary
context (the one the CUDA runtime inside TensorRT uses too), a stream, device memory, and
host <-> device copies on that stream. Every failing call is one EdgepackError line.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np

from edgepack.errors import EdgepackError

_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}
_LIB: Any = None


def load_driver() -> Any:
    """The CUDA driver library (loaded once); EdgepackError when there is none (no NVIDIA driver)."""
    global _LIB
    if _LIB is None:
        name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
        try:
            _LIB = ctypes.CDLL(name)
        except OSError:
            raise EdgepackError(f"no NVIDIA driver here ({name} not found): TensorRT needs a CUDA GPU") from None
    return _LIB


def driver_available() -> bool:
    """Whether the CUDA driver loads and sees at least one device."""
    try:
        lib = load_driver()
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except EdgepackError:
        return False


class CudaDevice:
    """One device's primary context, made current on the calling thread by :meth:`activate`."""

    def __init__(self, device_id: int = 0, lib: Any = None):
        self.lib = lib or load_driver()
        self._check(self.lib.cuInit(0), "cuInit")
        dev = ctypes.c_int(0)
        self._check(self.lib.cuDeviceGet(ctypes.byref(dev), int(device_id)), f"cuDeviceGet({device_id})")
        self.device = dev
        ctx = ctypes.c_void_p()
        self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        self.context = ctx
        self.activate()

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(int(status), ctypes.byref(text))
            why = text.value.decode(errors="replace") if text.value else f"error {status}"
            raise EdgepackError(f"CUDA {call} failed: {why}")

    def activate(self) -> None:
        """Make this device's context current on this thread (driver calls and TensorRT use it)."""
        self._check(self.lib.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def name(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self._check(self.lib.cuDeviceGetName(buf, ctypes.c_int(len(buf)), self.device), "cuDeviceGetName")
        return buf.value.decode(errors="replace")

    def compute_capability(self) -> str:
        """``"major.minor"``, e.g. ``"9.0"``."""
        out = []
        for attr in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR):
            v = ctypes.c_int(0)
            self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(v), ctypes.c_int(attr), self.device),
                        "cuDeviceGetAttribute")
            out.append(v.value)
        return f"{out[0]}.{out[1]}"

    def create_stream(self) -> int:
        """A new stream's handle (an int, as TensorRT's ``execute_async_v3`` takes it)."""
        s = ctypes.c_void_p()
        self._check(self.lib.cuStreamCreate(ctypes.byref(s), ctypes.c_uint(0)), "cuStreamCreate")
        return int(s.value or 0)

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cuStreamSynchronize(ctypes.c_void_p(stream)), "cuStreamSynchronize")

    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` (at least 1); returns its address."""
        ptr = ctypes.c_uint64(0)
        self._check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(max(1, int(nbytes)))),
                    f"cuMemAlloc({nbytes} bytes)")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cuMemFree_v2(ctypes.c_uint64(ptr)), "cuMemFree")

    def to_device(self, ptr: int, host: np.ndarray, stream: int) -> None:
        """Copy a C-contiguous host array to ``ptr`` on ``stream`` (keep ``host`` alive until synchronized)."""
        self._check(self.lib.cuMemcpyHtoDAsync_v2(ctypes.c_uint64(ptr), ctypes.c_void_p(host.ctypes.data),
                                                  ctypes.c_size_t(host.nbytes), ctypes.c_void_p(stream)),
                    "cuMemcpyHtoDAsync")

    def to_host(self, host: np.ndarray, ptr: int, stream: int) -> None:
        """Copy ``host.nbytes`` from ``ptr`` into a C-contiguous host array on ``stream``."""
        self._check(self.lib.cuMemcpyDtoHAsync_v2(ctypes.c_void_p(host.ctypes.data), ctypes.c_uint64(ptr),
                                                  ctypes.c_size_t(host.nbytes), ctypes.c_void_p(stream)),
                    "cuMemcpyDtoHAsync")


class DeviceBuffers:
    """Device memory per tensor name, grown when a call needs more and reused otherwise."""

    def __init__(self, cuda: CudaDevice):
        self.cuda = cuda
        self._held: dict[str, tuple[int, int]] = {}  # name -> (address, bytes)

    def get(self, name: str, nbytes: int) -> int:
        ptr, have = self._held.get(name, (0, -1))
        if nbytes > have:
            if ptr:
                self.cuda.free(ptr)
            ptr = self.cuda.alloc(nbytes)
            self._held[name] = (ptr, max(1, nbytes))
        return ptr

    def release(self) -> None:
        for ptr, _ in self._held.values():
            self.cuda.free(ptr)
        self._held.clear()

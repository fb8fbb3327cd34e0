"""TensorFlow's start-up chatter, kept off the command's output (``--verbose`` shows it).

TensorFlow writes C++ log lines straight to file descriptor 2 before its own
log level applies (``WARNING: All log messages before absl::InitializeLog()
...``, oneDNN and CPU-feature notes, "Could not find cuda drivers", and on a
machine without a GPU ``E0000 ... failed call to cuInit``, which reads like a
crash), so ``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them. While a
command runs, :class:`StderrFilter` puts a pipe on descriptor 2, read by a
forked child process, and passes on every line except those of a severity
below the log level in force (the user's ``TF_CPP_MIN_LOG_LEVEL`` when set,
else 2) and the known notices of a machine without a GPU. Our own messages,
Python tracebacks and any other TensorFlow error pass through unchanged.

Example:
    >>> is_noise(b"I0000 00:00:1796527675.16 2316 port.cc:153] oneDNN custom operations ...", 2)
    True
    >>> is_noise(b"bayesseg train: error: Mask 'a.npy' holds labels [5]", 2)
    False
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

__all__ = ["StderrFilter", "is_noise", "log_level"]

# absl/TSL C++ log lines: severity letter, date, time, thread, file:line].
_CPP_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# Printed before absl's log is initialised, whatever the level.
_PRE_INIT = re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called")
# The second line of the CPU-feature note (its first is an I line).
_CONTINUATION = re.compile(rb"^To enable the following instructions: ")
# Error-level lines that only say there is no GPU here.
_NO_GPU = re.compile(
    rb"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
    rb"could not find cuda drivers|no NVIDIA GPU",
    re.IGNORECASE,
)


def log_level() -> int:
    """The TensorFlow C++ log level in force: the user's ``TF_CPP_MIN_LOG_LEVEL``, else 2."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    except ValueError:
        return 0


def is_noise(line: bytes, level: int) -> bool:
    """Whether ``line`` is start-up chatter that the log level ``level`` means to hide."""
    match = _CPP_LINE.match(line)
    if match:
        severity = _SEVERITY[match.group(1)]
        return severity < level or (level >= 2 and bool(_NO_GPU.search(line)))
    return level >= 1 and bool(_PRE_INIT.match(line) or _CONTINUATION.match(line))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _pump(read_end: int, out: int, level: int) -> None:
    """Copy lines from ``read_end`` to ``out``, leaving out the noise, until EOF."""
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_noise(line, level))
        if kept:
            _write_all(out, kept)
    if pending and not is_noise(pending, level):
        _write_all(out, pending)


class StderrFilter:
    """Filter file descriptor 2 through :func:`is_noise` while the block runs.

    The filtering runs in a forked child process, so it needs nothing of
    this one: what TensorFlow writes while holding the GIL (however much)
    is drained, and a fatal error's last lines still reach the terminal
    when this process aborts. Where ``fork`` is missing (Windows), or
    stderr is closed, nothing is filtered.
    """

    #: Seconds to wait, on leaving, for the child to pass on the last lines.
    DRAIN_SECONDS = 5.0

    def __init__(self, level: int) -> None:
        self.level = level
        self._saved: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> StderrFilter:
        if sys.stderr is None or not hasattr(os, "fork"):
            return self
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            return self
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drain to EOF, even through Ctrl-C, then leave
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                os.close(write_end)
                _pump(read_end, saved, self.level)
            finally:
                os._exit(0)
        os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved, self._pid = saved, pid
        return self

    def __exit__(self, *exc) -> None:
        if self._pid is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # our last writer closes: the child reads to EOF
        os.close(self._saved)
        # A process started inside the block may still hold the pipe: wait a
        # little for the child, never for ever (it exits at EOF on its own).
        deadline = time.monotonic() + self.DRAIN_SECONDS
        while time.monotonic() < deadline:
            if os.waitpid(self._pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.01)
        self._pid = self._saved = None

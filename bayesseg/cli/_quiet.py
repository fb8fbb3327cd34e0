"""TensorFlow's start-up chatter, kept off the command's output (``--verbose`` shows it).

TensorFlow writes C++ log lines straight to file descriptor 2 before its own
log level applies (``WARNING: All log messages before absl::InitializeLog()
...``, oneDNN and CPU-feature notes, "Could not find cuda drivers", and on a
machine without a GPU ``E0000 ... failed call to cuInit``, which reads like a
crash), so ``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them. While a
command runs, :class:`StderrFilter` puts a pipe on descriptor 2 and passes on
every line except those of a severity below the log level in force (the
user's ``TF_CPP_MIN_LOG_LEVEL`` when set, else 2) and the known notices of a
machine without a GPU. Our own messages, Python tracebacks and any other
TensorFlow error pass through unchanged.

Example:
    >>> is_noise(b"I0000 00:00:1796527675.16 2316 port.cc:153] oneDNN custom operations ...", 2)
    True
    >>> is_noise(b"bayesseg train: error: Mask 'a.npy' holds labels [5]", 2)
    False
"""

from __future__ import annotations

import os
import re
import sys
import threading

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


class StderrFilter:
    """Filter file descriptor 2 through :func:`is_noise` while the block runs."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StderrFilter:
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), daemon=True)
        self._thread.start()
        return self

    def _pump(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not is_noise(line, self.level):
                    os.write(self._saved, line)

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # the pipe's last writer closes: the pump reads to its end
        self._thread.join(timeout=5)
        os.close(self._saved)

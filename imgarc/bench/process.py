"""Running one step of a benchmark as a child process: its wall time and its peak memory.

Every method (imgarc, Pillow codecs, 7-Zip, TAR) runs as its own process, so all rows are
measured the same way: wall time from start to exit as a user would feel it, and peak
resident memory from the kernel (wait4's ru_maxrss, which covers the process and any
process it waited for, e.g. the xz that `tar -J` starts).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    returncode: int
    seconds: float  # wall time, start to exit
    peak_rss_bytes: int  # max resident set size of the process tree (Linux: ru_maxrss KiB × 1024)
    cpu_seconds: float  # user + system CPU time of the process and what it waited for
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """The last line of what the process said, for a report's skip/fail reason."""
        lines = [line for line in (self.stderr + "\n" + self.stdout).splitlines() if line.strip()]
        return f"exit {self.returncode}: {lines[-1].strip()[:300] if lines else 'no output'}"


# Runs argv[2:] and writes "exit-code seconds maxrss-KiB cpu-seconds" to argv[1]. A fresh, small Python
# (-I -S: no site, ~7 MB) sits between the bench and the command because a child forked from
# the bench itself (hundreds of MB with torch loaded) would report the bench's memory as its
# own: Linux carries the forking process's peak into the child's ru_maxrss until exec.
LAUNCHER = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, ("cannot run %s: %s" % (argv[0], e.strerror)).encode() + bytes([10]))
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t
with open(out, "w") as f:
    f.write("%d %r %d %r" % (os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss,
                             usage.ru_utime + usage.ru_stime))
"""
LAUNCHER_FLOOR_BYTES = 8_000_000  # peak memory readings below this are the launcher's own


def run_measured(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run argv to completion (stdin closed, output captured) and measure it."""
    with tempfile.TemporaryDirectory() as tmp:
        result, out_path, err_path = Path(tmp) / "usage", Path(tmp) / "out", Path(tmp) / "err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            launcher = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), *argv], cwd=cwd,
                                      env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        stdout = out_path.read_text("utf-8", "replace")
        stderr = err_path.read_text("utf-8", "replace")
        if launcher.returncode != 0 or not result.is_file():
            return Measured(launcher.returncode or 1, 0.0, 0, 0.0, stdout, stderr)
        code, seconds, maxrss, cpu = result.read_text().split()
        kib = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
        return Measured(int(code), float(seconds), int(maxrss) * kib, float(cpu), stdout, stderr)


def python_worker(spec_file: Path) -> list[str]:
    """The argv that runs one bench worker step in a fresh Python (this interpreter)."""
    return [sys.executable, "-m", "imgarc.bench.worker", str(spec_file)]

"""Running one hostile case in a child process, under a time and a memory limit.

A case is Python source defining ``case(*args)``.  It runs in a fresh interpreter; the parent
polls the child's resident size and kills it past ``mem_mb`` (a memory blow-up) or past
``timeout`` seconds (a hang), so a regression fails the test instead of the machine.  Under the
sanitizers (``CHUNKVIEW_SANITIZED``) both limits are relaxed: ASan is slower and its shadow
memory counts in the resident size.  What the
case returned, or the exception it raised (type, the classes it derives from, message), comes
back as an :class:`Outcome`; a signal (SIGSEGV, SIGBUS) is a crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

_RUNNER = r'''
import json, sys, traceback
src = open(sys.argv[1]).read()
args = json.load(open(sys.argv[2]))
ns = {"__name__": "hostile_case"}
exec(compile(src, "<case>", "exec"), ns)
try:
    value = ns["case"](*args)
    out = {"kind": "ok", "value": value}
except BaseException as e:
    from chunkview.errors import ChunkviewError
    out = {"kind": "error", "type": type(e).__name__,
           "mro": [c.__name__ for c in type(e).__mro__],
           "chunkview": isinstance(e, ChunkviewError), "message": str(e),
           "traceback": traceback.format_exc(limit=8)}
sys.stdout.write("\n@@OUTCOME " + json.dumps(out, default=repr) + "\n")
sys.stdout.flush()
'''


@dataclass
class Outcome:
    kind: str  # ok, error, crash, hang, memory
    value: object = None
    type: str = ""
    mro: list = field(default_factory=list)
    chunkview: bool = False
    message: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0
    output: str = ""
    traceback: str = ""

    def __str__(self):
        return (f"{self.kind} after {self.seconds:.1f} s, peak {self.peak_mb:.0f} MB: "
                f"{self.type} {self.message[:400]!r} {self.value!r:.200}\n{self.traceback}"
                f"\n{self.output[-2000:]}")

    def is_error(self, *names: str) -> bool:
        """A chunkview error (of one of the classes ``names``, when given)."""
        return self.kind == "error" and self.chunkview and (
            not names or any(n in self.mro for n in names))


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_case(src: str, *args, timeout: float = 60.0, mem_mb: float = 1024.0,
             env: dict | None = None) -> Outcome:
    """Run ``case(*args)`` from ``src`` in a child; ``args`` must be JSON."""
    src = textwrap.dedent(src)
    if os.environ.get("CHUNKVIEW_SANITIZED"):  # under ASan (tests/sanitize.sh): slower, and
        # its shadow memory and quarantine count in the resident size
        timeout *= 5
        mem_mb = mem_mb * 4 + 1024
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fa:
        json.dump(list(args), fa)
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("PYTHONFAULTHANDLER", "1")
    out_f = tempfile.TemporaryFile()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, f.name, fa.name],
                            stdout=out_f, stderr=subprocess.STDOUT, env=full_env)
    peak = 0.0
    killed = None
    try:
        while proc.poll() is None:
            peak = max(peak, _rss_mb(proc.pid))
            if peak > mem_mb:
                killed = "memory"
            elif time.monotonic() - t0 > timeout:
                killed = "hang"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(f.name)
        os.unlink(fa.name)
    seconds = time.monotonic() - t0
    out_f.seek(0)
    output = out_f.read().decode("utf-8", "replace")
    out_f.close()
    if killed:
        return Outcome(killed, seconds=seconds, peak_mb=peak, output=output)
    marker = output.rfind("@@OUTCOME ")
    if proc.returncode != 0 or marker < 0:
        sig = -proc.returncode if proc.returncode < 0 else None
        name = signal.Signals(sig).name if sig else f"exit {proc.returncode}"
        return Outcome("crash", type=name, seconds=seconds, peak_mb=peak, output=output)
    data = json.loads(output[marker + len("@@OUTCOME "):].splitlines()[0])
    return Outcome(seconds=seconds, peak_mb=peak, output=output[:marker], **data)


__all__ = ["Outcome", "run_case"]

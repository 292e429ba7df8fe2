"""The local executor, shared by the service (its own instance) and `diag agent`.

The script goes to a file (mode 0700, in a private 0700 directory) and runs as
[interpreter, file] (bash, python3 or perl by the command's type) - never a shell string
built from input - in its own session, with its
parameters as DIAG_* environment variables (never in the text: see parameters.py).
A child can leave the session (`setsid`), so each run also gets a cgroup of its own when
one can be made (see cgroups.py): the timeout and stop kill every process in it, and the
process group as well. Output (stdout and stderr, merged) keeps the first 24 KiB as bytes
and counts the rest.
"""

from __future__ import annotations

import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from diag.commands import cgroups
from diag.commands.parameters import ENV_NAME

OUTPUT_CAP = 24 * 1024
SHELL = shutil.which("bash") or "/bin/sh"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What starts in place of the script: it waits for one line on stdin, which the runner sends
# once the process is in its cgroup, so no child can be forked outside it; EOF instead (the
# runner failed) runs nothing. A fixed string: no input ever reaches it.
GATE = 'read -r line || exit 125; exec "$@" </dev/null'
SCRIPT_TYPES = ("RunShellScript", "RunPythonScript", "RunPerlScript")
_SUFFIX = {"RunShellScript": ".sh", "RunPythonScript": ".py", "RunPerlScript": ".pl"}


def interpreter(kind: str) -> str | None:
    """The program that runs a script of this type here, looked up in the runs' own PATH;
    None when this machine has none (perl is not everywhere). Python falls back to the
    one running diag, which is always there."""
    if kind == "RunShellScript":
        return SHELL
    if kind == "RunPythonScript":
        return shutil.which("python3", path=PATH) or sys.executable
    if kind == "RunPerlScript":
        return shutil.which("perl", path=PATH)
    return None


@dataclass
class Result:
    status: str  # Finished | Failed | Stopped
    exit_code: int | None = None
    output: bytes = b""
    dropped: int = 0
    error_code: str | None = None
    error_info: str | None = None
    start_time: float | None = None
    finish_time: float | None = None


def failed(error_code: str, info: str) -> Result:
    now = time.time()
    return Result("Failed", error_code=error_code, error_info=info, start_time=now, finish_time=now)


class Execution:
    """One run of one script; `stop()` may be called from any thread."""

    def __init__(self, script: str, *, timeout: float, working_dir: str = "", username: str = "",
                 shell: str = SHELL, env: dict[str, str] | None = None, kind: str = "RunShellScript") -> None:
        self.script, self.timeout, self.working_dir, self.username, self.shell = (
            script, timeout, working_dir, username, shell)
        self.kind = kind
        # Only DIAG_* names: parameters must not set PATH, LD_PRELOAD or the like.
        self.params = {k: v for k, v in (env or {}).items()
                       if isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str) and "\x00" not in v}
        self._stop_r, self._stop_w = os.pipe()
        self._stopped = threading.Event()
        self.pid: int | None = None
        self.group: cgroups.Cgroup | None = None

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            try:
                os.write(self._stop_w, b"x")
            except OSError:
                pass

    def run(self) -> Result:
        try:
            return self._run()
        finally:
            os.close(self._stop_r)
            os.close(self._stop_w)

    def _run(self) -> Result:
        if self._stopped.is_set():
            now = time.time()
            return Result("Stopped", start_time=now, finish_time=now)
        program = self.shell if self.kind == "RunShellScript" else interpreter(self.kind)
        if self.kind not in SCRIPT_TYPES:
            return failed("ExecutionException", f"this machine's diag does not know the script type {self.kind!r}")
        if program is None:
            name = "perl" if self.kind == "RunPerlScript" else self.kind
            return failed("ExecutionException", f"{name} is not installed on this machine (looked in {PATH})")
        try:
            user = pwd.getpwnam(self.username) if self.username else pwd.getpwuid(os.geteuid())
        except KeyError:
            return failed("ExecutionException", f"unknown user {self.username!r} on this machine")
        as_other = user.pw_uid != os.geteuid()
        if as_other and os.geteuid() != 0:
            return failed("ExecutionException", f"cannot run as {self.username!r}: this process is not root")
        cwd = self.working_dir or (user.pw_dir if os.path.isdir(user.pw_dir) else "/")
        if not os.path.isdir(cwd):
            return failed("ExecutionException", f"working directory {cwd!r} does not exist")
        tmp = tempfile.mkdtemp(prefix="diag-cmd-")  # 0700, private to the owner
        try:
            path = os.path.join(tmp, "script" + _SUFFIX[self.kind])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "w") as f:
                f.write(self.script)
            if as_other:
                os.chown(tmp, user.pw_uid, user.pw_gid)
                os.chown(path, user.pw_uid, user.pw_gid)
            env = {**self.params, "PATH": PATH, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
                   "SHELL": user.pw_shell or "/bin/sh", "LANG": os.environ.get("LANG", "C.UTF-8")}
            ids = ({"user": user.pw_uid, "group": user.pw_gid,
                    "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid)} if as_other else {})
            start = time.time()
            group = cgroups.create()
            try:
                proc = subprocess.Popen([self.shell, "-c", GATE, "diag-command", program, path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        cwd=cwd, env=env, start_new_session=True, close_fds=True, **ids)
            except OSError as e:
                if group:
                    group.remove()
                return failed("ExecutionException", f"cannot start {program}: {e.strerror}")
            self.pid = proc.pid
            assert proc.stdin is not None
            try:
                if group and not group.add(proc.pid):
                    group.remove()
                    group = None  # the process group kill alone, as without cgroups
                proc.stdin.write(b"go\n")
            except OSError:
                pass  # it died already; _supervise reports how
            finally:
                proc.stdin.close()
            self.group = group
            try:
                return self._supervise(proc, start)
            finally:
                if group:
                    group.release()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _supervise(self, proc: subprocess.Popen, start: float) -> Result:
        assert proc.stdout is not None
        out = proc.stdout.fileno()
        os.set_blocking(out, False)
        pidfd = os.pidfd_open(proc.pid)  # readable when the process exits: no polling loop
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ, "out")
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        kept, dropped, outcome = bytearray(), 0, None
        deadline = time.monotonic() + self.timeout
        try:
            while outcome is None:
                remaining = deadline - time.monotonic()
                events = sel.select(max(remaining, 0)) if remaining > 0 else []
                if not events:
                    outcome = "timeout"
                for key, _ in events:
                    if key.data == "out":
                        chunk = _read(out)
                        if chunk is None:
                            sel.unregister(out)  # EOF; the process may still run without output
                        else:
                            take = max(0, OUTPUT_CAP - len(kept))
                            kept += chunk[:take]
                            dropped += len(chunk) - min(take, len(chunk))
                    elif key.data == "exit":
                        outcome = "exit"
                    elif key.data == "stop":
                        outcome = "stop"
            if outcome != "exit":
                _kill_group(proc.pid)
                if self.group:
                    self.group.kill()  # children that left the process group with setsid
            proc.wait()
            # What the script wrote just before it ended; children that keep the pipe open
            # (nohup daemons) do not hold the result: read what is there, then let go.
            while (chunk := _read(out)) is not None and chunk:
                take = max(0, OUTPUT_CAP - len(kept))
                kept += chunk[:take]
                dropped += len(chunk) - min(take, len(chunk))
        finally:
            sel.close()
            os.close(pidfd)
            proc.stdout.close()
        end = time.time()
        r = Result("Finished", output=bytes(kept), dropped=dropped, start_time=start, finish_time=end)
        if outcome == "timeout":
            r.status, r.error_code = "Failed", "ExecutionTimeout"
            r.error_info = f"still running after the timeout ({self.timeout:g}s): {self._killed()} killed"
        elif outcome == "stop":
            r.status, r.error_info = "Stopped", f"stopped by the operator: {self._killed()} killed"
        else:
            code = proc.returncode
            r.exit_code = code if code >= 0 else 128 - code  # as a shell reports a death by signal
            if r.exit_code != 0:
                r.error_code = "ExitCodeNonzero"
                r.error_info = f"exit code {r.exit_code}" + (f" (signal {-code})" if code < 0 else "")
        return r


    def _killed(self) -> str:
        return "its cgroup and process group were" if self.group else "its process group was"


def _read(fd: int) -> bytes | None:
    """Bytes available now; b"" when none are; None at EOF."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return b""
    return chunk if chunk else None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # start_new_session made pid the group id
    except ProcessLookupError:
        pass

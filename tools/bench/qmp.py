"""Just enough of QEMU's machine protocol (QMP: JSON lines over a unix
socket) to drive a live migration from the bench: connect, negotiate, run a
command and return its result. Asynchronous events are skipped."""
import json
import socket
import time


class QmpError(RuntimeError):
    pass


class Qmp:
    def __init__(self, path, timeout, alive):
        """Connects to a QEMU started with `-qmp unix:PATH,server=on,wait=off`,
        retrying until it listens; alive() false (QEMU exited) or timeout
        seconds gone raises."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if not alive():
                    raise QmpError(f"QEMU exited before its QMP socket {path} answered")
                if time.monotonic() > deadline:
                    raise QmpError(f"no QMP socket at {path} within {timeout} s")
                time.sleep(0.1)
        s.settimeout(60)
        self.sock = s
        self.f = s.makefile("rw", encoding="utf-8")
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise QmpError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = self._read()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise QmpError(f"QMP {name}: {msg['error'].get('desc', msg['error'])}")
            # {"event": ...}: STOP, RESUME and the like, not asked for

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

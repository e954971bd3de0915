"""The ``calico-neutron serve`` co-process: one per Neutron process, spoken
to in JSON lines. Under eventlet (neutron-server) the pipes are green, so a
request waits without blocking the other green threads."""

import json
import os
import socket

from oslo_log import log

try:
    from eventlet.green import subprocess
    from eventlet import semaphore

    def _make_lock():
        return semaphore.Semaphore(1)
except ImportError:  # pragma: no cover - neutron always has eventlet
    import subprocess
    import threading

    def _make_lock():
        return threading.Lock()

from networking_calico_rs import config

LOG = log.getLogger(__name__)


class CoreError(Exception):
    """A request the co-process refused: ``kind`` is ``translate`` (Neutron
    data Calico cannot express; ``object`` and ``field`` name it),
    ``datastore`` or ``request``."""

    def __init__(self, reply):
        super().__init__(reply.get("error", "calico-neutron failed"))
        self.kind = reply.get("kind")
        self.object = reply.get("object")
        self.field = reply.get("field")


class Core(object):
    def __init__(self, binary, options, elector_id=None):
        self._binary = binary
        self._options = options
        self._elector_id = elector_id
        self._proc = None
        self._owner = None
        self._lock = _make_lock()

    @classmethod
    def from_conf(cls, conf):
        name = config.GROUP
        elector = getattr(conf, name).elector_name or socket.gethostname()
        return cls(config.binary_path(conf), config.core_options(conf),
                   elector_id=elector)

    def call(self, op, **args):
        """One request; returns its result or raises CoreError. A
        co-process that died is started again, once per call."""
        with self._lock:
            for attempt in (1, 2):
                self._ensure_started()
                try:
                    return self._roundtrip(dict(args, op=op))
                except (BrokenPipeError, EOFError) as e:
                    LOG.warning("calico-neutron exited (%s); restarting", e)
                    self._stop()
                    if attempt == 2:
                        raise

    def _roundtrip(self, request):
        # Neutron's dicts hold netaddr and datetime objects: as text.
        line = json.dumps(request, separators=(",", ":"), default=str) + "\n"
        self._proc.stdin.write(line.encode())
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise EOFError("no reply to %s" % request["op"])
        reply = json.loads(reply)
        if not reply.get("ok"):
            raise CoreError(reply)
        return reply.get("result")

    def _ensure_started(self):
        # After neutron-server forks its workers each process needs its own
        # co-process: the parent's pipes are not ours to share.
        if (self._proc is not None and self._owner == os.getpid()
                and self._proc.poll() is None):
            return
        self._proc = subprocess.Popen(
            [self._binary, "serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True)
        self._owner = os.getpid()
        elector_id = "%s:%d" % (self._elector_id, os.getpid())
        result = self._roundtrip({"op": "init", "options": self._options,
                                  "elector_id": elector_id})
        LOG.info("calico-neutron %d started for process %d (%s)",
                 self._proc.pid, os.getpid(), result.get("datastore"))

    def _stop(self):
        proc, self._proc = self._proc, None
        if proc is not None and self._owner == os.getpid():
            try:
                proc.stdin.close()
            except Exception:
                pass
            try:
                proc.kill()
                proc.wait()
            except Exception:
                pass

    def close(self):
        with self._lock:
            self._stop()

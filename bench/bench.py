#!/usr/bin/env python3
"""Side-by-side benchmark: minisv against Python supervisord 4.3.

Usually started by bench/run, which builds minisv and installs supervisord first.
Python 3 standard library only. Talks XML-RPC to both daemons over their unix sockets.
"""

import argparse
import ctypes
import datetime
import glob
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("minisv", "supervisord")
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# XML-RPC over a unix socket (a persistent HTTP/1.1 connection, as supervisorctl does)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout=60.0):
        super().__init__()
        self.unix_path = path
        self.timeout = timeout

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, UnixHTTPConnection(self.unix_path, self.timeout)
        return self._connection[1]


class RawRPC:
    """A pre-encoded XML-RPC request sent over a persistent unix-socket HTTP/1.1 connection; the
    response is read whole (by Content-Length) but not parsed. Measures the daemon and the
    transport, without Python's XML-RPC marshalling on the client side."""

    def __init__(self, sock_path, method, params=(), timeout=60.0):
        body = xmlrpc.client.dumps(tuple(params), method).encode()
        self.req = (b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
                    b"Accept: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(sock_path)
        self.buf = b""

    def call(self):
        """Returns the response body (bytes)."""
        self.sock.sendall(self.req)
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("connection closed by the daemon")
            buf += chunk
        head, buf = bytes(buf[:end]), buf[end + 4:]
        lines = head.split(b"\r\n")
        if b" 200 " not in lines[0] + b" ":
            raise BenchError(f"HTTP status {lines[0]!r}")
        length = None
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        if length is None:
            raise BenchError("response without Content-Length")
        body = bytearray(buf)
        while len(body) < length:
            chunk = self.sock.recv(max(65536, length - len(body)))
            if not chunk:
                raise BenchError("connection closed mid-response")
            body += chunk  # bytearray: amortised, not quadratic
        self.buf = bytes(body[length:])
        body = bytes(body[:length])
        if b"<fault>" in body:
            raise BenchError(f"fault: {body[:300]!r}")
        return body

    def close(self):
        self.sock.close()


def timed_calls(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def rpc_proxy(sock_path, timeout=60.0):
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=UnixTransport(sock_path, timeout))


# ---------------------------------------------------------------------------
# /proc helpers


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def elf_interpreter(path):
    """Whether an ELF file names a program interpreter (PT_INTERP): a dynamically linked
    executable does; a static one (static-pie included) does not."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            raise BenchError(f"{path} is not an ELF file")
        wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
        if wide:
            phoff, = struct.unpack_from(order + "Q", head, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
        else:
            phoff, = struct.unpack_from(order + "I", head, 0x1C)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from(order + "I", table, i * phentsize)[0] == 3 for i in range(phnum))


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_stat(pid):
    """(comm, ppid, utime+stime in ticks) from /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    lpar, rpar = data.index("("), data.rindex(")")
    comm = data[lpar + 1:rpar]
    rest = data[rpar + 2:].split()
    # rest[0] = state (field 3); ppid = field 4; utime = 14; stime = 15
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def cpu_seconds(pid):
    """Daemon CPU (user+system, all threads, dead ones included) from /proc/PID/stat."""
    st = read_stat(pid)
    if st is None:
        raise BenchError(f"daemon {pid} is gone")
    return st[2] / CLK_TCK


def cpu_ns_sched(pid):
    """Finer-grained CPU time of the live threads (ns) from /proc/PID/task/*/schedstat."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def ctxt_switches(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = proc_status(f"{pid}/task/{t}")
        except OSError:
            continue
        total += int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
    return total


def thread_switches(pid):
    """{tid: voluntary + nonvoluntary context switches} for each live thread."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = proc_status(f"{pid}/task/{t}")
        except OSError:
            continue
        out[t] = int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
    return out


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class ChildTracker:
    """Follows the children of one pid. Where the kernel lists each thread's children
    (/proc/PID/task/TID/children, CONFIG_PROC_CHILDREN), from those lists; elsewhere by scanning
    /proc incrementally: only pids not seen before are read, plus children still waiting for
    their exec (comm changes from the daemon's name to the program's). A scan of /proc costs
    about 1.5 ms with 1000 children, every 5 ms while they start: CPU taken from the daemon
    being measured, on a 2-CPU machine. The lists cost a few files."""

    def __init__(self, ppid, want_comm):
        self.ppid = ppid
        self.want = want_comm
        self.seen = set()
        self.children = {}  # pid -> comm
        self.last_full = time.monotonic()
        self.lists = os.path.exists(f"/proc/{ppid}/task/{ppid}/children")

    def listed(self):
        """The pids the kernel lists as children of the pid's threads."""
        pids = set()
        try:
            tasks = os.listdir(f"/proc/{self.ppid}/task")
        except OSError:
            return pids
        for t in tasks:
            try:
                with open(f"/proc/{self.ppid}/task/{t}/children") as f:
                    pids.update(int(x) for x in f.read().split())
            except OSError:
                pass  # a thread that just ended
        return pids

    def poll(self):
        if self.lists:
            pids = self.listed()
            for pid in list(self.children):
                if pid not in pids:
                    del self.children[pid]
            for pid in pids:
                if self.children.get(pid) != self.want:
                    st = read_stat(pid)
                    if st is not None and st[1] == self.ppid:
                        self.children[pid] = st[0]
            return self.children
        now = time.monotonic()
        if now - self.last_full > 0.25:
            # pids wrap (pid_max may be 32768 and the machine is busy): a pid seen earlier as
            # somebody else's process may now be our child, so look at everything again.
            self.seen = set(self.children)
            self.last_full = now
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self.seen:
                continue
            self.seen.add(pid)
            st = read_stat(pid)
            if st is not None and st[1] == self.ppid:
                self.children[pid] = st[0]
        for pid, comm in list(self.children.items()):
            if comm != self.want:
                st = read_stat(pid)
                if st is None or st[1] != self.ppid:
                    del self.children[pid]
                else:
                    self.children[pid] = st[0]
        return self.children

    def execd(self):
        return {p for p, c in self.children.items() if c == self.want}


def descendants(root):
    """All live descendants of root (by a full /proc scan of ppids)."""
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                kids.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def wait_for(cond, timeout, what, interval=0.005):
    """Poll cond() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Daemons


class Env:
    minisv = None
    supervisord = None
    live = []  # Daemon objects still to clean up
    tmpdirs = []


def make_config(tmp, programs, daemon_extra=""):
    """programs: list of (name, dict of options). Same text for both daemons (paths are per run)."""
    lines = [
        "[unix_http_server]",
        f"file={tmp}/sock",
        "",
        "[supervisord]",
        f"logfile={tmp}/daemon.log",
        "logfile_maxbytes=0",
        "loglevel=info",
        f"pidfile={tmp}/daemon.pid",
        f"childlogdir={tmp}/logs",
        "minfds=8192",
        "minprocs=4096",
        "nodaemon=true",
        daemon_extra,
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{tmp}/sock",
        "",
    ]
    for name, opts in programs:
        lines.append(f"[program:{name}]")
        for k, v in opts.items():
            lines.append(f"{k}={v}")
        lines.append("")
    return "\n".join(lines)


def sleepers(n, **extra):
    opts = {"command": "sleep 1000", "startsecs": "0", "autostart": "true"}
    opts.update(extra)
    return [(f"p{i:04d}", dict(opts)) for i in range(n)]


class Daemon:
    def __init__(self, kind, programs, daemon_extra=""):
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        Env.tmpdirs.append(self.tmp)
        os.mkdir(f"{self.tmp}/logs")
        self.conf = f"{self.tmp}/daemon.conf"
        with open(self.conf, "w") as f:
            f.write(make_config(self.tmp, programs(self.tmp) if callable(programs) else programs, daemon_extra))
        self.sock = f"{self.tmp}/sock"
        self.proc = None
        self.t_start = None
        self._rpc = None

    def start(self, wait=True):
        if self.kind == "minisv":
            argv = [Env.minisv, "-n", "-c", self.conf]
        else:
            argv = [Env.supervisord, "-n", "-c", self.conf]
        self.out = open(f"{self.tmp}/daemon.stdout", "wb")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)
        Env.live.append(self)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def rpc(self):
        if self._rpc is None:
            self._rpc = rpc_proxy(self.sock)
        return self._rpc

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise BenchError(f"{self.kind} exited with {self.proc.returncode}: {self.log_tail()}")
            if not os.path.exists(self.sock):
                return False
            try:
                return rpc_proxy(self.sock, 5).supervisor.getState()["statename"] == "RUNNING"
            except (OSError, xmlrpc.client.Error, http.client.HTTPException):
                return False
        wait_for(ready, timeout, f"{self.kind} to answer on its socket")

    def log_tail(self):
        out = []
        for p in (f"{self.tmp}/daemon.stdout", f"{self.tmp}/daemon.log"):
            try:
                with open(p, "rb") as f:
                    out.append(f.read()[-800:].decode("utf-8", "replace"))
            except OSError:
                pass
        return " | ".join(out)

    def wait_all_running(self, n, timeout):
        def check():
            infos = self.rpc().supervisor.getAllProcessInfo()
            return len(infos) == n and all(i["statename"] == "RUNNING" for i in infos)
        wait_for(check, timeout, f"{n} programs RUNNING under {self.kind}", interval=0.02)

    def stop(self):
        """Kill the daemon and every descendant, by pid (descendants first listed, then killed)."""
        if self.proc is None:
            return
        if self in Env.live:
            Env.live.remove(self)
        if self.proc.poll() is None:
            kids = descendants(self.pid)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.out.close()
        reap_orphans()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp in Env.tmpdirs:
            Env.tmpdirs.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def reap_orphans():
    """We are a child subreaper: orphaned grandchildren come to us. Reap what has exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def cleanup_everything():
    for d in list(Env.live):
        try:
            d.stop()
        except Exception as e:  # keep cleaning the rest
            print(f"cleanup: {e}", file=sys.stderr)
    # Anything still below us (orphans re-parented to us as subreaper) is ours.
    for _ in range(3):
        kids = descendants(os.getpid())
        if not kids:
            break
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        reap_orphans()
    for t in list(Env.tmpdirs):
        shutil.rmtree(t, ignore_errors=True)
    Env.tmpdirs.clear()


# ---------------------------------------------------------------------------
# Scenarios. Each takes (kind, sizes) and returns {sample_key: [values]}.


def sc_scale(kind, sz):
    """RSS and fds with 0 / small / large program counts; startup time and getAllProcessInfo at
    the large count."""
    out = {}
    counts = [0, sz["small"], sz["large"]]
    fds = {}
    for n in counts:
        with Daemon(kind, sleepers(n)) as d:
            d.start(wait=False)
            t0 = d.t_start
            tr = ChildTracker(d.pid, "sleep")
            t_exec = None
            deadline = time.monotonic() + 120
            if n:
                while time.monotonic() < deadline:
                    if d.proc.poll() is not None:
                        raise BenchError(f"{kind} exited: {d.log_tail()}")
                    tr.poll()
                    if len(tr.execd()) >= n:
                        t_exec = time.monotonic() - t0
                        daemon_s = cpu_ns_sched(d.pid) / 1e9
                        break
                    time.sleep(0.005)
                else:
                    raise BenchError(f"{kind}: only {len(tr.execd())} of {n} children running after 120 s")
            d.wait_ready()
            t_send = None
            while time.monotonic() < deadline:
                t = time.monotonic()
                infos = d.rpc().supervisor.getAllProcessInfo()
                if len(infos) == n and all(i["statename"] == "RUNNING" for i in infos):
                    t_send = t - t0
                    break
                time.sleep(0.005)
            else:
                raise BenchError(f"{kind}: not all {n} RUNNING after 120 s")
            if n:
                # The CPU this start took: the daemon's (read when the last child had exec'd),
                # and the children's own, from their clone through exec and the dynamic loader.
                # Their sum over the CPUs is the least time the start can take on this machine.
                # Read only now: reading 1000 children's counters takes 20-30 ms, which the time
                # until RUNNING included before.
                kids_s = sum(cpu_ns_sched(p) for p in tr.execd()) / 1e9
            out[f"rss_{n}"] = [rss_kib(d.pid) / 1024]
            fds[n] = fd_count(d.pid)
            out[f"fds_{n}"] = [fds[n]]
            out[f"threads_{n}"] = [thread_count(d.pid)]
            if n == sz["large"]:
                out["startup_exec_s"] = [t_exec]
                out["startup_running_s"] = [t_send]
                out["startup_children_cpu_s"] = [kids_s]
                out["startup_daemon_cpu_s"] = [daemon_s]
                out["startup_floor_s"] = [(kids_s + daemon_s) / (os.cpu_count() or 1)]
                raw = RawRPC(d.sock, "supervisor.getAllProcessInfo")
                body = raw.call()
                assert body.count(b"<name>pid</name>") == n
                out["getall_ms"] = timed_calls(raw.call, sz["getall_samples"])
                raw.close()
                rpc = d.rpc()
                out["getall_xmlrpc_ms"] = timed_calls(rpc.supervisor.getAllProcessInfo, sz["getall_samples"])
    out["fds_per_program"] = [(fds[sz["large"]] - fds[0]) / sz["large"]]
    return out


def sc_restart(kind, sz):
    """SIGKILL the child; time until the replacement child has exec'd (seen in /proc as a child
    of the daemon), and until getProcessInfo reports the new pid RUNNING."""
    progs = [("victim", {"command": "sleep 1000", "startsecs": "0", "autorestart": "true"})]
    proc_ms, rpc_ms = [], []
    with Daemon(kind, progs) as d:
        d.start()
        rpc = d.rpc()
        d.wait_all_running(1, 30)
        tr = ChildTracker(d.pid, "sleep")
        for _ in range(sz["restart_samples"]):
            info = wait_for(lambda: (lambda i: i if i["statename"] == "RUNNING" and i["pid"] else None)(
                rpc.supervisor.getProcessInfo("victim")), 30, "victim RUNNING")
            old = info["pid"]
            tr.poll()
            before = set(tr.children)
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + 30
            new = None
            while time.perf_counter() < deadline:
                tr.poll()
                fresh = [p for p, c in tr.children.items() if p not in before and p != old and c == "sleep"]
                if fresh:
                    new = fresh[0]
                    proc_ms.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > 0.02:
                    time.sleep(0.0005)  # busy-poll the first 20 ms, then back off a little
            if new is None:
                raise BenchError(f"{kind}: no replacement child within 30 s")
            while time.perf_counter() < deadline:
                i = rpc.supervisor.getProcessInfo("victim")
                if i["pid"] == new and i["statename"] == "RUNNING":
                    rpc_ms.append((time.perf_counter() - t0) * 1000)
                    break
                time.sleep(0.0005)
            else:
                raise BenchError(f"{kind}: getProcessInfo never showed the new pid {new}")
    return {"restart_proc_ms": proc_ms, "restart_rpc_ms": rpc_ms}


def sc_rpc(kind, sz):
    """getProcessInfo round trip on a persistent connection, 10 programs configured."""
    with Daemon(kind, sleepers(10)) as d:
        d.start()
        d.wait_all_running(10, 30)
        n = sz["rpc_samples"]
        raw = RawRPC(d.sock, "supervisor.getProcessInfo", ["p0005"])
        timed_calls(raw.call, 20)  # warm up
        out = {"getinfo_ms": timed_calls(raw.call, n)}
        raw.close()
        rpc = d.rpc()
        out["getinfo_xmlrpc_ms"] = timed_calls(lambda: rpc.supervisor.getProcessInfo("p0005"), n)

        def fresh():  # a new connection for every call, as a one-shot supervisorctl does
            p = rpc_proxy(d.sock)
            p.supervisor.getProcessInfo("p0005")
            p("close")()
        out["getinfo_newconn_ms"] = timed_calls(fresh, n // 2)
    return out


def sc_logs(kind, sz):
    """A child writes N MB to stdout into a rotated log (maxbytes=50MB, backups=10), log_runs
    times. Before each run the same bytes go once through `dd | cat > file`: that warms the
    page cache allocator (otherwise whoever runs first after a pause pays for reclaim) and gives
    the machine's ceiling at that moment."""
    total = sz["log_mb"] * MB
    out = {}

    def progs(tmp):
        return [("writer", {
            # '%%' is how a config file spells '%'
            "command": f"sh -c 'date +%%s.%%N > {tmp}/t0; exec dd if=/dev/zero bs=1M count={sz['log_mb']} status=none'",
            "autostart": "false", "autorestart": "false", "startsecs": "0",
            "stdout_logfile": f"{tmp}/writer.log",
            "stdout_logfile_maxbytes": "50MB", "stdout_logfile_backups": "10",
        })]
    with Daemon(kind, progs) as d:
        d.start()
        rpc = d.rpc()

        def logged():
            s = 0
            for f in glob.glob(f"{d.tmp}/writer.log*"):
                try:
                    s += os.path.getsize(f)
                except OSError:
                    pass
            return s

        for _ in range(sz["log_runs"]):
            for f in glob.glob(f"{d.tmp}/writer.log.*"):
                os.unlink(f)
            rpc.supervisor.clearProcessLogs("writer")
            t = time.time()
            subprocess.run(["sh", "-c", f"dd if=/dev/zero bs=1M count={sz['log_mb']} status=none | cat > {d.tmp}/ceiling"],
                           check=True, timeout=120)
            ceiling = sz["log_mb"] / (time.time() - t)
            os.unlink(f"{d.tmp}/ceiling")

            cpu0, sch0 = cpu_seconds(d.pid), cpu_ns_sched(d.pid)
            rpc.supervisor.startProcess("writer", False)
            deadline = time.monotonic() + 120
            t_end = None
            while time.monotonic() < deadline:
                if logged() >= total:
                    t_end = time.time()
                    break
                time.sleep(0.002)
            # the writer must have exited and the daemon noticed (then nothing more can come)
            wait_for(lambda: rpc.supervisor.getProcessInfo("writer")["statename"] in ("EXITED", "BACKOFF", "FATAL"),
                     60, "writer to exit")
            cpu1, sch1 = cpu_seconds(d.pid), cpu_ns_sched(d.pid)
            got = logged()
            with open(f"{d.tmp}/t0") as f:
                t_first = float(f.read())
            if t_end is None:  # lost bytes: time to the writer's exit instead
                t_end = time.time()
            for k, v in (("log_ceiling_mb_s", ceiling), ("log_mb_s", sz["log_mb"] / (t_end - t_first)),
                         ("log_cpu_s", cpu1 - cpu0), ("log_cpu_sched_s", (sch1 - sch0) / 1e9),
                         ("log_lost_bytes", max(0, total - got)),
                         ("log_files", len(glob.glob(f"{d.tmp}/writer.log*")))):
                out.setdefault(k, []).append(v)
    return out


def settle(d):
    """Waits (bounded) until the daemon's threads and their switch counters have not moved for 0.3 s."""
    stable, prev, deadline = 0, None, time.monotonic() + 10
    while stable < 6 and time.monotonic() < deadline:
        cur = thread_switches(d.pid)
        stable = stable + 1 if cur == prev else 0
        prev = cur
        time.sleep(0.05)


def sc_idle(kind, sz):
    """10 RUNNING programs, nothing happening: context switches of all daemon threads."""
    with Daemon(kind, sleepers(10)) as d:
        d.start()
        d.wait_all_running(10, 30)
        d._rpc.__exit__()  # close our connection so it is not part of the picture
        d._rpc = None
        # Threads may come and go during the interval: follow each thread's counter (reading
        # /proc does not wake the daemon); a new thread counts from 0, one that died keeps its
        # last reading (up to 50 ms of its switches can be missed).
        # The thread that served our connection may still be winding down.
        settle(d)
        start = thread_switches(d.pid)
        last = dict(start)
        cpu0 = cpu_seconds(d.pid)
        t_end = time.monotonic() + sz["idle_s"]
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            time.sleep(min(0.05, t_end - now))  # the measured idle interval, in slices
            last.update(thread_switches(d.pid))
        cpu1 = cpu_seconds(d.pid)
    scale = 10.0 / sz["idle_s"]
    wake = sum(v - start.get(t, 0) for t, v in last.items())
    born = len(set(last) - set(start))
    return {"idle_wakeups_10s": [wake * scale], "idle_cpu_ms_10s": [(cpu1 - cpu0) * 1000 * scale],
            "idle_threads_born_10s": [born * scale]}


def sc_crashloop(kind, sz):
    """10 programs that exit at once (/bin/true) and are restarted forever: daemon CPU per spawn.
    Spawns are counted from the daemon's own 'spawned:' log lines."""
    progs = [(f"c{i}", {"command": "/bin/true", "startsecs": "0", "autorestart": "true", "autostart": "false"})
             for i in range(10)]
    with Daemon(kind, progs) as d:
        d.start()
        rpc = d.rpc()
        log = f"{d.tmp}/daemon.log"

        def spawns():
            with open(log, "rb") as f:
                return f.read().count(b"spawned: ")

        s0, cpu0, sch0 = spawns(), cpu_seconds(d.pid), cpu_ns_sched(d.pid)
        t0 = time.monotonic()
        rpc.supervisor.startAllProcesses(False)
        d._rpc = None
        time.sleep(sz["crash_s"])  # the measured interval
        cpu1, sch1 = cpu_seconds(d.pid), cpu_ns_sched(d.pid)
        t1 = time.monotonic()
        s1 = spawns()
    n = max(1, s1 - s0)
    return {
        "crash_cpu_ms_per_spawn": [(cpu1 - cpu0) * 1000 / n],
        "crash_sched_ms_per_spawn": [(sch1 - sch0) / 1e6 / n],
        "crash_spawns_per_s": [n / (t1 - t0)],
    }


def sc_stopall(kind, sz):
    n = sz["stop_n"]
    with Daemon(kind, sleepers(n)) as d:
        d.start()
        d.wait_all_running(n, 60)
        # RUNNING (startsecs=0) does not mean exec'd: supervisord's child ignores a SIGTERM that
        # comes before its exec, and then the stop takes stopwaitsecs (10 s). Wait for the execs.
        tr = ChildTracker(d.pid, "sleep")
        wait_for(lambda: len(tr.poll()) and len(tr.execd()) >= n, 60, f"{n} children to exec")
        rpc = d.rpc()
        t = time.perf_counter()
        res = rpc.supervisor.stopAllProcesses(True)
        dt = (time.perf_counter() - t) * 1000
        if len(res) != n:
            raise BenchError(f"{kind}: stopAllProcesses returned {len(res)} results")
    return {"stopall_ms": [dt]}


def idle_switches(d, seconds):
    """Context switches of the daemon's threads over `seconds` of idleness, after it settles."""
    settle(d)
    start = thread_switches(d.pid)
    cpu0 = cpu_seconds(d.pid)
    time.sleep(seconds)  # the measured idle interval
    end = thread_switches(d.pid)
    return sum(v - start.get(t, 0) for t, v in end.items()), cpu_seconds(d.pid) - cpu0


def sc_schedule(kind, sz):
    """minisv only: 1000 programs with schedule= due next New Year: the wake-ups they cost."""
    if kind != "minisv":
        return {}
    n = sz["large"]
    with Daemon(kind, sleepers(n, schedule="0 0 1 1 *", autostart="false")) as d:
        d.start()
        d._rpc = None
        wake, _ = idle_switches(d, sz["idle_s"])
    return {"schedule_wakeups_10s": [wake * 10.0 / sz["idle_s"]]}


def sc_memlimit(kind, sz):
    """minisv only: the CPU the daemon spends polling memory_limit= (every 5 s), per program per poll."""
    if kind != "minisv":
        return {}
    n = sz["small"]
    secs = 20 if sz["idle_s"] >= 10 else 10
    with Daemon(kind, sleepers(n, memory_limit="1GB")) as d:
        d.start()
        d.wait_all_running(n, 60)
        d._rpc.__exit__()
        d._rpc = None
        wake, cpu = idle_switches(d, secs)
    polls = secs / 5.0
    return {"memlimit_us_per_program_poll": [cpu * 1e6 / (n * polls)], "memlimit_wakeups_per_poll": [wake / polls]}


def sc_upgrade(kind, sz):
    """minisv only: `minisv ctl upgrade` with 1000 running programs: how long, and the pids kept."""
    if kind != "minisv":
        return {}
    n = sz["large"]
    with Daemon(kind, sleepers(n)) as d:
        d.start()
        d.wait_all_running(n, 120)
        rpc = d.rpc()
        before = sorted((p["name"], p["pid"]) for p in rpc.supervisor.getAllProcessInfo())
        d._rpc.__exit__()
        d._rpc = None
        rss0 = rss_kib(d.pid)
        t = time.perf_counter()
        out = subprocess.run([Env.minisv, "ctl", "-c", d.conf, "upgrade"], capture_output=True, text=True, timeout=60)
        dt = (time.perf_counter() - t) * 1000
        if out.returncode != 0:
            raise BenchError(f"upgrade failed: {out.stdout}{out.stderr}")
        after = sorted((p["name"], p["pid"]) for p in d.rpc().supervisor.getAllProcessInfo())
        if after != before:
            raise BenchError("the pids changed across the upgrade")
        rss1 = rss_kib(d.pid)
    return {"upgrade_ms": [dt], "upgrade_rss_delta_mb": [(rss1 - rss0) / 1024.0]}


SCENARIOS = {
    "scale": sc_scale,
    "restart": sc_restart,
    "rpc": sc_rpc,
    "logs": sc_logs,
    "idle": sc_idle,
    "crashloop": sc_crashloop,
    "stopall": sc_stopall,
    "schedule": sc_schedule,
    "memlimit": sc_memlimit,
    "upgrade": sc_upgrade,
    "size": None,  # minisv only, no daemon
}

SIZES = {
    "full": dict(small=100, large=1000, getall_samples=5, restart_samples=20, rpc_samples=300, log_mb=200, log_runs=3,
                 idle_s=10, crash_s=3, stop_n=100),
    "quick": dict(small=20, large=200, getall_samples=3, restart_samples=5, rpc_samples=100, log_mb=50, log_runs=1,
                  idle_s=2, crash_s=1, stop_n=20),
}


# ---------------------------------------------------------------------------
# Metrics: (name, scenario, sample key, aggregate, unit, supervisord reference, target op, target)
# A target of None means "no target, informative". Targets depending on the binary are set later.


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


AGG = {"median": statistics.median, "p95": p95}


def metric_defs(sz, static):
    L, S = sz["large"], sz["small"]
    # RSS targets: static musl 1 / 1.5 / 6 MB; glibc 2x that
    k = 1 if static else 2
    rss_t = {0: 1 * k, S: 1.5 * k, L: 6 * k}
    return [
        ("rss_0_mb", "scale", "rss_0", "median", "MB", "25", "<=", rss_t[0]),
        (f"rss_{S}_mb", "scale", f"rss_{S}", "median", "MB", "28" if S == 100 else "", "<=", rss_t[S]),
        (f"rss_{L}_mb", "scale", f"rss_{L}", "median", "MB", "44" if L == 1000 else "", "<=", rss_t[L]),
        ("fds_per_program", "scale", "fds_per_program", "median", "fds", "5", "<=", 3),
        (f"startup_{L}_running_s", "scale", "startup_running_s", "median", "s", "10" if L == 1000 else "",
         "<=", 0.5 if L == 1000 else None),
        (f"startup_{L}_exec_s", "scale", "startup_exec_s", "median", "s", "", None, None),
        (f"startup_{L}_daemon_cpu_s", "scale", "startup_daemon_cpu_s", "median", "s", "", None, None),
        (f"startup_{L}_children_cpu_s", "scale", "startup_children_cpu_s", "median", "s", "", None, None),
        (f"startup_{L}_cpu_floor_s", "scale", "startup_floor_s", "median", "s", "", None, None),
        (f"getAllProcessInfo_{L}_ms", "scale", "getall_ms", "median", "ms", "1300" if L == 1000 else "",
         "<=", 20 if L == 1000 else None),
        (f"getAllProcessInfo_{L}_xmlrpc_client_ms", "scale", "getall_xmlrpc_ms", "median", "ms", "", None, None),
        ("restart_proc_median_ms", "restart", "restart_proc_ms", "median", "ms", "1008", "<=", 2),
        ("restart_proc_p95_ms", "restart", "restart_proc_ms", "p95", "ms", "", "<=", 5),
        ("restart_rpc_median_ms", "restart", "restart_rpc_ms", "median", "ms", "", None, None),
        ("getProcessInfo_median_ms", "rpc", "getinfo_ms", "median", "ms", "6.5", "<=", 0.3),
        ("getProcessInfo_p95_ms", "rpc", "getinfo_ms", "p95", "ms", "", None, None),
        ("getProcessInfo_xmlrpc_client_ms", "rpc", "getinfo_xmlrpc_ms", "median", "ms", "", None, None),
        ("getProcessInfo_new_connection_ms", "rpc", "getinfo_newconn_ms", "median", "ms", "", None, None),
        (f"log_{sz['log_mb']}mb_throughput_mb_s", "logs", "log_mb_s", "median", "MB/s", "935", ">=", 1900),
        ("log_pipe_cat_ceiling_mb_s", "logs", "log_ceiling_mb_s", "median", "MB/s", "", None, None),
        ("log_daemon_cpu_s", "logs", "log_cpu_s", "median", "s", "0.21", "<=", 0.1 * sz["log_mb"] / 200),
        ("log_daemon_cpu_sched_s", "logs", "log_cpu_sched_s", "median", "s", "", None, None),
        ("log_lost_bytes", "logs", "log_lost_bytes", "median", "B", "", "<=", 0),
        ("idle_wakeups_per_10s", "idle", "idle_wakeups_10s", "median", "", "10", "<=", 0),
        ("idle_cpu_ms_per_10s", "idle", "idle_cpu_ms_10s", "median", "ms", "", None, None),
        ("idle_threads_created_per_10s", "idle", "idle_threads_born_10s", "median", "", "", None, None),
        ("crash_cpu_ms_per_spawn", "crashloop", "crash_cpu_ms_per_spawn", "median", "ms", "1.5", "<=", 0.15),
        ("crash_sched_ms_per_spawn", "crashloop", "crash_sched_ms_per_spawn", "median", "ms", "", None, None),
        ("crash_spawns_per_s", "crashloop", "crash_spawns_per_s", "median", "/s", "", None, None),
        (f"stopAllProcesses_{sz['stop_n']}_ms", "stopall", "stopall_ms", "median", "ms",
         "1000" if sz["stop_n"] == 100 else "", "<=", 50),
        (f"schedule_{L}_wakeups_per_10s", "schedule", "schedule_wakeups_10s", "median", "", "", "<=", 0),
        (f"memory_limit_us_per_program_poll_{S}", "memlimit", "memlimit_us_per_program_poll", "median", "us", "",
         None, None),
        ("memory_limit_wakeups_per_poll", "memlimit", "memlimit_wakeups_per_poll", "median", "", "", None, None),
        (f"upgrade_{L}_ms", "upgrade", "upgrade_ms", "median", "ms", "", None, None),
        (f"upgrade_{L}_rss_delta_mb", "upgrade", "upgrade_rss_delta_mb", "median", "MB", "", None, None),
        ("binary_size_mib", "size", "binary_size_mib", "median", "MiB", "", "<=", 1),
    ]


# ---------------------------------------------------------------------------


def machine_info():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, reduced sizes (CI smoke)")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario (repeatable)")
    ap.add_argument("--reps", type=int, help="repetitions per scenario and daemon (default 3, quick 1)")
    ap.add_argument("--minisv", default=os.path.join(ROOT, "target/release/minisv"), help="minisv binary to run")
    ap.add_argument("--supervisord", default=os.path.join(ROOT, "target/bench-venv/bin/supervisord"))
    ap.add_argument("--json", default=os.path.join(ROOT, "target/bench/results.json"))
    args = ap.parse_args()

    sz = SIZES["quick" if args.quick else "full"]
    reps = args.reps or (1 if args.quick else 3)
    scen = args.only or list(SCENARIOS)
    Env.minisv = os.path.abspath(args.minisv)
    Env.supervisord = os.path.abspath(args.supervisord)
    for p in (Env.minisv, Env.supervisord):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench: {p} not found (run bench/run, which builds and installs both)")
    static = not elf_interpreter(Env.minisv)
    # descriptor limit: the same generous soft limit for both daemons
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))

    become_subreaper()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell starting us in the background would have it ignored otherwise
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    info = machine_info()
    samples = {k: {} for k in KINDS}  # kind -> key -> [values]
    t_all = time.monotonic()
    failures = []
    try:
        for rep in range(reps):
            order = KINDS if rep % 2 == 0 else KINDS[::-1]
            for s in scen:
                fn = SCENARIOS[s]
                if fn is None:
                    continue
                for kind in order:
                    t = time.monotonic()
                    try:
                        res = fn(kind, sz)
                    except BenchError as e:
                        failures.append(f"{s}/{kind}/rep{rep}: {e}")
                        print(f"  {s:10s} {kind:12s} rep {rep + 1}/{reps}: FAILED: {e}", flush=True)
                        continue
                    for key, vals in res.items():
                        samples[kind].setdefault(key, []).extend(vals)
                    brief = ", ".join(f"{k}={fmt(statistics.median(v))}" for k, v in res.items() if v)
                    print(f"  {s:10s} {kind:12s} rep {rep + 1}/{reps} ({time.monotonic() - t:5.1f}s): {brief}",
                          flush=True)
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        cleanup_everything()
        sys.exit(130)
    finally:
        cleanup_everything()

    size_bin = os.path.join(ROOT, "target/static/x86_64-unknown-linux-musl/minisv")
    if not os.path.exists(size_bin):
        size_bin = Env.minisv
    if "size" in scen:
        samples["minisv"]["binary_size_mib"] = [os.path.getsize(size_bin) / MB]

    info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    info["duration_s"] = round(time.monotonic() - t_all, 1)
    rows = []
    for name, sc, key, agg, unit, ref, op, target in metric_defs(sz, static):
        if sc not in scen:
            continue
        vals = {}
        for kind in KINDS:
            xs = samples[kind].get(key)
            vals[kind] = AGG[agg](xs) if xs else None
        m, s = vals["minisv"], vals["supervisord"]
        ratio = (m / s) if (m is not None and s) else None
        status = ""
        if target is None:
            op = None
        if op and m is not None:
            ok = m <= target if op == "<=" else m >= target
            status = "PASS" if ok else "MISS"
        rows.append({"metric": name, "unit": unit, "minisv": m, "supervisord": s, "ratio": ratio,
                     "target": f"{op} {fmt(target)}" if op else "", "status": status,
                     "supervisord_reference": ref, "n_minisv": len(samples["minisv"].get(key, [])),
                     "n_supervisord": len(samples["supervisord"].get(key, []))})

    binary_note = (f"minisv binary measured: {os.path.relpath(Env.minisv, ROOT)} ({'static' if static else 'dynamic, glibc'}; "
                   f"RSS targets {'as for static musl' if static else 'doubled for glibc'}); "
                   f"binary size from {os.path.relpath(size_bin, ROOT)}")
    hdr = ("metric", "unit", "supervisord", "minisv", "ratio", "target", "status")
    table = [hdr] + [(r["metric"], r["unit"], fmt(r["supervisord"]), fmt(r["minisv"]),
                      fmt(r["ratio"]), r["target"], r["status"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(hdr))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    print(f"medians over {reps} repetition(s){' (quick sizes)' if args.quick else ''}; ratio = minisv/supervisord")
    print("\n".join(lines))
    print(binary_note)
    print(f"machine: {info['nproc']} cpus, {info['cpu']}, kernel {info['kernel']}, "
          f"load {' '.join(info['loadavg_start'])} -> {' '.join(info['loadavg_end'])}, {info['duration_s']} s")
    if failures:
        print("failures:\n  " + "\n  ".join(failures))

    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    md = os.path.splitext(args.json)[0] + ".md"
    with open(md, "w") as f:
        f.write(f"# Benchmark results, {info['date'][:10]}\n\n")
        f.write(f"Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']}. "
                f"Load average (1/5/15 min) {' '.join(info['loadavg_start'])} at the start, "
                f"{' '.join(info['loadavg_end'])} at the end; the run took {info['duration_s']} s.\n\n")
        f.write(f"`bench/run{' --quick' if args.quick else ''}`: medians over {reps} repetition(s); "
                f"ratio = minisv/supervisord. {binary_note}.\n\n")
        f.write("\n".join(lines) + "\n")
        if failures:
            f.write("\nFailures:\n\n" + "".join(f"- {x}\n" for x in failures))
    with open(args.json, "w") as f:
        json.dump({"machine": info, "reps": reps, "quick": args.quick, "sizes": sz, "binary": binary_note,
                   "results": rows, "samples": samples, "failures": failures}, f, indent=1)
    print(f"wrote {os.path.relpath(args.json)} and {os.path.relpath(md)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

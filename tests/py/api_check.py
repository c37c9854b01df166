"""Calls every XML-RPC method of a running minisv with Python's own xmlrpc.client, with good and
bad arguments, and checks results and faults (reference sections 4.3-4.6).

Usage: python3 api_check.py <unix socket path>
The daemon must run the config written by the Rust test `api::python_xmlrpc_client_calls_every_method`.
Prints one line per check and exits 1 on the first failure.
"""

import http.client
import socket
import sys
import time
import xmlrpc.client


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        return UnixConnection(self.path)


SOCK = sys.argv[1]
server = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(SOCK), allow_none=False)
sv = server.supervisor
checks = 0


def ok(cond, what):
    global checks
    checks += 1
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def fault(call, code, text=None):
    try:
        call()
    except xmlrpc.client.Fault as f:
        ok(f.faultCode == code, "fault %d for %s (got %d %r)" % (code, text or call, f.faultCode, f.faultString))
        if text is not None:
            ok(f.faultString == text, "fault string %r == %r" % (f.faultString, text))
        return f
    ok(False, "expected fault %d, got a result" % code)


def wait_state(name, state, secs=10):
    deadline = time.time() + secs
    while time.time() < deadline:
        if sv.getProcessInfo(name)["statename"] == state:
            return
        time.sleep(0.02)
    ok(False, "%s did not reach %s" % (name, state))


# --- status and info -------------------------------------------------------------------------
ok(sv.getAPIVersion() == "3.0", "getAPIVersion")
ok(sv.getVersion() == "3.0", "getVersion alias")
ok(isinstance(sv.getSupervisorVersion(), str), "getSupervisorVersion")
ok(sv.getIdentification() == "supervisor", "getIdentification default")
ok(sv.getState() == {"statecode": 1, "statename": "RUNNING"}, "getState")
ok(isinstance(sv.getPID(), int) and sv.getPID() > 1, "getPID")
fault(lambda: sv.getPID(1), 2, "INCORRECT_PARAMETERS")

methods = server.system.listMethods()
ok(len([m for m in methods if not m.startswith("minisv.")]) == 41 and methods == sorted(methods), "listMethods: 41 of Supervisor, sorted")
ok("supervisor.startProcess" in methods and "system.multicall" in methods, "listMethods content")
ok(server.system.methodSignature("supervisor.startProcess") == ["boolean", "string", "boolean"], "methodSignature")
ok(server.system.methodSignature("supervisor.getAllProcessInfo") == ["array"], "methodSignature array")
ok("@param string name" in server.system.methodHelp("supervisor.startProcess"), "methodHelp")
fault(lambda: server.system.methodHelp("nope.nope"), 4, "SIGNATURE_UNSUPPORTED")
fault(lambda: server.supervisor.nosuchmethod(), 1, "UNKNOWN_METHOD")
fault(lambda: getattr(server, "supervisor.getPID.extra")(), 1, "UNKNOWN_METHOD")
fault(lambda: server.system.nosuch(), 1, "UNKNOWN_METHOD")

wait_state("sleeper", "RUNNING")
info = sv.getProcessInfo("sleeper")
ok(list(info.keys()) == ["name", "group", "start", "stop", "now", "state", "statename", "spawnerr",
                         "exitstatus", "logfile", "stdout_logfile", "stderr_logfile", "pid", "description"],
   "getProcessInfo keys in order")
ok(info["name"] == "sleeper" and info["group"] == "sleeper" and info["state"] == 20, "getProcessInfo values")
ok(info["description"].startswith("pid %d, uptime 0:00:" % info["pid"]), "RUNNING description")
fault(lambda: sv.getProcessInfo("nosuch"), 10, "BAD_NAME: nosuch")
fault(lambda: sv.getProcessInfo("grp"), 10, "BAD_NAME: grp")
fault(lambda: sv.getProcessInfo("grp:*"), 10, "BAD_NAME: grp:*")
ok(sv.getProcessInfo("grp:ga")["group"] == "grp", "group:process names")

all_info = sv.getAllProcessInfo()
keys = [(p["group"], p["name"]) for p in all_info]
ok(keys == sorted(keys), "getAllProcessInfo sorted by group then name")

configs = sv.getAllConfigInfo()
ok([c["name"] for c in configs] == sorted(c["name"] for c in configs), "getAllConfigInfo sorted by name")
c = [c for c in configs if c["name"] == "sleeper"][0]
ok(c["inuse"] is True and c["autostart"] is True and c["exitcodes"] == [0] and c["stopsignal"] == 15,
   "getAllConfigInfo values")
# supervisord 4.3 says none for an unset (AUTO) serverurl, and names the AUTO log file.
ok(c["directory"] == "none" and c["uid"] == "none" and c["serverurl"] == "none", "getAllConfigInfo none")
ok("/sleeper-stdout---supervisor-" in c["stdout_logfile"] and c["stdout_logfile"].endswith(".log"),
   "getAllConfigInfo names the AUTO log")

# --- start / stop ------------------------------------------------------------------------------
fault(lambda: sv.startProcess("sleeper"), 60, "ALREADY_STARTED: sleeper")
fault(lambda: sv.startProcess("nosuch"), 10, "BAD_NAME: nosuch")
fault(lambda: sv.startProcess("notfound"), 20, "NO_FILE: can't find command 'nonexistent_cmd_xyz'")
fault(lambda: sv.startProcess("notexec"), 21)
ok(sv.stopProcess("sleeper") is True, "stopProcess waits")
ok(sv.getProcessInfo("sleeper")["statename"] == "STOPPED", "stopped after stopProcess")
fault(lambda: sv.stopProcess("sleeper"), 70, "NOT_RUNNING: sleeper")
t = time.time()
ok(sv.startProcess("sleeper") is True, "startProcess waits for RUNNING")
ok(time.time() - t >= 0.9, "startProcess(wait) takes about startsecs")
ok(sv.getProcessInfo("sleeper")["statename"] == "RUNNING", "RUNNING after startProcess")
ok(sv.stopProcess("sleeper", False) is True, "stopProcess no wait")
wait_state("sleeper", "STOPPED")
ok(sv.startProcess("sleeper", False) is True, "startProcess no wait")
ok(sv.getProcessInfo("sleeper")["statename"] == "STARTING", "STARTING right after a start without wait")
fault(lambda: sv.startProcess("quick"), 50, "SPAWN_ERROR: quick")

res = sv.startProcessGroup("grp")
ok(res == [], "startProcessGroup with everything running: empty")
res = sv.stopProcessGroup("grp")
ok(sorted(r["name"] for r in res) == ["ga", "gb"] and all(r["status"] == 80 and r["description"] == "OK" for r in res),
   "stopProcessGroup results")
res = sv.startProcess("grp:*")
ok(sorted(r["name"] for r in res) == ["ga", "gb"], "startProcess group:* is a group start")
fault(lambda: sv.startProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
res = sv.stopAllProcesses()
ok(all(r["status"] == 80 for r in res), "stopAllProcesses")
res = sv.startAllProcesses()
failed = sorted((r["name"], r["status"]) for r in res if r["status"] != 80)
ok(("notfound", 20) in failed and ("notexec", 21) in failed, "startAllProcesses reports sync failures: %r" % failed)

# --- signals ---------------------------------------------------------------------------------------
wait_state("sleeper", "RUNNING")
ok(sv.signalProcess("sleeper", "HUP") is True, "signalProcess by name")
wait_state("sleeper", "EXITED")
ok(sv.getProcessInfo("sleeper")["exitstatus"] == -1, "a signal death has exitstatus -1")
fault(lambda: sv.signalProcess("sleeper", "HUP"), 70, "NOT_RUNNING: sleeper")
sv.startProcess("sleeper")
fault(lambda: sv.signalProcess("sleeper", "NOPE"), 11, "BAD_SIGNAL: NOPE")
ok(sv.signalProcess("sleeper", "0") is True, "signal by number string")
ok(sv.signalProcess("sleeper", 0) is True, "signal by number")
res = sv.signalProcessGroup("grp", "CONT")
ok(len(res) == 2 and all(r["status"] == 80 for r in res), "signalProcessGroup")
res = sv.signalAllProcesses("CONT")
ok(all(r["status"] == 80 for r in res), "signalAllProcesses")

# --- stdin, logs ------------------------------------------------------------------------------
wait_state("cat", "RUNNING")
ok(sv.sendProcessStdin("cat", "hello stdin\n") is True, "sendProcessStdin")
deadline = time.time() + 10
while "hello stdin" not in sv.readProcessStdoutLog("cat", 0, 0) and time.time() < deadline:
    time.sleep(0.02)
ok("hello stdin" in sv.readProcessStdoutLog("cat", 0, 0), "stdin reached the program and its log")
ok(sv.readProcessLog("cat", 0, 0) == sv.readProcessStdoutLog("cat", 0, 0), "readProcessLog alias")
fault(lambda: sv.sendProcessStdin("cat", 5), 2)
fault(lambda: sv.sendProcessStdin("notfound", "x"), 70, "NOT_RUNNING: notfound")
text, offset, overflow = sv.tailProcessStdoutLog("cat", 0, 5)
ok(len(text) == 5 and overflow is True, "tailProcessStdoutLog overflow")
ok(sv.tailProcessLog("cat", 0, 5) == [text, offset, overflow], "tailProcessLog alias")
ok(sv.tailProcessStderrLog("cat", 0, 100)[0] == "", "tailProcessStderrLog")
fault(lambda: sv.readProcessStdoutLog("cat", -1, 5), 3, "BAD_ARGUMENTS")
fault(lambda: sv.readProcessStdoutLog("nosuch", 0, 5), 10)
fault(lambda: sv.readProcessStdoutLog("nolog", 0, 5), 20)
ok(sv.tailProcessStdoutLog("nolog", 0, 5) == ["", 0, False], "tail of no log file")
ok(sv.readProcessStdoutLog("binary", 0, 0) != "", "binary output is readable")
wait_state("binary", "EXITED")
data = sv.readProcessStdoutLog("binary", 0, 0)
ok("\ufffd" in data, "control characters and bad UTF-8 become U+FFFD (valid XML)")
ok(sv.readLog(0, 0).count("spawned:") > 0, "readLog")
ok(sv.readMainLog(-10, 0) == sv.readLog(-10, 0), "readMainLog alias")
ok(sv.clearProcessLogs("cat") is True, "clearProcessLogs")
ok(sv.readProcessStdoutLog("cat", 0, 0) == "", "cleared")
ok(sv.clearProcessLog("cat") is True, "clearProcessLog alias")
fault(lambda: sv.clearProcessLogs("grp"), 10, "BAD_NAME: grp")
res = sv.clearAllProcessLogs()
ok(len(res) == len(sv.getAllProcessInfo()), "clearAllProcessLogs covers every process")
ok(sv.clearLog() is True, "clearLog")
ok("reopening log file" in sv.readLog(0, 0), "clearLog logs a reopen line")

# --- events, config --------------------------------------------------------------------------
ok(sv.sendRemoteCommEvent("type", "data") is True, "sendRemoteCommEvent")
ok(sv.reloadConfig() == [[[], [], []]], "reloadConfig with no change")
fault(lambda: sv.addProcessGroup("grp"), 90, "ALREADY_ADDED: grp")
fault(lambda: sv.addProcessGroup("nosuch"), 10, "BAD_NAME: nosuch")
fault(lambda: sv.removeProcessGroup("grp"), 91, "STILL_RUNNING: grp")
sv.stopProcessGroup("grp")
ok(sv.removeProcessGroup("grp") is True, "removeProcessGroup")
fault(lambda: sv.getProcessInfo("grp:ga"), 10)
ok(sv.reloadConfig() == [[["grp"], [], []]], "reloadConfig sees the removed group as added")
ok(sv.addProcessGroup("grp") is True, "addProcessGroup")
wait_state("grp:ga", "RUNNING")

# --- multicall -------------------------------------------------------------------------------
res = server.system.multicall([
    {"methodName": "supervisor.getPID", "params": []},
    {"methodName": "supervisor.nope", "params": []},
    {"methodName": "supervisor.stopProcess", "params": ["sleeper"]},
    {"methodName": "supervisor.getProcessInfo", "params": ["sleeper"]},
    {"params": []},
    {"methodName": "system.multicall", "params": [[]]},
])
ok(isinstance(res[0], int), "multicall results are not wrapped (Q5)")
ok(res[1] == {"faultCode": 1, "faultString": "UNKNOWN_METHOD"}, "multicall fault struct")
ok(res[2] is True and res[3]["statename"] == "STOPPED", "multicall waits for a deferred call before the next")
ok(res[4]["faultString"] == "INCORRECT_PARAMETERS: No methodName", "multicall without methodName")
ok(res[5]["faultString"] == "INCORRECT_PARAMETERS: Recursive system.multicall forbidden", "recursive multicall")

# --- bad requests do not hurt the server -------------------------------------------------------
for body in [b"not xml", b"<?xml version='1.0'?><methodCall><methodName>x", b"\xff\xfe" * 1000]:
    c = UnixConnection(SOCK)
    c.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
    r = c.getresponse()
    r.read()
    ok(r.status == 400, "bad body answered with %d" % r.status)
c = UnixConnection(SOCK)
c.request("GET", "/RPC2")
r = c.getresponse()
r.read()
ok(r.status == 400, "GET /RPC2 is a 400")
ok(sv.getState()["statename"] == "RUNNING", "still serving after bad requests")

# --- shutdown ----------------------------------------------------------------------------------
ok(sv.shutdown() is True, "shutdown")
try:
    sv.getState()
    ok(False, "expected SHUTDOWN_STATE or a closed server")
except xmlrpc.client.Fault as f:
    ok(f.faultCode == 6, "SHUTDOWN_STATE while shutting down")
except (OSError, xmlrpc.client.ProtocolError):
    ok(True, "server gone after shutdown")
print("%d checks passed" % checks)

"""Runs `minisv -n -c CONF` on a pseudo-terminal, waits for LOG to show it running, types Ctrl-C,
and exits with minisv's exit status. Usage: python3 ctrl_c.py MINISV CONF LOG"""

import os
import pty
import sys
import time

minisv, conf, log = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.execv(minisv, [minisv, "-n", "-c", conf])

deadline = time.time() + 20
while time.time() < deadline:
    try:
        if open(log).read().count("success:") >= 1:
            break
    except OSError:
        pass
    time.sleep(0.02)
os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground process group
deadline = time.time() + 20
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    try:
        os.read(fd, 65536)  # keep the terminal drained
    except OSError:
        pass
    time.sleep(0.02)
os.kill(pid, 9)
sys.exit(99)

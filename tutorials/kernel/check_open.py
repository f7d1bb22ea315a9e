"""Checks the README's command for opening the notebooks, `bash scripts/notebooks`, end to end.

    /usr/bin/python3 tutorials/kernel/check_open.py

Starts it (without a browser, on a free port, with the kernel installed into a temporary Jupyter
data folder and the build tree it configures in a temporary folder, so the suite's own build/ is
left alone), then through the server's own REST API: every notebook of tutorials/ is listed, the
unfold-cpp kernel is offered, a kernel started from it runs a C++ cell that includes Unfold and
prints a value computed on a tape. Exit status 0 when all of that worked.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from jupyter_client import BlockingKernelClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CELL = """#include <unfold/framework/tape.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sum.hpp>
#include <iostream>
unfold::tape t;
unfold::var x = t.variable(unfold::tensor{3.0, 4.0});
unfold::var loss = unfold::sum(x * x);
int unfold_open_check = [] { t.backward(loss); std::cout << "grad " << x.grad()(1) << "\\n"; return 0; }();
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, token, path, post=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}?token={token}",
                                     data=None if post is None else json.dumps(post).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main():
    data_dir = tempfile.mkdtemp(prefix="unfold-jupyter-")
    port, token = free_port(), "unfold-open-check"
    env = {**os.environ, "JUPYTER_DATA_DIR": data_dir,
           "JUPYTER_RUNTIME_DIR": os.path.join(data_dir, "runtime"),
           "UNFOLD_BUILD": os.path.join(data_dir, "build")}
    server = subprocess.Popen(
        ["bash", os.path.join(ROOT, "scripts", "notebooks"), "--no-browser", f"--port={port}",
         "--port-retries=0", f"--NotebookApp.token={token}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            if server.poll() is not None:
                sys.exit(f"scripts/notebooks exited with status {server.returncode}:\n"
                         + server.stdout.read())
            try:
                listed = api(port, token, "contents")
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("the notebook server did not answer within 120 s")
                time.sleep(0.5)
        names = sorted(item["name"] for item in listed["content"])
        wanted = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "tutorials",
                                                                             "*.ipynb")))
        missing = [n for n in wanted if n not in names]
        if missing:
            sys.exit(f"the server does not list {missing} (it lists {names})")
        specs = api(port, token, "kernelspecs")["kernelspecs"]
        if "unfold-cpp" not in specs:
            sys.exit(f"the unfold-cpp kernel is not offered (offered: {sorted(specs)})")
        kernel = api(port, token, "kernels", post={"name": "unfold-cpp"})
        connection = os.path.join(data_dir, "runtime", f"kernel-{kernel['id']}.json")
        client = BlockingKernelClient(connection_file=connection)
        client.load_connection_file()
        client.start_channels(hb=False)  # the heartbeat reads "dead" until its first beat
        client.wait_for_ready(timeout=60)
        printed = []
        reply = client.execute_interactive(
            CELL, timeout=120,
            output_hook=lambda m: printed.append(m["content"].get("text", ""))
            if m["msg_type"] == "stream" else None)
        client.stop_channels()
        text = "".join(printed)
        if reply["content"]["status"] != "ok" or text.strip() != "grad 8":
            sys.exit(f"the kernel's cell ended with status {reply['content']['status']} and "
                     f"printed {text!r}, expected 'grad 8'")
        print(f"scripts/notebooks: {len(wanted)} notebooks listed, the unfold-cpp kernel offered "
              f"and running C++ ({text.strip()})")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

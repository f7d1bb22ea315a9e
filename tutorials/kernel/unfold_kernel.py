"""A Jupyter kernel for C++17 with Unfold: an ipykernel wrapper around clang-repl-16.

Each cell is rewritten by cells.transform (declarations at namespace scope, statements run inside
a lambda), written to a file and sent to clang-repl as one `#include "<file>"` line, followed by a
line that prints a "done" marker on stdout and stderr. Everything the interpreter prints until
both markers arrive is the cell's output; marker lines from tutorials/notebook.hpp become images
(`unfold_show`) or cell errors (exceptions). Compile errors are cell errors too; the interpreter
carries on after them. If the interpreter dies (a crash, or an exception thrown while
initialising a variable), the cell fails with the reason and the next cell starts a fresh one.

Facts this relies on (measured; tutorials/README.md lists them):
clang-repl-16 needs -fno-spell-checking for xtensor; a thread_local variable crashes it when used
from a later input, so Unfold is built with UNFOLD_NO_THREAD_LOCAL (its per-thread state becomes
static; a notebook runs one thread). Cells are compiled with -O1 -fno-strict-aliasing: at -O1
and above clang emits type-based alias analysis (TBAA) metadata, and clang-repl-16's incremental code generator throws std::bad_alloc while
building it (CodeGenTBAA::getVTablePtrAccessInfo, e.g. for `std::cout << "x"`), which ended the
interpreter; -fno-strict-aliasing turns TBAA off, and the optimised code runs training loops
~50x faster than -O0 with the same numbers (UNFOLD_KERNEL_FLAGS=-O0 goes back to unoptimised).
"""

import base64
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cells  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MARK = "\x01unfold:"


def interpreter_command():
    """clang-repl-16 and its flags (also printed by `unfold_kernel.py --command`)."""
    flags = [
        "-std=c++17", "-fno-spell-checking", "-DUNFOLD_NO_THREAD_LOCAL",
        "-Wno-duplicate-decl-specifier", "-Wno-keyword-macro", "-O1", "-fno-strict-aliasing",
        "-I" + ROOT,
    ]
    generated = os.environ.get("UNFOLD_INCLUDE_DIR", os.path.join(ROOT, "build", "include"))
    if os.path.isdir(generated):
        flags.append("-I" + generated)
    flags += os.environ.get("UNFOLD_KERNEL_FLAGS", "").split()
    return [os.environ.get("UNFOLD_CLANG_REPL", "clang-repl-16")] + ["--Xcc=" + f for f in flags]


class Interpreter:
    """One clang-repl-16 process and the lines it prints, tagged with their stream."""

    def __init__(self, workdir):
        env = dict(os.environ)
        env["LD_PRELOAD"] = " ".join(
            x for x in ("libopenblas.so.0", "libfmt.so.9", env.get("LD_PRELOAD", "")) if x)
        self.process = subprocess.Popen(
            interpreter_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=os.getcwd())
        self.lines = queue.Queue()
        self.sequence = 0
        for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()
        self.workdir = workdir

    def _read(self, name, stream):
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            # A marker may follow output that had no newline yet.
            k = text.find(MARK)
            if k > 0:
                self.lines.put((name, text[:k]))
                text = text[k:]
            self.lines.put((name, text))
        self.lines.put((name, None))

    def alive(self):
        return self.process.poll() is None

    def send(self, code, on_line):
        """Runs `code` (C++ at namespace scope); calls on_line(stream, text) for every line it
        prints. Returns False if the interpreter died."""
        self.sequence += 1
        seq = self.sequence
        path = os.path.join(self.workdir, f"input_{seq}.cpp")
        with open(path, "w") as f:
            f.write(code)
        done = (f'int unfold_done_{seq} = (unfold::notebook::flush(), '
                f'std::printf("{MARK}done {seq}\\n"), std::fprintf(stderr, "{MARK}done {seq}\\n"), '
                f'unfold::notebook::flush(), 0);')
        try:
            self.process.stdin.write(f'#include "{path}"\n{done}\n'.encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            return False
        waiting = {"stdout", "stderr"}
        jit_failed = False
        while waiting:
            try:
                # After a JIT link failure the done line may never run: wait a little, not forever.
                name, text = self.lines.get(timeout=5 if jit_failed else None)
            except queue.Empty:
                on_line("stderr", "error: the JIT could not link this cell (see above)\n")
                return True
            if text is not None and ("JIT session error" in text or "Failed to materialize" in text):
                jit_failed = True
            if text is None:
                waiting.discard(name)
                if not waiting or not self.alive():
                    self._drain(on_line)
                    return False
                continue
            if text.startswith(f"{MARK}done {seq}"):
                waiting.discard(name)
                continue
            on_line(name, text)
        return True

    def _drain(self, on_line):
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        while not self.lines.empty():
            name, text = self.lines.get()
            if text is not None:
                on_line(name, text)

    def stop(self):
        if self.alive():
            self.process.kill()
            self.process.wait()


# Lines of clang's diagnostics that only say where the include came from.
_NOISE = re.compile(r"^(In file included from (<<< inputs >>>|input_line_\d+|/.*/input_\d+\.cpp)"
                    r"|error: Parsing failed\.$)")


class UnfoldKernel(Kernel):
    implementation = "unfold-cpp"
    implementation_version = "1.0"
    language = "c++"
    language_version = "17"
    language_info = {
        "name": "c++",
        "version": "17",
        "mimetype": "text/x-c++src",
        "file_extension": ".cpp",
        "codemirror_mode": "text/x-c++src",
        "pygments_lexer": "cpp",
    }
    banner = "C++17 with Unfold (clang-repl-16)"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.workdir = tempfile.mkdtemp(prefix="unfold-kernel-")
        self.interpreter = None

    def _start(self):
        self.interpreter = Interpreter(self.workdir)
        prelude = (f'#include "{ROOT}/tutorials/notebook.hpp"\n'
                   "int unfold_notebook_installed = unfold::notebook::install();\n")
        messages = []
        if not self.interpreter.send(prelude, lambda name, text: messages.append(text)):
            raise RuntimeError("clang-repl-16 did not start:\n" + "".join(messages))

    def _stream(self, name, text):
        self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _display(self, path):
        path = path.strip()
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            self._stream("stderr", f"unfold_show: cannot read {path}: {e}\n")
            return False
        if path.endswith(".svg"):
            bundle = {"image/svg+xml": data.decode("utf-8"), "text/plain": f"<image {path}>"}
        else:
            bundle = {"image/png": base64.b64encode(data).decode("ascii"),
                      "text/plain": f"<image {path}>"}
        self.send_response(self.iopub_socket, "display_data", {"data": bundle, "metadata": {}})
        return True

    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False, *, cell_id=None):
        if self.interpreter is None or not self.interpreter.alive():
            try:
                self._start()
            except RuntimeError as e:
                return self._error("InterpreterError", str(e), [str(e)])
        n = self.execution_count
        errors = []      # (kind, message)
        diagnostics = []

        def on_line(name, text):
            if text.startswith(MARK):
                kind, _, rest = text[len(MARK):].rstrip("\n").partition(" ")
                if kind == "show":
                    if not self._display(rest):
                        errors.append(("DisplayError", f"cannot show {rest}"))
                elif kind == "error":
                    errors.append(("Exception", rest))
                return
            if name == "stderr":
                if _NOISE.match(text):
                    return
                if re.search(r"\berror:", text):
                    errors.append(("CompileError", text.strip()))
                diagnostics.append(text)
            if not silent:
                self._stream(name, text)

        source = cells.transform(code, n)
        ok = self.interpreter.send(source, on_line)
        if not ok:
            status = self.interpreter.process.poll()
            why = [m for k, m in errors if k == "Exception"]
            message = (f"the interpreter died (exit status {status})"
                       + (f": {why[-1]}" if why else "")
                       + "; the next cell starts a fresh interpreter (earlier cells are lost)")
            return self._error("InterpreterDied", message, diagnostics + [message])
        if errors:
            kind, message = errors[0]
            return self._error(kind, message, [m for _, m in errors])
        return {"status": "ok", "execution_count": n, "payload": [], "user_expressions": {}}

    def _error(self, ename, evalue, traceback):
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        self.send_response(self.iopub_socket, "error", content)
        return dict(content, status="error", execution_count=self.execution_count)

    def do_shutdown(self, restart):
        if self.interpreter is not None:
            self.interpreter.stop()
            self.interpreter = None
        return {"status": "ok", "restart": restart}


if __name__ == "__main__":
    if sys.argv[1:] == ["--command"]:
        print(" ".join(interpreter_command()))
    else:
        IPKernelApp.launch_instance(kernel_class=UnfoldKernel)

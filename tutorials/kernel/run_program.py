"""Runs a notebook without Jupyter: compiles it as one C++ program with g++ and runs it.

    /usr/bin/python3 tutorials/kernel/run_program.py tutorials/01-unrolled-graph.ipynb [--check]

Every code cell goes through the kernel's own rewrite (cells.transform): declarations at
namespace scope, statements in lambdas run while the program initialises, in cell order, with a
marker printed before each cell. The program's output is printed cell by cell. With --check, each
cell's stdout is compared with the output saved in the notebook: text must match and numbers must
agree to a relative tolerance (--rtol, default 1e-3; the kernel runs unoptimised clang code, the
program optimised g++ code). Cells tagged "output-varies" are not compared. Every plot
(tutorials/plot.hpp) lists the strings it asked for in <plot>.svg.texts; --check also finds each
of them verbatim in the text of the SVG the program drew and of the SVG saved in the notebook, in
every cell. Exit status 0 when the program succeeded and (with --check) every output matched.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cells  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MARK = "\x01unfold:"
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)\b")


def program_source(notebook):
    parts = [f'#include "{ROOT}/tutorials/notebook.hpp"',
             "int unfold_notebook_installed = unfold::notebook::install();"]
    n = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        n += 1
        parts.append(f"int unfold_cell_{n} = unfold::notebook::cell({n});")
        parts.append(cells.transform("".join(cell["source"]), n))
    parts.append("int main()\n{\n    unfold::notebook::flush();\n"
                 "    return unfold::notebook::failures() ? 1 : 0;\n}\n")
    return "\n".join(parts)


def split_by_cell(text):
    """{cell number: text printed by that cell}."""
    out = {}
    current = 0
    for line in text.splitlines(keepends=True):
        k = line.find(MARK + "cell ")
        if k >= 0:
            out[current] = out.get(current, "") + line[:k]
            current = int(line[k + len(MARK) + 5:].strip())
            continue
        out[current] = out.get(current, "") + line
    return out


def same_output(expected, actual, rtol):
    """None if the texts agree (numbers within rtol), else a description of the first difference."""
    e_text, a_text = NUMBER.split(expected), NUMBER.split(actual)
    e_nums, a_nums = NUMBER.findall(expected), NUMBER.findall(actual)
    if e_text != a_text or len(e_nums) != len(a_nums):
        for k, (e, a) in enumerate(zip(expected.splitlines(), actual.splitlines())):
            if NUMBER.split(e) != NUMBER.split(a):
                return f"line {k + 1} differs:\n  saved:    {e}\n  program:  {a}"
        return (f"the outputs differ in length ({len(expected.splitlines())} saved lines, "
                f"{len(actual.splitlines())} printed)")
    for e, a in zip(e_nums, a_nums):
        x, y = float(e), float(a)
        if x != x and y != y:
            continue
        if abs(x - y) > 1e-6 + rtol * max(abs(x), abs(y)):
            return f"number {e} saved, {a} printed"
    return None


def svg_texts(svg):
    """The text of every <text> element of an SVG document, its tspans joined."""
    root = ElementTree.fromstring(svg)
    return {"".join(e.itertext()) for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "text"}


def missing_texts(image, svg):
    """The strings plot() asked for in `image` (its .texts file) that `svg` does not show."""
    try:
        with open(image + ".texts", encoding="utf-8") as f:
            wanted = [line.rstrip("\n") for line in f]
    except OSError:
        return []
    shown = svg_texts(svg)
    return [w for w in wanted if w not in shown]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("--check", action="store_true",
                        help="compare every cell's output with the one saved in the notebook")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    parser.add_argument("--cxxflags", default="-O1 -g0",
                        help="compiler flags (default: -O1 -g0)")
    parser.add_argument("--workdir", help="where the program is built (default: a temp dir)")
    parser.add_argument("--quiet", action="store_true", help="print only mismatches")
    args = parser.parse_args()

    with open(args.notebook) as f:
        notebook = json.load(f)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="unfold-notebook-"))
    os.makedirs(workdir, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.notebook))[0]
    source = os.path.join(workdir, name + ".cpp")
    binary = os.path.join(workdir, name)
    with open(source, "w") as f:
        f.write(program_source(notebook))
    generated = os.environ.get("UNFOLD_INCLUDE_DIR", os.path.join(ROOT, "build", "include"))
    compile_cmd = [args.cxx, "-std=c++17", *args.cxxflags.split(), "-I" + ROOT,
                   *(["-I" + generated] if os.path.isdir(generated) else []),
                   source, "-o", binary, "-lopenblas", "-lfmt"]
    start = time.time()
    built = subprocess.run(compile_cmd, capture_output=True, text=True)
    compile_time = time.time() - start
    if built.returncode != 0:
        sys.stderr.write(built.stderr)
        sys.stderr.write(f"{name}: compilation failed ({' '.join(compile_cmd)})\n")
        return 1
    plot_dir = os.path.join(workdir, name + "-plots")
    os.makedirs(plot_dir, exist_ok=True)
    start = time.time()
    ran = subprocess.run([binary], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(args.notebook)),
                         env={**os.environ, "UNFOLD_PLOT_DIR": plot_dir})
    run_time = time.time() - start
    printed = split_by_cell(ran.stdout)
    errors = split_by_cell(ran.stderr)
    failures = []
    n = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        n += 1
        text = printed.get(n, "")
        shown = [l for l in text.splitlines() if l.startswith(MARK + "show ")]
        text = "".join(l for l in text.splitlines(keepends=True) if not l.startswith(MARK))
        err = errors.get(n, "")
        if not args.quiet:
            sys.stdout.write(f"--- cell {n}\n{text}")
            for line in shown:
                sys.stdout.write(f"[image {line[len(MARK) + 5:]}]\n")
        if MARK + "error" in err:
            failures.append(f"cell {n}: {err.replace(MARK + 'error ', '').strip()}")
        if not args.check:
            continue
        outputs = cell.get("outputs", [])
        images = [o for o in outputs if o["output_type"] == "display_data"]
        if len(images) != len(shown):
            failures.append(f"cell {n}: {len(shown)} images shown, {len(images)} saved")
        for line, saved_image in zip(shown, images):
            image = line[len(MARK) + 5:].strip()
            if not image.endswith(".svg"):
                continue
            with open(image, encoding="utf-8") as f:
                drawn = f.read()
            for what, svg in (("drawn", drawn),
                              ("saved", "".join(saved_image["data"].get("image/svg+xml", "")))):
                if svg and missing_texts(image, svg):
                    failures.append(f"cell {n}: the {what} plot {os.path.basename(image)} does "
                                    f"not show {missing_texts(image, svg)} as written")
        if "output-varies" in cell.get("metadata", {}).get("tags", []):
            continue
        saved = "".join("".join(o["text"]) for o in outputs
                        if o["output_type"] == "stream" and o["name"] == "stdout")
        difference = same_output(saved, text, args.rtol)
        if difference:
            failures.append(f"cell {n}: {difference}")
    if ran.returncode != 0 and not failures:
        failures.append(f"the program exited with status {ran.returncode}:\n{ran.stderr[-2000:]}")
    for f in failures:
        sys.stderr.write(f"{name}: {f}\n")
    print(f"{name}: compiled in {compile_time:.1f} s, ran in {run_time:.1f} s, "
          f"{n} cells, {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

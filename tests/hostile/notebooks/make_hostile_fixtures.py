"""Write the fixture notebooks of the hostile suite (`tests/hostile/notebooks/`).

Run `python tests/hostile/notebooks/make_hostile_fixtures.py` after editing a
cell here; the notebooks are committed with outputs cleared.

- `content/`: notebooks that run fine but glue and print hostile things.
- `broken/`: notebooks that cannot run, or run badly.

Notebooks that start processes take a `record` parameter: a file where they
write the pids of what they started, so the tests can check the process table.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

HERE = Path(__file__).parent

# A cell shared by the content notebooks: how to glue a raw display (any mime
# bundle, any name) exactly the way scrapbook does.
RAW_DISPLAY = """\
import base64
import struct
import zlib

import nbci
import scrapbook as sb
from IPython.display import HTML, display


def raw_display(name, bundle):
    marker = {"scrapbook": {"name": name, "data": False, "display": True}}
    display(bundle, raw=True, metadata=marker)


def tiny_png(seed):
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    pixels = b"".join(b"\\x00" + bytes([seed % 256, 7, 9]) * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")
    return base64.b64encode(b"\\x89PNG\\r\\n\\x1a\\n" + body).decode()"""

NAMES_CELLS = [
    RAW_DISPLAY,
    """\
HOSTILE_NAMES = [
    "../../../escaped",
    "/etc/passwd",
    "a/b/../../c",
    "nul\\x00byte",
    "n" * 300,
    "ünïcödé 数据 🎉",
    "rtl \\u202egnp.exe",
    "zero\\u200bwidth",
    "<script>alert('name')</script>",
    "| pipe | @admin #1 `tick` [link](javascript:alert(1))",
    "line\\nbreak",
    "",
    " ",
    ".",
    "..",
]
for i, name in enumerate(HOSTILE_NAMES):
    nbci.glue(name, i + 0.5)  # a metric
    nbci.glue("text " + name, "value of " + name)  # a text scrap
    raw_display("figure " + name, {"image/png": tiny_png(i)})  # a figure
raw_display("../../../../figure-escape", {"image/png": tiny_png(99)})
raw_display("/tmp/absolute-figure", {"image/png": tiny_png(98)})""",
]

VALUES_CELLS = [
    RAW_DISPLAY,
    """\
nbci.glue("huge_text", "x" * 10_000_000)  # 10 MB
nbci.glue("nan", float("nan"))
nbci.glue("inf", float("inf"))
nbci.glue("minus_inf", float("-inf"))
sb.glue("sb_nan", float("nan"))  # scrapbook itself: the kernel stores null
nbci.glue("nonfinite_dict", {"a": float("nan"), "b": float("inf"), "c": 1.0})
nbci.glue("huge_int", 10**400)
deep = 1.0
for _ in range(50):
    deep = {"k": deep}
nbci.glue("deep_numbers", deep)  # 50 levels of dicts of numbers
deep_list = "leaf"
for _ in range(50):
    deep_list = [deep_list]
nbci.glue("deep_list", deep_list)
nbci.glue("many", {f"m{i}": i / 7 for i in range(10_000)})  # 10,000 metrics
nbci.glue(
    "fake_table",
    {"nbci.table": 1, "columns": ["<b>c</b>"] * 500, "rows": [[1] * 500] * 3000, "total_rows": -5},
)""",
]

DISPLAY_CELLS = [
    RAW_DISPLAY,
    """\
EVIL = (
    "<script>window.__pwned = 1; alert('script')</script>"
    '<img src="x" onerror="window.__pwned = 2">'
    '<a href="javascript:window.__pwned = 3">click me</a>'
    '<iframe src="https://evil.example/"></iframe>'
    '<form action="https://evil.example/"><input name="q"></form>'
    "<style>body { display: none }</style>"
    '<svg onload="window.__pwned = 4"></svg>'
    '<p style="background: url(https://evil.example/track.png)">styled</p>'
)
sb.glue("evil_html", HTML(EVIL), encoder="display")
nbci.glue("evil_html_nbci", HTML(EVIL))
raw_display("evil_html_raw", {"text/html": EVIL, "text/plain": "evil"})
display(HTML(EVIL))  # not glued: lands in the executed notebook's HTML only
raw_display("not_base64_png", {"image/png": "!!! this is not base64 !!!"})
raw_display("gif_as_png", {"image/png": base64.b64encode(b"GIF89a" + bytes(64)).decode()})
signature_only = base64.b64encode(b"\\x89PNG\\r\\n\\x1a\\n").decode()
raw_display("signature_only_png", {"image/png": signature_only})
raw_display("empty_png", {"image/png": ""})
raw_display("list_png", {"image/png": ["not", "a", "string"]})
raw_display(
    "evil_svg",
    {"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned = 5">'
     "<script>window.__pwned = 6</script></svg>"},
)""",
]

STDOUT_CELLS = [
    """\
import sys

chunk = "y" * (10 * 1024 * 1024)
for _ in range(10):  # 100 MB in big chunks
    sys.stdout.write(chunk)
    sys.stdout.flush()
print()""",
    """\
import nbci

nbci.glue("after_stdout", 1)""",
]

# -- broken ------------------------------------------------------------------

SYS_EXIT_CELLS = ["import sys\n\nsys.exit(3)", "never_reached = True"]

POPEN_CELLS = [
    """\
import json
import os
import subprocess

child = subprocess.Popen(["sleep", "300"], start_new_session=False)
grandchild = subprocess.Popen(["sh", "-c", "sleep 301 & echo $!; wait"], stdout=subprocess.PIPE)
grandchild_pid = int(grandchild.stdout.readline())
children = [child.pid, grandchild.pid, grandchild_pid]
with open(record, "w") as f:
    json.dump({"kernel": os.getpid(), "children": children}, f)""",
]

FORK_CELLS = [
    """\
import json
import os
import time

pid = os.fork()
if pid == 0:  # the child: a copy of the kernel that outlives it
    time.sleep(300)
    os._exit(0)
with open(record, "w") as f:
    json.dump({"kernel": os.getpid(), "children": [pid]}, f)""",
]

ESCAPE_CELLS = [
    """\
import json
import os
import subprocess

child = subprocess.Popen(["sleep", "302"], start_new_session=True)  # a session of its own
with open(record, "w") as f:
    json.dump({"kernel": os.getpid(), "children": [child.pid]}, f)""",
]

NEVER_RETURNS_CELLS = [
    """\
import json
import os
import signal
import time

with open(record, "w") as f:
    json.dump({"kernel": os.getpid(), "children": []}, f)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to the interrupt too
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.05)""",
]

NO_PARAMETERS_CELLS = ["alpha = 0.5  # not tagged 'parameters'", "result = alpha * 2"]


def notebook(cells: list[str], *, parameters: str | None = None, kernel: str = "python3") -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    text: str = nbformat.writes(nb)
    return text + "\n"


def record(stem: str) -> str:
    """The parameters cell of a notebook that records the pids it started."""
    return f"record = '{stem}.record.json'"


def nbformat3() -> str:
    """A notebook in the old nbformat 3 layout (worksheets), as IPython 2 wrote it."""
    cell = {"cell_type": "code", "input": "x = 41 + 1", "language": "python", "outputs": []}
    nb = {
        "metadata": {"name": "old"},
        "nbformat": 3,
        "nbformat_minor": 0,
        "worksheets": [{"cells": [cell], "metadata": {}}],
    }
    return json.dumps(nb, indent=1) + "\n"


FIXTURES: dict[str, str] = {
    "content/names.ipynb": notebook(NAMES_CELLS),
    "content/values.ipynb": notebook(VALUES_CELLS),
    "content/display.ipynb": notebook(DISPLAY_CELLS),
    "content/stdout.ipynb": notebook(STDOUT_CELLS),
    "broken/invalid_json.ipynb": '{"cells": [{"cell_type": "code", "source": "x = 1"\n',
    "broken/nbformat3.ipynb": nbformat3(),
    "broken/zero_bytes.ipynb": "",
    "broken/no_cells.ipynb": notebook([]),
    "broken/no_parameters_cell.ipynb": notebook(NO_PARAMETERS_CELLS),
    "broken/missing_kernel.ipynb": notebook(["x = 1"], kernel="no-such-kernel-nbci"),
    "broken/sys_exit.ipynb": notebook(SYS_EXIT_CELLS),
    "broken/popen_child.ipynb": notebook(POPEN_CELLS, parameters=record("popen")),
    "broken/fork_child.ipynb": notebook(FORK_CELLS, parameters=record("fork")),
    "broken/never_returns.ipynb": notebook(NEVER_RETURNS_CELLS, parameters=record("never")),
    "escape/new_session_child.ipynb": notebook(ESCAPE_CELLS, parameters=record("escape")),
}


def main() -> None:
    for relative, text in FIXTURES.items():
        path = HERE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE)}")


if __name__ == "__main__":
    main()

"""The start of the scripts that drive a forked kernel through jupyter_client as a worker
would, each in an interpreter of its own (`fresh_python.run_script`)."""

_START = '''
import json, os, subprocess, sys, tempfile
from pathlib import Path

from jupyter_client.manager import KernelManager

from nbci.execute.fork_client import Template
from nbci.execute.process_tree import become_subreaper
from nbci.execute.provisioner import ForkingKernelSpecManager, register


def forking(modules=()):
    """The run's base template, a kernel manager that forks its kernels from it (or from the
    set template of `modules`), and a scratch folder; this process is a child subreaper, as
    a worker is."""
    assert become_subreaper()
    register()
    folder = Path(tempfile.mkdtemp())
    template = Template(folder, dict(os.environ), folder / "project")
    template.wait_ready(60)
    source = template
    if modules:
        source = template.fork_set(list(modules))
        source.wait_ready(120)
    specs = ForkingKernelSpecManager(str(source.socket_path))
    return template, KernelManager(kernel_name="python3", kernel_spec_manager=specs), folder
'''


def driver(script: str) -> str:
    """`script` (which defines `main`), after the imports and `forking()` every such script
    starts with, then a call of its `main`."""
    return _START + script + '\n\nif __name__ == "__main__":\n    main()\n'

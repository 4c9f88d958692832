"""Names nbci uses that papermill, jupyter_client and PyGithub do not document as their API.

No public API does the same (papermill's engine loop with a kernel started ahead,
jupyter_client's provisioner registry without an installed entry point, PyGithub's
GraphQL request), so each is pinned here: an upgrade that moves one fails this
file, naming it, instead of a notebook run or a publish in someone's CI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_papermill_execution_pieces_nbci_calls() -> None:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NotebookExecutionManager
    from papermill.execute import (
        prepare_notebook_metadata,
        raise_for_execution_errors,
        remove_error_markers,
    )
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from papermill.utils import find_first_tagged_cell_index

    # nbci.execute.engine._run_cells
    assert parameters(PapermillNotebookClient.__init__)[:3] == ["self", "nb_man", "km"]
    traits = set(PapermillNotebookClient.class_trait_names())
    wanted = {"kernel_name", "timeout_func", "startup_timeout", "log", "on_notebook_start"}
    wanted |= {"on_cell_execute", "stdout_file", "stderr_file"}
    assert wanted <= traits, wanted - traits
    assert {"output_path", "progress_bar"} <= set(parameters(NotebookExecutionManager.__init__))
    # nbci.execute.engine._manager_class: fewer saves from cell_start and cell_complete
    for method in ("notebook_start", "cleanup_pbar", "notebook_complete", "save"):
        assert callable(getattr(NotebookExecutionManager, method)), method
    for method in ("cell_start", "cell_complete"):
        assert "self.save()" in inspect.getsource(getattr(NotebookExecutionManager, method))
    assert parameters(raise_for_execution_errors) == ["nb", "output_path"]
    # nbci.execute.job
    assert parameters(load_notebook_node) == ["notebook_path"]
    assert parameters(prepare_notebook_metadata)[:3] == ["nb", "input_path", "output_path"]
    assert parameters(remove_error_markers) == ["nb"]
    assert parameters(find_first_tagged_cell_index) == ["nb", "tag"]
    assert {"kernel_name", "language"} <= set(parameters(parameterize_notebook))


def test_jupyter_clients_provisioner_registry() -> None:
    """nbci.execute.provisioner.register adds `nbci-fork` to it when nbci is not installed."""
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    assert isinstance(KernelProvisionerFactory.__dict__.get("provisioners"), dict)


@pytest.mark.parametrize("name", ["requestJsonAndCheck", "graphql_url"])
def test_pygithubs_requester_for_graphql(name: str) -> None:
    """nbci.publish.github.graphql sends `createCommitOnBranch` through the repository's
    requester (`repo.requester`), keeping PyGithub's authentication and retries."""
    from github.Repository import Repository
    from github.Requester import Requester

    assert isinstance(inspect.getattr_static(Repository, "requester"), property)
    assert hasattr(Requester, name)
    if name == "requestJsonAndCheck":
        assert parameters(Requester.requestJsonAndCheck)[:3] == ["self", "verb", "url"]
        assert "input" in parameters(Requester.requestJsonAndCheck)


def test_nbconverts_html_export_pieces_nbci_replaces() -> None:
    """nbci.render.notebook_html runs HTMLExporter's steps itself, without its BeautifulSoup
    pass: the two filters it registers, TemplateExporter's render, then what the pass adds
    (images' alternative text, focusable areas: `_accessible`); and nbconvert's template
    sends the notebook's HTML through `clean_html` (nh3 there) when `sanitize_html` is on."""
    import re

    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.utils.base import NbConvertBase

    source = inspect.getsource(HTMLExporter.from_notebook_node)
    assert set(re.findall(r'register_filter\("(\w+)"', source)) == {
        "highlight_code",
        "filter_data_type",
    }
    edits = re.findall(r"soup\.select\(\"([^\"]+)\"\)", source)
    assert edits == [
        "img:not([alt])",
        ".jp-Notebook div.jp-Cell-inputWrapper",
        ".jp-Notebook div.jp-OutputArea-output",
    ]
    assert "No description has been provided for this image" in source
    assert parameters(TemplateExporter.from_notebook_node)[:3] == ["self", "nb", "resources"]
    assert {"pygments_lexer", "extra_formatter_options"} <= set(dir(Highlight2HTML()))
    assert "display_data_priority" in NbConvertBase.class_trait_names()
    assert HTMLExporter().environment.filters.get("clean_html") is not None


def test_ipykernels_shutdown_pieces_a_forked_kernel_waits_for() -> None:
    """nbci.execute.fork_server._let_the_shutdown_request_finish: the app's control thread,
    and the kernel's `_shutdown_message`, set while it answers a shutdown request."""
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.kernelbase import Kernel

    assert {"control_thread", "kernel"} <= set(IPKernelApp.class_trait_names())
    assert "self._shutdown_message = " in inspect.getsource(Kernel.shutdown_request)


def test_ipykernels_listing_of_kernel_modules() -> None:
    """nbci.execute.fork_server._SysWhileTheKernelStarts stands in for `ipykernel.ipkernel`'s
    `sys` until `IPythonKernel.__init__` reads `sys.modules` from it, once."""
    import sys

    import ipykernel.ipkernel

    assert vars(ipykernel.ipkernel)["sys"] is sys
    source = inspect.getsource(ipykernel.ipkernel.IPythonKernel.__init__)
    assert source.count("sys.modules") == 1 and "sys.modules.copy().values()" in source
    assert "self._kernel_modules = [" in source

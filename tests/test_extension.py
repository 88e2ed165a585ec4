"""Loading the extension: cheap, registers the magics, frees everything on unload."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.torchfree
def test_load_ext_imports_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'llm_magics')\n"
        "assert 'llm_load' in ip.magics_manager.magics['line'], 'magics not registered'\n"
        "heavy = [m for m in ('torch', 'transformers', 'bitsandbytes', 'ipywidgets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_magics_are_registered(shell):
    line = shell.magics_manager.magics["line"]
    for name in ("llm_load", "llm_list", "llm_use", "llm_unload"):
        assert name in line


def test_reload_ext_starts_a_clean_registry(shell, tiny_models):
    shell.run_line_magic("llm_load", f"{tiny_models['llama']} --as first")
    before = shell.magics_manager.registry["LlmMagics"]
    assert "first" in before.registry
    shell.run_line_magic("reload_ext", "llm_magics")
    after = shell.magics_manager.registry["LlmMagics"]
    assert after is not before
    assert len(after.registry) == 0
    assert len(before.registry) == 0, "the old session's models must be freed"
    assert before not in shell.configurables

"""A throwaway Jupyter server (JupyterLab, Notebook 7 or classic Notebook 6) on loopback and a headless Chromium to look at it.

Everything the server writes (settings, workspaces, runtime files) goes to a temporary folder, so
a test neither reads nor changes the user's Jupyter setup. Chromium is the system's (Debian's
`chromium` package), driven by Playwright's Python API: Playwright's own browser download is not
needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.demo import kernel_env

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
# Without the networking flags Chromium floods a closed network with update and sync requests.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def require(what: str, reason: str) -> None:
    """Skip with `reason` on a user's machine; under CI (CI=true) a missing front end is a failure."""
    message = f"{what} is not available: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true, so this test must run)")
    pytest.skip(message)


def find_chromium() -> str:
    """The Chromium to drive: $LLM_MAGICS_CHROMIUM when set, else the first of CHROMIUM_CANDIDATES."""
    configured = os.environ.get("LLM_MAGICS_CHROMIUM")
    for candidate in [configured] if configured else CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    require(
        "Chromium",
        f"{configured} (from LLM_MAGICS_CHROMIUM) is not executable"
        if configured
        else "install Debian's `chromium` package (`make test` does so as root)",
    )
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    page_path: str = "lab/tree"

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/{self.page_path}/{notebook}?token={self.token}"


def _settings(folder: Path) -> None:
    """Lab settings for a test: every cell rendered (no windowing), no news or update checks."""
    notebook = folder / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = folder / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@contextlib.contextmanager
def jupyterlab(root: Path, scratch: Path, *, startup_timeout: float = 120) -> Iterator[Lab]:
    """Run `jupyter lab` on 127.0.0.1 serving `root`; stopped (and its kernels with it) on exit."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        require("JupyterLab", "pip install jupyterlab (it is in the dev extra)")
    with jupyter_server("jupyterlab", sys.executable, root, scratch, startup_timeout=startup_timeout) as lab:
        yield lab


#: How each front end is started, and where it opens a notebook.
FRONT_ENDS = {
    # JupyterLab 4 and Notebook 7 are both jupyter_server applications.
    "jupyterlab": ("ServerApp", "lab/tree"),
    "notebook7": ("ServerApp", "notebooks"),
    # Classic Notebook 6 is its own server (NotebookApp), with the nbextension widget manager.
    "notebook6": ("NotebookApp", "notebooks"),
}


@contextlib.contextmanager
def jupyter_server(
    app: str,
    python: str,
    root: Path,
    scratch: Path,
    *,
    kernel_python: str | None = None,
    startup_timeout: float = 120,
) -> Iterator[Lab]:
    """Run front end `app` ("jupyterlab", "notebook7", "notebook6") of `python` on 127.0.0.1.

    With `kernel_python`, notebooks whose kernelspec is named "test-kernel" run in that Python
    (another environment's ipykernel), e.g. Colab's package set behind classic Notebook's front end.
    """
    server_class, page_path = FRONT_ENDS[app]
    port, token = free_port(), secrets.token_hex(16)
    settings = scratch / "lab-settings"
    if not settings.exists():
        _settings(settings)
    data = scratch / "data"
    if kernel_python is not None:
        spec = data / "kernels" / "test-kernel"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (test kernel)",
                    "language": "python",
                }
            )
        )
    env = kernel_env(
        {
            "JUPYTER_CONFIG_DIR": str(scratch / "config"),
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
        }
    )
    log = scratch / f"{app}.log"
    module = "jupyterlab" if app == "jupyterlab" else "notebook"
    command = [
        python,
        "-m",
        module,
        "--no-browser",
        f"--{server_class}.ip=127.0.0.1",
        f"--{server_class}.port={port}",
        f"--{server_class}.port_retries=0",
    ]
    if server_class == "ServerApp":
        command += [
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.terminals_enabled=False",
        ]
    else:
        command += [f"--NotebookApp.token={token}", f"--NotebookApp.notebook_dir={root}"]
    if app == "jupyterlab":
        command += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with log.open("w") as log_file:
        server = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        lab = Lab(f"http://127.0.0.1:{port}", token, root, log, page_path)
        try:
            _wait_for_status(lab, server, startup_timeout)
            yield lab
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_for_status(lab: Lab, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{lab.log.stem} exited ({server.returncode}):\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"{lab.log.stem} did not answer within {timeout:.0f} s:\n{lab.log.read_text()[-3000:]}"
    )


@contextlib.contextmanager
def chromium(profile: Path, *, viewport: tuple[int, int] = (1280, 1600)) -> Iterator[object]:
    """A Playwright browser context in headless system Chromium with a fresh profile folder."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("Playwright", "pip install playwright (it is in the dev extra)")
    executable = find_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            yield context
        finally:
            context.close()

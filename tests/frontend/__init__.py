"""Helpers for the tests that drive real front ends: nbclient kernels, JupyterLab and Chromium."""

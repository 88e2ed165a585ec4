"""Helpers the lesson notebooks call: `claims` checks a course's claims about quantization
against what this machine measures. They ship in the wheel, since Colab installs only that."""

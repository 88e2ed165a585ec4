"""Views of what happens inside the loaded model."""

"""Logs, metrics and traces behind one seam (cheap when disabled)."""

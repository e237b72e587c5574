"""Run directories: naming by config hash, atomic writes, resumable stages."""

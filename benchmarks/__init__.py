"""Side-by-side benchmarks of acpg_lab against Stable-Baselines3 (``python -m benchmarks``; see ``__main__``)."""

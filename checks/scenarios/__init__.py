"""scenarios layer: reusable cluster operations shared by the pytest checks and the notebooks."""

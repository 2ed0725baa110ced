"""Runtime code of the Triton models in models/repository: one module per algorithm."""

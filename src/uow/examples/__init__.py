"""Runnable examples; `python -m uow.examples.users` runs the reference scenario."""

"""A live terminal view of the stack's topics: `python -m dashboard` (or `make watch`)."""

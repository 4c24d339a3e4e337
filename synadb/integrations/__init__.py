"""Framework adapters, imported by path; ``import synadb`` never loads them."""

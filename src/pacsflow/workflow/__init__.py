"""Use cases, one module per workflow step; they see storage only through ports."""
